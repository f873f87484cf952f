"""The REST layer driven by the real ccxt.binance (sync) over HTTP: markets, orders by client id, paging, auth,
the client-id rule, and every fault raising the ccxt class of live-runtime.md §1.3."""
from __future__ import annotations

import time
from decimal import Decimal

import ccxt
import pytest
from sandboxkit import SECRET

SYM = "BTC/USDT"


def cid_order(sb, cid):
    """The venue's own orders with this client id (through the checker's view, not through ccxt)."""
    return [o for o in sb.state()["orders"] if o["clientOrderId"] == cid]


def test_load_markets_gives_the_instruments_rules(sb):
    ex = sb.ccxt()
    m = ex.market(SYM)
    assert m["id"] == "BTCUSDT" and m["spot"] and m["active"]
    assert m["precision"]["price"] == 0.01 and m["precision"]["amount"] == 0.00001
    assert m["limits"]["amount"]["min"] == 0.00001 and m["limits"]["amount"]["max"] == 9000
    assert m["limits"]["cost"]["min"] == 10
    assert ex.price_to_precision(SYM, 41000.129) == "41000.13" and ex.amount_to_precision(SYM, 0.0123456) == "0.01234"
    assert list(ex.markets) == [SYM]


def test_a_default_ccxt_binance_loads_too(sb):
    """No options at all: the signed currency and margin catalogues and the futures exchangeInfos are served."""
    from handlers.venues.ccxt.urls import point_at

    ex = ccxt.binance({"apiKey": "sandbox-key", "secret": SECRET, "enableRateLimit": False})
    point_at(ex, sb.url)
    ex.load_markets()
    assert list(ex.markets) == [SYM] and "BTC" in ex.currencies
    assert ex.fetch_time() == pytest.approx(time.time() * 1000, abs=5000)  # a real venue's clock


def test_create_fetch_cancel_by_client_id(sb):
    ex = sb.ccxt()
    o = ex.create_order(SYM, "limit", "buy", 0.01, 30000, {"clientOrderId": "rt-1"})
    assert (o["clientOrderId"], o["status"], o["price"], o["amount"]) == ("rt-1", "open", 30000, 0.01)
    got = ex.fetch_order(None, SYM, {"clientOrderId": "rt-1"})
    assert (got["id"], got["clientOrderId"], got["status"]) == (o["id"], "rt-1", "open")
    assert o["id"] in [x["id"] for x in ex.fetch_open_orders(SYM)]
    assert o["id"] in [x["id"] for x in ex.fetch_open_orders()]  # without a symbol too
    c = ex.cancel_order(None, SYM, {"clientOrderId": "rt-1"})
    assert c["status"] == "canceled" and c["id"] == o["id"]
    assert c["info"]["origClientOrderId"] == "rt-1" and c["info"]["clientOrderId"] != "rt-1"  # Binance's cancel id
    assert ex.fetch_order(o["id"], SYM)["status"] == "canceled"
    with pytest.raises(ccxt.OrderNotFound):
        ex.cancel_order(None, SYM, {"clientOrderId": "rt-1"})  # -2011: not open any more
    with pytest.raises(ccxt.OrderNotFound):
        ex.fetch_order(None, SYM, {"clientOrderId": "rt-never"})  # -2013


def test_market_order_fills_on_the_next_bar_with_fee_and_balances(sb):
    ex = sb.ccxt()
    before = ex.fetch_balance()
    o = ex.create_order(SYM, "market", "buy", 0.02, None, {"clientOrderId": "mk-1"})
    assert o["status"] == "open" and o["filled"] == 0  # it meets the market at the next unit
    sb.step(1)
    got = ex.fetch_order(o["id"], SYM)
    assert got["status"] == "closed" and got["filled"] == 0.02
    (t,) = ex.fetch_my_trades(SYM, params={"orderId": o["id"]})
    assert t["takerOrMaker"] == "taker" and t["fee"]["currency"] == "BTC" and t["fee"]["cost"] == pytest.approx(0.00004)
    after = ex.fetch_balance()
    assert after["BTC"]["total"] == pytest.approx(before["BTC"]["total"] + 0.02 - 0.00004)
    assert after["USDT"]["total"] == pytest.approx(before["USDT"]["total"] - t["cost"])
    venue = sb.state()["balances"]  # the venue's own books, exact strings
    account = {b["asset"]: b for b in ex.private_get_account()["balances"]}
    assert {a: (Decimal(v["free"]), Decimal(v["locked"])) for a, v in venue.items()} == \
        {a: (Decimal(b["free"]), Decimal(b["locked"])) for a, b in account.items()}


