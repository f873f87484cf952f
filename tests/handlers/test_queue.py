"""Outbound queue: token bucket in event time, cancel-in-flight holds, duplicate ids, FIFO determinism."""
from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from handlers.queue import OutboundQueue, QueueConfigError, parse_queue_config

D = Decimal
X, Y = "BTCUSDT.SIM", "ETHUSDT.SIM"
T0 = 1_700_000_000 * 10**9
S = 10**9


def order(cid: str, iid: str = X, qty: str = "1") -> dict[str, Any]:
    return {"instrument_id": iid, "strategy_id": "t", "client_order_id": cid, "side": "BUY", "order_type": "MARKET",
            "quantity": D(qty), "price": None, "trigger_price": None, "time_in_force": "GTC", "expire_ts": None,
            "post_only": False, "reduce_only": False, "tags": None, "intent_id": f"ns:{cid}"}


def cancel(cid: str, iid: str = X) -> dict[str, Any]:
    return {"instrument_id": iid, "strategy_id": "t", "client_order_id": cid, "reason": "test"}


def released(cid: str, iid: str = X, venue: str = "SIM", action: str = "SUBMIT") -> tuple:
    return ("OrderReleased", {"instrument_id": iid, "client_order_id": cid, "venue": venue, "action": action})


def released_cancel(cid: str, iid: str = X, venue: str = "SIM") -> tuple:
    return released(cid, iid, venue, "CANCEL")


def held(cid: str, reason: str, after: int | None, iid: str = X) -> tuple:
    return ("OrderHeld", {"instrument_id": iid, "client_order_id": cid, "reason": reason, "release_after_ts": after})


def canceled(cid: str, iid: str = X) -> dict[str, Any]:
    return {"instrument_id": iid, "client_order_id": cid, "venue_order_id": None, "reason": "requested"}


def filled(cid: str, qty: str, iid: str = X) -> dict[str, Any]:
    return {"instrument_id": iid, "client_order_id": cid, "venue_order_id": None, "trade_id": "t", "side": "BUY",
            "last_price": D(100), "last_quantity": D(qty), "fee": D(0), "fee_currency": "USDT",
            "liquidity_side": "TAKER"}


def test_without_a_rate_everything_leaves_at_once():
    q = OutboundQueue(parse_queue_config({}))
    assert q.offer(order("a"), T0) == [released("a")]
    assert q.offer(order("b", Y), T0) == [released("b", Y)]
    assert q.release_due(T0) == []
    assert OutboundQueue(parse_queue_config({"venue": "BINANCE"})).offer(order("a"), T0) == [released("a", venue="BINANCE")]


