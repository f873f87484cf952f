"""The row fold of the SQL read models: one namespace's orders, positions, balances, instruments, runs, incidents,
fills and risk decisions in memory, as the rows the tables hold.

Every decimal is quantized to 18 places the moment it is computed, so the state in memory is exactly the state in
the database and a fold resumed from the tables continues exactly where a one-shot fold would be. Fills book
positions and balances by the engine's rule (projections/accounting.py) and orders move through the engine's
lifecycle (projections/orders.py): the read model holds no accounting or status rule of its own.

Events reach their handler through HANDLERS, one explicit table {event name: handler} built once at import: the
table is the list of events the read models need (the projector asks the log for these and no other) and the way
to find who handles a name.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable

import sqlalchemy as sa

from projections.accounting import Position, Terms, balance_moves, fill_position
from projections.orders import FINAL, UNKNOWN, lifecycle_status
from projections.sql import models as m
from projections.sql.models import ZERO, q18
from schemas.decimals import ONE, canonical_json
from schemas.ids import split_symbol
from schemas.names import ORDER_CHAIN

Row = dict[str, Any]


def _q18_or_none(value: Any) -> Decimal | None:
    """An optional event decimal as its column stores it (NULL stays NULL)."""
    return None if value is None else q18(value)


@dataclass
class ReadModelFold:
    """The read models of one namespace in memory, with the keys each batch changed."""

    namespace: str
    orders: dict[str, Row] = field(default_factory=dict)
    positions: dict[str, Row] = field(default_factory=dict)
    balances: dict[str, Row] = field(default_factory=dict)
    instruments: dict[str, Row] = field(default_factory=dict)
    runs: dict[str, Row] = field(default_factory=dict)
    incidents: dict[str, Row] = field(default_factory=dict)
    fills: list[Row] = field(default_factory=list)
    risk: list[Row] = field(default_factory=list)
    dirty: dict[str, set[str]] = field(default_factory=lambda: {k: set() for k in (
        "orders", "positions", "balances", "instruments", "runs", "incidents")})

    def apply(self, name: str, d: dict[str, Any], seq: int, ts: int) -> None:
        """Fold one decoded event; events the read models do not hold are ignored."""
        handler = HANDLERS.get(name)
        if handler is not None:
            handler(self, d, seq, ts)

    # ---- orders -----------------------------------------------------------------------------------------------

    def _order(self, coid: str, instrument: str, seq: int, ts: int) -> Row:
        row = self.orders.get(coid)
        if row is None:
            row = self.orders[coid] = {
                "namespace": self.namespace, "client_order_id": coid, "instrument_id": instrument,
                "strategy_id": None, "venue": None, "side": None, "order_type": None, "quantity": None,
                "price": None, "trigger_price": None, "time_in_force": None, "expire_ts": None, "post_only": None,
                "reduce_only": None, "status": UNKNOWN, "filled_quantity": ZERO, "avg_fill_price": None,
                "venue_order_id": None, "intent_id": None, "created_ts": ts, "submitted_ts": None, "last_ts": ts,
                "last_seq": seq, "reject_code": None, "reject_reason": None, "cancel_reason": None,
            }
        row["last_ts"] = ts
        row["last_seq"] = seq
        self.dirty["orders"].add(coid)
        return row

    @staticmethod
    def _status(row: Row, event: str, complete: bool = False) -> None:
        row["status"] = lifecycle_status(row["status"], event, complete=complete)

    @staticmethod
    def _order_fields(row: Row, d: dict[str, Any]) -> None:
        row["instrument_id"] = d["instrument_id"]
        row["strategy_id"] = d.get("strategy_id", row["strategy_id"])
        row["side"] = d["side"]
        row["order_type"] = d["order_type"]
        row["quantity"] = q18(d["quantity"])
        row["price"] = _q18_or_none(d.get("price"))
        row["trigger_price"] = _q18_or_none(d.get("trigger_price"))
        row["time_in_force"] = d["time_in_force"]
        row["expire_ts"] = d.get("expire_ts")
        row["post_only"] = bool(d.get("post_only", False))
        row["reduce_only"] = bool(d.get("reduce_only", False))

    def _on_order_intent(self, d: dict[str, Any], seq: int, ts: int) -> None:
        row = self._order(d["client_order_id"], d["instrument_id"], seq, ts)
        self._order_fields(row, d)
        row["intent_id"] = d["envelope"]["event_id"]
        if row["status"] == UNKNOWN:
            row["created_ts"] = ts
        self._status(row, "OrderIntent")

    def _risk_decision(self, d: dict[str, Any], seq: int, ts: int, decision: str) -> None:
        self.risk.append({
            "namespace": self.namespace, "seq": seq, "client_order_id": d["client_order_id"],
            "instrument_id": d["instrument_id"], "intent_id": d["intent_id"], "decision": decision,
            "rule": d.get("rule"), "limit_value": d.get("limit"), "value": d.get("value"), "reason": d.get("reason"),
            "ts_event": ts,
        })

    def _on_risk_accepted(self, d: dict[str, Any], seq: int, ts: int) -> None:
        self._risk_decision(d, seq, ts, "ACCEPTED")
        self._status(self._order(d["client_order_id"], d["instrument_id"], seq, ts), "RiskAccepted")

    def _on_risk_rejected(self, d: dict[str, Any], seq: int, ts: int) -> None:
        self._risk_decision(d, seq, ts, "REJECTED")
        row = self._order(d["client_order_id"], d["instrument_id"], seq, ts)
        before = row["status"]
        self._status(row, "RiskRejected")
        if row["status"] != before:
            row["reject_code"] = "RISK"
            row["reject_reason"] = f"{d['rule']}: {d['reason']}"

    def _on_order_held(self, d: dict[str, Any], seq: int, ts: int) -> None:
        self._status(self._order(d["client_order_id"], d["instrument_id"], seq, ts), "OrderHeld")

    def _on_order_released(self, d: dict[str, Any], seq: int, ts: int) -> None:
        row = self._order(d["client_order_id"], d["instrument_id"], seq, ts)
        row["venue"] = d["venue"]
        self._status(row, "OrderReleased")

    def _on_order_submitted(self, d: dict[str, Any], seq: int, ts: int) -> None:
        row = self._order(d["client_order_id"], d["instrument_id"], seq, ts)
        self._order_fields(row, d)
        row["venue"] = d["venue"]
        row["submitted_ts"] = ts
        self._status(row, "OrderSubmitted")

    @staticmethod
    def _venue_id(row: Row, d: dict[str, Any]) -> None:
        if d.get("venue_order_id"):
            row["venue_order_id"] = d["venue_order_id"]

    def _on_order_accepted(self, d: dict[str, Any], seq: int, ts: int) -> None:
        row = self._order(d["client_order_id"], d["instrument_id"], seq, ts)
        self._venue_id(row, d)
        self._status(row, "OrderAccepted")

    def _on_order_rejected(self, d: dict[str, Any], seq: int, ts: int) -> None:
        row = self._order(d["client_order_id"], d["instrument_id"], seq, ts)
        if row["status"] not in FINAL:
            row["reject_code"] = d.get("reason_code", "OTHER")
            row["reject_reason"] = d["reason"]
        self._status(row, "OrderRejected")

    def _on_order_triggered(self, d: dict[str, Any], seq: int, ts: int) -> None:
        row = self._order(d["client_order_id"], d["instrument_id"], seq, ts)
        self._venue_id(row, d)
        self._status(row, "OrderTriggered")

    def _on_order_canceled(self, d: dict[str, Any], seq: int, ts: int) -> None:
        row = self._order(d["client_order_id"], d["instrument_id"], seq, ts)
        self._venue_id(row, d)
        if row["status"] not in FINAL:
            row["cancel_reason"] = d["reason"]
        self._status(row, "OrderCanceled")

    def _on_order_expired(self, d: dict[str, Any], seq: int, ts: int) -> None:
        row = self._order(d["client_order_id"], d["instrument_id"], seq, ts)
        self._venue_id(row, d)
        self._status(row, "OrderExpired")

    def _on_order_cancel_rejected(self, d: dict[str, Any], seq: int, ts: int) -> None:
        self._venue_id(self._order(d["client_order_id"], d["instrument_id"], seq, ts), d)

    def _on_order_outcome_unknown(self, d: dict[str, Any], seq: int, ts: int) -> None:
        self._order(d["client_order_id"], d["instrument_id"], seq, ts)  # the status stays: the outcome is unknown

    def _on_order_resolved_absent(self, d: dict[str, Any], seq: int, ts: int) -> None:
        self._status(self._order(d["client_order_id"], d["instrument_id"], seq, ts), "OrderResolvedAbsent")

    # ---- fills: the fill row, the order's fill, the position and the balances ---------------------------------

    def _on_order_filled(self, d: dict[str, Any], seq: int, ts: int) -> None:
        inst = d["instrument_id"]
        px, qty, fee = q18(d["last_price"]), q18(d["last_quantity"]), q18(d["fee"])
        fee_ccy, side = d["fee_currency"], d["side"]
        self.fills.append({
            "namespace": self.namespace, "seq": seq, "trade_id": d["trade_id"], "client_order_id": d["client_order_id"],
            "venue_order_id": d.get("venue_order_id"), "instrument_id": inst, "side": side, "price": px,
            "quantity": qty, "fee": fee, "fee_currency": fee_ccy, "liquidity_side": d.get("liquidity_side", "NONE"),
            "ts_event": ts,
        })
        self._fill_order(d, inst, side, px, qty, seq, ts)
        self._book_fill(inst, side, px, qty, fee, fee_ccy, seq, ts)

    def _fill_order(self, d: dict[str, Any], inst: str, side: str, px: Decimal, qty: Decimal, seq: int,
                    ts: int) -> None:
        """The order's filled quantity, average fill price and status after one fill."""
        row = self._order(d["client_order_id"], inst, seq, ts)
        self._venue_id(row, d)
        if row["side"] is None:
            row["side"] = side
        filled = row["filled_quantity"]
        new_filled = filled + qty
        if new_filled:
            row["avg_fill_price"] = q18(((row["avg_fill_price"] or ZERO) * filled + px * qty) / new_filled)
        row["filled_quantity"] = q18(new_filled)
        self._status(row, "OrderFilled", complete=row["quantity"] is not None and new_filled >= row["quantity"])

    def _book_fill(self, inst: str, side: str, px: Decimal, qty: Decimal, fee: Decimal, fee_ccy: str, seq: int,
                   ts: int) -> None:
        """The position and the balances after one fill, by the engine's netting rule."""
        terms = self._terms(inst)
        row_pos = self._position_row(inst, fee_ccy, seq, ts)
        pos = Position(inst, "", terms.multiplier if terms is not None else ONE, row_pos["quantity"],
                       row_pos["avg_price"] or ZERO, row_pos["realized_pnl"])
        realized = fill_position(pos, side, qty, px, ts)
        row_pos["quantity"] = q18(pos.quantity)
        row_pos["avg_price"] = q18(pos.avg_price) if pos.quantity else None
        row_pos["realized_pnl"] = q18(pos.realized_pnl)
        if fee_ccy == row_pos["fee_currency"]:
            row_pos["fees"] = q18(row_pos["fees"] + fee)
        moves = (balance_moves(terms, side, qty, px, realized, fee, fee_ccy) if terms is not None
                 else [(fee_ccy, -fee)])
        for ccy, amount in moves:
            if amount:
                self._move(ccy, amount, seq, ts)

    def _terms(self, inst: str) -> Terms | None:
        """The instrument's contract: from its InstrumentDefined, else a spot pair split from its symbol."""
        spec = self.instruments.get(inst)
        if spec is not None:
            return Terms(spec["kind"], spec["base_currency"], spec["quote_currency"], spec["settlement_currency"],
                         spec["multiplier"])
        pair = split_symbol(inst)
        return Terms("SPOT", pair[0], pair[1], pair[1]) if pair is not None else None

    def _position_row(self, inst: str, fee_ccy: str, seq: int, ts: int) -> Row:
        pos = self.positions.get(inst)
        if pos is None:
            pos = self.positions[inst] = {
                "namespace": self.namespace, "instrument_id": inst, "quantity": ZERO, "avg_price": None,
                "realized_pnl": ZERO, "fees": ZERO, "fee_currency": fee_ccy, "fills": 0, "last_ts": ts,
                "last_seq": seq,
            }
        self.dirty["positions"].add(inst)
        pos["fills"] += 1
        pos["last_ts"], pos["last_seq"] = ts, seq
        return pos

    # ---- balances and instruments -------------------------------------------------------------------------------

    def _balance(self, ccy: str, seq: int, ts: int) -> Row:
        row = self.balances.get(ccy)
        if row is None:
            row = self.balances[ccy] = {
                "namespace": self.namespace, "currency": ccy, "venue": None, "total": ZERO, "free": ZERO,
                "locked": ZERO, "source": "fills", "as_of_seq": None, "last_ts": ts, "last_seq": seq,
            }
        row["last_ts"], row["last_seq"] = ts, seq
        self.dirty["balances"].add(ccy)
        return row

    def _move(self, ccy: str, amount: Decimal, seq: int, ts: int) -> None:
        row = self._balance(ccy, seq, ts)
        row["total"] = q18(row["total"] + amount)
        row["free"] = q18(row["free"] + amount)

    def _on_account_state(self, d: dict[str, Any], seq: int, ts: int) -> None:
        for b in d["balances"]:
            row = self._balance(b["currency"], seq, ts)
            row["venue"] = d["venue"]
            row["total"], row["free"], row["locked"] = q18(b["total"]), q18(b["free"]), q18(b["locked"])
            row["source"] = "reported" if d["reported"] else "computed"
            row["as_of_seq"] = seq

    def _on_instrument_defined(self, d: dict[str, Any], seq: int, ts: int) -> None:
        inst = d["instrument_id"]
        self.instruments[inst] = {
            "namespace": self.namespace, "instrument_id": inst, "venue": d["venue"], "kind": d["kind"],
            "base_currency": d["base_currency"], "quote_currency": d["quote_currency"],
            "settlement_currency": d["settlement_currency"], "multiplier": q18(d["multiplier"]), "last_seq": seq,
        }
        self.dirty["instruments"].add(inst)

    # ---- runs and incidents -----------------------------------------------------------------------------------

    def _run(self, run_id: str) -> Row:
        row = self.runs.get(run_id)
        if row is None:
            row = self.runs[run_id] = {c.name: None for c in m.runs.c}
            row["namespace"], row["run_id"] = self.namespace, run_id
        self.dirty["runs"].add(run_id)
        return row

    def _on_run_started(self, d: dict[str, Any], seq: int, ts: int) -> None:
        row = self._run(d["run_id"])
        row.update(mode=d["mode"], strategy=d["strategy"], params=canonical_json(d["params"]), config=d["config"],
                   code_version=d["code_version"], source_namespace=d.get("source_namespace"),
                   source_from_ts=d.get("source_from_ts"), source_to_ts=d.get("source_to_ts"), seed=d.get("seed"),
                   started_ts=ts, started_seq=seq)

    def _on_run_stopped(self, d: dict[str, Any], seq: int, ts: int) -> None:
        self._run(d["run_id"]).update(stopped_ts=ts, stopped_seq=seq, stop_reason=d["reason"], events=d["events"])

    def _incident(self, incident_id: str) -> Row:
        row = self.incidents.get(incident_id)
        if row is None:
            row = self.incidents[incident_id] = {c.name: None for c in m.incidents.c}
            row["namespace"], row["incident_id"], row["status"] = self.namespace, incident_id, "OPEN"
        self.dirty["incidents"].add(incident_id)
        return row

    def _on_incident_raised(self, d: dict[str, Any], seq: int, ts: int) -> None:
        row = self._incident(d["incident_id"])
        row.update(instrument_id=d.get("instrument_id"), kind=d["kind"], severity=d.get("severity"),
                   action=d.get("action"), detail=d["detail"], raised_ts=ts, raised_seq=seq)

    def _on_incident_resolved(self, d: dict[str, Any], seq: int, ts: int) -> None:
        self._incident(d["incident_id"]).update(status="RESOLVED", resolved_ts=ts, resolved_seq=seq,
                                                resolution=d["detail"])

    # ---- changes ----------------------------------------------------------------------------------------------

    def take_changes(self) -> dict[sa.Table, list[Row]]:
        """Rows changed since the last call, per table; clears the change sets."""
        out: dict[sa.Table, list[Row]] = {}
        for name, table in (("instruments", m.instruments), ("runs", m.runs), ("incidents", m.incidents),
                            ("orders", m.orders), ("positions", m.positions), ("balances", m.balances)):
            keys = self.dirty[name]
            if keys:
                rows = getattr(self, name)
                out[table] = [rows[k] for k in sorted(keys)]
                keys.clear()
        if self.fills:
            out[m.fills], self.fills = self.fills, []
        if self.risk:
            out[m.risk_decisions], self.risk = self.risk, []
        return out


