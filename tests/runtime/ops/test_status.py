"""`tape status` answers from the log alone, checked against what the venue itself holds (through ccxt) and what
`tape backtest` reported: a live session running, killed, stopped cleanly, halted; a backtest run; bad input."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "live"))
from killkit import NAMESPACE, SYMBOL, Live, Sandbox, stop_session, venue_books
from sandboxkit import ROOT, py_env, write_history

from schemas.ids import order_id_prefix

EXAMPLE = ROOT / "examples" / "btcusdt-1m.csv"


def tape(store: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runtime.cli", "--store", f"file:{store}", *args], env=py_env(),
                          cwd=ROOT, capture_output=True, text=True, timeout=120,
                          check=False)


def status(store: Path, namespace: str = NAMESPACE) -> dict:
    p = tape(store, "status", namespace, "--json")
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def market(tmp_path: Path) -> tuple[Sandbox, Live]:
    store = tmp_path / "store"
    write_history(store, "hist", bars=3000)
    sb = Sandbox(store, "hist", speed="120", extra=("--loop",)).start()
    live = Live(store, sb.url)
    live.strategy = "market_maker"  # resting quotes: open orders to show
    return sb, live


def test_a_live_session_running_then_killed_then_stopped(tmp_path):
    sb, live = market(tmp_path)
    try:
        p = live.spawn()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            time.sleep(0.5)
            if (live.store / NAMESPACE).exists() and status(live.store)["open_orders"]:
                break
        s = status(live.store)
        assert (s["session"], s["writer"], s["mode"], s["strategy"]) == ("running", f"pid {p.pid}", "LIVE",
                                                                          "market_maker")
        assert s["open_orders"] and s["reconciliation"]["resolved"] is True and s["trading_state"] == "ACTIVE"

        p.kill()
        p.wait()
        p.stdout.close()
        p.stderr.close()
        s = status(live.store)
        assert (s["session"], s["writer"], s["healthy"]) == ("ended without RunStopped", "none", False)
        assert any("without RunStopped" in f for f in s["findings"]), s["findings"]
        assert tape(live.store, "status", NAMESPACE, "--check").returncode == 1

        sb.post("/sandbox/speed", {"speed": 0})  # nothing fills while we compare
        done = live.run(2 * live.window_s + 2)
        assert done.returncode == 0, done.stderr[-2000:]
        s = status(live.store)
        assert (s["session"], s["writer"], s["healthy"], s["findings"]) == ("stopped", "none", True, []), s
        books = venue_books(sb)
        prefix = order_id_prefix(NAMESPACE)
        venue_open = {o["clientOrderId"] for o in books["orders"]
                      if o["status"] == "open" and o["clientOrderId"].startswith(prefix)}
        assert {o["client_order_id"] for o in s["open_orders"]} == venue_open and venue_open
        assert {c: Decimal(v) for c, v in s["balances"].items()} == books["exact"]
        human = tape(live.store, "status", NAMESPACE)
        assert human.returncode == 0 and f"{NAMESPACE}: healthy" in human.stdout, human.stdout
        assert min(venue_open) in human.stdout
        assert tape(live.store, "status", NAMESPACE, "--check").returncode == 0
    finally:
        sb.stop()


def test_a_halted_session_says_why(tmp_path):
    sb, live = market(tmp_path)
    try:
        sb.post("/sandbox/speed", {"speed": 0})
        # an order carrying this namespace's client-id prefix that its log does not hold: reconciliation halts
        stray = f"{order_id_prefix(NAMESPACE)}-999999"
        sb.post("/sandbox/external_order", {"symbol": SYMBOL.replace("/", ""), "side": "BUY", "type": "LIMIT",
                                            "quantity": "0.001", "price": "30000", "timeInForce": "GTC",
                                            "clientOrderId": stray})
        done = live.run(2)
        assert done.returncode == 0, done.stderr[-2000:]
        s = status(live.store)
        assert s["trading_state"] == "HALTED" and s["trading_reason"] and not s["healthy"], s
        assert s["reconciliation"]["resolved"] is False and "unknown_at_venue" in s["reconciliation"]["mismatches"]
        assert any("HALTED" in f for f in s["findings"]) and any("unresolved" in f for f in s["findings"])
        human = tape(live.store, "status", NAMESPACE)
        assert "NOT HEALTHY" in human.stdout and "HALTED" in human.stdout and "UNRESOLVED" in human.stdout
    finally:
        sb.stop()


def test_a_backtest_run_shows_what_the_run_reported(tmp_path):
    store = tmp_path / "store"
    p = tape(store, "ingest", "csv", str(EXAMPLE), "--namespace", "src", "--instrument", "BTCUSDT.BINANCE",
             "--kind", "bars", "--timeframe", "1m", "--base", "BTC", "--quote", "USDT")
    assert p.returncode == 0, p.stderr
    p = tape(store, "backtest", "--source", "src", "--strategy", "sma_cross", "--param", "fast=5", "--param",
             "slow=20", "--param", "quantity=0.5", "--json")
    assert p.returncode == 0, p.stderr
    run = json.loads(p.stdout)
    s = status(store, run["run_id"])
    assert (s["mode"], s["session"], s["strategy"]) == ("BACKTEST", "stopped", "sma_cross")
    assert Decimal(s["equity"]["USDT"]) == Decimal(run["statistics"]["end_equity"])
    assert s["last_event"] == "RunStopped" and s["reconciliation"] is None


def test_a_namespace_that_does_not_exist(tmp_path):
    (tmp_path / "store").mkdir()
    for command in ("status", "top"):
        p = tape(tmp_path / "store", command, "live-nothing")
        assert p.returncode == 2 and p.stderr.count("\n") == 1 and "no namespace 'live-nothing'" in p.stderr, p.stderr


def test_top_redraws_in_a_terminal_as_the_log_grows(tmp_path):
    import os
    import pty
    import re

    sb, live = market(tmp_path)
    live.paper = True
    p = live.spawn()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not ((live.store / NAMESPACE).exists() and status(live.store)["last_seq"]):
            time.sleep(0.5)
        leader, follower = pty.openpty()  # a real terminal for `tape top`
        top = subprocess.Popen([sys.executable, "-m", "runtime.cli", "--store", f"file:{live.store}", "top", NAMESPACE,
                                "--iterations", "5", "--interval", "1"], stdin=follower, stdout=follower,
                               stderr=follower, env={**py_env(), "COLUMNS": "160", "LINES": "50"}, cwd=ROOT)
        os.close(follower)
        screen = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal's other end closed: top is done
                break
            if not chunk:
                break
            screen += chunk
        os.close(leader)
        assert top.wait(30) == 0, screen[-2000:]
        text = screen.decode(errors="replace")
        seqs = [int(x.replace(",", "")) for x in re.findall(r"last event\s+seq ([\d,]+)", text)]
        # five redraws (and rich's last one as it leaves the screen), each at or after the one before; the log grew
        assert len(seqs) >= 5 and seqs == sorted(seqs) and seqs[-1] > seqs[0], (seqs, text[-1500:])
        assert "\x1b[" in text and "paper market_maker" in text  # redrawn in place with terminal codes
    finally:
        stop_session(p)
        sb.stop()
