"""Logs for the read-model tests and the projector benchmark: a hand-made one and a generated one; row dumps."""
from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from eventstore.writer import Draft

D = Decimal
BTC = "BTCUSDT.SIM"
ETHBTC = "ETHBTC.SIM"
T0 = 1_700_000_000_000_000_000
BIG = D("12345678901234567.123456789012345678")  # 35 significant digits: SQLite REAL would lose 18 of them


def _d(type_: str, payload: dict[str, Any], ts: int, key: str = "") -> Draft:
    key = key or payload.get("instrument_id") or payload.get("run_id") or payload.get("venue") or ""
    return Draft(type_, payload, ts_event=T0 + ts, key=key, source="test")


def intent(coid: str, side: str, qty: str, price: str | None, ts: int, inst: str = BTC, otype: str = "LIMIT") -> Draft:
    return _d("OrderIntent", {"instrument_id": inst, "strategy_id": "sma_cross", "client_order_id": coid,
                              "side": side, "order_type": otype, "quantity": D(qty),
                              "price": None if price is None else D(price), "time_in_force": "GTC"}, ts)


def submitted(coid: str, side: str, qty: str, price: str | None, ts: int, inst: str = BTC,
              otype: str = "LIMIT") -> Draft:
    return _d("OrderSubmitted", {"instrument_id": inst, "client_order_id": coid, "venue": "SIM",
                                 "strategy_id": "sma_cross", "side": side, "order_type": otype, "quantity": D(qty),
                                 "price": None if price is None else D(price), "time_in_force": "GTC"}, ts)


def accepted_by_risk(coid: str, intent_seq: int, ts: int, ns: str, inst: str = BTC) -> Draft:
    return _d("RiskAccepted", {"instrument_id": inst, "client_order_id": coid, "intent_id": f"{ns}:{intent_seq}"}, ts)


def fill(coid: str, trade: str, side: str, px: str, qty: str, fee: str, ts: int, inst: str = BTC,
         fee_ccy: str = "USDT", liq: str = "TAKER") -> Draft:
    return _d("OrderFilled", {"instrument_id": inst, "client_order_id": coid, "venue_order_id": f"v-{coid}",
                              "trade_id": trade, "side": side, "last_price": D(px), "last_quantity": D(qty),
                              "fee": D(fee), "fee_currency": fee_ccy, "liquidity_side": liq}, ts)


def tick(ts: int, inst: str = BTC, px: str = "100") -> Draft:
    return _d("TradeTick", {"instrument_id": inst, "price": D(px), "quantity": D("1"), "trade_id": f"x{ts}"}, ts)


