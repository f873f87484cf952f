"""Snapshots: the engine's state as a versioned Avro record; latest snapshot + tail == full replay."""
from __future__ import annotations

import copy
import decimal
import random
import tempfile
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st
from snapkit import MINUTE, T0, bar, instrument, live_like, random_log, write_log

from eventstore import seek
from eventstore.catalog import Catalog
from eventstore.codec import Registry, encode_value
from eventstore.store import Log
from eventstore.writer import Draft
from handlers.strategies.market_maker import MarketMaker
from handlers.strategies.sma_cross import SmaCross
from handlers.venues.sim.config import parse_venue_config
from projections.snapshot import (
    STATE_TYPE,
    StateEncoder,
    read_snapshot,
    roundtrip,
    schema_label,
    snapshot_payload,
    state_type,
    to_record,
)
from projections.state import State
from runtime.backtest.runner import BacktestSpec, run_backtest
from runtime.replay.recovery import recover, restore

D = Decimal
CATALOG = Catalog.load()


def fold(events, state: State | None = None) -> State:
    state = state or State()
    with decimal.localcontext(prec=60):
        for name, data, ts, _ in events:
            state.apply(name, data, ts)
    return state


# ---- the property ------------------------------------------------------------------------------------------

ops_st = st.lists(st.tuples(st.integers(0, 11), st.integers(0, 1000), st.integers(0, 1000), st.integers(0, 1000)),
                  min_size=1, max_size=70)


def check_every_point(ops, every: int = 1) -> int:
    """For the log of `ops` (written and read back through the store) and every `every`-th snapshot point k: the
    state after k events, through the snapshot's Avro bytes and back, then the events after k, equals the full
    fold. Returns the number of events."""
    with tempfile.TemporaryDirectory() as tmp:
        log = Log.open(f"file:{tmp}")
        write_log(log, "ns", random_log(ops))
        events = [(e.name, e.data, e.ts_event, e.seq) for e in log.replay("ns")]
        registry = log.registry("ns")
        full = fold(events).snapshot()
        running = State()
        encoder = StateEncoder(state_type(CATALOG))
        for k in range(len(events) + 1):
            if k:
                fold(events[k - 1:k], running)
            if k % every and k != len(events):
                continue
            payload = snapshot_payload(running, CATALOG, registry, last_seq=k, max_ts=0, encoder=encoder)
            snap = read_snapshot(payload, CATALOG, registry)
            assert snap.state.snapshot() == running.snapshot()  # the bytes hold the whole state
            assert fold(events[k:], snap.state).snapshot() == full, f"snapshot at {k} of {len(events)}"
        log.close()
        return len(events)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(ops=ops_st)
def test_snapshot_at_any_point_plus_tail_equals_full_replay(ops):
    check_every_point(ops)


def _seeded_ops(n: int, seed: int) -> list[tuple[int, int, int, int]]:
    rng = random.Random(seed)
    return [(rng.randrange(12), rng.randrange(1000), rng.randrange(1000), rng.randrange(1000)) for _ in range(n)]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_long_random_logs_snapshot_anywhere(seed):
    ops = _seeded_ops(500, seed)
    names = {name for name, _, _ in random_log(ops)}
    assert {"Bar", "TradeTick", "QuoteTick", "OrderIntent", "RiskAccepted", "RiskRejected", "OrderSubmitted",
            "OrderAccepted", "OrderFilled", "OrderCanceled", "AccountState", "TradingStateChanged"} <= names
    plain = fold([(n, d, ts, 0) for n, d, ts in random_log(ops)]).snapshot()
    assert plain["orders"] and plain["portfolio"]["positions"] and plain["risk"]["sensitivities"]
    assert plain["risk"]["day"] is not None and plain["market"]["last_quote"] and plain["risk"]["pending"] is not None
    assert check_every_point(ops, every=7) > 250


