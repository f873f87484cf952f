"""Risk engine: each rule accepting and rejecting (rule, limit, value), rule order, halts, config files."""
from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from handlers.risk.engine import RiskEngine, build_rules
from handlers.risk.limits import RiskConfigError, parse_risk_config
from handlers.risk.rules import RULE_ORDER
from projections.risk import DAY_NS
from projections.state import State

D = Decimal
IID = "BTCUSDT.SIM"
ETH = "ETHUSDT.SIM"
T0 = 19_700 * DAY_NS + 3_600 * 10**9
S = 10**9


def instrument(iid: str = IID, base: str = "BTC", **kw: Any) -> dict[str, Any]:
    d = {"instrument_id": iid, "venue": "SIM", "symbol": iid.split(".")[0], "kind": "SPOT", "base_currency": base,
         "quote_currency": "USDT", "settlement_currency": "USDT", "price_increment": D("0.010000000000000000"),
         "size_increment": D("0.001000000000000000"), "price_precision": 2, "size_precision": 3,
         "min_quantity": D("0.001"), "max_quantity": D("100"), "min_notional": D("10"), "maker_fee": D("0.001"),
         "taker_fee": D("0.001"), "multiplier": D(1)}
    d.update(kw)
    return d


def tick(st: State, price: str, ts: int = T0, iid: str = IID) -> None:
    st.apply("TradeTick", {"instrument_id": iid, "price": D(price), "size": D(1), "aggressor_side": "BUYER",
                           "trade_id": "x"}, ts)


def make_state(last: str | None = "100", usdt: str = "100000", *defs: dict[str, Any]) -> State:
    st = State()
    for d in defs or (instrument(), instrument(ETH, base="ETH")):
        st.apply("InstrumentDefined", d, T0)
    st.apply("AccountState", {"venue": "SIM", "reported": True, "balances": [
        {"currency": "USDT", "total": D(usdt), "free": D(usdt), "locked": D(0)}]}, T0)
    if last is not None:
        tick(st, last)
    return st


def order(side: str = "BUY", qty: str = "1", order_type: str = "LIMIT", price: str | None = "100",
          trigger: str | None = None, cid: str = "c1", iid: str = IID, reduce_only: bool = False) -> dict[str, Any]:
    return {"instrument_id": iid, "strategy_id": "t", "client_order_id": cid, "side": side, "order_type": order_type,
            "quantity": D(qty), "price": D(price) if price is not None else None,
            "trigger_price": D(trigger) if trigger is not None else None, "time_in_force": "GTC", "expire_ts": None,
            "post_only": False, "reduce_only": reduce_only, "tags": None}


_n = [0]


def submit(st: State, side: str, qty: str, cid: str | None = None, iid: str = IID, price: str = "100") -> str:
    """An order working at the venue (OrderSubmitted, no fill)."""
    _n[0] += 1
    cid = cid or f"w{_n[0]}"
    o = order(side, qty, "LIMIT", price, cid=cid, iid=iid)
    st.apply("OrderSubmitted", {k: v for k, v in o.items() if k != "tags"} | {"venue": "SIM"}, T0)
    return cid


def hold_position(st: State, side: str, qty: str, price: str = "100", iid: str = IID) -> None:
    cid = submit(st, side, qty, iid=iid, price=price)
    st.apply("OrderFilled", {"instrument_id": iid, "client_order_id": cid, "venue_order_id": None, "trade_id": cid,
                             "side": side, "last_price": D(price), "last_quantity": D(qty), "fee": D(0),
                             "fee_currency": "USDT", "liquidity_side": "TAKER"}, T0)


def check(cfg: dict[str, Any], st: State, o: dict[str, Any], now: int = T0) -> tuple[str, dict[str, Any]]:
    """The verdict; like the engine, the intent is folded first (the verdict is not: tests fold it when needed)."""
    st.apply("OrderIntent", o, now)
    return RiskEngine(parse_risk_config(cfg)).check(o, "ns:7", st, now)


def accepted(cfg, st, o, now=T0) -> bool:
    name, payload = check(cfg, st, o, now)
    assert payload["intent_id"] == "ns:7" and payload["client_order_id"] == o["client_order_id"]
    return name == "RiskAccepted"


