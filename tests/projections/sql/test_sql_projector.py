"""The SQL read models on SQLite and PostgreSQL: hand-computed rows, exact decimals, resume, rebuild, follow."""
from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest
import sqlalchemy as sa
from sqlkit import BIG, accepted_by_risk, dump, fill, generate, hand_log, intent, rows, submitted

from projections.sql import models as m, projector as projector_mod
from projections.sql.models import Dec, DecimalOutOfRange, q18
from projections.sql.projector import ProjectionConflict, Projector, project
from schemas.ids import split_symbol

D = Decimal
T0 = 1_700_000_000_000_000_000


def exact(value, text: str) -> None:
    """The value is a Decimal equal to `text`, stored with exactly 18 places (same digits on both databases)."""
    assert isinstance(value, Decimal), value
    assert value == D(text), f"{value} != {text}"
    assert format(value, "f") == format(q18(D(text)), "f")


def test_hand_computed_rows(db, sql_log):
    last = hand_log(sql_log, "hand")
    result = project(sql_log, db, "hand")
    assert (result.events, result.first_seq, result.last_seq, last) == (36, 1, 39, 39)

    pos = rows(db, m.positions, "hand")
    btc = pos["BTCUSDT.SIM"]
    # buys 0.1 @ 100.1 and 0.2 @ 100.2: avg = 30.05 / 0.3 = 100.1666…, rounded half-even at 18 places
    # sell 0.2 @ 101.123456789012345678: realized (101.123456789012345678 − 100.166666666666666667) × 0.2
    #   = 0.1913580244691358022 → 0.191358024469135802
    # sell 0.4 @ 102 closes 0.1: (102 − 100.166666666666666667) × 0.1 = 0.183333333333333333; 0.3 short @ 102
    exact(btc["quantity"], "-0.3")
    exact(btc["avg_price"], "102")
    exact(btc["realized_pnl"], "0.374691357802469135")
    exact(btc["fees"], "0.320224691357802469")  # 0.1 + 0.2 + 0.020224691357802469 + 0: no float drift
    assert (btc["fee_currency"], btc["fills"], btc["last_seq"], btc["last_ts"]) == ("USDT", 4, 25, T0 + 52)
    eth = pos["ETHBTC.SIM"]
    exact(eth["quantity"], "0.1")
    exact(eth["avg_price"], "0.05")
    exact(eth["realized_pnl"], "0")
    exact(eth["fees"], "0.000000000000000001")

    bal = rows(db, m.balances, "hand")
    # 10000 − 10.01 − 0.1 − 20.04 − 0.2 + 20.224691357802469136 − 0.020224691357802469 + 40.8
    exact(bal["USDT"]["total"], "10030.654466666444666667")
    exact(bal["USDT"]["free"], "10030.654466666444666667")
    exact(bal["USDT"]["locked"], "0")
    assert (bal["USDT"]["venue"], bal["USDT"]["source"], bal["USDT"]["as_of_seq"]) == ("SIM", "reported", 2)
    exact(bal["BTC"]["total"], "-0.305")  # +0.1 +0.2 −0.2 −0.4 (BTCUSDT) − 0.1 × 0.05 (ETHBTC quote)
    exact(bal["ETH"]["total"], "0.099999999999999999")  # 0.1 bought − 1e-18 fee
    assert bal["ETH"]["source"] == "fills" and bal["ETH"]["as_of_seq"] is None
    exact(bal["XYZ"]["total"], str(BIG))  # 35 significant digits, untouched by fills

    orders = rows(db, m.orders, "hand")
    assert {k: v["status"] for k, v in orders.items()} == {
        "o1": "FILLED", "o2": "RISK_REJECTED", "o3": "FILLED", "o4": "CANCELED", "o5": "FILLED", "o6": "REJECTED",
        "e1": "FILLED"}
    o1 = orders["o1"]
    exact(o1["filled_quantity"], "0.3")
    exact(o1["avg_fill_price"], "100.166666666666666667")
    exact(o1["quantity"], "0.3")
    exact(o1["price"], "100.2")
    assert o1["trigger_price"] is None
    assert {k: o1[k] for k in ("instrument_id", "strategy_id", "venue", "side", "order_type", "time_in_force",
                               "post_only", "reduce_only", "venue_order_id", "intent_id", "created_ts",
                               "submitted_ts", "last_ts", "last_seq", "reject_code", "reject_reason")} == {
        "instrument_id": "BTCUSDT.SIM", "strategy_id": "sma_cross", "venue": "SIM", "side": "BUY",
        "order_type": "LIMIT", "time_in_force": "GTC", "post_only": False, "reduce_only": False,
        "venue_order_id": "v-o1", "intent_id": "hand:5", "created_ts": T0 + 10, "submitted_ts": T0 + 11,
        "last_ts": T0 + 14, "last_seq": 10, "reject_code": None, "reject_reason": None}
    assert (orders["o2"]["reject_code"], orders["o2"]["reject_reason"], orders["o2"]["venue"]) == (
        "RISK", "max_position: position 0.5 would exceed 0.4", None)
    exact(orders["o2"]["filled_quantity"], "0")
    assert orders["o3"]["price"] is None and orders["o3"]["order_type"] == "MARKET"
    exact(orders["o3"]["avg_fill_price"], "101.123456789012345678")
    assert (orders["o4"]["cancel_reason"], orders["o4"]["venue_order_id"], orders["o4"]["last_seq"]) == (
        "requested", "v-o4", 21)
    assert (orders["o6"]["reject_code"], orders["o6"]["reject_reason"]) == ("INSUFFICIENT_BALANCE",
                                                                            "balance 9989.85 < 500")

    fills = rows(db, m.fills, "hand")
    assert sorted(fills) == [9, 10, 16, 25, 33]
    f = fills[16]
    assert (f["trade_id"], f["client_order_id"], f["venue_order_id"], f["instrument_id"], f["side"],
            f["fee_currency"], f["liquidity_side"], f["ts_event"]) == (
        "t3", "o3", "v-o3", "BTCUSDT.SIM", "SELL", "USDT", "TAKER", T0 + 32)
    exact(f["price"], "101.123456789012345678")
    exact(f["quantity"], "0.2")
    exact(f["fee"], "0.020224691357802469")
    assert fills[9]["liquidity_side"] == "MAKER"
    exact(fills[33]["fee"], "0.000000000000000001")

    risk = rows(db, m.risk_decisions, "hand")
    assert sorted(risk) == [6, 12, 14, 18, 23, 27, 31]
    assert risk[12] == {"seq": 12, "client_order_id": "o2", "instrument_id": "BTCUSDT.SIM", "intent_id": "hand:11",
                        "decision": "REJECTED", "rule": "max_position", "limit_value": "0.4", "value": "0.5",
                        "reason": "position 0.5 would exceed 0.4", "ts_event": T0 + 20}
    assert risk[6]["decision"] == "ACCEPTED" and risk[6]["rule"] is None and risk[6]["intent_id"] == "hand:5"

    assert rows(db, m.runs, "hand") == {"r1": {
        "run_id": "r1", "mode": "BACKTEST", "strategy": "sma_cross", "params": '{"fast":"10","slow":"30"}',
        "config": '{"risk":{}}', "code_version": "abc123", "source_namespace": "src", "source_from_ts": 1000,
        "source_to_ts": 9000, "seed": 7, "started_ts": T0 + 1, "started_seq": 1, "stopped_ts": T0 + 90,
        "stopped_seq": 37, "stop_reason": "end_of_data", "events": 36}}
    inc = rows(db, m.incidents, "hand")
    assert inc["i1"] == {"incident_id": "i1", "instrument_id": "BTCUSDT.SIM", "kind": "stale_data",
                         "severity": "WARNING", "action": "ALERT", "detail": "no data for 60 s", "status": "RESOLVED",
                         "raised_ts": T0 + 80, "raised_seq": 34, "resolved_ts": T0 + 81, "resolved_seq": 35,
                         "resolution": "data resumed"}
    assert (inc["i2"]["status"], inc["i2"]["severity"], inc["i2"]["action"], inc["i2"]["resolved_ts"]) == (
        "OPEN", "CRITICAL", "HALT", None)
    assert rows(db, m.instruments, "hand")["ETHBTC.SIM"]["quote_currency"] == "BTC"
    # trailing ticks are not projected, but the checkpoint reaches the end of the log
    assert rows(db, m.checkpoint, "hand") == {"sql": {"projector": "sql", "last_seq": 39, "events": 36}}

    if db.dialect.name == "sqlite":  # stored as exact text, not REAL
        with db.connect() as conn:
            assert conn.execute(sa.text("SELECT typeof(total), total FROM balances WHERE currency = 'XYZ'")).one() \
                == ("text", "12345678901234567.123456789012345678")
            assert conn.execute(sa.text("SELECT fees FROM positions WHERE instrument_id = 'BTCUSDT.SIM'")).scalar() \
                == "0.320224691357802469"