# ---- through the real engine --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    log = Log.open(f"file:{tmp_path_factory.mktemp('live')}")
    engine = live_like(log, "live-mm", 400, snapshot_every=500, group=1)  # live: one commit per step
    return log, engine


def test_live_namespace_every_snapshot_plus_tail_equals_full_replay(live):
    log, engine = live
    full = recover(log, "live-mm", use_snapshots=False)
    assert full.state.snapshot() == engine.state.snapshot()  # the log rebuilds what the engine held
    snaps = [e.seq for e in log.replay("live-mm", types=["SnapshotTaken"])]
    assert len(snaps) >= 10
    for seq in snaps:
        rec = recover(log, "live-mm", snapshot_to_seq=seq)
        assert rec.snapshot_seq == seq
        assert rec.state.snapshot() == full.state.snapshot(), f"snapshot at seq {seq}"
        assert rec.last_seq == full.last_seq


def test_snapshots_are_taken_every_n_events_at_step_boundaries(live):
    log, engine = live
    events = list(log.replay("live-mm"))
    snaps = [e for e in events if e.name == "SnapshotTaken"]
    prev = 0
    for e in snaps:
        assert e.data["last_seq"] == e.seq - 1  # everything before it, nothing after
        assert e.seq - 1 - prev >= 500  # N events folded since the previous one
        prev = e.seq
        assert e.envelope["causation_id"] is None and e.envelope["source"] == "runtime"
        # its own step: the event before it closed a step (a commit boundary)
        commits = log.backend.open_reader("live-mm").commits(e.seq - 1)
        assert next(commits).last == e.seq - 1 and next(commits).first == e.seq == e.data["last_seq"] + 1
        snap = read_snapshot(e.data, log.catalog, log.registry("live-mm"))
        assert snap.max_ts == max(x.ts_event for x in events[: e.seq - 1])
        assert snap.strategy_id == "market_maker" and set(snap.strategy_state) == {"quotes"}


def test_restore_uses_the_latest_snapshot_and_folds_only_the_tail(live):
    log, engine = live
    last = [e.seq for e in log.replay("live-mm", types=["SnapshotTaken"])][-1]
    horizon = log.stats("live-mm").last_seq
    state, last_seq = restore(log, "live-mm")
    rec = recover(log, "live-mm")
    assert rec.snapshot_seq == last and rec.folded == horizon - last and rec.folded < horizon / 5
    assert last_seq == horizon and state.snapshot() == engine.state.snapshot()


def test_encoder_bytes_equal_plain_record_encoding_and_reuse_closed_orders(live):
    _, engine = live
    et = state_type(CATALOG)
    enc = StateEncoder(et)
    kw = dict(last_seq=9, max_ts=11, strategy_id="market_maker", strategy_state=engine.strategy.snapshot())
    a = enc.encode(engine.state, **kw)
    b = encode_value(et, to_record(engine.state.snapshot(), **kw))
    assert a == b
    closed = [o for o in engine.state.orders.by_id.values() if not o.is_open]
    assert closed and len(enc.closed) == len(closed)
    assert enc.encode(engine.state, **kw) == a


@pytest.mark.parametrize("strategy,params", [("sma_cross", {"fast": "3", "slow": "8", "quantity": "1"}),
                                             ("market_maker", {"spread": "0.0005", "quantity": "0.01"})])
