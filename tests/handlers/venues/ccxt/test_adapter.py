"""The ccxt adapter's safety rules, on an in-memory exchange with Binance's client-id semantics (unit level; the
sandbox venue tests drive the real ccxt classes over HTTP).

No order is sent twice: a send whose answer is lost is looked up by client order id, never re-sent; absence counts
only after the visibility window and a trade-history check. Negative control: an adapter that re-sends in-doubt
orders is caught by the same check.
"""
from __future__ import annotations

from decimal import Decimal

import ccxt
import pytest

from handlers.venues.ccxt.adapter import CcxtVenue
from handlers.venues.ccxt.errors import rejection_reason

IID, SYMBOL = "BTCUSDT.BINANCE", "BTC/USDT"


class Clock:
    def __init__(self) -> None:
        self.ns = 1_700_000_000_000_000_000

    def __call__(self) -> int:
        return self.ns


class StubExchange:
    """Orders by venue id; a client id is unique among OPEN orders only (Binance); faults scripted per call."""

    def __init__(self) -> None:
        self.options: dict = {}
        self.orders: dict[str, dict] = {}
        self.trades: list[dict] = []
        self.sent: list[str] = []  # client ids of every create_order that reached the venue
        self.faults: list[str] = []  # next create_order: "drop_after_accept" | "refuse" | "timeout_before"
        self.fill_on_accept = True
        self.visible_after = 0  # lookups by cid fail until this many lookups happened

    def create_order(self, symbol, kind, side, amount, price, params):
        fault = self.faults.pop(0) if self.faults else None
        cid = params["clientOrderId"]
        if fault == "timeout_before":
            raise ccxt.RequestTimeout("binance timed out")
        if fault == "refuse":
            raise ccxt.InsufficientFunds("binance Account has insufficient balance for requested action.")
        if any(o["clientOrderId"] == cid and o["status"] == "open" for o in self.orders.values()):
            raise ccxt.InvalidOrder('binance {"code":-2010,"msg":"Duplicate order sent."}')
        self.sent.append(cid)
        vid = str(len(self.orders) + 1)
        status = "closed" if self.fill_on_accept else "open"
        self.orders[vid] = {"id": vid, "clientOrderId": cid, "status": status, "symbol": symbol,
                            "filled": float(amount) if self.fill_on_accept else 0.0}
        if self.fill_on_accept:
            self.trades.append({"id": str(len(self.trades) + 100), "order": vid, "side": side, "price": 100.5,
                                "amount": float(amount), "fee": {"cost": 0.01, "currency": "USDT"},
                                "takerOrMaker": "taker", "info": {}})
        if fault == "drop_after_accept":
            raise ccxt.NetworkError("binance connection closed")
        return dict(self.orders[vid])

    def fetch_order(self, oid, symbol, params):
        cid = params["clientOrderId"]
        if self.visible_after > 0:
            self.visible_after -= 1
            raise ccxt.OrderNotFound("binance -2013 Order does not exist.")
        for o in self.orders.values():
            if o["clientOrderId"] == cid:
                return dict(o)
        raise ccxt.OrderNotFound("binance -2013 Order does not exist.")

    def fetch_my_trades(self, symbol, since=None, limit=None, params=None):
        start = int((params or {}).get("fromId", 0))
        of = (params or {}).get("orderId")
        return [dict(t) for t in self.trades if int(t["id"]) >= start and (of is None or t["order"] == str(of))]

    def cancel_order(self, oid, symbol, params):
        for o in self.orders.values():
            if o["clientOrderId"] == params["clientOrderId"] and o["status"] == "open":
                o["status"] = "canceled"
                return dict(o)
        raise ccxt.OrderNotFound("binance -2011 Unknown order sent.")

    def fetch_open_orders(self, symbol):
        return [dict(o) for o in self.orders.values() if o["status"] == "open"]

    def trade(self, vid: str, amount: float) -> None:
        """A fill of a resting order at the venue (the adapter learns of it from the trade history)."""
        o = self.orders[vid]
        o["filled"] = o.get("filled", 0) + amount
        self.trades.append({"id": str(len(self.trades) + 100), "order": vid, "side": "buy", "price": 99.5,
                            "amount": amount, "fee": {"cost": 0.01, "currency": "USDT"}, "takerOrMaker": "maker",
                            "info": {}})


