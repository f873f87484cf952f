"""The order state machine: every (status, event) pair of the transition matrix, fills, fees, open orders."""
from __future__ import annotations

import pytest
from projkit import D, ack, fill, submitted

from eventstore.errors import TapeError
from projections.orders import EVENTS, LEGAL, STATUSES, TERMINAL, IllegalTransition, Orders

CID = "o-1"
X = "ILLEGAL"
IGNORED = "IGNORED"  # OrderCancelRejected for an id never submitted: no order, no error

# How to bring order CID (quantity 4, a STOP_MARKET so that TRIGGERED is reachable) into each status.
SETUP = {
    "NEW": [],
    "SUBMITTED": [("OrderSubmitted",)],
    "ACCEPTED": [("OrderSubmitted",), ("OrderAccepted",)],
    "TRIGGERED": [("OrderSubmitted",), ("OrderAccepted",), ("OrderTriggered",)],
    "PARTIALLY_FILLED": [("OrderSubmitted",), ("OrderAccepted",), ("OrderFilled", "2")],
    "FILLED": [("OrderSubmitted",), ("OrderAccepted",), ("OrderFilled", "4")],
    "CANCELED": [("OrderSubmitted",), ("OrderAccepted",), ("OrderCanceled",)],
    "REJECTED": [("OrderSubmitted",), ("OrderRejected",)],
    "EXPIRED": [("OrderSubmitted",), ("OrderAccepted",), ("OrderExpired",)],
    "ABSENT": [("OrderSubmitted",), ("OrderOutcomeUnknown",), ("OrderResolvedAbsent",)],
}

EVENT_KINDS = ["OrderSubmitted", "OrderAccepted", "OrderRejected", "OrderTriggered", "OrderCanceled",
               "OrderCancelRejected", "OrderExpired", "FillPartial", "FillComplete", "OrderOutcomeUnknown",
               "OrderResolvedAbsent"]

# expected status after the event, or X (IllegalTransition). Columns in EVENT_KINDS order.
MATRIX = {
    #                   Submitted    Accepted    Rejected    Triggered    Canceled    CancelRej           Expired     FillPartial         FillComplete        Unknown / ResolvedAbsent
    "NEW":              ["SUBMITTED", X,          X,          X,           X,          IGNORED,            X,          X,                  X, IGNORED, X],
    "SUBMITTED":        [X,           "ACCEPTED", "REJECTED", X,           "CANCELED", "SUBMITTED",        X,          "PARTIALLY_FILLED", "FILLED", "SUBMITTED", "ABSENT"],
    "ACCEPTED":         [X,           X,          X,          "TRIGGERED", "CANCELED", "ACCEPTED",         "EXPIRED",  "PARTIALLY_FILLED", "FILLED", "ACCEPTED", X],
    "TRIGGERED":        [X,           X,          X,          X,           "CANCELED", "TRIGGERED",        "EXPIRED",  "PARTIALLY_FILLED", "FILLED", "TRIGGERED", X],
    "PARTIALLY_FILLED": [X,           X,          X,          X,           "CANCELED", "PARTIALLY_FILLED", "EXPIRED",  "PARTIALLY_FILLED", "FILLED", "PARTIALLY_FILLED", X],
    "FILLED":           [X,           X,          X,          X,           X,          "FILLED",           X,          X,                  X, "FILLED", X],
    "CANCELED":         [X,           X,          X,          X,           X,          "CANCELED",         X,          X,                  X, "CANCELED", X],
    "REJECTED":         [X,           X,          X,          X,           X,          "REJECTED",         X,          X,                  X, "REJECTED", X],
    "EXPIRED":          [X,           X,          X,          X,           X,          "EXPIRED",          X,          X,                  X, "EXPIRED", X],
    "ABSENT":           [X,           X,          X,          X,           X,          "ABSENT",           X,          X,                  X,                  "ABSENT", X],
}


def payload(kind: str, orders: Orders, qty: str | None = None) -> tuple[str, dict]:
    if kind == "OrderSubmitted":
        return kind, submitted(CID, "BUY", "4", order_type="STOP_MARKET", trigger="100")
    if kind in ("OrderFilled", "FillPartial", "FillComplete"):
        if qty is None:
            order = orders.by_id.get(CID)
            leaves = order.leaves_quantity if order is not None else D(4)
            qty = "1" if kind == "FillPartial" else str(leaves if leaves > 0 else 1)
        return "OrderFilled", fill(CID, "BUY", qty, "100", "0.1")
    if kind == "OrderRejected":
        return kind, {"instrument_id": "BTCUSDT.SIM", "client_order_id": CID, "reason_code": "OTHER", "reason": "no"}
    if kind in ("OrderCanceled", "OrderCancelRejected"):
        return kind, ack(CID, reason="requested")
    if kind == "OrderOutcomeUnknown":
        return kind, {**ack(CID), "venue": "SIM", "action": "SUBMIT", "error": "NetworkError: connection closed"}
    if kind == "OrderResolvedAbsent":
        return kind, {**ack(CID), "venue": "SIM", "lookups": 3, "window_ns": 30 * 10**9}
    return kind, ack(CID)