def rejected(cfg, st, o, now=T0) -> tuple[str, str, str]:
    name, p = check(cfg, st, o, now)
    assert name == "RiskRejected", p
    assert set(p) == {"instrument_id", "client_order_id", "intent_id", "rule", "limit", "value", "reason"}
    assert p["reason"]
    return p["rule"], p["limit"], p["value"]


def set_state(st: State, state: str) -> None:
    st.apply("TradingStateChanged", {"state": state, "previous": st.risk.trading_state, "reason": "operator",
                                     "incident_id": None}, T0)


# ---- payloads --------------------------------------------------------------------------------------------------


def test_accept_payload():
    assert check({}, make_state(), order()) == ("RiskAccepted", {"instrument_id": IID, "client_order_id": "c1",
                                                                 "intent_id": "ns:7"})


def test_cancel_intents_always_pass_even_when_halted():
    st = make_state()
    set_state(st, "HALTED")
    cancel = {"instrument_id": IID, "strategy_id": "t", "client_order_id": "c1", "reason": "done"}
    assert RiskEngine(parse_risk_config({"max_open_orders": 1})).check(cancel, "ns:9", st, T0)[0] == "RiskAccepted"


# ---- trading state ---------------------------------------------------------------------------------------------


def test_trading_state_halted_rejects_every_new_order():
    st = make_state()
    assert accepted({}, st, order())
    set_state(st, "HALTED")
    assert rejected({}, st, order("BUY", "1")) == ("trading_state", "HALTED", "1")
    hold_position(st, "BUY", "2")
    assert rejected({}, st, order("SELL", "1", cid="c2")) == ("trading_state", "HALTED", "1")  # even reducing
    assert rejected({}, st, order("SELL", "1", cid="c3", reduce_only=True))[0] == "trading_state"


def test_trading_state_reducing_allows_only_reducing_orders():
    st = make_state()
    hold_position(st, "BUY", "2")
    set_state(st, "REDUCING")
    assert accepted({}, st, order("SELL", "1"))
    assert accepted({}, st, order("SELL", "2", cid="c2"))  # to flat
    assert rejected({}, st, order("BUY", "1", cid="c3")) == ("trading_state", "REDUCING", "3")
    assert rejected({}, st, order("SELL", "3", cid="c4")) == ("trading_state", "REDUCING", "-1")  # a flip
    assert accepted({}, st, order("BUY", "1", cid="c5", reduce_only=True))  # the venue enforces reduce-only
    submit(st, "SELL", "1.5")  # working sells count: 2 - 1.5 - 1 = -0.5 would flip
    assert rejected({}, st, order("SELL", "1", cid="c6")) == ("trading_state", "REDUCING", "-0.5")
    flat = make_state()
    set_state(flat, "REDUCING")
    assert rejected({}, flat, order("SELL", "1")) == ("trading_state", "REDUCING", "-1")


# ---- instrument rules -----------------------------------------------------------------------------------------


def test_allowed_instruments():
    st = make_state()
    assert accepted({"allowed_instruments": [IID]}, st, order())
    assert rejected({"allowed_instruments": [ETH, "X.SIM"]}, st, order()) == ("allowed_instruments", f"{ETH},X.SIM",
                                                                               IID)


def test_unknown_instrument():
    st = make_state()
    assert rejected({}, st, order(iid="NOPE.SIM")) == ("unknown_instrument", "defined", "unknown")


def test_invalid_order():
    st = make_state()
    assert rejected({}, st, order(qty="0")) == ("invalid_order", "0", "0")
    assert rejected({}, st, order(qty="-1")) == ("invalid_order", "0", "-1")
    assert rejected({}, st, order(price=None)) == ("invalid_order", "required", "none")
    assert rejected({}, st, order(order_type="STOP_LIMIT", price="100")) == ("invalid_order", "required", "none")
    assert rejected({}, st, order(price="-5")) == ("invalid_order", "0", "-5")
    assert accepted({}, st, order(order_type="STOP_MARKET", price=None, trigger="101"))
    assert accepted({}, st, order(order_type="MARKET", price=None))


def test_quantity_precision():
    st = make_state()
    assert accepted({}, st, order(qty="1.000000000000000000"))  # scale-18 values from the log
    assert rejected({}, st, order(qty="1.0015")) == ("quantity_precision", "0.001", "1.0015")


