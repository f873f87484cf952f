"""Incidents end to end: `tape live` as a real process against the sandbox venue (the real ccxt over HTTP), the
venue made to fail on purpose; asserted in the log the session wrote, and after a restart.

Each incident is an event (IncidentRaised with kind, scope, value and threshold; IncidentResolved when its measure
falls back), its action is an event (TradingStateChanged naming the incident, or a DENY read by the risk rules),
and a halt outlives both the incident and the process: only an operator's resume lifts it.
"""
from __future__ import annotations

import time
from decimal import Decimal

from killkit import NAMESPACE, Live, Sandbox, log_events, stop_session
from sandboxkit import write_history

from eventstore.errors import StoreError
from eventstore.store import Log
from runtime.ops.status import status


def started(tmp_path, *sandbox: str, paper: bool) -> tuple[Sandbox, Live]:
    """A sandbox venue at a bar a second (with `sandbox`'s options) and a session's settings for it."""
    store = tmp_path / "store"
    write_history(store, "hist", bars=3000)
    sb = Sandbox(store, "hist", speed="60", extra=("--seed", "3", "--loop", *sandbox)).start()
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


def after(events, event) -> list:
    return [e for e in events if e.seq > event.seq]


def test_sends_left_unanswered_in_a_burst_halt_the_venue_and_nothing_is_sent_after(tmp_path):
    sb, live = started(tmp_path, paper=False)
    live.strategy = "market_maker"  # two quotes a bar: a burst comes quickly
    try:
        p = live.spawn("--no-stream", "--heartbeat", "0.2")
        wait_for(p, live.store, lambda ev: sum(e.name == "OrderAccepted" for e in ev) >= 2)
        sb.fault("accept_then_drop", probability=1, target="order")  # the venue takes each order, the answer is lost
        events = wait_for(p, live.store, lambda ev: raised(ev, "unknown_burst"))
        burst = raised(events, "unknown_burst")[0]
        assert (burst.data["action"], burst.data["scope"], burst.data["threshold"]) == ("HALT", "venue", "3")
        assert int(burst.data["value"]) >= 3
        events = wait_for(p, live.store, lambda ev: any(e.name == "TradingStateChanged" and e.data["state"] ==
                                                        "HALTED" for e in after(ev, burst)))
        halted = next(e for e in after(events, burst) if e.name == "TradingStateChanged")
        time.sleep(3)  # bars keep coming; a halted session sends nothing new
        events = log_events(live.store)
        assert not [e for e in after(events, halted) if e.name == "OrderSubmitted"]
        stop_session(p)
    finally:
        sb.stop()


def test_orders_the_venue_refuses_in_a_burst_halt_the_strategy(tmp_path):
    sb, live = started(tmp_path, paper=False)
    live.strategy = "market_maker"  # two quotes a bar, of 50 BTC against 2 BTC and 100,000 USDT: each one refused
    # two refusals a bar (a minute of event time) never make the default 5 in 60 s: 4 in 5 minutes here
    live.incidents().write_text("[reject_burst]\nthreshold = 4\nwindow = 300\n")
    try:
        p = live.spawn("--no-stream", "--heartbeat", "0.2", "--param", "quantity=50", "--param", "max_inventory=500")
        events = wait_for(p, live.store, lambda ev: raised(ev, "reject_burst"), timeout=90)
        burst = raised(events, "reject_burst")[0]
        rejected = [e for e in events if e.name == "OrderRejected" and e.seq < burst.seq
                    and e.data["reason_code"] != "POST_ONLY_WOULD_TAKE"]  # routine (a quote the market crossed
        # before it arrived): the burst does not count those
        assert len(rejected) >= 4 and {e.data["reason_code"] for e in rejected} == {"INSUFFICIENT_BALANCE"}
        assert (burst.data["threshold"], burst.data["value"]) == ("4", "4")
        assert (burst.data["action"], burst.data["scope"], burst.data["scope_id"]) == ("HALT", "strategy",
                                                                                       "market_maker")
        wait_for(p, live.store, lambda ev: any(e.name == "TradingStateChanged" and e.data["state"] == "HALTED"
                                               for e in after(ev, burst)))
        stop_session(p)
    finally:
        sb.stop()


