"""Halts and rejections folded from a run's events: durations, groups, shares and the warnings."""
from __future__ import annotations

import pytest

from projections.interventions import Interventions

HOUR = 3600 * 10**9


def rejected(rule: str, limit: str, reason: str, iid: str = "BTCUSDT.SIM") -> dict:
    return {"instrument_id": iid, "client_order_id": "c", "intent_id": "i", "rule": rule, "limit": limit,
            "value": "1", "reason": reason}


def halted(state: str, previous: str, reason: str) -> dict:
    return {"state": state, "previous": previous, "reason": reason, "incident_id": None}


def test_a_halt_to_the_end_and_the_rejections_it_caused_are_counted_and_warned_about():
    iv = Interventions(keep=True)
    for i in range(10):
        iv.apply("OrderIntent", {}, i * HOUR)
    iv.apply("RiskRejected", rejected("max_order_quantity", "0.1", "quantity 0.5 exceeds 0.1"), 1 * HOUR)
    iv.apply("TradingStateChanged", halted("HALTED", "ACTIVE", "max_drawdown: 0.21 below the peak"), 2 * HOUR)
    for t in (3, 4, 5):
        iv.apply("RiskRejected", rejected("trading_state", "HALTED", "trading is HALTED: no new orders"), t * HOUR)
    iv.apply("OrderRejected", {"instrument_id": "BTCUSDT.SIM", "client_order_id": "d",
                               "reason_code": "INSUFFICIENT_BALANCE", "reason": "needs 100, has 5"}, 6 * HOUR)
    s = iv.summary(0, 10 * HOUR)
    assert (s["order_intents"], s["rejected"], s["rejected_share"]) == (10, 5, 0.5)
    assert [(g["by"], g["rule"], g["limit"], g["count"]) for g in s["rejections"]] == [
        ("risk", "trading_state", "HALTED", 3), ("risk", "max_order_quantity", "0.1", 1),
        ("venue", "INSUFFICIENT_BALANCE", "", 1)]
    top = s["rejections"][0]
    assert (top["first_ts"], top["last_ts"], top["example"]) == (3 * HOUR, 5 * HOUR, "trading is HALTED: no new orders")
    assert s["halts"] == [{"state": "HALTED", "from_ts": 2 * HOUR, "to_ts": None, "duration_ns": 8 * HOUR,
                           "reason": "max_drawdown: 0.21 below the peak", "ended_by": None}]
    assert s["halted_ns"] == 8 * HOUR and s["halted_share"] == pytest.approx(0.8)
    assert len(s["warnings"]) == 2
    assert s["warnings"][0].startswith("5 of 10 order intents (50.0 %) were refused, most by risk trading_state (3)")
    assert s["warnings"][1].startswith("trading was not ACTIVE for 80.0 % of the run (first HALTED: max_drawdown")
    rows = iv.rows()
    assert [(r["ts"], r["by"], r["rule"]) for r in rows][:2] == [(HOUR, "risk", "max_order_quantity"),
                                                                (3 * HOUR, "risk", "trading_state")]


def test_a_resumed_halt_ends_and_small_shares_raise_no_warning():
    iv = Interventions()
    for i in range(100):
        iv.apply("OrderIntent", {}, i)
    iv.apply("RiskRejected", rejected("price_band", "0.05", "price 1 outside the band"), 5)
    iv.apply("TradingStateChanged", halted("REDUCING", "ACTIVE", "operator reduce"), 10 * HOUR)
    iv.apply("TradingStateChanged", halted("REDUCING", "REDUCING", "again"), 10 * HOUR)  # no new stretch
    iv.apply("TradingStateChanged", halted("ACTIVE", "REDUCING", "operator resume"), 15 * HOUR)
    s = iv.summary(0, 100 * HOUR)
    assert s["halts"] == [{"state": "REDUCING", "from_ts": 10 * HOUR, "to_ts": 15 * HOUR, "duration_ns": 5 * HOUR,
                           "reason": "operator reduce", "ended_by": "operator resume"}]
    assert s["halted_share"] == pytest.approx(0.05) and s["rejected_share"] == 0.01 and s["warnings"] == []
    with pytest.raises(ValueError, match="keep=True"):
        iv.rows()
    empty = Interventions().summary(None, None)
    assert (empty["rejected_share"], empty["halted_share"], empty["halts"], empty["warnings"]) == (None, None, [], [])
