"""Any historical period: the state at an instant, and what changed over a period (`tape replay --at/--from/--to`).

Time semantics: the state "at T" folds, in seq order, exactly the events with ts_event < T (strictly before T;
for a backtest run, its own events and its source's market events). A period [F, T) is the state at F, then the
events with F <= ts_event < T folded onto it in seq order. Both start from the latest snapshot that holds nothing
at or after F (runtime/recovery.py), so they cost the tail after that snapshot, not the log.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from eventstore.store import Log
from projections.orders import TERMINAL
from projections.state import State
from runtime.replay.recovery import Recovery, fold_tail, start
from schemas.decimals import ZERO as _ZERO
from schemas.errors import TapeError


def _equity(state: State) -> tuple[str | None, Decimal | None]:
    risk = state.risk
    cur = risk.currency
    if cur is None:
        return None, None
    if risk.equity is not None:
        return cur, risk.equity
    try:
        return cur, state.portfolio.equity(cur) if state.portfolio.balances or state.portfolio.positions else None
    except TapeError:
        return cur, None


def state_view(state: State) -> dict[str, Any]:
    """What `tape replay --at` shows: positions marked at the state's marks, balances, open orders, risk state."""
    pf = state.portfolio
    positions = []
    for iid, p in pf.positions.items():
        mark = pf.mark(iid)
        positions.append({
            "instrument_id": iid, "quantity": p.quantity, "avg_price": p.avg_price, "mark": mark,
            "unrealized_pnl": p.unrealized_pnl(mark) if mark is not None else _ZERO,
            "realized_pnl": p.realized_pnl, "currency": p.currency, "fees": dict(p.fees), "fills": p.fill_count})
    orders = [{"client_order_id": o.client_order_id, "instrument_id": o.instrument_id, "side": o.side,
               "order_type": o.order_type, "quantity": o.quantity, "filled_quantity": o.filled_quantity,
               "price": o.price, "status": o.status, "ts_submitted": o.ts_submitted} for o in state.orders.open()]
    currency, equity = _equity(state)
    risk = state.risk
    return {
        "positions": positions,
        "balances": dict(pf.balances),
        "open_orders": orders,
        "risk": {"trading_state": risk.trading_state, "currency": currency, "equity": equity,
                 "peak_equity": risk.peak_equity, "day_start_equity": risk.day_start_equity,
                 "awaiting_verdict": len(risk.intents), "accepted_not_submitted": len(risk.pending),
                 "recent_orders": len(risk.order_times)},
        "marks": dict(state.market.last_price),
        "market_ts": state.market.ts or None,
        "orders_total": len(state.orders.by_id),
        "fills_total": pf.fill_count,
    }


def _header(rec: Recovery, namespace: str) -> dict[str, Any]:
    return {"namespace": namespace, "last_seq": rec.last_seq, "snapshot_seq": rec.snapshot_seq,
            "folded": rec.folded, "source": (rec.started or {}).get("source_namespace"), "last_input": rec.last_input}


def state_at(log: Log, namespace: str, at: int | None, *, use_snapshots: bool = True) -> dict[str, Any]:
    """The state at instant `at` (events with ts_event < at), as `state_view` plus where it came from."""
    rec = start(log, namespace, at=at, use_snapshots=use_snapshots)
    fold_tail(log, namespace, rec, to_ts=at)
    return {**_header(rec, namespace), "at": at, **state_view(rec.state)}


@dataclass
class _Counter:
    types: dict[str, int] = field(default_factory=dict)
    trading: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, name: str, data: dict[str, Any], ts: int, own: bool) -> None:
        self.types[name] = self.types.get(name, 0) + 1
        if name == "TradingStateChanged":
            self.trading.append({"ts": ts, "previous": data.get("previous"), "state": data.get("state"),
                                 "reason": data.get("reason")})