def test_decimals_round_trip_exactly(db):
    probe = sa.Table("dec_probe", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True), sa.Column("v", Dec))
    values = {
        1: (D("0.1") + D("0.2"), "0.3"),
        2: (D("0.123456789012345678"), "0.123456789012345678"),
        3: (BIG, "12345678901234567.123456789012345678"),
        4: (D("-99999999999999999999.999999999999999999"), "-99999999999999999999.999999999999999999"),
        5: (D("-0"), "0"),
        6: (D("1E-18"), "0.000000000000000001"),
        7: (D("0.0000000000000000005"), "0"),    # half-even at the 19th place: to even (0)
        8: (D("0.0000000000000000015"), "0.000000000000000002"),
        9: ("100.10", "100.1"),
    }
    probe.create(db)
    try:
        with db.begin() as conn:
            conn.execute(probe.insert(), [{"id": k, "v": v} for k, (v, _) in values.items()])
            conn.execute(probe.insert(), [{"id": 10, "v": None}])
        with db.connect() as conn:
            got = dict(conn.execute(sa.select(probe.c.id, probe.c.v)).all())
        for k, (_, text) in values.items():
            exact(got[k], text)
            assert str(got[k]) == str(q18(D(text)))  # identical representation on both databases
        assert got[10] is None
        with pytest.raises(sa.exc.StatementError, match="does not fit NUMERIC"):
            with db.begin() as conn:
                conn.execute(probe.insert(), [{"id": 11, "v": D("1E20")}])
        with pytest.raises(sa.exc.StatementError, match="float"):
            with db.begin() as conn:
                conn.execute(probe.insert(), [{"id": 12, "v": 0.1}])
    finally:
        probe.drop(db)