def order(cid: str) -> dict:
    return {"instrument_id": IID, "client_order_id": cid, "side": "BUY", "order_type": "MARKET",
            "quantity": Decimal("0.5"), "price": None, "trigger_price": None, "time_in_force": "GTC",
            "post_only": False, "reduce_only": False}


def venue(ex: StubExchange, clock: Clock, window_s: int = 5) -> CcxtVenue:
    return CcxtVenue("BINANCE", ex, {IID: SYMBOL}, clock=clock, visibility_window_ns=window_s * 10**9,
                     secrets=("s3cret",))


def send(v: CcxtVenue, cid: str) -> list:
    v.submit(order(cid), 0)
    v.after_commit()
    return v.drain()


def test_an_accepted_order_and_its_fill_come_back_as_reports():
    ex, clock = StubExchange(), Clock()
    v = venue(ex, clock)
    assert [r[0] for r in send(v, "c1")] == ["OrderAccepted"]
    v.poll_fills()
    (fill,) = v.drain()
    assert fill[0] == "OrderFilled" and fill[1]["client_order_id"] == "c1" and fill[1]["last_price"] == Decimal("100.5")
    v.poll_fills()
    assert v.drain() == []  # a trade is reported once


def test_a_lost_answer_is_looked_up_never_resent():
    ex, clock = StubExchange(), Clock()
    ex.faults = ["drop_after_accept"]
    ex.visible_after = 2  # the venue shows the new order only from the third lookup on
    v = venue(ex, clock)
    (unknown,) = send(v, "c1")
    assert unknown[0] == "OrderOutcomeUnknown" and "NetworkError" in unknown[1]["error"]
    for _ in range(3):
        v.resolve()
        clock.ns += 10**9
    assert [r[0] for r in v.drain()] == ["OrderAccepted", "OrderFilled"]  # the fill it had, read by its id
    v.poll_fills()
    assert v.drain() == []  # and not again from the trade history
    assert ex.sent == ["c1"] and not v.in_doubt


def test_absence_needs_the_window_and_no_trade():
    ex, clock = StubExchange(), Clock()
    ex.faults = ["timeout_before"]  # never reached the venue
    v = venue(ex, clock, window_s=5)
    assert [r[0] for r in send(v, "c1")] == ["OrderOutcomeUnknown"]
    v.resolve()
    assert v.drain() == [] and "c1" in v.in_doubt  # not found, but the window has not passed: still in doubt
    clock.ns += 6 * 10**9
    v.resolve()
    (absent,) = v.drain()
    assert absent[0] == "OrderResolvedAbsent" and absent[1]["lookups"] == 2 and ex.sent == []


def test_a_refusal_is_a_rejection_and_a_duplicate_is_not():
    ex, clock = StubExchange(), Clock()
    ex.faults = ["refuse"]
    v = venue(ex, clock)
    (rej,) = send(v, "c1")
    assert rej[0] == "OrderRejected" and rej[1]["reason_code"] == "INSUFFICIENT_BALANCE"
    assert rejection_reason(ccxt.InvalidOrder('{"code":-2010,"msg":"Duplicate order sent."}')) is None
    assert rejection_reason(ccxt.RequestTimeout("x")) is None and rejection_reason(ccxt.ExchangeError("503")) is None


def test_recovery_learns_sends_in_doubt_from_the_log():
    """After a crash between the commit and the send, the log holds OrderSubmitted and no answer: in doubt."""
    ex, clock = StubExchange(), Clock()
    v = venue(ex, clock)
    v.sending = False  # replaying: nothing leaves
    v.learn("OrderSubmitted", order("c9"), clock.ns)
    v.submit(order("c9"), 0)
    v.after_commit()
    assert ex.sent == [] and "c9" in v.in_doubt
    clock.ns += 31 * 10**9
    v.sending = True
    v.resolve()
    assert [r[0] for r in v.drain()] == ["OrderResolvedAbsent"] and ex.sent == []