def test_order_response_types(sb):
    ex = sb.ccxt()
    for resp, keys in [("ACK", {"transactTime"}), ("RESULT", {"status", "origQty"}), ("FULL", {"fills"})]:
        o = ex.create_order(SYM, "limit", "sell", 0.001, 90000, {"newOrderRespType": resp})
        assert keys <= set(o["info"]) and ("fills" in o["info"]) == (resp == "FULL")
        ex.cancel_order(o["id"], SYM)


def test_my_trades_page_by_from_id_without_gaps_or_repeats(sb):
    ex = sb.ccxt()
    ids = [ex.create_order(SYM, "market", "sell", 0.001, None)["id"] for _ in range(7)]
    sb.step(1)  # one bar's volume (4) fills all seven
    every = ex.fetch_my_trades(SYM, limit=1000)
    mine = [t for t in every if t["order"] in ids]
    assert len(mine) == 7
    paged, cursor = [], int(every[0]["id"])
    while True:
        page = ex.fetch_my_trades(SYM, limit=3, params={"fromId": cursor})
        if not page:
            break
        paged += page
        cursor = int(page[-1]["id"]) + 1
    assert [t["id"] for t in paged] == [t["id"] for t in every]  # all of them, in order, once
    tids = [int(t["id"]) for t in every]
    assert tids == sorted(set(tids))
    assert tids[-1] - tids[0] > len(tids) - 1  # the account's ids are sparse: public prints share the sequence
    with pytest.raises(ccxt.BadRequest, match="24 hours"):
        ex.fetch_my_trades(SYM, params={"startTime": 0, "endTime": 86_400_001})
    with pytest.raises(ccxt.BadRequest, match="limit"):
        ex.fetch_my_trades(SYM, limit=1001)
    day = ex.fetch_my_trades(SYM, params={"startTime": every[0]["timestamp"],
                                          "endTime": every[0]["timestamp"] + 86_400_000})
    assert [t["id"] for t in day] == [t["id"] for t in every]


def test_wrong_secret_or_key_is_an_authentication_error_and_the_secret_never_comes_back(sb):
    bad = sb.ccxt(secret="not-the-secret")
    with pytest.raises(ccxt.AuthenticationError) as e:
        bad.fetch_balance()
    assert "-1022" in str(e.value)
    assert SECRET not in (bad.last_http_response or "") and "not-the-secret" not in (bad.last_http_response or "")
    assert SECRET not in str(e.value)
    stranger = sb.ccxt(apiKey="someone-else")
    with pytest.raises(ccxt.AuthenticationError, match="-2015"):
        stranger.create_order(SYM, "limit", "buy", 0.01, 30000)
    assert "someone-else" not in (stranger.last_http_response or "")


def test_clock_offset_is_an_invalid_nonce_until_the_client_resyncs(sb):
    ex = sb.ccxt()
    sb.post("/sandbox/faults", {"clock_offset_ms": -30_000})  # the venue's clock 30 s behind ours
    with pytest.raises(ccxt.InvalidNonce, match="-1021"):
        ex.fetch_balance()
    ex.load_time_difference()
    assert ex.options["timeDifference"] == pytest.approx(30_000, abs=2000)
    assert ex.fetch_balance()["USDT"]["total"] > 0