def test_price_precision():
    st = make_state()
    assert accepted({}, st, order(price="100.010000000000000000"))
    assert rejected({}, st, order(price="100.005")) == ("price_precision", "0.01", "100.005")
    assert rejected({}, st, order(order_type="STOP_MARKET", price=None, trigger="99.999")) == (
        "price_precision", "0.01", "99.999")


def test_min_quantity():
    st = make_state("100", "100000", instrument(min_quantity=D("0.01"), min_notional=None))
    assert accepted({}, st, order(qty="0.01"))
    assert rejected({}, st, order(qty="0.005")) == ("min_quantity", "0.01", "0.005")


def test_instrument_max_quantity():
    st = make_state()
    assert accepted({}, st, order(qty="100"))
    assert rejected({}, st, order(qty="100.001")) == ("instrument_max_quantity", "100", "100.001")
    unlimited = make_state("100", "100000", instrument(max_quantity=None))
    assert accepted({}, unlimited, order(qty="100000"))


def test_min_notional():
    st = make_state()
    assert accepted({}, st, order(qty="0.1"))  # 10
    assert rejected({}, st, order(qty="0.05")) == ("min_notional", "10", "5")
    assert rejected({}, st, order(qty="0.099", order_type="MARKET", price=None)) == ("min_notional", "10", "9.9")
    no_price = make_state(None)
    assert accepted({}, no_price, order(qty="0.05", order_type="MARKET", price=None))  # venue's call


def test_last_price_needed_by_value_rules():
    st = make_state(None)
    mkt = order(order_type="MARKET", price=None)
    assert accepted({}, st, mkt)
    assert rejected({"max_order_notional": 1000}, st, mkt) == ("last_price", "known", "none")
    assert rejected({"max_gross_exposure": 1000}, st, mkt) == ("last_price", "known", "none")
    assert accepted({"max_order_notional": 1000}, st, order())  # a limit order has its own price
    assert rejected({"price_band": D("0.1")}, st, order()) == ("last_price", "known", "none")


def test_price_band():
    st = make_state("100")
    cfg = {"price_band": D("0.05")}
    assert accepted(cfg, st, order(price="105"))
    assert accepted(cfg, st, order(price="95"))
    assert accepted(cfg, st, order(order_type="MARKET", price=None))
    assert rejected(cfg, st, order(price="105.01")) == ("price_band", "105", "105.01")
    assert rejected(cfg, st, order("SELL", price="94.99")) == ("price_band", "95", "94.99")
    assert rejected(cfg, st, order(order_type="STOP_MARKET", price=None, trigger="106")) == ("price_band", "105", "106")
    assert rejected(cfg, st, order(order_type="STOP_LIMIT", price="100", trigger="90")) == ("price_band", "95", "90")


# ---- order limits ----------------------------------------------------------------------------------------------


def test_max_order_quantity():
    st = make_state()
    assert accepted({"max_order_quantity": 5}, st, order(qty="5"))
    assert rejected({"max_order_quantity": 5}, st, order(qty="5.001")) == ("max_order_quantity", "5", "5.001")


def test_max_order_notional():
    st = make_state("100")
    cfg = {"max_order_notional": D("1000")}
    assert accepted(cfg, st, order(qty="10"))
    assert rejected(cfg, st, order(qty="10.001")) == ("max_order_notional", "1000", "1000.1")
    assert rejected(cfg, st, order(qty="10.5", order_type="MARKET", price=None)) == ("max_order_notional", "1000",
                                                                                      "1050")  # at the last price
    assert rejected(cfg, st, order(qty="10", order_type="STOP_MARKET", price=None, trigger="100.01")) == (
        "max_order_notional", "1000", "1000.1")  # at the trigger
    mult = make_state("100", "100000", instrument(multiplier=D("0.5")))
    assert accepted(cfg, mult, order(qty="20"))


def test_max_position_counts_open_and_unsent_orders_on_the_same_side():
    st = make_state()
    cfg = {"max_position": 3}
    hold_position(st, "BUY", "2")
    submit(st, "BUY", "0.5")
    submit(st, "SELL", "9")  # the other side never offsets
    assert accepted(cfg, st, order("BUY", "0.5"))  # 2 + 0.5 + 0.5 = 3: the limit is inclusive
    st.apply("RiskAccepted", {"instrument_id": IID, "client_order_id": "c1", "intent_id": "ns:7"}, T0)
    assert rejected(cfg, st, order("BUY", "0.6", cid="c2")) == ("max_position", "3", "3.6")  # c1 is unsent
    assert rejected(cfg, st, order("SELL", "5", cid="c3")) == ("max_position", "3", "12")  # 2 - 9 - 5