Handler = Callable[[ReadModelFold, dict[str, Any], int, int], None]

HANDLERS: dict[str, Handler] = {
    # an order's chain (schemas.names.ORDER_CHAIN) but CancelIntent: asking to cancel does not change the order's row
    "OrderIntent": ReadModelFold._on_order_intent,
    "RiskAccepted": ReadModelFold._on_risk_accepted,
    "RiskRejected": ReadModelFold._on_risk_rejected,
    "OrderHeld": ReadModelFold._on_order_held,
    "OrderReleased": ReadModelFold._on_order_released,
    "OrderSubmitted": ReadModelFold._on_order_submitted,
    "OrderAccepted": ReadModelFold._on_order_accepted,
    "OrderRejected": ReadModelFold._on_order_rejected,
    "OrderTriggered": ReadModelFold._on_order_triggered,
    "OrderCanceled": ReadModelFold._on_order_canceled,
    "OrderCancelRejected": ReadModelFold._on_order_cancel_rejected,
    "OrderExpired": ReadModelFold._on_order_expired,
    "OrderOutcomeUnknown": ReadModelFold._on_order_outcome_unknown,
    "OrderResolvedAbsent": ReadModelFold._on_order_resolved_absent,
    "OrderFilled": ReadModelFold._on_order_filled,
    # balances, instruments, runs, incidents
    "AccountState": ReadModelFold._on_account_state,
    "InstrumentDefined": ReadModelFold._on_instrument_defined,
    "RunStarted": ReadModelFold._on_run_started,
    "RunStopped": ReadModelFold._on_run_stopped,
    "IncidentRaised": ReadModelFold._on_incident_raised,
    "IncidentResolved": ReadModelFold._on_incident_resolved,
}

ORDER_EVENTS = tuple(n for n in HANDLERS if n in ORDER_CHAIN)  # the folded events that carry a client order id