def test_money_moved_at_the_venue_while_nobody_ran_halts_at_startup_naming_the_difference(tmp_path):
    sb, live = started(tmp_path, paper=False)
    try:
        p = live.run(3)
        assert p.returncode == 0, p.stderr[-2000:]
        sb.post("/sandbox/deposit", {"asset": "USDT", "amount": "5"})  # not through trading: the log cannot know
        p = live.run(3)
        assert p.returncode == 0, p.stderr[-2000:]
        events = log_events(live.store)
        (mismatch,) = raised(events, "reconciliation_mismatch")
        assert (mismatch.data["action"], mismatch.data["scope"]) == ("HALT", "account")
        assert "balance.USDT.total" in mismatch.data["detail"]
        report = [e for e in events if e.name == "ReconciliationReport" and e.seq < mismatch.seq][-1]
        (diff,) = [m for m in report.data["mismatches"] if m["field"] == "balance.USDT.total"]
        assert Decimal(diff["venue"]) - Decimal(diff["local"]) == 5
        halt = next(e for e in after(events, mismatch) if e.name == "TradingStateChanged")
        assert halt.data["state"] == "HALTED" and halt.data["incident_id"] == mismatch.data["incident_id"]
    finally:
        sb.stop()


def test_a_venue_clock_ahead_and_answers_of_429_raise_alerts_that_resolve(tmp_path):
    sb, live = started(tmp_path, "--clock-offset-ms", "8000", paper=False)
    try:
        p = live.spawn("--no-stream", "--heartbeat", "0.2")
        events = wait_for(p, live.store, lambda ev: raised(ev, "clock_skew"))
        skew = raised(events, "clock_skew")[0]
        assert skew.data["action"] == "ALERT" and 7000 <= int(skew.data["value"]) <= 9000
        sb.fault("rate_limit_429", probability=1, target="GET /api/v3/klines")
        events = wait_for(p, live.store, lambda ev: raised(ev, "rate_limited"))
        limited = raised(events, "rate_limited")[0]
        assert (limited.data["action"], limited.data["scope"]) == ("ALERT", "venue")
        sb.clear_faults()
        wait_for(p, live.store, lambda ev: any(e.name == "IncidentResolved" and e.data["incident_id"] ==
                                               limited.data["incident_id"] for e in ev))
        events = log_events(live.store)
        assert not any(e.name == "TradingStateChanged" and e.data["state"] == "HALTED" for e in events)  # alerts only
        stop_session(p)
    finally:
        sb.stop()


def test_bars_a_venue_no_longer_serves_after_a_downtime_are_an_incident_not_a_silent_hole(tmp_path):
    """The venue keeps 5 klines; the session is down while 12 bars pass. The restarted session's log has a hole in
    its bars, and the hole is an event: a bar_gap incident on the instrument, its value the bars missing, raised at
    the heartbeat after the catch-up, alerted, resolved at the next one."""
    sb, live = started(tmp_path, "--kline-window", "5", paper=True)
    try:
        p = live.spawn("--no-stream", "--heartbeat", "0.2")
        first = wait_for(p, live.store, lambda ev: sum(e.name == "Bar" for e in ev) >= 3)
        assert not raised(first, "bar_gap")  # 3 bars of history fit in the venue's window
        stop_session(p)
        end = log_events(live.store)[-1].seq
        time.sleep(12)  # a bar a second at the venue, which serves the last 5
        p = live.spawn("--no-stream", "--heartbeat", "0.2")
        events = wait_for(p, live.store, lambda ev: [g for g in raised(ev, "bar_gap") if g.seq > end])
        gap = raised(events, "bar_gap")[0]
        opens = [e.data["open_ts"] for e in events if e.name == "Bar"]
        iid = next(e.data["instrument_id"] for e in events if e.name == "Bar")
        period = opens[1] - opens[0]
        holes = [(a, b) for a, b in zip(opens, opens[1:]) if b - a != period]
        assert len(holes) == 1, holes  # the downtime's, and only it
        missing = (holes[0][1] - holes[0][0]) // period - 1
        assert missing >= 5 and gap.data["value"] == str(missing)
        assert (gap.data["scope"], gap.data["scope_id"], gap.data["action"]) == ("instrument", iid, "ALERT")
        beat = next(e for e in reversed(events) if e.name == "Heartbeat" and e.seq < gap.seq)
        assert beat.data["bar_gaps"] == {iid: missing}
        events = wait_for(p, live.store, lambda ev: any(
            e.name == "IncidentResolved" and e.data["incident_id"] == gap.data["incident_id"] for e in ev))
        assert not [e for e in events if e.name == "TradingStateChanged"]  # an alert, not a halt
        stop_session(p)
    finally:
        sb.stop()