def build(state: str) -> Orders:
    orders = Orders()
    for i, step in enumerate(SETUP[state]):
        name, data = payload(step[0], orders, step[1] if len(step) > 1 else None)
        orders.apply(name, data, 10 + i)
    assert state == "NEW" or orders.by_id[CID].status == state
    return orders


def test_matrix_covers_every_status_and_event():
    assert set(MATRIX) == {"NEW", *STATUSES}
    assert set(EVENTS) <= set(EVENT_KINDS) | {"OrderFilled"}
    # the table agrees with the module's own LEGAL map for the status-changing events
    for state in STATUSES:
        for kind, expected in zip(EVENT_KINDS, MATRIX[state]):
            if kind in ("OrderCancelRejected", "OrderSubmitted", "OrderOutcomeUnknown") or expected == X:
                continue
            assert expected in LEGAL[state]


CASES = [(state, kind, MATRIX[state][j]) for state in MATRIX for j, kind in enumerate(EVENT_KINDS)]


@pytest.mark.parametrize("state,kind,expected", CASES, ids=[f"{s}-{k}" for s, k, _ in CASES])
def test_transition(state: str, kind: str, expected: str):
    orders = build(state)
    before = orders.snapshot()
    name, data = payload(kind, orders)
    if expected == X:
        with pytest.raises(IllegalTransition) as exc:
            orders.apply(name, data, 100)
        err = exc.value
        assert isinstance(err, TapeError)
        assert err.client_order_id == CID and CID in str(err)
        assert err.from_status == ("(new)" if state == "NEW" else state)
        assert err.from_status in str(err) and err.to_status in str(err)
        assert "\n" not in str(err)
        assert orders.snapshot() == before  # an illegal event changes nothing
        return
    orders.apply(name, data, 100)
    if expected == IGNORED:
        assert CID not in orders.by_id
        return
    order = orders.by_id[CID]
    assert order.status == expected
    assert (order in orders.open()) == (expected not in TERMINAL)
    if kind in ("OrderCancelRejected", "OrderOutcomeUnknown"):
        assert orders.snapshot() == before


def test_unknown_order_names_the_id():
    with pytest.raises(IllegalTransition, match="o-77.*unknown order"):
        Orders().apply("OrderAccepted", ack("o-77"), 1)
    with pytest.raises(IllegalTransition, match="o-78"):
        Orders().apply("OrderFilled", fill("o-78", "BUY", "1", "1"), 1)


def test_duplicate_submission_is_illegal():
    orders = Orders()
    orders.apply("OrderSubmitted", submitted("a"), 1)
    with pytest.raises(IllegalTransition, match="duplicate client order id"):
        orders.apply("OrderSubmitted", submitted("a"), 2)


def test_overfill_is_illegal_and_named():
    orders = Orders()
    orders.apply("OrderSubmitted", submitted("a", qty="1"), 1)
    orders.apply("OrderFilled", fill("a", "BUY", "0.6", "100"), 2)
    with pytest.raises(IllegalTransition, match=r"overfill.*leaves 0\.4") as exc:
        orders.apply("OrderFilled", fill("a", "BUY", "0.5", "100"), 3)
    assert exc.value.from_status == "PARTIALLY_FILLED" and exc.value.to_status == "FILLED"
    assert orders.by_id["a"].filled_quantity == D("0.6")


def test_fill_side_must_match_order():
    orders = Orders()
    orders.apply("OrderSubmitted", submitted("a", "BUY"), 1)
    with pytest.raises(IllegalTransition, match="side SELL"):
        orders.apply("OrderFilled", fill("a", "SELL", "1", "100"), 2)