def test_token_bucket_holds_then_releases_at_the_right_event_time():
    q = OutboundQueue(parse_queue_config({"rate_per_second": 1, "burst": 2}))
    assert q.offer(order("a"), T0) == [released("a")]
    assert q.offer(order("b"), T0) == [released("b")]  # the burst
    assert q.offer(order("c"), T0) == [held("c", "rate_limit", T0 + S)]
    assert q.offer(order("d", Y), T0) == [held("d", "rate_limit", T0 + 2 * S, Y)]  # one bucket per venue
    assert q.release_due(T0 + S - 1) == []
    assert q.release_due(T0 + S) == [released("c")]
    assert q.release_due(T0 + 2 * S - 1) == []
    assert q.release_due(T0 + 2 * S) == [released("d", Y)]
    assert q.offer(order("e"), T0 + 2 * S + S // 2) == [held("e", "rate_limit", T0 + 3 * S)]
    assert q.release_due(T0 + 10 * S) == [released("e")]
    # after a quiet spell the bucket is full again: a burst of 2
    assert q.offer(order("f"), T0 + 20 * S) == [released("f")]
    assert q.offer(order("g"), T0 + 20 * S) == [released("g")]
    assert q.offer(order("h"), T0 + 20 * S)[0][0] == "OrderHeld"


def test_fractional_rates_are_exact():
    q = OutboundQueue(parse_queue_config({"rate_per_second": 3, "burst": 1}))  # one token every 333,333,333.3 ns
    assert q.offer(order("a"), T0) == [released("a")]
    assert q.offer(order("b"), T0) == [held("b", "rate_limit", T0 + 333_333_334)]
    # b leaves on a whole ns, 0.67 ns after its token: with burst 1 that refill is lost (a full bucket)
    assert q.offer(order("c"), T0) == [held("c", "rate_limit", T0 + 666_666_668)]
    assert q.release_due(T0 + 333_333_333) == []
    assert q.release_due(T0 + 333_333_334) == [released("b")]
    assert q.release_due(T0 + 666_666_667) == []
    assert q.release_due(T0 + 666_666_668) == [released("c")]
    assert q.offer(order("d"), T0 + S + 2) == [released("d")]
    burst = OutboundQueue(parse_queue_config({"rate_per_second": 3, "burst": 2}))  # with headroom nothing is lost
    assert [burst.offer(order(c), T0)[0] for c in "abcd"] == [
        released("a"), released("b"), held("c", "rate_limit", T0 + 333_333_334),
        held("d", "rate_limit", T0 + 666_666_667)]


def test_fifo_a_newcomer_never_overtakes_a_waiting_order():
    q = OutboundQueue(parse_queue_config({"rate_per_second": 1, "burst": 1}))
    q.offer(order("a"), T0)
    assert q.offer(order("b"), T0) == [held("b", "rate_limit", T0 + S)]
    # at T0+1s b is due but release_due has not run yet: the offer releases b first, then holds c
    assert q.offer(order("c"), T0 + S) == [released("b"), held("c", "rate_limit", T0 + 2 * S)]


def test_cancels_take_tokens_and_wait_in_line():
    q = OutboundQueue(parse_queue_config({"rate_per_second": 1, "burst": 1}))
    assert q.offer(order("a"), T0) == [released("a")]
    assert q.offer_cancel(cancel("a"), T0) == [held("a", "rate_limit", T0 + S)]
    assert q.release_due(T0 + S) == [released_cancel("a")]  # the cancel, marked as such


def test_a_new_order_waits_for_a_cancel_in_flight_on_its_instrument():
    for answer in ("OrderCanceled", "OrderCancelRejected", "OrderExpired", "OrderRejected"):
        q = OutboundQueue(parse_queue_config({}))
        assert q.offer(order("a"), T0) == [released("a")]
        assert q.offer_cancel(cancel("a"), T0) == [released_cancel("a")]
        assert q.offer(order("b"), T0) == [held("b", "cancel_in_flight", None)]
        assert q.offer(order("c", Y), T0) == [released("c", Y)]  # another instrument is not held
        assert q.release_due(T0 + 100 * S) == []  # time alone does not release it
        assert q.on_execution("OrderAccepted", {"instrument_id": X, "client_order_id": "a"}, T0) == []
        assert q.on_execution(answer, canceled("a"), T0 + 5) == [released("b")]


def test_a_fill_that_completes_the_order_resolves_its_cancel():
    q = OutboundQueue(parse_queue_config({}))
    q.offer(order("a", qty="2"), T0)
    q.offer_cancel(cancel("a"), T0)
    assert q.offer(order("b"), T0) == [held("b", "cancel_in_flight", None)]
    assert q.on_execution("OrderFilled", filled("a", "1.5"), T0) == []
    assert q.on_execution("OrderFilled", filled("a", "0.5"), T0) == [released("b")]


def test_cancels_are_never_held_behind_a_cancel_and_fifo_puts_orders_after_earlier_cancels():
    q = OutboundQueue(parse_queue_config({"rate_per_second": 1, "burst": 1}))
    assert q.offer(order("a"), T0) == [released("a")]
    assert q.offer(order("b"), T0) == [held("b", "rate_limit", T0 + S)]
    assert q.offer_cancel(cancel("a"), T0) == [held("a", "rate_limit", T0 + 2 * S)]
    assert q.offer(order("c"), T0) == [held("c", "rate_limit", T0 + 3 * S)]
    assert q.release_due(T0 + S) == [released("b")]  # b came before the cancel: FIFO sends it first
    # the cancel leaves; c, next in line, is now held by it (visibly, with a new reason)
    assert q.release_due(T0 + 2 * S) == [released_cancel("a"), held("c", "cancel_in_flight", None)]
    assert q.offer_cancel(cancel("b"), T0 + 2 * S) == [held("b", "rate_limit", T0 + 3 * S)]
    assert q.release_due(T0 + 3 * S) == [released_cancel("b")]  # a second cancel is not held by the first
    assert q.on_execution("OrderCanceled", canceled("a"), T0 + 3 * S) == []  # b's cancel still holds c
    # resolved at 3.5s, but the bucket is empty until 4s: the hold changes reason, visibly
    assert q.on_execution("OrderCanceled", canceled("b"), T0 + 3 * S + S // 2) == [
        held("c", "rate_limit", T0 + 4 * S)]
    assert q.release_due(T0 + 4 * S) == [released("c")]


def test_held_orders_behind_a_cancel_keep_their_place():
    q = OutboundQueue(parse_queue_config({}))
    q.offer(order("a"), T0)
    q.offer_cancel(cancel("a"), T0)
    out = [q.offer(order(c), T0) for c in ("b", "c")] + [q.offer(order("d", Y), T0)]
    assert out == [[held("b", "cancel_in_flight", None)], [held("c", "cancel_in_flight", None)], [released("d", Y)]]
    assert q.on_execution("OrderCanceled", canceled("a"), T0) == [released("b"), released("c")]


def test_duplicate_client_order_ids_are_refused():
    q = OutboundQueue(parse_queue_config({}))
    assert q.offer(order("a"), T0) == [released("a")]
    (name, p), = q.offer(order("a"), T0)
    assert name == "RiskRejected"
    assert p == {"instrument_id": X, "client_order_id": "a", "intent_id": "ns:a", "rule": "duplicate_client_order_id",
                 "limit": "unique", "value": "a", "reason": p["reason"]}
    q2 = OutboundQueue(parse_queue_config({"rate_per_second": 1, "burst": 1}))
    q2.offer(order("a"), T0)
    q2.offer(order("b"), T0)
    assert q2.offer(order("b"), T0)[0][1]["rule"] == "duplicate_client_order_id"  # also while the first is held
    assert q2.release_due(T0 + 5 * S) == [released("b")]  # once


def test_cancel_of_a_held_order_removes_it():
    q = OutboundQueue(parse_queue_config({"rate_per_second": 1, "burst": 1}))
    q.offer(order("a"), T0)
    q.offer(order("b"), T0)
    q.offer(order("c"), T0)
    (name, p), = q.offer_cancel(cancel("b"), T0)
    assert (name, p["rule"], p["limit"], p["value"], p["intent_id"]) == (
        "RiskRejected", "canceled_in_queue", "HELD", "CANCELED", "ns:b")
    assert q.release_due(T0 + S) == [released("c")]  # b never leaves; c takes its token
    assert q.release_due(T0 + 10 * S) == []


def test_cancel_before_the_order_arrives_refuses_the_order():
    q = OutboundQueue(parse_queue_config({}))
    assert q.offer_cancel(cancel("a"), T0) == []
    (name, p), = q.offer(order("a"), T0)
    assert (name, p["rule"]) == ("RiskRejected", "canceled_in_queue")
    assert q.offer(order("b"), T0) == [released("b")]  # nothing in flight blocks X


def test_cancel_of_a_finished_order_is_sent_but_holds_nothing():
    q = OutboundQueue(parse_queue_config({}))
    q.offer(order("a"), T0)
    q.on_execution("OrderFilled", filled("a", "1"), T0)
    assert q.offer_cancel(cancel("a"), T0) == [released_cancel("a")]  # the venue answers "already filled"
    assert q.offer(order("b"), T0) == [released("b")]


def test_restore_after_recovery_lets_cancels_through():
    class O:
        client_order_id, leaves_quantity = "old", D(1)

    q = OutboundQueue(parse_queue_config({}))
    q.adopt([O()])
    assert q.offer_cancel(cancel("old"), T0) == [released_cancel("old")]
    assert q.offer(order("n"), T0) == [held("n", "cancel_in_flight", None)]
    assert q.offer(order("old"), T0)[0][1]["rule"] == "duplicate_client_order_id"


def script(q: OutboundQueue) -> list:
    out = []
    for i in range(30):
        t = T0 + i * (S // 3)
        iid = (X, Y)[i % 2]
        out += q.offer(order(f"o{i}", iid), t)
        if i % 7 == 3:
            out += q.offer_cancel(cancel(f"o{i - 2}", (X, Y)[(i - 2) % 2]), t)
        if i % 5 == 4:
            out += q.on_execution("OrderCanceled", canceled(f"o{i - 3}", (X, Y)[(i - 3) % 2]), t)
        out += q.release_due(t)
    out += q.release_due(T0 + 100 * S)
    return out


def test_fifo_is_deterministic():
    a = script(OutboundQueue(parse_queue_config({"rate_per_second": 2, "burst": 3})))
    b = script(OutboundQueue(parse_queue_config({"rate_per_second": 2, "burst": 3})))
    assert a == b
    rel = [p["client_order_id"] for n, p in a if n == "OrderReleased"]
    assert any(n == "OrderHeld" for n, p in a)
    seen = {p["client_order_id"] for n, p in a}
    assert seen == {f"o{i}" for i in range(30)}  # every order is visibly released, held or refused
    assert all(rel.count(c) <= 2 for c in rel)  # at most the order and its cancel
    refused = {p["client_order_id"] for n, p in a if n == "RiskRejected"}
    assert all(rel.count(c) <= 1 for c in refused)  # a refused order never left


@pytest.mark.parametrize("cfg, msg", [
    ({"rate": 1}, "unknown key 'rate'"),
    ({"rate_per_second": 0}, "rate_per_second must be a positive number"),
    ({"rate_per_second": "fast"}, "rate_per_second must be a positive number"),
    ({"rate_per_second": 1, "burst": 1.5}, "burst must be a whole number"),
    ({"venue": ""}, "venue must be a venue name"),
])
def test_config_errors(cfg, msg):
    with pytest.raises(QueueConfigError, match=msg):
        OutboundQueue(parse_queue_config(cfg))


def test_default_burst_is_the_rate():
    q = OutboundQueue(parse_queue_config({"rate_per_second": D("2.5")}))
    assert q.burst == 2
    assert [q.offer(order(c), T0)[0][0] for c in "abc"] == ["OrderReleased", "OrderReleased", "OrderHeld"]


# ---- ids offered long ago: the latest kept as a set, the earlier archived, every answer the same ---------------

PREFIX = "t1a2b3c"


def offered_history(n: int, *, keep: int | None = None) -> OutboundQueue:
    """n orders offered and filled (engine-style ids, rising by 7), one adopted order of a foreign id among them."""
    q = OutboundQueue(parse_queue_config({}))
    if keep is not None:
        q.KEEP_SEEN = keep

    class Adopted:
        client_order_id, leaves_quantity = "adopted-7", D(1)

    q.adopt([Adopted()])
    q.on_execution("OrderFilled", filled("adopted-7", "1"), T0)
    for i in range(n):
        cid = f"{PREFIX}-{100 + 7 * i}"
        q.offer(order(cid), T0)
        q.on_execution("OrderFilled", filled(cid, "1"), T0)
    return q


def replies(q: OutboundQueue) -> list:
    """What the queue says to early ids used again, to cancels of them, and to a cancel then an order of an id
    never offered that lies among the offered ones."""
    out = []
    for cid in (f"{PREFIX}-100", f"{PREFIX}-107", "adopted-7"):
        out.append(q.offer(order(cid), T0))
        out.append(q.offer_cancel(cancel(cid), T0))
    out.append(q.offer_cancel(cancel(f"{PREFIX}-101"), T0))
    out.append(q.offer(order(f"{PREFIX}-101"), T0))
    out.append(q.offer(order(f"{PREFIX}-999999"), T0))
    return out


def test_an_id_offered_long_ago_is_still_refused_and_its_cancel_still_sent():
    expected = replies(offered_history(3000, keep=10 ** 9))  # the queue as it was: every id in one set
    q = offered_history(3000)
    assert len(q.snapshot()["seen"].split("\x1e")) <= 1101  # the early ids are archived
    assert replies(q) == expected
    assert [r[0][1]["rule"] for r in expected[0:6:2]] == ["duplicate_client_order_id"] * 3
    assert expected[1] == [released_cancel(f"{PREFIX}-100")]  # sent: the venue answers "already filled"
    assert expected[6] == [] and expected[7][0][1]["rule"] == "canceled_in_queue"
    assert expected[8] == [released(f"{PREFIX}-999999")]


def test_a_restored_queue_refuses_what_the_one_that_never_stopped_refuses():
    q = offered_history(3000)
    restored = OutboundQueue(parse_queue_config({}))
    restored.restore(q.snapshot())
    assert restored.snapshot() == q.snapshot()
    assert replies(restored) == replies(offered_history(3000, keep=10 ** 9))


def test_the_ids_a_queue_snapshot_carries_take_a_few_bytes_each_beyond_the_kept_ones():
    def size(q: OutboundQueue) -> int:
        snap = q.snapshot()
        return len(snap["seen"]) + sum(map(len, snap["seen_before"]["chunks"])) + len(snap["seen_before"]["rows"])

    small, large = offered_history(1000), offered_history(5000)
    assert size(large) - size(small) < 4 * 4000  # an id of the engine beyond the kept ones: '7' and a separator
    assert size(offered_history(5000, keep=10 ** 9)) - size(small) > 10 * 4000


@pytest.mark.parametrize("broken", ["forgets", "restores_without_archive"])
def test_a_queue_that_drops_the_ids_it_archived_is_caught(broken, monkeypatch):
    """Negative control: an archive that forgets (or a restore that leaves it out) fails the comparison above."""
    from handlers.archive import OrderArchive

    expected = replies(offered_history(3000, keep=10 ** 9))
    if broken == "forgets":
        monkeypatch.setattr(OrderArchive, "add", lambda self, cid, *cells: None)
        assert replies(offered_history(3000)) != expected
    else:
        monkeypatch.setattr(OrderArchive, "restore", lambda self, state: None)
        restored = OutboundQueue(parse_queue_config({}))
        restored.restore(offered_history(3000).snapshot())
        assert replies(restored) != expected