class ResendingVenue(CcxtVenue):
    """Negative control: the naive recovery that sends an in-doubt order again."""

    def resolve(self) -> None:
        for cid, doubt in list(self.in_doubt.items()):
            self._send_order(order(cid))


@pytest.mark.parametrize("cls, doubled", [(CcxtVenue, False), (ResendingVenue, True)])
def test_no_order_is_sent_twice_and_the_check_catches_a_resend(cls, doubled):
    ex, clock = StubExchange(), Clock()
    ex.faults = ["drop_after_accept"]
    v = cls("BINANCE", ex, {IID: SYMBOL}, clock=clock, visibility_window_ns=10**9)
    send(v, "c1")
    v.resolve()
    counts = {cid: ex.sent.count(cid) for cid in ex.sent}
    assert (max(counts.values()) > 1) == doubled  # the filled first order does not stop a second at the venue


def test_secrets_never_reach_a_report():
    ex, clock = StubExchange(), Clock()
    v = venue(ex, clock)

    def leak(*a):
        raise ccxt.NetworkError("binance apiKey=s3cret refused")

    ex.create_order = leak
    (unknown,) = send(v, "c1")
    assert "s3cret" not in repr(unknown) and "***" in unknown[1]["error"]


def resting(v: CcxtVenue, ex: StubExchange, cid: str) -> str:
    """A limit order accepted and resting at the venue; returns its venue id."""
    ex.fill_on_accept = False
    assert [r[0] for r in send(v, cid)] == ["OrderAccepted"]
    return next(vid for vid, o in ex.orders.items() if o["clientOrderId"] == cid)


def test_a_cancel_is_recorded_after_the_fills_the_venue_counted_before_it():
    """The venue canceled an order that had a fill the log does not hold yet: the fill comes first, then the
    cancel, so the order state machine never sees a fill after the order ended."""
    ex, clock = StubExchange(), Clock()
    v = venue(ex, clock)
    vid = resting(v, ex, "c1")
    ex.trade(vid, 0.2)
    v.cancel(IID, "c1", 0)
    v.after_commit()
    assert v.drain() == [] and "c1" in v.settling  # the cancel's answer says filled 0.2; the log has 0
    v.poll_fills()
    assert [r[0] for r in v.drain()] == ["OrderFilled", "OrderCanceled"]


def test_the_order_check_records_what_the_venue_did_while_nobody_looked():
    ex, clock = StubExchange(), Clock()
    v = CcxtVenue("BINANCE", ex, {IID: SYMBOL}, clock=clock, own_prefix="tabc123")
    vid = resting(v, ex, "c1")
    ex.orders[vid]["status"] = "expired"  # the venue ended it
    ex.orders["90"] = {"id": "90", "clientOrderId": "web_x", "status": "open", "symbol": SYMBOL}  # someone else's
    ex.orders["91"] = {"id": "91", "clientOrderId": "tabc123-77", "status": "open", "symbol": SYMBOL}  # ours, unlogged
    found = v.check_orders()
    assert [r[0] for r in v.drain()] == ["OrderExpired"] and not v.orders.open
    assert sorted((m["kind"], m["venue"]) for m in found) == [("external_order", "90"), ("unknown_at_venue", "91")]
    again = v.check_orders()
    assert [m["kind"] for m in again] == ["unknown_at_venue"] and v.drain() == []  # an external order is told once