def test_backtest_run_snapshots_restore_with_the_source_tail(tmp_path, strategy, params):
    """A run does not record its market inputs: its snapshot carries the market part, and the tail merges the run's
    events after the snapshot with the source's bars after the snapshot's last input."""
    log = Log.open(f"file:{tmp_path}")
    inst = instrument("BTCUSDT.SIM")
    px = [D(40000) + (i * 37 % 23 - 11) * D("7.5") for i in range(600)]
    write_log(log, "src", [("InstrumentDefined", inst, T0)] +
              [("Bar", bar("BTCUSDT.SIM", p, T0 + (i + 1) * MINUTE), T0 + (i + 1) * MINUTE) for i, p in enumerate(px)])
    spec = BacktestSpec(source="src", strategy=strategy, params=params, snapshot_every=97,
                        venue=parse_venue_config({"starting_balances": {"USDT": "100000", "BTC": "1"}}))
    result = run_backtest(log, spec, run_id="bt-s")
    started = next(iter(log.replay("bt-s", types=["RunStarted"]))).data
    assert '"snapshot_every":97' in started["config"]
    full = recover(log, "bt-s", use_snapshots=False)
    assert full.state.snapshot() == result.state.snapshot()
    snaps = list(log.replay("bt-s", types=["SnapshotTaken"]))
    assert len(snaps) > 5
    for e in snaps:
        rec = recover(log, "bt-s", snapshot_to_seq=e.seq)
        assert rec.snapshot.input_event_id and rec.snapshot.input_event_id.startswith("src:")
        assert rec.state.snapshot() == full.state.snapshot(), f"snapshot at seq {e.seq}"
    latest = recover(log, "bt-s")
    assert latest.folded < full.folded and latest.last_input == full.last_input == f"src:{len(px) + 1}"


# ---- the record and its schema ------------------------------------------------------------------------------


def test_state_schema_is_registered_and_named_in_snapshot_taken(live, tmp_path):
    log, _ = live
    et = log.catalog.record("EngineState")
    assert et.full_name == STATE_TYPE and et.topic == "state"
    assert et.fingerprint in log.registry("live-mm").schemas
    e = next(iter(log.replay("live-mm", types=["SnapshotTaken"])))
    assert e.data["state_schema"] == schema_label(et) == f"tape.state.EngineState@{et.fingerprint:016x}"
    assert e.data["state"][:10] == et.prefix  # single-object encoding
    from eventstore.schemacheck import check
    from schemas import SCHEMA_DIR

    result = check(log, SCHEMA_DIR)
    assert not result.problems and STATE_TYPE not in result.missing


def test_an_older_state_schema_decodes_through_resolution():
    """A snapshot written with a previous EngineState (here: without the strategy and handlers fields, which
    today's schema adds with defaults) is read with today's record through Avro schema resolution."""
    from eventstore.catalog import EventType, build_event_type

    current = CATALOG.record("EngineState")
    old_raw = copy.deepcopy(current.schema)
    old_raw["fields"] = [f for f in old_raw["fields"] if f["name"] not in ("strategy", "handlers")]
    old: EventType = build_event_type(old_raw, {}, "state")
    assert old.fingerprint != current.fingerprint
    registry = Registry()
    registry.register(old)
    state = fold([(n, d, ts, 0) for n, d, ts in random_log([(i % 12, i * 7 % 1000, i * 3 % 1000, i % 9)
                                                            for i in range(150)])])
    rec = to_record(state.snapshot(), last_seq=150, max_ts=5)
    del rec["strategy"], rec["handlers"]
    payload = {"last_seq": 150, "state_schema": schema_label(old), "state": encode_value(old, rec)}
    snap = read_snapshot(payload, CATALOG, registry)
    assert snap.strategy_state is None and snap.handlers is None and snap.last_seq == 150
    assert snap.state.snapshot() == state.snapshot()


def test_values_beyond_decimal_38_18_survive_exactly():
    state = State()
    with decimal.localcontext(prec=60):
        state.apply("InstrumentDefined", instrument("BTCUSDT.SIM"), 1)
        # the mid of a one-tick quote has 19 places; a balance of 25 integer digits; a value with 40 digits
        state.apply("QuoteTick", {"instrument_id": "BTCUSDT.SIM", "bid_price": D("0.000000000000000001"), "bid_size": D(1),
                                  "ask_price": D("0.000000000000000002"), "ask_size": D(1)}, 2)
    state.portfolio.balances["USDT"] = D("1234567890123456789012345.5")
    state.risk.peak_equity = D(1) / D(7) * D("1" + "0" * 5)
    back = roundtrip(state)
    assert back.market.last_price["BTCUSDT.SIM"] == D("0.0000000000000000015")
    assert back.portfolio.balances["USDT"] == D("1234567890123456789012345.5")
    assert back.risk.peak_equity == state.risk.peak_equity
    assert back.snapshot() == state.snapshot()