def test_client_id_rule_both_ways(sb):
    ex = sb.ccxt()
    first = ex.create_order(SYM, "limit", "buy", 0.01, 30000, {"clientOrderId": "dup-1"})
    with pytest.raises(ccxt.InvalidOrder, match="Duplicate order sent"):
        ex.create_order(SYM, "limit", "buy", 0.01, 30001, {"clientOrderId": "dup-1"})  # while the first is open
    assert len(cid_order(sb, "dup-1")) == 1
    ex.cancel_order(first["id"], SYM)
    m = ex.create_order(SYM, "market", "buy", 0.001, None, {"clientOrderId": "dup-2"})
    sb.step(1)
    assert ex.fetch_order(m["id"], SYM)["status"] == "closed"
    again = ex.create_order(SYM, "market", "buy", 0.001, None, {"clientOrderId": "dup-2"})  # reuse after the fill
    sb.step(1)
    assert again["id"] != m["id"]
    orders = cid_order(sb, "dup-2")
    assert [o["status"] for o in orders] == ["FILLED", "FILLED"]  # two orders, two fills: the venue does not protect
    assert ex.fetch_order(None, SYM, {"clientOrderId": "dup-2"})["id"] == again["id"]  # the latest


# fault → (ccxt class raised by the sync client, order created at the venue?)   live-runtime.md §1.3
FAULTS = [
    ("accept_then_drop", {}, ccxt.NetworkError, True),
    ("accept_then_slow", {"arg": 2}, ccxt.RequestTimeout, True),
    ("status_unknown", {}, ccxt.RequestTimeout, True),
    ("http_5xx_json", {}, ccxt.ExchangeError, False),
    ("http_5xx_html", {}, ccxt.ExchangeNotAvailable, False),
    ("rate_limit_429", {"arg": 3}, ccxt.DDoSProtection, False),
    ("ban_418", {"arg": 5}, ccxt.DDoSProtection, False),
]


@pytest.mark.parametrize("fault, rule, raised, created", FAULTS, ids=[f[0] for f in FAULTS])
def test_every_fault_raises_its_ccxt_class(sb, fault, rule, raised, created):
    ex = sb.ccxt(timeout=1000)
    cid = f"f-{fault}"
    sb.fault(fault, **rule)
    with pytest.raises(ccxt.BaseError) as e:
        ex.create_order(SYM, "limit", "buy", 0.01, 30000, {"clientOrderId": cid})
    assert type(e.value) is raised, f"{fault}: {type(e.value).__name__}: {e.value}"
    if fault == "http_5xx_json":
        assert not isinstance(e.value, ccxt.NetworkError)  # a 5xx with a JSON body is not a NetworkError
    if fault in ("rate_limit_429", "ban_418"):
        assert ex.last_response_headers["Retry-After"] == str(rule["arg"])
    if created:
        found = ex.fetch_order(None, SYM, {"clientOrderId": cid})  # the cid lookup finds what was accepted
        assert found["status"] == "open" and found["clientOrderId"] == cid
        ex.cancel_order(found["id"], SYM)
    else:
        with pytest.raises(ccxt.OrderNotFound):
            ex.fetch_order(None, SYM, {"clientOrderId": cid})
        assert cid_order(sb, cid) == []
    assert sb.state()["faults"] == []  # the one-shot rule is used up


def test_accept_then_drop_on_a_cancel(sb):
    ex = sb.ccxt()
    o = ex.create_order(SYM, "limit", "buy", 0.01, 30000, {"clientOrderId": "drop-cancel"})
    sb.fault("accept_then_drop", target="cancel")
    with pytest.raises(ccxt.NetworkError):
        ex.cancel_order(o["id"], SYM)
    assert ex.fetch_order(o["id"], SYM)["status"] == "canceled"  # it happened, the answer was lost


def test_visibility_lag_hides_a_new_order_from_queries_for_a_while(sb):
    ex = sb.ccxt()
    sb.fault("visibility_lag", arg=1.0)
    o = ex.create_order(SYM, "limit", "buy", 0.01, 30000, {"clientOrderId": "lag-1"})
    assert o["status"] == "open"  # the answer itself is fine
    with pytest.raises(ccxt.OrderNotFound, match="-2013"):
        ex.fetch_order(None, SYM, {"clientOrderId": "lag-1"})
    assert o["id"] not in [x["id"] for x in ex.fetch_open_orders(SYM)]
    assert len(cid_order(sb, "lag-1")) == 1  # the venue's own books have it
    time.sleep(1.1)
    assert ex.fetch_order(None, SYM, {"clientOrderId": "lag-1"})["id"] == o["id"]
    ex.cancel_order(o["id"], SYM)


