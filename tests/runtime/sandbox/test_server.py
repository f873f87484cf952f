"""`tape sandbox serve` as a user meets it: one-line errors (exit 2), a paced market, a clean stop, determinism."""
from __future__ import annotations

import signal
import socket
import time
import urllib.error
import urllib.request

import pytest
from sandboxkit import Sandbox, write_history
from typer.testing import CliRunner


@pytest.fixture
def tape():
    """The root CLI with the sandbox group attached, as runtime/cli/app.py will attach it."""
    from runtime.cli.app import app
    from runtime.cli.sandbox import sandbox_app

    if not any(g.name == "sandbox" for g in app.registered_groups):
        app.add_typer(sandbox_app, name="sandbox")
    runner = CliRunner()
    return lambda *args: runner.invoke(app, list(args), catch_exceptions=False)


def serve(tape, store, *args):
    return tape("--store", f"file:{store}", "sandbox", "serve", *args)


def test_bad_input_is_one_line_and_exit_2(tape, history, tmp_path):
    from decimal import Decimal as D

    from eventstore.store import Log
    from eventstore.writer import Draft

    log = Log.open(f"file:{history}")
    if "bare" not in log.namespaces():  # market data without an InstrumentDefined
        with log.writer("bare") as w:
            w.append([Draft("Bar", {"instrument_id": "X.SIM", "timeframe": "1m", "open_ts": 0, "open": D(1),
                                    "high": D(1), "low": D(1), "close": D(1), "volume": D(1)}, 60 * 10**9, "X.SIM")])
    log.close()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = str(busy.getsockname()[1])
        cases = [
            (history, ["--port", "0", "--source", "nope"], "source namespace 'nope' is not in store"),
            (history, ["--port", "0", "--source", "bare"], "defines no spot instrument"),
            (history, ["--port", port, "--source", "hist"], f"port {port} on 127.0.0.1 is in use: pick another --port"),
            (history, ["--port", "0", "--source", "hist", "--faults", "explode:0.1"], "unknown fault 'explode'"),
            (history, ["--port", "0", "--source", "hist", "--balance", "USDT"], "use ASSET=AMOUNT"),
            (history, ["--port", "0", "--source", "hist", "--speed", "fast-ish"], "--speed 'fast-ish'"),
            (history, ["--port", "70000", "--source", "hist"], "out of range"),
            (tmp_path / "nowhere", ["--port", "0", "--source", "hist"], "nowhere"),
        ]
        for store, args, words in cases:
            r = serve(tape, store, *args)
            assert r.exit_code == 2, (args, r.output)
            assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1 and words in r.stderr, r.stderr
            assert "Traceback" not in r.output and r.stdout == ""


def test_help_documents_the_default_credentials(tape):
    r = tape("sandbox", "serve", "--help")
    assert r.exit_code == 0 and "sandbox-key" in r.stdout and "sandbox-secret" in r.stdout


def test_a_paced_market_moves_by_itself_and_stops_cleanly(tmp_path):
    write_history(tmp_path / "store", "hist", bars=50)
    sb = Sandbox(tmp_path / "store", "hist", speed="600")  # ten market minutes per wall second
    with sb:
        assert "speed 600" in sb.banner and "BTCUSDT" in sb.banner
        t0 = sb.state()["released"]
        time.sleep(0.6)
        state = sb.state()
        assert state["released"] >= t0 + 4 and state["marketTime"] > 1_704_067_200_000
        with pytest.raises(urllib.error.HTTPError) as e:
            sb.step(1)
        assert e.value.code == 409
        sb.proc.send_signal(signal.SIGTERM)
        assert sb.proc.wait(5) == 0


def test_same_seed_same_requests_same_venue(tmp_path):
    """Two sandboxes with one seed, driven by one script (faults drawn by chance included): identical books."""
    write_history(tmp_path / "store", "hist", bars=60)

    def script() -> dict:
        with Sandbox(tmp_path / "store", "hist", extra=("--seed", "11", "--faults", "http_5xx_json:0.3")) as sb:
            ex = sb.ccxt()
            outcomes = []
            for i in range(12):
                try:
                    kind = ("market", None) if i % 3 else ("limit", 41000 + i)
                    ex.create_order("BTC/USDT", kind[0], "buy" if i % 2 else "sell", 0.01, kind[1],
                                    {"clientOrderId": f"same-{i}"})  # ccxt's own ids are random
                    outcomes.append("ok")
                except Exception as e:  # noqa: BLE001 - the class is what is compared
                    outcomes.append(type(e).__name__)
                sb.step(1)
            state = sb.state()
            for o in state["orders"]:
                o.pop("visibleAt")
            for t in state["trades"]:
                t.pop("visibleAt")
            return {"outcomes": outcomes, **{k: state[k] for k in ("orders", "trades", "balances", "marketTime")}}

    first, second = script(), script()
    assert "ExchangeError" in first["outcomes"] and "ok" in first["outcomes"]
    assert first == second


def test_a_client_gone_in_the_middle_of_its_request_leaves_no_error_behind(sb):
    """A session SIGKILLed while its order's body was on the wire: the sandbox drops the request quietly (it used to
    log aiohttp's 'Error handling request' traceback, which the kill series count as a venue error)."""
    host, port = sb.url.removeprefix("http://").split(":")
    for _ in range(3):
        with socket.create_connection((host, int(port))) as s:
            s.sendall(b"POST /api/v3/order HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                      b"Content-Length: 400\r\n\r\nsymbol=BTCUSDT&side=BUY")  # 400 bytes promised, 23 sent
    time.sleep(0.5)
    assert sb.get("/api/v3/ping") == {}
    assert sb.errors() == ""