def test_max_position_lets_reducing_orders_through_and_reads_tables():
    st = make_state()
    hold_position(st, "BUY", "5")
    assert accepted({"max_position": 3}, st, order("SELL", "1"))  # 4 > 3 but closer to flat
    assert accepted({"max_position": 3}, st, order("SELL", "8", cid="c2"))  # -3
    assert rejected({"max_position": 3}, st, order("SELL", "9", cid="c3")) == ("max_position", "3", "4")
    assert accepted({"max_position": 3}, st, order("BUY", "50", cid="c4", reduce_only=True))
    table = {"max_position": {IID: D("6"), "default": D("1")}}
    assert rejected(table, st, order("BUY", "1.5", cid="c5")) == ("max_position", "6", "6.5")
    assert rejected(table, st, order("BUY", "1.5", cid="c6", iid=ETH)) == ("max_position", "1", "1.5")
    assert accepted({"max_position": {IID: 100}}, st, order("BUY", "1", cid="c7", iid=ETH))  # no default: off


def test_max_gross_exposure():
    st = make_state("100")
    cfg = {"max_gross_exposure": 500}
    hold_position(st, "BUY", "2")  # 200
    assert accepted(cfg, st, order("BUY", "3"))  # 200 + 300 = 500
    st.apply("RiskRejected", {"instrument_id": IID, "client_order_id": "c1", "intent_id": "", "rule": "x",
                              "limit": "", "value": "", "reason": ""}, T0)  # forget c1 (not sent)
    assert rejected(cfg, st, order("BUY", "3.01", cid="c2")) == ("max_gross_exposure", "500", "501")
    st.apply("RiskRejected", {"instrument_id": IID, "client_order_id": "c2", "intent_id": "", "rule": "x",
                              "limit": "", "value": "", "reason": ""}, T0)
    assert accepted(cfg, st, order("SELL", "2", cid="c3"))  # reducing
    tick(st, "120", T0, ETH)
    hold_position(st, "BUY", "2", "120", ETH)  # +240: 440
    assert rejected(cfg, st, order("BUY", "1", cid="c4")) == ("max_gross_exposure", "500", "540")


def test_max_open_orders_counts_working_and_unsent():
    st = make_state()
    cfg = {"max_open_orders": 2}
    submit(st, "BUY", "1")
    assert accepted(cfg, st, order())  # 1 working + this = 2
    st.apply("RiskAccepted", {"instrument_id": IID, "client_order_id": "c1", "intent_id": "ns:7"}, T0)
    assert rejected(cfg, st, order(cid="c2")) == ("max_open_orders", "2", "3")