def test_external_order_and_fills_while_the_client_is_down(sb):
    ex = sb.ccxt()
    ext = sb.post("/sandbox/external_order", {"symbol": "BTCUSDT", "side": "SELL", "type": "LIMIT",
                                              "quantity": "0.002", "price": "99999"})
    assert ext["clientOrderId"].startswith("web_") and ext["owner"] == "external"
    assert ext["clientOrderId"] in [o["clientOrderId"] for o in ex.fetch_open_orders(SYM)]
    ex.cancel_order(str(ext["orderId"]), SYM)
    last = ex.fetch_ticker(SYM)["last"]
    o = ex.create_order(SYM, "limit", "sell", 0.003, round(last + 5, 2), {"clientOrderId": "down-1"})
    del ex  # the client goes away; the market keeps running
    for _ in range(40):
        sb.step(1)
        if cid_order(sb, "down-1")[0]["status"] == "FILLED":
            break
    back = sb.ccxt()
    assert back.fetch_order(None, SYM, {"clientOrderId": "down-1"})["status"] == "closed"
    (t,) = back.fetch_my_trades(SYM, params={"orderId": o["id"]})
    assert t["takerOrMaker"] == "maker" and t["price"] == round(last + 5, 2)


def test_post_only_is_a_limit_maker_that_rests_and_is_refused_when_it_would_take(sb):
    """ccxt sends postOnly as Binance's LIMIT_MAKER (no timeInForce): it rests, fills only as maker, and an order
    at or through the other side's best price is refused with -2010, which ccxt raises as an InvalidOrder."""
    ex = sb.ccxt()
    sb.step(1)
    last = Decimal(str(sb.state()["lastPrices"]["BTCUSDT"]))
    o = ex.create_order(SYM, "limit", "buy", 0.01, float(last - 1), {"clientOrderId": "pm-1", "postOnly": True})
    assert o["status"] == "open" and o["info"]["type"] == "LIMIT_MAKER" and o["postOnly"] is True
    with pytest.raises(ccxt.InvalidOrder, match="would immediately match"):
        ex.create_order(SYM, "limit", "buy", 0.01, float(last + Decimal("0.01")), {"postOnly": True})
    with pytest.raises(ccxt.InvalidOrder, match="would immediately match"):
        ex.create_order(SYM, "limit", "sell", 0.01, float(last - Decimal("0.01")), {"postOnly": True})
    ex.cancel_order(o["id"], SYM)


def test_the_clock_endpoint_tells_market_time_at_the_replays_speed(sb):
    clock = sb.get("/sandbox/clock")
    assert clock["speed"] == 0 and clock["marketTime"] == clock["marketTimeNs"] // 1_000_000
    assert clock["marketTime"] == sb.state()["marketTime"]
    moved = sb.step(2)["marketTime"]
    assert sb.get("/sandbox/clock")["marketTime"] == moved > clock["marketTime"]


def test_the_speed_changes_at_run_time_and_zero_pauses(sb):
    start = sb.get("/sandbox/clock")["marketTimeNs"]
    try:
        assert sb.post("/sandbox/speed", {"speed": 600})["speed"] == 600
        time.sleep(0.6)
        moved = sb.get("/sandbox/clock")["marketTimeNs"]
        assert moved - start >= 200 * 10**9  # 600 market seconds per wall second, with slack for a busy machine
    finally:
        sb.post("/sandbox/speed", {"speed": 0})
    paused = sb.get("/sandbox/clock")["marketTimeNs"]
    time.sleep(0.3)
    assert sb.get("/sandbox/clock")["marketTimeNs"] == paused
    with pytest.raises(Exception, match="400"):
        sb.post("/sandbox/speed", {"speed": "-1"})
