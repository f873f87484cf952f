"""Incidents end to end: `tape live` as a real process against the sandbox venue (the real ccxt over HTTP), the
venue made to fail on purpose; asserted in the log the session wrote, and after a restart.

Each incident is an event (IncidentRaised with kind, scope, value and threshold; IncidentResolved when its measure
falls back), its action is an event (TradingStateChanged naming the incident, or a DENY read by the risk rules),
and a halt outlives both the incident and the process: only an operator's resume lifts it.
"""
from __future__ import annotations

import time

from killkit import NAMESPACE, Live, Sandbox, log_events, stop_session
from sandboxkit import write_history

from eventstore.errors import StoreError
from eventstore.store import Log
from runtime.ops.status import status


def started(tmp_path, *, paper: bool) -> tuple[Sandbox, Live]:
    store = tmp_path / "store"
    write_history(store, "hist", bars=3000)
    sb = Sandbox(store, "hist", speed="60", extra=("--seed", "3", "--loop")).start()  # a bar a second
    return sb, Live(store, sb.url, paper=paper, alert_only=())


def wait_for(p, store, test, timeout: float = 60.0) -> list:
    """The session's log once `test` holds for it (the session `p` still running)."""
    deadline = time.monotonic() + timeout
    events: list = []
    while time.monotonic() < deadline:
        assert p.poll() is None, p.stderr.read()[-2000:]
        try:
            events = log_events(store)
        except StoreError:  # the session has not created its namespace yet
            events = []
        if test(events):
            return events
        time.sleep(0.3)
    raise AssertionError(f"not within {timeout} s: {[e.name for e in events][-15:]}")


def raised(events, kind: str) -> list:
    return [e for e in events if e.name == "IncidentRaised" and e.data["kind"] == kind]


def test_market_data_the_venue_stops_serving_denies_then_halts_and_the_halt_outlives_a_restart(tmp_path):
    sb, live = started(tmp_path, paper=True)
    try:
        p = live.spawn("--no-stream", "--heartbeat", "0.2")
        wait_for(p, live.store, lambda ev: sum(e.name == "Bar" for e in ev) >= 5)
        sb.fault("http_5xx_json", probability=1, target="GET /api/v3/klines")  # every bar read fails from now
        events = wait_for(p, live.store, lambda ev: raised(ev, "stale_data") and raised(ev, "venue_unreachable"))
        stale, down = raised(events, "stale_data")[0], raised(events, "venue_unreachable")[0]
        assert (stale.data["scope"], stale.data["action"], stale.data["threshold"]) == ("instrument", "DENY", "120")
        assert (down.data["scope"], down.data["action"], down.data["severity"]) == ("venue", "HALT", "CRITICAL")
        assert int(down.data["value"]) >= 3
        halt = [e for e in events if e.name == "TradingStateChanged"][-1]
        assert halt.data["state"] == "HALTED" and halt.data["incident_id"] == down.data["incident_id"]
        sb.clear_faults()  # the venue answers again: both resolve, the halt stays
        events = wait_for(p, live.store, lambda ev: sum(e.name == "IncidentResolved" for e in ev) >= 2)
        resolved = {e.data["incident_id"] for e in events if e.name == "IncidentResolved"}
        assert {stale.data["incident_id"], down.data["incident_id"]} <= resolved
        stop_session(p)
        p = live.run(3)  # a restart: recovery rebuilds the halt from the log
        assert p.returncode == 0, p.stderr[-2000:]
        log = Log.open(f"file:{live.store}")
        try:
            s = status(log, NAMESPACE)
        finally:
            log.close()
        assert s.trading_state == "HALTED" and "venue_unreachable" in (s.trading_reason or "")
    finally:
        sb.stop()


def test_a_venue_ban_halts_a_live_session(tmp_path):
    sb, live = started(tmp_path, paper=False)
    try:
        p = live.spawn("--no-stream", "--heartbeat", "0.2")
        wait_for(p, live.store, lambda ev: sum(e.name == "Bar" for e in ev) >= 3)
        sb.fault("ban_418", arg=1, target="GET /api/v3/klines")
        events = wait_for(p, live.store, lambda ev: raised(ev, "banned"))
        ban = raised(events, "banned")[0]
        assert (ban.data["action"], ban.data["scope_id"], ban.data["value"]) == ("HALT", "BINANCE", "1")
        after = [e for e in events if e.seq > ban.seq]
        assert any(e.name == "TradingStateChanged" and e.data["state"] == "HALTED" for e in after)
        stop_session(p)
    finally:
        sb.stop()
