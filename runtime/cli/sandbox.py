"""`tape sandbox`: run the sandbox venue, a local Binance-spot exchange replaying a namespace of the store."""
from __future__ import annotations

import typer

from runtime.cli.context import cli_context
from runtime.sandbox.config import DEFAULT_API_KEY, DEFAULT_HOST, DEFAULT_SECRET

sandbox_app = typer.Typer(no_args_is_help=True, help="A local exchange speaking Binance spot, replaying the store.")


@sandbox_app.command("serve")
def sandbox_serve(
    ctx: typer.Context,
    port: int = typer.Option(..., "--port", metavar="P", help="TCP port (0 picks a free one, printed at start)."),
    host: str = typer.Option(DEFAULT_HOST, "--host", help="Address to listen on."),
    source: str = typer.Option(..., "--source", metavar="NS", help="Namespace whose market history is replayed."),
    speed: str = typer.Option("1", "--speed", metavar="X",
                              help="Market seconds per wall second; 0 = move only on POST /sandbox/step; max = "
                                   "as fast as possible."),
    loop: bool = typer.Option(False, "--loop", help="Start the history again when it ends (time keeps going)."),
    faults: str = typer.Option("", "--faults", metavar="SPEC",
                               help="Fault rules KIND[:WHEN[:ARG]][@TARGET], comma-separated, e.g. "
                                    "accept_then_drop:0.2,http_5xx_json:0.05 (see runtime/sandbox/faults.py)."),
    seed: int = typer.Option(0, "--seed", metavar="N", help="Seed of fault draws and generated client ids."),
    api_key: str = typer.Option(DEFAULT_API_KEY, "--api-key", metavar="K",
                                help=f"The API key accepted (default {DEFAULT_API_KEY})."),
    secret: str = typer.Option(DEFAULT_SECRET, "--secret", metavar="S",
                               help=f"The HMAC secret signatures are checked with (default {DEFAULT_SECRET})."),
    balance: list[str] | None = typer.Option(None, "--balance", metavar="ASSET=AMOUNT",
                                                help="Starting balance (repeatable); default 100000 of each "
                                                     "quote currency."),
    clock_offset_ms: int = typer.Option(0, "--clock-offset-ms", metavar="N",
                                        help="Offset (ms) of the venue's server clock from this machine's."),
    kline_window: int = typer.Option(0, "--kline-window", metavar="N", min=0,
                                     help="Serve only the last N klines of each interval, as a venue keeping a "
                                          "window of history does (0: all)."),
) -> None:
    """Serve REST v3 (/api/v3), market streams (/ws, /stream), the WebSocket API user data stream (/ws-api/v3)
    and control endpoints (/sandbox/state, faults, step, external_order, deposit) on one port, until Ctrl-C.

    Point ccxt at it with handlers.venues.ccxt.urls.point_at(exchange, "http://HOST:PORT"), or
    `tape live --venue binance --sandbox-url http://HOST:PORT`. Signed requests need the key and secret above
    and a timestamp within recvWindow of the server clock (this machine's clock plus --clock-offset-ms); market
    data, orders and fills carry the replayed time.
    """
    from runtime.sandbox.config import SandboxConfig, check_port, parse_balances, parse_speed
    from runtime.sandbox.faults import parse_spec
    from runtime.sandbox.server import run

    parse_spec(faults)  # a bad spec is one line before anything is opened
    config = SandboxConfig(store=cli_context(ctx).store, source=source, port=check_port(port), host=host,
                           speed=parse_speed(speed), loop=loop, faults=faults, seed=seed, api_key=api_key,
                           secret=secret, balances=parse_balances(balance or []), clock_offset_ms=clock_offset_ms,
                           kline_window=kline_window)
    run(config)