def _sum_by_currency(state: State, attr: str) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for p in state.portfolio.positions.values():
        out[p.currency] = out.get(p.currency, _ZERO) + getattr(p, attr)
    return out


def period(log: Log, namespace: str, from_ts: int | None, to_ts: int | None, *,
           use_snapshots: bool = True) -> dict[str, Any]:
    """The state at from_ts, then the period [from_ts, to_ts) folded onto it: what changed."""
    if from_ts is not None and to_ts is not None and to_ts <= from_ts:
        raise TapeError("--to must be later than --from")
    rec = start(log, namespace, at=from_ts, use_snapshots=use_snapshots and from_ts is not None)
    if from_ts is not None:
        fold_tail(log, namespace, rec, to_ts=from_ts)
    state = rec.state
    before = state_view(state)
    orders_before = {cid: o.status for cid, o in state.orders.by_id.items()}
    realized_before = _sum_by_currency(state, "realized_pnl")
    fees_before = dict(state.portfolio.fees)
    folded_before = rec.folded
    counter = _Counter()
    fold_tail(log, namespace, rec, from_ts=from_ts, to_ts=to_ts, observer=counter)  # same start: the period only
    after = state_view(state)
    realized_after = _sum_by_currency(state, "realized_pnl")
    opened, closed, filled = [], [], []
    for cid, o in state.orders.by_id.items():
        was = orders_before.get(cid)
        if was is None:
            opened.append(cid)
        if o.status in TERMINAL and was not in TERMINAL:
            closed.append({"client_order_id": cid, "status": o.status, "instrument_id": o.instrument_id})
            if o.status == "FILLED":
                filled.append(cid)
    pos_b = {p["instrument_id"]: p for p in before["positions"]}
    pos_a = {p["instrument_id"]: p for p in after["positions"]}
    positions = []
    for iid in list(pos_b) + [i for i in pos_a if i not in pos_b]:
        b, a = pos_b.get(iid), pos_a.get(iid)
        if b == a:
            continue
        positions.append({"instrument_id": iid,
                          "quantity": (b["quantity"] if b else _ZERO, a["quantity"] if a else _ZERO),
                          "avg_price": (b["avg_price"] if b else _ZERO, a["avg_price"] if a else _ZERO),
                          "unrealized_pnl": (b["unrealized_pnl"] if b else _ZERO, a["unrealized_pnl"] if a else _ZERO),
                          "realized_pnl": ((a["realized_pnl"] if a else _ZERO) - (b["realized_pnl"] if b else _ZERO))})
    balances = {}
    for cur in list(before["balances"]) + [c for c in after["balances"] if c not in before["balances"]]:
        b, a = before["balances"].get(cur, _ZERO), after["balances"].get(cur, _ZERO)
        if a != b:
            balances[cur] = (b, a, a - b)
    currencies = sorted(set(realized_before) | set(realized_after))
    realized = {c: realized_after.get(c, _ZERO) - realized_before.get(c, _ZERO) for c in currencies}
    fees = {c: v - fees_before.get(c, _ZERO) for c, v in state.portfolio.fees.items() if v != fees_before.get(c, _ZERO)}
    risk_b, risk_a = before["risk"], after["risk"]
    return {
        **_header(rec, namespace), "folded": folded_before, "from": from_ts, "to": to_ts,
        "events_before": folded_before, "events_in_period": rec.folded - folded_before,
        "events_by_type": dict(sorted(counter.types.items())),
        "fills": state.portfolio.fill_count - before["fills_total"],
        "orders_opened": opened, "orders_closed": closed, "orders_filled": filled,
        "open_orders": (len(before["open_orders"]), len(after["open_orders"])),
        "positions": positions, "balances": balances, "realized_pnl": realized, "fees": fees,
        "equity": (risk_b["currency"], risk_b["equity"], risk_a["equity"]),
        "trading_state": (risk_b["trading_state"], risk_a["trading_state"]),
        "trading_state_changes": counter.trading,
        "before": before, "after": after,
    }