def test_q18_and_symbols():
    assert str(q18(D("-0.0000000000000000001"))) == "0E-18"
    with pytest.raises(DecimalOutOfRange):
        q18(D("NaN"))
    assert split_symbol("BTCUSDT.BINANCE") == ("BTC", "USDT")
    assert split_symbol("ETHBTC.SIM") == ("ETH", "BTC")
    assert split_symbol("BTC/USDT:USDT") == ("BTC", "USDT")
    assert split_symbol("AAPL.NASDAQ") is None


def _independent_checks(db, log, ns: str) -> None:
    """Row counts and net quantities straight from the log, without the projector's fold."""
    n_fills = n_risk = 0
    coids, net = set(), {}
    for e in log.replay(ns):
        if e.name == "OrderFilled":
            n_fills += 1
            q = e.data["last_quantity"] if e.data["side"] == "BUY" else -e.data["last_quantity"]
            net[e.data["instrument_id"]] = net.get(e.data["instrument_id"], D(0)) + q
        elif e.name in ("RiskAccepted", "RiskRejected"):
            n_risk += 1
        if "client_order_id" in e.data:
            coids.add(e.data["client_order_id"])
    d = dump(db, ns)
    assert len(d["fills"]) == n_fills and len(d["risk_decisions"]) == n_risk and len(d["orders"]) == len(coids)
    assert {k: v["quantity"] for k, v in rows(db, m.positions, ns).items()} == net