def hand_log(log: Any, ns: str = "hand") -> int:
    """The scenario whose rows tests/projections/sql/test_sql_projector.py checks by hand. Returns the last seq."""
    steps: list[list[Draft]] = [
        [  # 1..4
            _d("RunStarted", {"run_id": "r1", "mode": "BACKTEST", "strategy": "sma_cross",
                              "params": {"slow": "30", "fast": "10"}, "config": '{"risk":{}}', "code_version": "abc123",
                              "source_namespace": "src", "source_from_ts": 1000, "source_to_ts": 9000, "seed": 7}, 1),
            _d("AccountState", {"venue": "SIM", "reported": True, "balances": [
                {"currency": "USDT", "total": D("10000"), "free": D("10000"), "locked": D("0")},
                {"currency": "XYZ", "total": BIG, "free": BIG, "locked": D("0")}]}, 1),
            _d("InstrumentDefined", {
                "instrument_id": ETHBTC, "venue": "SIM", "symbol": "ETHBTC", "kind": "SPOT", "base_currency": "ETH",
                "quote_currency": "BTC", "settlement_currency": "BTC", "price_increment": D("0.000001"),
                "size_increment": D("0.0001"), "price_precision": 6, "size_precision": 4, "min_quantity": D("0.0001"),
                "maker_fee": D("0.001"), "taker_fee": D("0.001"), "multiplier": D("1")}, 1),
            tick(1),
        ],
        # o1: buy 0.3 @ limit 100.2, two fills: 0.1 @ 100.1 (fee 0.1), 0.2 @ 100.2 (fee 0.2)
        [intent("o1", "BUY", "0.3", "100.2", 10)],                      # 5
        [accepted_by_risk("o1", 5, 10, ns), submitted("o1", "BUY", "0.3", "100.2", 11),  # 6, 7
         _d("OrderAccepted", {"instrument_id": BTC, "client_order_id": "o1", "venue_order_id": "v-o1"}, 12)],  # 8
        [fill("o1", "t1", "BUY", "100.1", "0.1", "0.1", 13, liq="MAKER")],  # 9
        [fill("o1", "t2", "BUY", "100.2", "0.2", "0.2", 14)],              # 10
        # o2: sell 0.5 refused by risk
        [intent("o2", "SELL", "0.5", "101", 20),                          # 11
         _d("RiskRejected", {"instrument_id": BTC, "client_order_id": "o2", "intent_id": f"{ns}:11",   # 12
                             "rule": "max_position", "limit": "0.4", "value": "0.5",
                             "reason": "position 0.5 would exceed 0.4"}, 20)],
        # o3: sell 0.2 at market, filled at an 18-place price
        [intent("o3", "SELL", "0.2", None, 30, otype="MARKET"), accepted_by_risk("o3", 13, 30, ns),  # 13, 14
         submitted("o3", "SELL", "0.2", None, 31, otype="MARKET"),                                   # 15
         fill("o3", "t3", "SELL", "101.123456789012345678", "0.2", "0.020224691357802469", 32)],     # 16
        # o4: accepted then canceled
        [intent("o4", "BUY", "1", "99", 40), accepted_by_risk("o4", 17, 40, ns),  # 17, 18
         submitted("o4", "BUY", "1", "99", 41),                                  # 19
         _d("OrderAccepted", {"instrument_id": BTC, "client_order_id": "o4", "venue_order_id": "v-o4"}, 42),  # 20
         _d("OrderCanceled", {"instrument_id": BTC, "client_order_id": "o4", "venue_order_id": "v-o4",       # 21
                              "reason": "requested"}, 43)],
        # o5: sell 0.4 @ 102, flips the 0.1 long into a 0.3 short, no fee
        [intent("o5", "SELL", "0.4", "102", 50), accepted_by_risk("o5", 22, 50, ns),  # 22, 23
         submitted("o5", "SELL", "0.4", "102", 51), fill("o5", "t5", "SELL", "102", "0.4", "0", 52)],  # 24, 25
        # o6: the venue rejects
        [intent("o6", "BUY", "5", "100", 60), accepted_by_risk("o6", 26, 60, ns),  # 26, 27
         submitted("o6", "BUY", "5", "100", 61),                                  # 28
         _d("OrderRejected", {"instrument_id": BTC, "client_order_id": "o6", "reason_code": "INSUFFICIENT_BALANCE",
                              "reason": "balance 9989.85 < 500"}, 62)],           # 29
        # ETHBTC (defined): buy 0.1 @ 0.05, fee 0.000000000000000001 ETH
        [intent("e1", "BUY", "0.1", "0.05", 70, inst=ETHBTC), accepted_by_risk("e1", 30, 70, ns, inst=ETHBTC),  # 30, 31
         submitted("e1", "BUY", "0.1", "0.05", 71, inst=ETHBTC),                                                # 32
         fill("e1", "te1", "BUY", "0.05", "0.1", "0.000000000000000001", 72, inst=ETHBTC, fee_ccy="ETH")],      # 33
        [_d("IncidentRaised", {"incident_id": "i1", "instrument_id": BTC, "kind": "stale_data", "severity": "WARNING",  # 34
                               "detail": "no data for 60 s", "action": "ALERT"}, 80),
         _d("IncidentResolved", {"incident_id": "i1", "detail": "data resumed"}, 81),                           # 35
         _d("IncidentRaised", {"incident_id": "i2", "kind": "reject_burst", "severity": "CRITICAL",              # 36
                               "detail": "3 rejects in 1 s", "action": "HALT"}, 82)],
        [_d("RunStopped", {"run_id": "r1", "reason": "end_of_data", "events": 36}, 90)],  # 37
        [tick(91), tick(92)],  # 38, 39: not projected; the checkpoint still reaches 39
    ]
    with log.writer(ns) as w:
        w.append_steps(steps)
        return w.next_seq - 1


INSTRUMENTS = (("BTCUSDT.SIM", 50_000_00), ("ETHUSDT.SIM", 3_000_00), ("SOLUSDT.SIM", 150_00))