def test_fills_average_price_fees_and_leaves():
    orders = Orders()
    orders.apply("OrderSubmitted", submitted("a", "SELL", qty="3"), 1)
    orders.apply("OrderAccepted", ack("a"), 2)
    orders.apply("OrderFilled", fill("a", "SELL", "1", "100", "0.1"), 3)
    orders.apply("OrderFilled", fill("a", "SELL", "1", "101", "0.05", fee_currency="BNB"), 4)
    o = orders.by_id["a"]
    assert o.status == "PARTIALLY_FILLED" and o.filled_quantity == 2 and o.leaves_quantity == 1
    assert o.avg_fill_price == D("100.5")
    orders.apply("OrderFilled", fill("a", "SELL", "1", "101", "0.101"), 5)
    # (100 + 101 + 101) / 3 = 100.6666…, quantized to 18 places (half even)
    assert o.avg_fill_price == D("100.666666666666666667")
    assert o.avg_fill_price.as_tuple().exponent == -18
    assert o.fees == {"USDT": D("0.201"), "BNB": D("0.05")}
    assert o.status == "FILLED" and o.leaves_quantity == 0 and o.fill_count == 3
    assert o.venue_order_id == "v-a" and o.ts_submitted == 1 and o.ts_last == 5
    assert orders.open() == [] and orders.open_count() == 0


def test_decoded_scale18_values_compare_numerically():
    orders = Orders()
    sub = submitted("a", qty="1")
    sub["quantity"] = D("1.000000000000000000")
    orders.apply("OrderSubmitted", sub, 1)
    f = fill("a", "BUY", "1", "100")
    f["last_quantity"] = D("1.000000000000000000")
    f["envelope"] = {"seq": 9}  # decoded events carry their envelope: ignored
    orders.apply("OrderFilled", f, 2)
    assert orders.by_id["a"].status == "FILLED"


def test_open_orders_in_submission_order_per_instrument():
    orders = Orders()
    for i, iid in enumerate(["A.SIM", "B.SIM", "A.SIM", "B.SIM"]):
        orders.apply("OrderSubmitted", submitted(f"o{i}", iid=iid), i)
    orders.apply("OrderCanceled", ack("o2", iid="A.SIM", reason="requested"), 9)
    assert [o.client_order_id for o in orders.open()] == ["o0", "o1", "o3"]
    assert [o.client_order_id for o in orders.open("B.SIM")] == ["o1", "o3"]
    assert orders.open_count() == 3 and orders.open_count("A.SIM") == 1 and orders.open_count("C.SIM") == 0
    assert orders.by_id["o2"].reason == "requested"


def test_snapshot_restore_round_trip():
    orders = Orders()
    orders.apply("OrderSubmitted", submitted("a", qty="2"), 1)
    orders.apply("OrderSubmitted", submitted("b"), 2)
    orders.apply("OrderFilled", fill("a", "BUY", "1", "100", "0.1"), 3)
    orders.apply("OrderFilled", fill("b", "BUY", "1", "100"), 4)
    again = Orders.restore(orders.snapshot())
    assert again.snapshot() == orders.snapshot()
    assert [o.client_order_id for o in again.open()] == ["a"]
    again.apply("OrderFilled", fill("a", "BUY", "1", "102"), 5)
    assert again.by_id["a"].avg_fill_price == D(101)
    assert orders.by_id["a"].status == "PARTIALLY_FILLED"  # the restored copy shares no mutable state


def test_non_execution_events_are_ignored():
    orders = Orders()
    orders.apply("Bar", {"instrument_id": "X"}, 1)
    assert orders.by_id == {}


def test_finished_orders_are_forgotten_deterministically(monkeypatch) -> None:
    """State stays bounded as the log grows, and a restored fold forgets exactly what the original forgot."""
    from decimal import Decimal as D

    from projections.orders import Orders

    monkeypatch.setattr(Orders, "KEEP_CLOSED", 3)

    def sub(cid: str) -> tuple:
        return ("OrderSubmitted", {"instrument_id": "X", "client_order_id": cid, "side": "BUY",
                                   "order_type": "LIMIT", "quantity": D(1), "price": D(1)})

    def cancel(cid: str) -> tuple:
        return ("OrderCanceled", {"instrument_id": "X", "client_order_id": cid, "reason": "test"})

    events = [sub(f"o{i}") for i in range(12)]
    # close out of submission order, leave o5 open
    events += [cancel(f"o{i}") for i in (3, 0, 7, 1, 2, 9, 4, 6, 8, 10, 11)]
    whole = Orders()
    for n, (name, data) in enumerate(events):
        whole.apply(name, data, n)
    assert len(whole.by_id) <= 1 + 3 + 3 // 10 + 1 and "o5" in whole.by_id
    assert [o.client_order_id for o in whole.open()] == ["o5"]
    for cut in range(len(events)):
        part = Orders()
        for n, (name, data) in enumerate(events[:cut]):
            part.apply(name, data, n)
        resumed = Orders.restore(part.snapshot())
        for n, (name, data) in enumerate(events[cut:], start=cut):
            resumed.apply(name, data, n)
        assert resumed.snapshot() == whole.snapshot(), cut
