"""Startup's reconciliation waits for a send in doubt: a session killed right after its order reached the venue
leaves a submit without an answer, and the venue shows that order to lookups only seconds later (Binance's -2013
window). The next start looks it up until it is found (within the visibility window), and only then compares
balances and reports — complete and resolved. The control (one lookup, then judge) reports it unresolved with the
balances not compared: what the wait is for."""
from __future__ import annotations

import pytest
from killkit import Live, Sandbox, failpoint, log_events
from sandboxkit import write_history

LAG_S = 8  # every new order (and its trades) invisible to queries this long: longer than a restart takes


@pytest.mark.parametrize("variant", ["", "no_wait"], ids=["waits", "control-judges-at-once"])
def test_a_send_in_doubt_is_found_before_the_startup_report_judges(tmp_path, variant):
    store = tmp_path / "store"
    write_history(store, "hist", bars=3000)
    sb = Sandbox(store, "hist", speed="600", extra=("--loop", "--faults", f"visibility_lag:1:{LAG_S}")).start()
    live = Live(store, sb.url, window_s=LAG_S + 4)
    try:
        assert failpoint(live, "after_send")  # the first order is at the venue; its answer died with the process
        before = log_events(store)
        (doubted,) = [e.data["client_order_id"] for e in before if e.name == "OrderSubmitted"]
        p = live.run(2, **({"KT_VARIANT": variant} if variant else {}))
        assert p.returncode == 0, p.stderr[-3000:]
        after = log_events(store)[len(before):]
        at = next(i for i, e in enumerate(after) if e.name == "ReconciliationReport")  # startup's
        report = after[at].data
        found = [e.name for e in after[:at] if e.data.get("client_order_id") == doubted]
    finally:
        sb.stop()
    if not variant:
        assert "OrderAccepted" in found and "OrderFilled" in found, found  # looked up until the venue showed it
        assert report["resolved"] and report["mismatches"] == [] and report["balances_checked"] > 0, report
    else:
        assert "OrderAccepted" not in found, found
        assert not report["resolved"] and report["balances_checked"] == 0, report  # nothing could be judged
        assert [m["client_order_id"] for m in report["mismatches"]] == [doubted], report
    # no false halt either way (stale_data may be raised: the market runs 600 times the wall clock while startup waits)
    raised = [e.data["kind"] for e in after if e.name == "IncidentRaised"]
    assert "reconciliation_mismatch" not in raised, raised