def test_resume_and_rebuild_give_the_one_shot_rows(db, sql_log, monkeypatch):
    last = generate(sql_log, "gen", orders=400, seed=5, ticks_every=3)
    one = project(sql_log, db, "gen", batch_events=100_000)
    assert one.batches == 1 and one.last_seq == last
    reference = dump(db, "gen")
    _independent_checks(db, sql_log, "gen")

    rebuilt = project(sql_log, db, "gen", rebuild=True, batch_events=37)
    assert rebuilt.events == one.events and rebuilt.batches > 50
    assert dump(db, "gen") == reference

    # resume in pieces, a fresh projector (fresh memory) each time, orders evicted from the cache all along
    monkeypatch.setattr(projector_mod, "ORDER_CACHE_MAX", 40)
    Projector(db, "gen").rebuild()
    assert dump(db, "gen") == {k: [] for k in reference}
    seen = 0
    for stop in (1, 2, 3, 500, 501, 1234, last - 1, None):
        r = project(sql_log, db, "gen", to_seq=stop, batch_events=97)
        assert r.last_seq == (stop or last) and r.first_seq == seen + 1
        seen = r.last_seq
    assert dump(db, "gen") == reference
    assert project(sql_log, db, "gen").events == 0  # nothing left: a re-run is a no-op
    assert dump(db, "gen") == reference


def test_namespaces_are_independent(db, sql_log):
    hand_log(sql_log, "a")
    hand_log(sql_log, "b")
    project(sql_log, db, "a")
    project(sql_log, db, "b")
    b = dump(db, "b")
    project(sql_log, db, "a", rebuild=True)
    assert dump(db, "b") == b
    Projector(db, "a").rebuild()
    assert dump(db, "b") == b and dump(db, "a")["orders"] == []


def test_follow_folds_new_events_until_stopped(db, sql_log):
    generate(sql_log, "live", orders=50, seed=2)
    stop = threading.Event()
    box: dict = {}
    ticks: list = []

    def run() -> None:
        try:
            box["result"] = Projector(db, "live", batch_events=64).run(sql_log, follow=True, stop=stop.is_set,
                                                                       poll_interval=0.02, on_progress=ticks.append)
        except BaseException as e:  # surfaced by the assertions below
            box["error"] = e

    t = threading.Thread(target=run)
    t.start()
    try:
        with sql_log.writer("live") as w:
            for i in range(5):
                s = w.next_seq
                w.append([intent(f"f{i}", "BUY", "1", "10", 10_000 + i), accepted_by_risk(f"f{i}", s, 10_000 + i, "live"),
                          submitted(f"f{i}", "BUY", "1", "10", 10_001 + i),
                          fill(f"f{i}", f"tf{i}", "BUY", "10", "1", "0.01", 10_002 + i)])
                time.sleep(0.05)
            last = w.next_seq - 1
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and rows(db, m.checkpoint, "live").get("sql", {}).get("last_seq") != last:
            time.sleep(0.02)
    finally:
        stop.set()
        t.join(30)
    assert "error" not in box, box.get("error")
    assert box["result"].last_seq == last
    assert ticks and ticks[-1].last_seq == last and ticks[-1].rate > 0
    assert rows(db, m.orders, "live")["f4"]["status"] == "FILLED"
    followed = dump(db, "live")
    project(sql_log, db, "live", rebuild=True)
    assert dump(db, "live") == followed


def test_a_second_projector_on_the_same_namespace_fails(db, sql_log):
    hand_log(sql_log, "hand")
    first = Projector(db, "hand", batch_events=5)
    first.load()
    project(sql_log, db, "hand", to_seq=10)
    with pytest.raises(ProjectionConflict, match="another projector"):
        first.commit_batch([], 3)
    assert rows(db, m.checkpoint, "hand")["sql"]["last_seq"] == 10
