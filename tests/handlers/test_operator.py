"""An operator's commands as the engine answers them: pure decisions over a real State (unit level, no session).

The command is folded first (as the engine records an input before routing it), then answered; what comes back is
folded too, and the risk rules read the result: a halted session refuses orders, a halted instrument refuses
orders on it only, a reduce lets only reducing orders through, a resume is refused while a halting incident is
open and not acknowledged, and every command that changes nothing is answered with a CommandRefused saying why.
"""
from __future__ import annotations

from handlers.operator import Operator
from projections.incidents import OPERATOR
from tests.handlers.test_risk import ETH, IID, T0, accepted, hold_position, make_state, order, rejected, submit


class Desk:
    """A State, an operator and the events its commands caused (folded as the engine folds them)."""

    def __init__(self):
        self.state = make_state()
        self.op = Operator(strategy_id="t", venue="SIM")
        self.n = 0

    def command(self, command: str, scope: str = "account", scope_id: str = "", **extra) -> list[tuple[str, dict]]:
        self.n += 1
        data = {"command": command, "scope": scope, "scope_id": scope_id, "incident_id": None, "reason": "because",
                "by": "ops@desk", "command_id": f"c{self.n}", "position": self.n * 100, "sent_ts": T0, **extra}
        self.state.apply("OperatorCommand", data, T0)
        out = self.op.command(data, self.state)
        for name, payload in out:
            self.state.apply(name, payload, T0)
        return out

    def incident(self, iid: str, action: str, kind: str = "venue_unreachable", scope_id: str = "SIM") -> None:
        self.state.apply("IncidentRaised", {
            "instrument_id": None, "incident_id": iid, "kind": kind, "severity": "CRITICAL", "detail": "d",
            "action": action, "scope": "venue", "scope_id": scope_id, "value": "3", "threshold": "3", "unit": "",
            "cancel_open": False}, T0)
        if action == "HALT":
            self.state.apply("TradingStateChanged", {"state": "HALTED", "previous": self.state.risk.trading_state,
                                                     "reason": f"incident {iid}", "incident_id": iid}, T0)


def names(out):
    return [n for n, _ in out]


def refusal(out) -> str:
    assert names(out) == ["CommandRefused"], out
    return out[0][1]["reason"]


def test_halt_refuses_every_new_order_and_a_second_halt_is_refused_as_nothing_to_do():
    d = Desk()
    out = d.command("halt")
    assert out == [("TradingStateChanged", {"state": "HALTED", "previous": "ACTIVE",
                                            "reason": "operator halt by ops@desk: because", "incident_id": None})]
    assert rejected({}, d.state, order())[0] == "trading_state"
    assert "already HALTED" in refusal(d.command("halt"))
    assert d.state.risk.trading_state == "HALTED"


def test_resume_is_refused_while_a_halting_incident_is_open_and_passes_once_it_is_acknowledged():
    d = Desk()
    d.incident("inc-1", "HALT")
    why = refusal(d.command("resume"))
    assert "inc-1" in why and "venue_unreachable" in why and "tape incidents ack" in why
    assert d.state.risk.trading_state == "HALTED"
    assert d.command("ack", incident_id="inc-1") == []  # acknowledged by the fold of the command itself
    assert d.state.incidents.open["inc-1"].acknowledged
    assert names(d.command("resume")) == ["TradingStateChanged"]
    assert d.state.risk.trading_state == "ACTIVE"
    assert accepted({}, d.state, order())


def test_a_resolved_incident_no_longer_blocks_a_resume_and_reduce_from_halted_is_checked_like_a_resume():
    d = Desk()
    d.incident("inc-1", "HALT")
    assert "inc-1" in refusal(d.command("reduce"))
    d.state.apply("IncidentResolved", {"incident_id": "inc-1", "detail": "answers again"}, T0)
    assert d.command("reduce")[0][1]["state"] == "REDUCING"
    assert names(d.command("resume")) == ["TradingStateChanged"]