def test_balances_differ_exactly_or_not_at_all():
    from handlers.venues.ccxt.reconcile import balance_mismatches, blocking

    reported = {"balances": [{"currency": "USDT", "total": Decimal("100.10")},
                             {"currency": "BTC", "total": Decimal("0.5")}]}
    assert balance_mismatches({"USDT": Decimal("100.1"), "BTC": Decimal("0.50")}, reported) == []
    (m,) = balance_mismatches({"USDT": Decimal("100.1"), "BTC": Decimal("0.49999")}, reported)
    assert (m["field"], m["local"], m["venue"]) == ("balance.BTC.total", "0.49999", "0.5") and blocking([m]) == [m]


def test_a_refused_cancel_of_an_order_in_doubt_leaves_it_in_doubt():
    """The strategy cancels an order whose send has no known outcome; the venue does not know it (-2011). That
    says nothing about the order: it stays in doubt until the lookup settles it."""
    ex, clock = StubExchange(), Clock()
    ex.faults = ["timeout_before"]
    v = venue(ex, clock)
    send(v, "c1")
    v.cancel(IID, "c1", 0)
    v.after_commit()
    assert [r[0] for r in v.drain()] == ["OrderCancelRejected"] and "c1" in v.in_doubt
    v.learn("OrderSubmitted", order("c2"), clock.ns)
    v.learn("OrderCancelRejected", {"client_order_id": "c2", "instrument_id": IID}, clock.ns)
    assert "c2" in v.in_doubt  # the same when recovery reads it from the log


def test_a_cancel_with_no_answer_is_answered_by_the_order_check():
    """A cancel whose answer was lost (or that a crash kept from leaving) would hold the outbound queue for ever:
    the order check sees the order still open at the venue and answers the cancel as not taken."""
    ex, clock = StubExchange(), Clock()
    v = venue(ex, clock)
    resting(v, ex, "c1")

    def lost(*a):
        raise ccxt.RequestTimeout("binance timed out")

    ex.cancel_order = lost
    v.cancel(IID, "c1", 0)
    v.after_commit()
    assert [r[0] for r in v.drain()] == ["OrderOutcomeUnknown"]
    v.check_orders()
    (answer,) = v.drain()
    assert answer[0] == "OrderCancelRejected" and "open at the venue" in answer[1]["reason"]
    v.check_orders()
    assert v.drain() == []  # answered once


def test_a_fill_left_behind_the_trade_cursor_is_found_by_its_orders_id():
    """c1's answer is lost (in doubt: its trade cannot be tied to it), c2's later trade moves the cursor past
    c1's; c1 is then found by client id, and the session dies before its next poll. The next session's cursor,
    rebuilt from the log, is past c1's trade: only c1's own trades, read by its venue id, bring the fill back.
    (Seen in the kill tests: one fill missing, the order never ending, balances off, the session halted.)"""
    ex, clock = StubExchange(), Clock()
    v = venue(ex, clock)
    ex.faults = ["drop_after_accept"]
    recorded = [("OrderSubmitted", order("c1"))] + [r[:2] for r in send(v, "c1")]  # OrderOutcomeUnknown
    recorded += [("OrderSubmitted", order("c2"))] + [r[:2] for r in send(v, "c2")]  # OrderAccepted
    v.poll_fills()
    recorded += [r[:2] for r in v.drain()]
    assert [n for n, _ in recorded] == ["OrderSubmitted", "OrderOutcomeUnknown", "OrderSubmitted", "OrderAccepted",
                                        "OrderFilled"] and recorded[-1][1]["trade_id"] == "101"
    v.resolve()
    answers = v.drain()
    assert [r[0] for r in answers] == ["OrderAccepted", "OrderFilled"]  # found, and its trade read at once
    recorded.append(answers[0][:2])  # ... but the session died after recording only the acceptance

    after = venue(ex, clock)  # the next session learns the log
    for name, data in recorded:
        after.learn(name, data, clock.ns)
    after.poll_fills()
    assert after.drain() == []  # the cursor is past trade 100
    after.check_orders()
    (fill,) = after.drain()
    assert (fill[0], fill[1]["client_order_id"], fill[1]["trade_id"]) == ("OrderFilled", "c1", "100")
    after.check_orders()
    after.poll_fills()
    assert after.drain() == []  # once