def test_strategy_state_rides_along_and_a_restored_strategy_continues_identically():
    class Ctx:
        def __init__(self):
            self.state = State()
            self.strategy_id = "s"
            self.now = 0
            self.sent = []

        def submit(self, iid, side, qty, **kw):
            self.sent.append((iid, side, qty, kw.get("price")))
            return f"c{len(self.sent)}"

        def cancel(self, iid, cid, reason=""):
            self.sent.append(("cancel", cid))

    bars = [bar("BTCUSDT.SIM", D(100) + (i * 7 % 11), 0) for i in range(60)]
    for cls, params in ((SmaCross, SmaCross.Params(fast=3, slow=7)), (MarketMaker, MarketMaker.Params())):
        a_ctx = Ctx()
        a = cls(params, a_ctx)
        for b in bars[:30]:
            a.on_bar(b)
        data = a.snapshot()
        state = State()
        payload = snapshot_payload(state, CATALOG, None, last_seq=0, max_ts=0, strategy_id=cls.name,
                                   strategy_state=data)
        snap = read_snapshot(payload, CATALOG, Registry())
        assert snap.strategy_id == cls.name
        b_ctx = Ctx()
        b_ = cls(params, b_ctx)
        b_.restore(snap.strategy_state)
        assert b_.snapshot() == data
        a_ctx.sent.clear()
        for b in bars[30:]:
            a.on_bar(b)
            b_.on_bar(b)
        assert b_ctx.sent == a_ctx.sent and b_.snapshot() == a.snapshot()


def test_strategy_snapshot_rejects_floats():
    from eventstore.errors import TapeError

    with pytest.raises(TapeError, match="float"):
        snapshot_payload(State(), CATALOG, None, last_seq=0, max_ts=0, strategy_id="x", strategy_state={"w": [1.5]})


# ---- finding the latest snapshot without reading the log ---------------------------------------------------


def test_last_event_scans_the_system_topic_backwards(tmp_path, monkeypatch):
    monkeypatch.setattr(seek, "FIRST_WINDOW", 8)
    log = Log.open(f"file:{tmp_path}")
    drafts = []
    for i in range(1, 301):
        if i % 50 == 0:
            drafts.append(Draft("Heartbeat", {"component": "x"}, T0 + i, "", "t"))
        drafts.append(Draft("Bar", bar("BTCUSDT.SIM", D(1), T0 + i), T0 + i, "BTCUSDT.SIM", "t"))
    with log.writer("ns", fsync="never") as w:
        w.append_steps([drafts[i:i + 4] for i in range(0, len(drafts), 4)])
    hb = [e for e in log.replay("ns", types=["Heartbeat"])]
    assert seek.last_event(log, "ns", "Heartbeat").seq == hb[-1].seq
    assert seek.last_event(log, "ns", "Heartbeat", before_ts=hb[2].ts_event).seq == hb[1].seq
    assert seek.last_event(log, "ns", "Heartbeat", to_seq=hb[3].seq - 1).seq == hb[2].seq
    assert seek.last_event(log, "ns", "Heartbeat", before_ts=T0) is None
    assert seek.last_event(log, "ns", "SnapshotTaken") is None


def test_snapshots_off_by_default_for_the_engine_and_zero_means_none(tmp_path):
    log = Log.open(f"file:{tmp_path}")
    live_like(log, "off", 50, snapshot_every=0)
    assert not list(log.replay("off", types=["SnapshotTaken"]))
    assert Path(tmp_path).exists()