def test_an_incident_that_only_alerts_does_not_block_a_resume():
    d = Desk()
    d.incident("inc-1", "ALERT")
    d.command("halt")
    assert d.command("resume")[0][1]["state"] == "ACTIVE"


def test_halting_one_instrument_refuses_orders_on_it_only_until_it_is_resumed():
    d = Desk()
    out = d.command("halt", "instrument", IID)
    assert names(out) == ["IncidentRaised"]
    raised = out[0][1]
    assert (raised["kind"], raised["action"], raised["scope_id"], raised["incident_id"]) == (OPERATOR, "DENY", IID,
                                                                                           "op-c1")
    assert rejected({}, d.state, order())[0] == "incident"
    assert accepted({}, d.state, order(cid="e", iid=ETH))
    assert d.state.risk.trading_state == "ACTIVE"
    assert "already" in refusal(d.command("halt", "instrument", IID))
    assert "--scope instrument:ID" in refusal(d.command("resume"))  # the session is ACTIVE; the instrument is not
    assert d.state.incidents.blocking() == []  # an operator's own halt never blocks a session resume
    assert names(d.command("resume", "instrument", IID)) == ["IncidentResolved"]
    assert accepted({}, d.state, order(cid="c2"))
    assert "no operator halt" in refusal(d.command("resume", "instrument", IID))


def test_reducing_one_instrument_lets_only_orders_that_reduce_its_position_through():
    d = Desk()
    hold_position(d.state, "BUY", "2")
    assert names(d.command("reduce", "instrument", IID)) == ["IncidentRaised"]
    assert rejected({}, d.state, order("BUY", "1", cid="b"))[0] == "incident"
    assert accepted({}, d.state, order("SELL", "1", cid="s"))
    assert rejected({}, d.state, order("SELL", "3", cid="flip"))[0] == "incident"  # past zero: not a reduction
    out = d.command("halt", "instrument", IID)  # tighter: the reduce is resolved, a DENY raised
    assert names(out) == ["IncidentResolved", "IncidentRaised"] and out[1][1]["action"] == "DENY"
    assert rejected({}, d.state, order("SELL", "1", cid="s2"))[0] == "incident"


def test_cancel_all_cancels_every_open_order_in_the_scope():
    d = Desk()
    a, b = submit(d.state, "BUY", "1"), submit(d.state, "SELL", "1", iid=ETH)
    on_btc = d.command("cancel_all", "instrument", IID)
    assert [(n, p["client_order_id"]) for n, p in on_btc] == [("CancelIntent", a)]
    assert on_btc[0][1]["reason"] == "operator cancel-all by ops@desk: because"
    assert sorted(p["client_order_id"] for _, p in d.command("cancel_all")) == sorted([a, b])
    d.state.apply("OrderCanceled", {"instrument_id": IID, "client_order_id": a, "venue_order_id": None}, T0)
    d.state.apply("OrderCanceled", {"instrument_id": ETH, "client_order_id": b, "venue_order_id": None}, T0)
    assert refusal(d.command("cancel_all")) == "no open orders"


def test_bad_scopes_and_unknown_incidents_are_refused_with_the_fix():
    d = Desk()
    assert "trades no instrument 'XRPUSDT.SIM'" in refusal(d.command("halt", "instrument", "XRPUSDT.SIM"))
    assert "strategy is t, not 'other'" in refusal(d.command("halt", "strategy", "other"))
    assert "unknown scope" in refusal(d.command("halt", "galaxy"))
    assert "no open incident 'nope'" in refusal(d.command("ack", incident_id="nope"))
    assert "unknown command" in refusal(d.command("explode"))
    assert d.state.risk.trading_state == "ACTIVE"
    assert names(d.command("halt", "venue", "SIM")) == ["TradingStateChanged"]  # the session's own venue: all of it


def test_the_operator_remembers_how_far_it_read_the_channel_across_a_snapshot():
    d = Desk()
    d.command("halt")
    d.command("resume")
    again = Operator(strategy_id="t", venue="SIM")
    again.restore(d.op.snapshot())
    assert again.position == 200 == d.op.position
