"""Test kit for the sandbox venue: a history written straight to a store, the server as a real process, ccxt on it.

Used by tests/runtime/sandbox and by any test that needs the sandbox as its venue (the live kill tests):

    write_history(store_dir, "hist", bars=300)            # BTCUSDT 1m bars + its InstrumentDefined
    with Sandbox(store_dir, "hist", speed="0") as sb:     # `tape sandbox serve` in a subprocess, port 0
        ex = sb.ccxt()                                    # ccxt.binance pointed at it (rate limiter off)
        sb.fault("accept_then_drop"); sb.step(5); sb.state()
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
T0_NS = 1_704_067_200 * 10**9  # 2024-01-01T00:00:00Z
MINUTE_NS = 60 * 10**9
KEY, SECRET = "sandbox-key", "sandbox-secret"

# `tape` itself, as the console script runs it
CLI = ("import sys\n"
       "from runtime.cli.app import main\n"
       "sys.argv[0] = 'tape'\n"
       "main()\n")


def bar_prices(n: int, start: Decimal = Decimal("42000.00")) -> list[tuple[Decimal, Decimal, Decimal, Decimal]]:
    """(open, high, low, close) of n bars: a deterministic zig-zag, 0.01 ticks, each bar opening at the last close."""
    out = []
    price = start
    for i in range(n):
        move = Decimal((i * 37) % 23 - 11) * Decimal("1.50")
        close = price + move
        high = max(price, close) + Decimal("2.25")
        low = min(price, close) - Decimal("2.25")
        out.append((price, high, low, close))
        price = close
    return out


def write_history(store: Path, namespace: str = "hist", *, bars: int = 300, volume: str = "4",
                  min_notional: str | None = "10", maker_fee: str = "0.001", taker_fee: str = "0.002",
                  instrument: str = "BTCUSDT.BINANCE") -> None:
    """An instrument (tick 0.01, lot 0.00001, min notional, fees) and `bars` one-minute bars of it."""
    from eventstore.store import Log
    from eventstore.writer import Draft

    symbol = instrument.split(".")[0]
    log = Log.open(f"file:{store}")
    try:
        with log.writer(namespace) as w:
            w.append([Draft("InstrumentDefined", {
                "instrument_id": instrument, "venue": "BINANCE", "symbol": symbol, "kind": "SPOT",
                "base_currency": "BTC", "quote_currency": "USDT", "settlement_currency": "USDT",
                "price_increment": Decimal("0.01"), "size_increment": Decimal("0.00001"), "price_precision": 2,
                "size_precision": 5, "min_quantity": Decimal("0.00001"), "max_quantity": Decimal(9000),
                "min_notional": Decimal(min_notional) if min_notional is not None else None,
                "maker_fee": Decimal(maker_fee), "taker_fee": Decimal(taker_fee), "multiplier": Decimal(1)},
                T0_NS, instrument, "test")])
            drafts = []
            for i, (o, h, lo, c) in enumerate(bar_prices(bars)):
                open_ts = T0_NS + i * MINUTE_NS
                drafts.append(Draft("Bar", {"instrument_id": instrument, "timeframe": "1m", "open_ts": open_ts,
                                            "open": o, "high": h, "low": lo, "close": c,
                                            "volume": Decimal(volume), "trades": 4},
                                    open_ts + MINUTE_NS, instrument, "test"))
            w.append(drafts)
    finally:
        log.close()


def py_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    return env


def serve_command(store: Path, source: str, *args: str) -> list[str]:
    """`tape --store file:STORE sandbox serve --source NS …` as an argv."""
    return [sys.executable, "-c", CLI, "--store", f"file:{store}", "sandbox", "serve", "--source", source, *args]


class Sandbox:
    """The sandbox venue in its own process, on a free loopback port, with its control endpoints at hand."""

    def __init__(self, store: Path, source: str = "hist", *, speed: str = "0", port: int = 0, extra: tuple = ()):
        self.argv = serve_command(store, source, "--port", str(port), "--speed", speed,
                                  "--balance", "USDT=100000", "--balance", "BTC=2", *extra)
        self.proc: subprocess.Popen | None = None
        self.stderr: Any = None
        self.url = ""
        self.banner = ""

    def start(self, timeout: float = 20.0) -> Sandbox:
        self.stderr = tempfile.TemporaryFile(mode="w+")  # a file, not a pipe: nobody has to drain it
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=self.stderr, text=True,
                                     env=py_env(), cwd=ROOT)
        deadline = time.monotonic() + timeout
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line.startswith("sandbox venue on "):
            self.stop()
            raise RuntimeError(f"sandbox did not start: {line!r} {self.errors()!r}")
        self.banner = line.strip()
        self.url = line.split()[3]
        while time.monotonic() < deadline:
            try:
                self.get("/api/v3/ping")
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("sandbox does not answer")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()

    def errors(self) -> str:
        """What the server wrote on stderr so far (nothing, when all is well)."""
        self.stderr.seek(0)
        return self.stderr.read()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- control ---------------------------------------------------------------------------------------------

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=10) as r:
            return json.loads(r.read())

    def post(self, path: str, body: Any) -> Any:
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def state(self) -> dict[str, Any]:
        return self.get("/sandbox/state")

    def step(self, events: int = 1) -> dict[str, Any]:
        return self.post("/sandbox/step", {"events": events})

    def fault(self, kind: str, **rule: Any) -> dict[str, Any]:
        return self.post("/sandbox/faults", {"fault": kind, **rule})

    def clear_faults(self) -> dict[str, Any]:
        return self.post("/sandbox/faults", {"clear": True})

    # ---- ccxt ------------------------------------------------------------------------------------------------

    def options(self, **extra: Any) -> dict[str, Any]:
        return {"apiKey": extra.pop("apiKey", KEY), "secret": extra.pop("secret", SECRET), "enableRateLimit": False,
                "timeout": extra.pop("timeout", 5000),
                "options": {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False, "fetchMargins": False,
                            "adjustForTimeDifference": True, "warnOnFetchOpenOrdersWithoutSymbol": False,
                            "maxRetriesOnFailure": 0, **extra.pop("options", {})}, **extra}

    def ccxt(self, **extra: Any) -> Any:
        """A sync ccxt.binance on this sandbox, markets loaded."""
        import ccxt

        from handlers.venues.ccxt.urls import point_at

        ex = ccxt.binance(self.options(**extra))
        point_at(ex, self.url)
        ex.load_markets()
        return ex

    def ccxt_pro(self, **extra: Any) -> Any:
        """An async ccxt.pro.binance on this sandbox (markets not loaded; await ex.close() at the end)."""
        import ccxt.pro

        from handlers.venues.ccxt.urls import point_at

        ex = ccxt.pro.binance(self.options(**extra))
        point_at(ex, self.url)
        return ex