def generate(log: Any, ns: str, orders: int, *, seed: int = 1, ticks_every: int = 0, group: int = 500) -> int:
    """A seeded trading log: per order intent, risk verdict, submit, accept, 1–2 fills, sometimes a cancel.

    About 6 events per order. Returns the last seq.
    """
    rng = random.Random(seed)
    steps: list[list[Draft]] = [[
        _d("RunStarted", {"run_id": ns, "mode": "BACKTEST", "strategy": "gen", "params": {"seed": str(seed)},
                          "config": "{}", "code_version": "test"}, 0),
        _d("AccountState", {"venue": "SIM", "reported": False, "balances": [
            {"currency": "USDT", "total": D("1000000"), "free": D("1000000"), "locked": D("0")}]}, 0),
    ]]
    with log.writer(ns, fsync="never") as w:
        seq = w.next_seq + 2
        for i in range(orders):
            inst, mid = INSTRUMENTS[rng.randrange(len(INSTRUMENTS))]
            side = "BUY" if rng.random() < 0.5 else "SELL"
            qty = D(rng.randint(1, 5000)).scaleb(-4)
            px = D(mid + rng.randint(-5000, 5000)).scaleb(-2)
            coid = f"c{i}"
            ts = 10 * (i + 1)
            step = [intent(coid, side, str(qty), str(px), ts, inst=inst)]
            intent_seq = seq
            if rng.random() < 0.08:
                step.append(_d("RiskRejected", {"instrument_id": inst, "client_order_id": coid,
                                                "intent_id": f"{ns}:{intent_seq}", "rule": "max_order_notional",
                                                "limit": "10000", "value": str(qty * px), "reason": "too big"}, ts))
            else:
                step += [accepted_by_risk(coid, intent_seq, ts, ns, inst=inst),
                         submitted(coid, side, str(qty), str(px), ts + 1, inst=inst),
                         _d("OrderAccepted", {"instrument_id": inst, "client_order_id": coid,
                                              "venue_order_id": f"v-{coid}"}, ts + 2)]
                first = qty if rng.random() < 0.6 else (qty / 2).quantize(D("0.0001"))
                fee = (first * px * D("0.001")).quantize(D("0.00000001"))
                step.append(fill(coid, f"t{i}a", side, str(px), str(first), str(fee), ts + 3, inst=inst))
                rest = qty - first
                if rest:
                    if rng.random() < 0.5:
                        px2 = px + D(rng.randint(-100, 100)).scaleb(-2)
                        fee2 = (rest * px2 * D("0.001")).quantize(D("0.00000001"))
                        step.append(fill(coid, f"t{i}b", side, str(px2), str(rest), str(fee2), ts + 4, inst=inst))
                    else:
                        step.append(_d("OrderCanceled", {"instrument_id": inst, "client_order_id": coid,
                                                         "reason": "requested"}, ts + 4))
            if ticks_every and i % ticks_every == 0:
                step.append(tick(ts + 5, inst, str(px)))
            seq += len(step)
            steps.append(step)
            if len(steps) >= group:
                w.append_steps(steps)
                steps = []
        steps.append([_d("RunStopped", {"run_id": ns, "reason": "end_of_data", "events": seq - 1}, 10 * (orders + 2))])
        w.append_steps(steps)
        return w.next_seq - 1


def dump(engine: sa.Engine, ns: str) -> dict[str, list[tuple]]:
    """Every row of the namespace, per table, in primary-key order, without the namespace column."""
    from projections.sql import models as m

    out: dict[str, list[tuple]] = {}
    # one snapshot for every table: a commit landing between two SELECTs (a killed projector's last COMMIT can
    # still be on its way) must not show rows of one checkpoint next to the checkpoint row of another
    level = "REPEATABLE READ" if engine.dialect.name == "postgresql" else "SERIALIZABLE"
    with engine.connect().execution_options(isolation_level=level) as conn, conn.begin():
        for table in (*m.READ_MODEL_TABLES, m.checkpoint):
            cols = [c for c in table.c if c.name != "namespace"]
            pk = [c for c in table.primary_key.columns if c.name != "namespace"]
            rows = conn.execute(sa.select(*cols).where(table.c.namespace == ns).order_by(*pk)).all()
            out[table.name] = [tuple(r) for r in rows]
    return out


def rows(engine: sa.Engine, table: sa.Table, ns: str) -> dict[Any, dict[str, Any]]:
    """Rows of a table as dicts keyed by the primary key (without namespace)."""
    pk = [c.name for c in table.primary_key.columns if c.name != "namespace"]
    with engine.connect() as conn:
        result = conn.execute(sa.select(table).where(table.c.namespace == ns)).mappings().all()
    out = {}
    for r in result:
        key = r[pk[0]] if len(pk) == 1 else tuple(r[k] for k in pk)
        out[key] = {k: v for k, v in r.items() if k != "namespace"}
    return out
