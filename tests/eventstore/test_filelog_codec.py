"""Events written to the file log come back exactly: payloads, Decimals, envelope, seq/ts/key/type."""
from __future__ import annotations

import itertools
from decimal import Decimal

import hypothesis.strategies as st
from hypothesis import HealthCheck, given, settings

from eventstore.store import Log
from eventstore.writer import Draft

_ns_counter = itertools.count()

I64 = st.integers(-(2**63), 2**63 - 1)
TEXT = st.text(max_size=30)
KEY = st.text(max_size=20)


@st.composite
def decimals(draw) -> Decimal:
    """Exact decimals that fit decimal(38, 18): up to 18 fractional digits, up to 20 integer digits."""
    places = draw(st.integers(0, 18))
    unscaled = draw(st.integers(-(10 ** (20 + places)) + 1, 10 ** (20 + places) - 1))
    return Decimal(f"{unscaled}E-{places}")  # exact: no context rounding


OPT_DEC = st.none() | decimals()
OPT_I64 = st.none() | I64


def trade() -> st.SearchStrategy:
    return st.fixed_dictionaries({
        "instrument_id": TEXT, "price": decimals(), "quantity": decimals(),
        "aggressor_side": st.sampled_from(["NO_AGGRESSOR", "BUYER", "SELLER"]), "trade_id": st.none() | TEXT,
    }).map(lambda p: ("TradeTick", p))


def bar() -> st.SearchStrategy:
    return st.fixed_dictionaries({
        "instrument_id": TEXT, "timeframe": st.sampled_from(["1m", "1h", "1d"]), "open_ts": I64,
        "open": decimals(), "high": decimals(), "low": decimals(), "close": decimals(), "volume": decimals(),
        "trades": OPT_I64,
    }).map(lambda p: ("Bar", p))


def intent() -> st.SearchStrategy:
    return st.fixed_dictionaries({
        "instrument_id": TEXT, "strategy_id": TEXT, "client_order_id": TEXT,
        "side": st.sampled_from(["BUY", "SELL"]),
        "order_type": st.sampled_from(["MARKET", "LIMIT", "STOP_MARKET", "STOP_LIMIT"]),
        "quantity": decimals(), "price": OPT_DEC, "trigger_price": OPT_DEC,
        "time_in_force": st.sampled_from(["GTC", "IOC", "FOK", "GTD", "DAY"]), "expire_ts": OPT_I64,
        "post_only": st.booleans(), "reduce_only": st.booleans(),
        "tags": st.none() | st.dictionaries(TEXT, TEXT, max_size=4),
    }).map(lambda p: ("OrderIntent", p))


def account() -> st.SearchStrategy:
    balance = st.fixed_dictionaries({"currency": TEXT, "total": decimals(), "free": decimals(), "locked": decimals()})
    return st.fixed_dictionaries({
        "venue": TEXT, "balances": st.lists(balance, max_size=4), "reported": st.booleans(),
    }).map(lambda p: ("AccountState", p))


def run_started() -> st.SearchStrategy:
    return st.fixed_dictionaries({
        "run_id": TEXT, "mode": st.sampled_from(["BACKTEST", "LIVE", "PAPER"]), "strategy": TEXT,
        "params": st.dictionaries(TEXT, TEXT, max_size=5), "config": TEXT, "code_version": TEXT,
        "source_namespace": st.none() | TEXT, "source_from_ts": OPT_I64, "source_to_ts": OPT_I64, "seed": OPT_I64,
        "source_to_seq": OPT_I64, "source_hash": st.none() | TEXT, "applied": st.none() | TEXT,
    }).map(lambda p: ("RunStarted", p))


EVENT = st.one_of(trade(), bar(), intent(), account(), run_started())
ENVELOPE = st.fixed_dictionaries({
    "ts_event": I64, "ts_init": st.none() | I64, "key": KEY, "source": TEXT,
    "causation_id": st.none() | TEXT, "correlation_id": st.none() | TEXT,
})
STEPS = st.lists(st.lists(st.tuples(EVENT, ENVELOPE), min_size=1, max_size=4), min_size=1, max_size=6)


def _copy(payload: dict) -> dict:
    return {k: ([dict(b) for b in v] if isinstance(v, list) else dict(v) if isinstance(v, dict) else v)
            for k, v in payload.items()}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow, HealthCheck.data_too_large])
@given(steps=STEPS, group=st.booleans())
def test_random_events_round_trip(tmp_path_factory, steps, group):
    root = tmp_path_factory.mktemp("codec", numbered=True)
    log = Log.open(f"file:{root}")
    ns = f"rt{next(_ns_counter)}"
    expected = []
    with log.writer(ns, fsync="never") as w:
        drafts_per_step = []
        for s in steps:
            drafts = []
            for (type_, payload), env in s:
                drafts.append(Draft(type_, _copy(payload), ts_event=env["ts_event"], key=env["key"],
                                    source=env["source"], causation_id=env["causation_id"],
                                    correlation_id=env["correlation_id"], ts_init=env["ts_init"]))
                expected.append((type_, payload, env))
            drafts_per_step.append(drafts)
        if group:
            assert w.append_steps(drafts_per_step) == 1
        else:
            firsts = [w.append(d) for d in drafts_per_step]
            assert firsts == [f + 1 for f in [0] + list(itertools.accumulate(len(d) for d in drafts_per_step))[:-1]]
    events = list(log.replay(ns))
    assert [e.seq for e in events] == list(range(1, len(expected) + 1))
    for e, (type_, payload, env) in zip(events, expected):
        assert e.name == type_
        assert e.type == log.catalog.get(type_).full_name
        assert e.ts_event == env["ts_event"]
        assert e.key == env["key"]
        data = dict(e.data)
        envelope = data.pop("envelope")
        assert data == payload  # Decimal equality: the value, whatever its exponent
        for k, v in payload.items():
            if isinstance(v, Decimal):
                assert data[k] == v and data[k].as_tuple().exponent == -18
        assert envelope["seq"] == e.seq
        assert envelope["event_id"] == f"{ns}:{e.seq}"
        assert envelope["ts_event"] == env["ts_event"]
        assert envelope["ts_init"] == (env["ts_init"] if env["ts_init"] is not None else env["ts_event"])
        assert envelope["source"] == env["source"]
        assert envelope["causation_id"] == env["causation_id"]
        assert envelope["correlation_id"] == env["correlation_id"]


def test_decimal_extremes_round_trip(file_log):
    """The largest and smallest magnitudes decimal(38, 18) holds survive exactly."""
    values = [Decimal("99999999999999999999.999999999999999999"), Decimal("-99999999999999999999.999999999999999999"),
              Decimal("0.000000000000000001"), Decimal("-0.000000000000000001"), Decimal("0"), Decimal("1E+19")]
    with file_log.writer("dec", fsync="never") as w:
        for v in values:
            w.append([Draft("TradeTick", {"instrument_id": "X", "price": v, "quantity": -v}, ts_event=1, key="X")])
    got = [(e.data["price"], e.data["quantity"]) for e in file_log.replay("dec")]
    assert got == [(v, -v) for v in values]
