"""The sandbox venue's server: one aiohttp app on one port for REST, websockets and the control endpoints.

    /api/v3/…       Binance spot REST (runtime/sandbox/rest.py)
    /ws, /stream    market streams; /ws-api/v3 the WebSocket API with the user data stream (runtime/sandbox/ws.py)
    /sandbox/…      state, faults, step, external orders, deposits (runtime/sandbox/control.py)

Defaults: API key `sandbox-key`, secret `sandbox-secret` (change them with --api-key/--secret), host 127.0.0.1.
`run` checks the source and binds the port before it prints its one line `sandbox venue on http://HOST:PORT …`
(the port is the real one when 0 was asked for) and serves until SIGINT or SIGTERM; a bad source or a port in
use is a SandboxError (one line, exit 2 from the CLI).
"""
from __future__ import annotations

import asyncio
import errno
import signal
import socket
import sys
from collections.abc import Callable

from aiohttp import web

from eventstore.errors import StoreError
from eventstore.store import Log
from runtime.sandbox.config import SandboxConfig, SandboxError
from runtime.sandbox.control import Control
from runtime.sandbox.rest import RestApi
from runtime.sandbox.venue import Venue


def build_app(venue: Venue) -> web.Application:
    """The aiohttp application of one venue."""
    app = web.Application(client_max_size=1 << 20)
    rest = RestApi(venue)
    for prefix in ("api", "sapi", "fapi", "dapi", "eapi", "papi"):
        app.router.add_route("*", f"/{prefix}/{{tail:.*}}", rest.handle)
    app.router.add_get("/ws", venue.streams.market_endpoint)
    app.router.add_get("/ws/{tail:.*}", venue.streams.market_endpoint)
    app.router.add_get("/stream", venue.streams.market_endpoint)
    app.router.add_get("/stream/{tail:.*}", venue.streams.market_endpoint)
    app.router.add_get("/ws-api/v3", venue.streams.api_endpoint)
    app.router.add_routes(Control(venue).routes())
    return app


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port, or a SandboxError naming the port and the fix."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise SandboxError(f"--host {host}: not an address of this machine; use 127.0.0.1 or 0.0.0.0") from None
    family, kind, proto, _, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
        sock.listen(128)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise SandboxError(f"port {port} on {host} is in use: pick another --port (0 picks a free one)") from None
        if e.errno == errno.EACCES:
            raise SandboxError(f"port {port} on {host} needs privileges: use a port above 1023") from None
        raise SandboxError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.setblocking(False)
    return sock


def open_venue(config: SandboxConfig) -> tuple[Log, Venue]:
    """The store and the venue over its source namespace, or a SandboxError saying what to fix."""
    try:
        log = Log.open(config.store)
    except StoreError as e:
        raise SandboxError(str(e)) from None
    try:
        return log, Venue(config, log)
    except BaseException:
        log.close()
        raise


def run(config: SandboxConfig, announce: Callable[[str], None] | None = None) -> None:
    """Serve the sandbox venue until SIGINT/SIGTERM; `announce` gets the one startup line (default: stdout)."""
    log, venue = open_venue(config)
    try:
        sock = bind(config.host, config.port)
        try:
            asyncio.run(_serve(venue, sock, announce or _print))
        finally:
            sock.close()
    finally:
        log.close()


async def _serve(venue: Venue, sock: socket.socket, announce: Callable[[str], None]) -> None:
    runner = web.AppRunner(build_app(venue), access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    site = web.SockSite(runner, sock)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    host, port = sock.getsockname()[:2]
    c = venue.config
    speed = "max" if c.speed == float("inf") else f"{c.speed:g}"
    announce(f"sandbox venue on http://{host}:{port} (source {c.source}, {len(venue.market.symbols)} "
             f"instrument(s): {', '.join(sorted(venue.market.symbols))}; speed {speed}; key {c.api_key})")
    pump = loop.create_task(venue.pump())
    try:
        await stop.wait()
    finally:
        pump.cancel()
        await runner.cleanup()


def _print(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