def test_order_rate_in_event_time():
    st = make_state()
    cfg = {"order_rate": 2, "order_rate_window": 1}
    for i, ts in enumerate((T0, T0 + S // 2)):
        st.apply("RiskAccepted", {"instrument_id": IID, "client_order_id": f"a{i}", "intent_id": "x"}, ts)
    assert rejected(cfg, st, order(), T0 + S - 1) == ("order_rate", "2", "3")
    assert accepted(cfg, st, order(cid="c2"), T0 + S)  # T0 is out of (now - 1s, now]
    assert accepted({"order_rate": 3, "order_rate_window": D("0.5")}, st, order(cid="c3"), T0 + S // 2)


# ---- order of rules ----------------------------------------------------------------------------------------------


def test_first_failing_rule_wins_in_the_documented_order():
    cfg = {"allowed_instruments": [IID, "NOPE.SIM"], "max_order_quantity": 1, "max_order_notional": 10,
           "max_position": 1, "max_gross_exposure": 1, "price_band": D("0.01"), "max_open_orders": 1,
           "order_rate": 1, "order_rate_window": 10}
    assert [r.name for r in build_rules(parse_risk_config(cfg))] == list(RULE_ORDER)
    st = make_state()
    assert rejected(cfg, st, order(qty="1.0005", price="200"))[0] == "quantity_precision"
    assert rejected(cfg, st, order(iid="NOPE.SIM"))[0] == "unknown_instrument"
    assert rejected(cfg, st, order(qty="2", price="200"))[0] == "price_band"
    assert rejected(cfg, st, order(qty="2"))[0] == "max_order_quantity"
    set_state(st, "HALTED")
    assert rejected(cfg, st, order(iid="ETH.X", qty="-1"))[0] == "trading_state"


# ---- halts -------------------------------------------------------------------------------------------------------


def halt_state(usdt: str = "10000") -> State:
    st = make_state("100", usdt)
    hold_position(st, "BUY", "10")  # equity stays 10000: 9000 USDT + 10 BTC at 100
    return st


def test_daily_loss_limit_halts_once():
    st = halt_state()
    eng = RiskEngine(parse_risk_config({"daily_loss_limit": 100}))
    tick(st, "90.01", T0 + 1)  # loss 99.9
    assert eng.evaluate(st, T0 + 1) == []
    tick(st, "90", T0 + 2)  # loss 100: the limit is reached
    events = eng.evaluate(st, T0 + 2)
    assert len(events) == 1
    name, p = events[0]
    assert name == "TradingStateChanged"
    assert p["state"] == "HALTED" and p["previous"] == "ACTIVE" and p["incident_id"] is None
    assert p["reason"].startswith("daily_loss_limit") and "9900" in p["reason"]
    st.apply(name, p, T0 + 2)
    assert eng.evaluate(st, T0 + 3) == []  # no duplicate
    tick(st, "50", T0 + 4)
    assert eng.evaluate(st, T0 + 4) == []
    assert rejected({"daily_loss_limit": 100}, st, order("SELL", "1"), T0 + 5)[:2] == ("trading_state", "HALTED")


def test_daily_loss_is_measured_from_each_days_start():
    st = halt_state()
    eng = RiskEngine(parse_risk_config({"daily_loss_limit": 100}))
    tick(st, "91", T0 + 1)  # -90
    assert eng.evaluate(st, T0 + 1) == []
    next_day = (T0 // DAY_NS + 1) * DAY_NS
    tick(st, "91", next_day)  # day start 9910
    tick(st, "82", next_day + 1)  # -90 today, -180 overall
    assert eng.evaluate(st, next_day + 1) == []
    tick(st, "81", next_day + 2)  # -100 today
    assert eng.evaluate(st, next_day + 2)[0][1]["state"] == "HALTED"


def test_max_drawdown_from_the_peak_and_from_reducing():
    st = halt_state()
    eng = RiskEngine(parse_risk_config({"max_drawdown": D("0.02")}))
    tick(st, "120", T0 + 1)  # peak 10200
    tick(st, "100", T0 + 2)  # 200 / 10200 < 0.02
    assert eng.evaluate(st, T0 + 2) == []
    set_state(st, "REDUCING")
    tick(st, "99.6", T0 + 3)  # 204 / 10200 = 0.02
    (name, p), = eng.evaluate(st, T0 + 3)
    assert (p["state"], p["previous"]) == ("HALTED", "REDUCING")
    assert p["reason"].startswith("max_drawdown") and "0.02 below the peak 10200" in p["reason"]


def test_evaluate_is_silent_without_limits_or_equity():
    st = halt_state()
    tick(st, "1", T0 + 1)
    assert RiskEngine(parse_risk_config({})).evaluate(st, T0 + 1) == []
    assert RiskEngine(parse_risk_config({"max_drawdown": D("0.1")})).evaluate(State(), T0) == []


def test_parse_and_canonical_round_trip():
    limits = parse_risk_config({"max_order_quantity": 5, "max_position": {IID: 2, "default": 10}, "order_rate": 3,
                                "order_rate_window": D("0.5"), "allowed_instruments": [IID]})
    assert limits.max_position_per_instrument == ((IID, D(2)),) and limits.max_position == 10
    assert parse_risk_config(limits.canonical()) == limits
    with pytest.raises(RiskConfigError, match="unknown key"):
        parse_risk_config({"max_exposure": 1})
    with pytest.raises(RiskConfigError, match="unknown key 'queue'"):  # the queue parses its own settings
        parse_risk_config({"queue": {"burst": 2}})
