"""The order state machine: every order's status, fills and fees, folded from execution events.

Legal transitions (anything else raises `IllegalTransition`, naming the order and both states):

    (new)            -OrderSubmitted->  SUBMITTED
    SUBMITTED        -> ACCEPTED | REJECTED | CANCELED | PARTIALLY_FILLED | FILLED   (a fill may beat the ack)
    ACCEPTED         -> TRIGGERED | PARTIALLY_FILLED | FILLED | CANCELED | EXPIRED
    TRIGGERED        -> PARTIALLY_FILLED | FILLED | CANCELED | EXPIRED
    PARTIALLY_FILLED -> PARTIALLY_FILLED | FILLED | CANCELED | EXPIRED
    SUBMITTED        -OrderResolvedAbsent-> ABSENT   (a send in doubt that the venue never got, live only)
    FILLED, CANCELED, REJECTED, EXPIRED, ABSENT: terminal.

OrderCancelRejected and OrderOutcomeUnknown never change status, so they are accepted in every state — also for
an id this fold has never seen (the venue's answer to a cancel of an unknown order): there is no state for them
to corrupt.
A fill beyond the order quantity (an overfill), a fill on the wrong side and a second OrderSubmitted for an
existing id are illegal too.

Before the venue, an order's life is on the intents topic: PENDING_RISK (an OrderIntent awaiting its verdict) →
RISK_ACCEPTED | RISK_REJECTED → HELD (outbound queue) → RELEASED → SUBMITTED. `lifecycle_status` folds the whole
life into one status with this one vocabulary, for every view that shows one (the SQL orders table, `tape audit
order`); the state machine above stays strict about the venue's part.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from typing import Any

from schemas.decimals import ARITHMETIC as _CTX, Q18, ZERO as _ZERO
from schemas.errors import TapeError
from schemas.names import EXECUTIONS

SUBMITTED, ACCEPTED, TRIGGERED = "SUBMITTED", "ACCEPTED", "TRIGGERED"
PARTIALLY_FILLED, FILLED = "PARTIALLY_FILLED", "FILLED"
CANCELED, REJECTED, EXPIRED, ABSENT = "CANCELED", "REJECTED", "EXPIRED", "ABSENT"
STATUSES = (SUBMITTED, ACCEPTED, TRIGGERED, PARTIALLY_FILLED, FILLED, CANCELED, REJECTED, EXPIRED, ABSENT)
TERMINAL = frozenset({FILLED, CANCELED, REJECTED, EXPIRED, ABSENT})

LEGAL: dict[str, frozenset[str]] = {
    SUBMITTED: frozenset({ACCEPTED, REJECTED, CANCELED, PARTIALLY_FILLED, FILLED, ABSENT}),
    ACCEPTED: frozenset({TRIGGERED, PARTIALLY_FILLED, FILLED, CANCELED, EXPIRED}),
    TRIGGERED: frozenset({PARTIALLY_FILLED, FILLED, CANCELED, EXPIRED}),
    PARTIALLY_FILLED: frozenset({PARTIALLY_FILLED, FILLED, CANCELED, EXPIRED}),
    FILLED: frozenset(), CANCELED: frozenset(), REJECTED: frozenset(), EXPIRED: frozenset(), ABSENT: frozenset(),
}

# event name → the status it moves an order to (OrderFilled is decided by the leaves quantity)
EVENT_STATUS = {"OrderAccepted": ACCEPTED, "OrderRejected": REJECTED, "OrderTriggered": TRIGGERED,
                "OrderCanceled": CANCELED, "OrderExpired": EXPIRED, "OrderResolvedAbsent": ABSENT}
EVENTS = EXECUTIONS
NEW = "(new)"

# the whole life of an order, intent to last fill: one vocabulary for every view of it
UNKNOWN, PENDING_RISK, RISK_ACCEPTED, RISK_REJECTED = "UNKNOWN", "PENDING_RISK", "RISK_ACCEPTED", "RISK_REJECTED"
HELD, RELEASED = "HELD", "RELEASED"
LIFECYCLE = (UNKNOWN, PENDING_RISK, RISK_ACCEPTED, HELD, RELEASED, SUBMITTED, ACCEPTED, TRIGGERED, PARTIALLY_FILLED,
             FILLED, CANCELED, REJECTED, EXPIRED, ABSENT, RISK_REJECTED)
FINAL = TERMINAL | {RISK_REJECTED}
_RANK = {s: i for i, s in enumerate(LIFECYCLE[:9])}  # the open statuses, in the order an order moves through them
_LIFECYCLE_EVENT = {"OrderIntent": PENDING_RISK, "RiskAccepted": RISK_ACCEPTED, "RiskRejected": RISK_REJECTED,
                    "OrderHeld": HELD, "OrderReleased": RELEASED, "OrderSubmitted": SUBMITTED, **EVENT_STATUS}
_BEFORE_VERDICT = (UNKNOWN, PENDING_RISK)


def lifecycle_status(current: str, event: str, *, complete: bool = False) -> str:
    """The status after `event` (for OrderFilled, `complete` says whether it filled the whole order).

    Forward only: a later event never moves an order back (a release after the acceptance is a cancel's), a
    verdict counts only for an order awaiting one (a duplicate id refused later does not touch the first order),
    and a final status stays final, except that a fill arriving after a cancel or reject completes the order."""
    if event == "OrderFilled":
        target = FILLED if complete else PARTIALLY_FILLED
    else:
        target = _LIFECYCLE_EVENT.get(event)
        if target is None:
            return current
        if event in ("OrderIntent", "RiskAccepted", "RiskRejected") and current not in _BEFORE_VERDICT:
            return current
    if current in FINAL:
        return FILLED if target == FILLED and current not in (FILLED, RISK_REJECTED) else current
    if target in FINAL or _RANK[target] > _RANK[current]:
        return target
    return current


class IllegalTransition(TapeError):
    """An execution event that the order's current status does not allow: the log or the adapter is wrong."""

    def __init__(self, client_order_id: str, from_status: str, to_status: str, event: str, detail: str = ""):
        self.client_order_id = client_order_id
        self.from_status = from_status
        self.to_status = to_status
        self.event = event
        what = f" ({detail})" if detail else ""
        super().__init__(f"order {client_order_id}: {event} would move it {from_status} -> {to_status}, which is "
                         f"illegal{what}; the execution reports are duplicated, out of order or wrong — check the "
                         f"venue adapter that wrote them")


@dataclass(slots=True)
class Order:
    """One order as submitted, plus what the venue has since said about it."""

    instrument_id: str
    client_order_id: str
    venue: str
    strategy_id: str
    side: str
    order_type: str
    quantity: Decimal
    price: Decimal | None
    trigger_price: Decimal | None
    time_in_force: str
    expire_ts: int | None
    post_only: bool
    reduce_only: bool
    status: str = SUBMITTED
    filled_quantity: Decimal = _ZERO
    leaves_quantity: Decimal = _ZERO
    avg_fill_price: Decimal | None = None  # quantity-weighted over fills, quantized to 18 places; None unfilled
    venue_order_id: str | None = None
    ts_submitted: int = 0
    ts_last: int = 0
    fees: dict[str, Decimal] = field(default_factory=dict)  # fee currency → total (negative: rebate)
    fill_count: int = 0
    reason: str | None = None  # reject / cancel reason, when the venue gave one
    filled_notional: Decimal = _ZERO  # Σ price × quantity over fills, exact

    @property
    def is_open(self) -> bool:
        return self.status not in TERMINAL


ORDER_FIELDS = tuple(Order.__dataclass_fields__)


class Orders:
    """Every order by client order id, with the open ones in submission order."""

    EVENTS = EVENTS

    KEEP_CLOSED = 1000  # finished orders kept for strategies and risk; the log keeps them all

    def __init__(self, keep_closed: int | None = None) -> None:
        self.keep_closed = self.KEEP_CLOSED if keep_closed is None else keep_closed
        self.by_id: dict[str, Order] = {}
        self._open: dict[str, dict[str, Order]] = {}  # instrument → client_order_id → open order (submission order)
        self._open_all: dict[str, Order] = {}

    # ---- queries -------------------------------------------------------------------------------------------

    def open(self, instrument_id: str | None = None) -> list[Order]:
        """Orders not yet terminal, oldest submission first."""
        if instrument_id is None:
            return list(self._open_all.values())
        return list(self._open.get(instrument_id, {}).values())

    def open_count(self, instrument_id: str | None = None) -> int:
        """How many orders are working (for the max-open-orders rule)."""
        if instrument_id is None:
            return len(self._open_all)
        return len(self._open.get(instrument_id, ()))

    def get(self, client_order_id: str) -> Order | None:
        return self.by_id.get(client_order_id)

    # ---- the fold ------------------------------------------------------------------------------------------

    def apply(self, name: str, data: dict[str, Any], ts: int) -> None:
        """Fold one execution event; raises IllegalTransition when the order's status does not allow it."""
        cid = data.get("client_order_id")
        if cid is None:
            return
        if name == "OrderSubmitted":
            self._submit(data, ts)
            return
        order = self.by_id.get(cid)
        if name in ("OrderCancelRejected", "OrderOutcomeUnknown"):  # change nothing, whatever the status
            return
        if name == "OrderFilled":
            if order is None:
                raise IllegalTransition(cid, NEW, FILLED, name, "unknown order: no OrderSubmitted for this id")
            self._fill(order, data, ts)
            return
        target = EVENT_STATUS.get(name)
        if target is None:
            return
        if order is None:
            raise IllegalTransition(cid, NEW, target, name, "unknown order: no OrderSubmitted for this id")
        if target not in LEGAL[order.status]:
            raise IllegalTransition(cid, order.status, target, name)
        order.status = target
        order.ts_last = ts
        voi = data.get("venue_order_id")
        if voi:
            order.venue_order_id = voi
        reason = data.get("reason")
        if reason:
            order.reason = reason
        if target in TERMINAL:
            self._close(order)

    def _submit(self, data: dict[str, Any], ts: int) -> None:
        cid = data["client_order_id"]
        if cid in self.by_id:
            existing = self.by_id[cid]
            raise IllegalTransition(cid, existing.status, SUBMITTED, "OrderSubmitted",
                                    "duplicate client order id: an order with this id was already submitted")
        quantity = data["quantity"]
        order = Order(
            instrument_id=data["instrument_id"], client_order_id=cid, venue=data.get("venue", ""),
            strategy_id=data.get("strategy_id", ""), side=data["side"], order_type=data.get("order_type", "MARKET"),
            quantity=quantity, price=data.get("price"), trigger_price=data.get("trigger_price"),
            time_in_force=data.get("time_in_force", "GTC"), expire_ts=data.get("expire_ts"),
            post_only=bool(data.get("post_only", False)), reduce_only=bool(data.get("reduce_only", False)),
            leaves_quantity=quantity, ts_submitted=ts, ts_last=ts)
        self.by_id[cid] = order
        self._open_all[cid] = order
        self._open.setdefault(order.instrument_id, {})[cid] = order

    def _fill(self, order: Order, data: dict[str, Any], ts: int) -> None:
        cid = order.client_order_id
        qty: Decimal = data["last_quantity"]
        price: Decimal = data["last_price"]
        with localcontext(_CTX):
            filled = order.filled_quantity + qty
            target = FILLED if filled >= order.quantity else PARTIALLY_FILLED
            if target not in LEGAL[order.status]:
                raise IllegalTransition(cid, order.status, target, "OrderFilled")
            if qty <= 0:
                raise IllegalTransition(cid, order.status, target, "OrderFilled",
                                        f"fill quantity {qty} is not positive")
            if filled > order.quantity:
                raise IllegalTransition(cid, order.status, target, "OrderFilled",
                                        f"overfill: {qty} more would make {filled} filled of {order.quantity} "
                                        f"ordered, leaves {order.leaves_quantity}")
            side = data.get("side")
            if side is not None and side != order.side:
                raise IllegalTransition(cid, order.status, target, "OrderFilled",
                                        f"fill side {side} differs from order side {order.side}")
            order.filled_quantity = filled
            order.leaves_quantity = order.quantity - filled
            order.filled_notional += price * qty
            order.avg_fill_price = (order.filled_notional / filled).quantize(Q18)
            fee: Decimal = data.get("fee", _ZERO)
            cur = data.get("fee_currency")
            if cur is not None:
                order.fees[cur] = order.fees.get(cur, _ZERO) + fee
        order.fill_count += 1
        order.status = target
        order.ts_last = ts
        voi = data.get("venue_order_id")
        if voi:
            order.venue_order_id = voi
        if target == FILLED:
            self._close(order)

    def _close(self, order: Order) -> None:
        self._open_all.pop(order.client_order_id, None)
        per = self._open.get(order.instrument_id)
        if per is not None:
            per.pop(order.client_order_id, None)
        closed = len(self.by_id) - len(self._open_all)
        if closed > self.keep_closed + self.keep_closed // 10 + 1:
            self._forget(closed - self.keep_closed)

    def _forget(self, n: int) -> None:
        """Drop the n earliest-submitted finished orders, so state (and snapshots) stay bounded as the log grows.

        Which orders go depends only on `by_id` (submission order), so a state restored from a snapshot forgets
        exactly what the state it was taken from forgot.
        """
        gone = []
        for cid, o in self.by_id.items():
            if len(gone) == n:
                break
            if o.status in TERMINAL:
                gone.append(cid)
        for cid in gone:
            del self.by_id[cid]

    # ---- snapshot ------------------------------------------------------------------------------------------

    def snapshot(self) -> list[dict[str, Any]]:
        """Every order as plain data, in submission order (restore with `Orders.restore`)."""
        fields = ORDER_FIELDS
        return [{**{f: getattr(o, f) for f in fields}, "fees": dict(o.fees)} for o in self.by_id.values()]

    @classmethod
    def restore(cls, snapshot: list[dict[str, Any]]) -> "Orders":
        """The fold as it was when `snapshot` was taken."""
        orders = cls()
        for row in snapshot:
            o = Order(**{**row, "fees": dict(row["fees"])})
            orders.by_id[o.client_order_id] = o
            if o.is_open:
                orders._open_all[o.client_order_id] = o
                orders._open.setdefault(o.instrument_id, {})[o.client_order_id] = o
        return orders