# ---- what a snapshot carries: the log's knowledge, never an answer not yet recorded ----------------------------

def recorded_events(seed: int, n: int = 300) -> list[tuple[str, dict, int]]:
    """A seeded sequence of events as a live namespace records them: submits, their answers, fills, cancels."""
    import random

    rng = random.Random(seed)
    out: list[tuple[str, dict, int]] = []
    live: list[str] = []
    trade = 1000
    for i in range(n):
        ts = 1_700_000_000_000_000_000 + i * 10**9
        roll = rng.random()
        if roll < 0.3 or not live:
            cid = f"t1-{i}"
            live.append(cid)
            out.append(("OrderSubmitted", {**order(cid), "quantity": Decimal("0.30")}, ts))
            continue
        cid = rng.choice(live)
        base = {"instrument_id": IID, "client_order_id": cid, "venue_order_id": f"v{cid}"}
        if roll < 0.5:
            out.append(("OrderAccepted", base, ts))
        elif roll < 0.7:
            trade += rng.randint(1, 3)
            out.append(("OrderFilled", {**base, "trade_id": str(trade), "last_quantity": Decimal("0.1")}, ts))
        elif roll < 0.8:
            out.append(("OrderReleased", {"instrument_id": IID, "client_order_id": cid, "venue": "BINANCE",
                                          "action": "CANCEL"}, ts))
        elif roll < 0.9:
            out.append((rng.choice(["OrderCanceled", "OrderCancelRejected", "OrderExpired", "OrderRejected"]),
                        base, ts))
        else:
            out.append(("OrderOutcomeUnknown", {"instrument_id": IID, "client_order_id": cid, "venue": "BINANCE",
                                                "action": "SUBMIT", "error": "timeout"}, ts))
    return out


@pytest.mark.parametrize("seed", range(5))
def test_knowledge_restored_at_any_cut_continues_as_the_whole_fold(seed):
    from handlers.venues.ccxt.adapter import Knowledge

    events = recorded_events(seed)
    whole = Knowledge()
    for name, data, ts in events:
        whole.learn(name, data, ts)
    assert whole.orders.trades_seen and whole.in_doubt and whole.orders.open  # it knows something of each kind
    for cut in range(0, len(events), 37):
        part = Knowledge()
        for name, data, ts in events[:cut]:
            part.learn(name, data, ts)
        resumed = Knowledge.restore(part.snapshot())
        for name, data, ts in events[cut:]:
            resumed.learn(name, data, ts)
        assert resumed == whole, f"cut at {cut}"


def test_a_snapshot_holds_what_is_committed_not_an_answer_still_to_be_recorded():
    """The adapter sends once a step commits, and the venue's answer waits in `reports` until the node records it:
    a snapshot taken in between must say "submitted, no answer" (recovery then looks it up), never "accepted"."""
    from eventstore.writer import Draft

    ex, clock = StubExchange(), Clock()
    ex.fill_on_accept = False
    v = venue(ex, clock)
    o = {**order("t1-1"), "venue": "BINANCE"}
    v.submit(o, 0)
    v.after_commit([[Draft("OrderSubmitted", o, 0, ts_init=clock.ns)]])
    assert [r[0] for r in v.reports] == ["OrderAccepted"]  # answered, not recorded yet
    assert "t1-1" in v.orders.open  # the working copy knows
    snap = v.snapshot()
    assert snap["open"] == [] and [d[1] for d in snap["in_doubt"]] == ["t1-1"]
    answer = v.drain()[0]  # the node records it: a later step, committed
    v.after_commit([[Draft(answer[0], answer[1], answer[2], ts_init=clock.ns)]])
    snap = v.snapshot()
    assert snap["open"] == ["t1-1"] and snap["in_doubt"] == []
    from handlers.venues.ccxt.adapter import Knowledge

    assert Knowledge.restore(snap).orders.by_venue_id == {"1": "t1-1"}
