"""The columns file of a source: the same rows as the log (values, exponents, order, slices), rebuilt when stale or
damaged, never read wrong; a backtest is the same byte for byte with it and without it."""
from __future__ import annotations

import hashlib
import os
import random
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from eventstore.store import Log
from eventstore.writer import Draft
from handlers.venues.sim.config import parse_venue_config
from runtime.backtest.runner import BacktestSpec, pinned, run_backtest
from runtime.replay import columns
from runtime.replay.columns import cache_dir, log_rows, source_rows

T0 = 1_700_000_000_000_000_000
MINUTE = 60_000_000_000


def define(iid: str) -> Draft:
    return Draft("InstrumentDefined", {
        "instrument_id": iid, "venue": "SIM", "symbol": iid.split(".")[0], "kind": "SPOT", "base_currency": iid[:3],
        "quote_currency": "USDT", "settlement_currency": "USDT", "price_increment": Decimal("0.01"),
        "size_increment": Decimal("0.0001"), "price_precision": 2, "size_precision": 4,
        "min_quantity": Decimal("0.0001"), "max_quantity": None, "min_notional": None, "maker_fee": Decimal("0.0002"),
        "taker_fee": Decimal("0.0005"), "multiplier": Decimal(1)}, T0, iid, "test")


def random_source(log: Log, ns: str, seed: int, *, n: int = 600, instruments: int = 2, kinds: bool = True) -> None:
    """Bars of several instruments (imported one after the other), with trades and quotes among them when `kinds`:
    nulls, prices of several decimal places, distinct trade ids."""
    rng = random.Random(seed)
    w = log.writer(ns, fsync="never")
    iids = [f"{c}USDT.SIM" for c in ("BTC", "ETH", "SOL")[:instruments]]
    w.append([define(i) for i in iids])
    for k, iid in enumerate(iids):
        price = 100_000 + 1000 * k
        steps = []
        for i in range(n):
            ts = T0 + (i + 1) * MINUTE + k
            price += rng.randint(-500, 500)
            roll = rng.random() if kinds else 0.0
            if roll < 0.7:
                places = rng.choice((0, 2, 4))
                steps.append((Draft("Bar", {
                    "instrument_id": iid, "timeframe": "1m", "open_ts": ts - MINUTE,
                    "open": Decimal(price).scaleb(-2), "high": Decimal(price + rng.randint(0, 99)).scaleb(-2),
                    "low": Decimal(price - rng.randint(0, 99)).scaleb(-2), "close": Decimal(price).scaleb(-2),
                    "volume": Decimal(rng.randint(1, 10 ** 6)).scaleb(-places),
                    "trades": rng.choice((None, rng.randint(0, 900)))}, ts, iid, "test"),))
            elif roll < 0.85:
                steps.append((Draft("TradeTick", {
                    "instrument_id": iid, "price": Decimal(price).scaleb(-2), "quantity": Decimal("0.5"),
                    "aggressor_side": rng.choice(("BUYER", "SELLER")),
                    "trade_id": rng.choice((None, f"t{i}-{k}"))}, ts, iid, "test"),))
            else:
                steps.append((Draft("QuoteTick", {
                    "instrument_id": iid, "bid_price": Decimal(price - 1).scaleb(-2), "bid_size": Decimal(2),
                    "ask_price": Decimal(price + 1).scaleb(-2), "ask_size": Decimal("1.25")}, ts, iid, "test"),))
        w.append_steps(steps)
    w.close()


def market_rows(log: Log, started: dict[str, Any]) -> tuple[Any, Any]:
    got = source_rows(log, started)
    return got.market, got.cached


def started_of(log: Log, ns: str, from_ts: int | None = None, to_ts: int | None = None) -> dict[str, Any]:
    spec = pinned(log, BacktestSpec(source=ns, strategy="sma_cross", from_ts=from_ts, to_ts=to_ts))
    return {"source_namespace": ns, "source_from_ts": from_ts, "source_to_ts": to_ts,
            "source_to_seq": spec.source_to_seq, "source_hash": spec.source_hash}


def exact(rows: Any) -> list[str]:
    """Rows as text that tells Decimal exponents apart (42.10 is not 42.1 here)."""
    return [repr(r) for r in rows]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_columns_give_the_logs_rows_exactly_for_any_slice(tmp_path: Path, seed: int) -> None:
    log = Log.open(f"file:{tmp_path}")
    random_source(log, "src", seed)
    rng = random.Random(seed)
    whole = started_of(log, "src")
    rows, cached = market_rows(log, whole)
    assert cached.state == "built"
    assert exact(rows) == exact(log_rows(log, whole))
    for _ in range(4):
        a = T0 + rng.randint(0, 500) * MINUTE
        b = a + rng.randint(10, 300) * MINUTE
        s = started_of(log, "src", a, b)
        rows, cached = market_rows(log, s)
        got = exact(rows)
        assert cached.state == "read"
        assert got == exact(log_rows(log, s, from_ts=a, to_ts=b)) and got


def test_many_distinct_strings_become_a_text_column(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(columns, "MAX_DICT", 8)
    log = Log.open(f"file:{tmp_path}")
    random_source(log, "src", 5, n=300, instruments=1)
    s = started_of(log, "src")
    rows, cached = market_rows(log, s)
    assert exact(rows) == exact(log_rows(log, s)) and cached.state == "built"
    [path] = cache_dir(log, "src").glob("market-*.cols")
    assert b'"kind": "text"' in path.read_bytes()


def test_a_damaged_file_is_rebuilt_and_never_read(tmp_path: Path) -> None:
    log = Log.open(f"file:{tmp_path}")
    random_source(log, "src", 7, kinds=False)
    s = started_of(log, "src")
    want = exact(log_rows(log, s))
    list(market_rows(log, s)[0])
    [path] = cache_dir(log, "src").glob("market-*.cols")
    data = bytearray(path.read_bytes())
    at = len(data) // 2
    data[at] ^= 0x04  # one bit of one value: a price a little off, were it read
    path.write_bytes(bytes(data))
    rows, cached = market_rows(log, s)
    assert cached.state == "built" and "damaged" in cached.detail
    assert exact(rows) == want
    path.write_bytes(path.read_bytes()[:100])  # cut short
    rows, cached = market_rows(log, s)
    assert cached.state == "built" and exact(rows) == want


def test_a_source_that_grows_gets_new_columns_and_old_runs_keep_theirs(tmp_path: Path) -> None:
    log = Log.open(f"file:{tmp_path}")
    random_source(log, "src", 8, n=200, instruments=1, kinds=False)
    before = started_of(log, "src")
    list(market_rows(log, before)[0])
    w = log.writer("src", fsync="never")
    w.append([Draft("Bar", {"instrument_id": "BTCUSDT.SIM", "timeframe": "1m", "open_ts": T0 + 500 * MINUTE,
                            "open": Decimal(1), "high": Decimal(1), "low": Decimal(1), "close": Decimal(1),
                            "volume": Decimal(1), "trades": None}, T0 + 501 * MINUTE, "BTCUSDT.SIM", "test")])
    w.close()
    after = started_of(log, "src")
    rows, cached = market_rows(log, after)
    assert cached.state == "built" and len(list(rows)) == 201
    rows, cached = market_rows(log, before)  # the pinned horizon of a run made earlier: its own file, still there
    assert cached.state == "read" and len(list(rows)) == 200
    assert len(list(cache_dir(log, "src").glob("market-*.cols"))) == 2


def test_a_value_the_columns_cannot_hold_leaves_the_source_to_the_log(tmp_path: Path) -> None:
    log = Log.open(f"file:{tmp_path}")
    random_source(log, "src", 9, n=50, instruments=1, kinds=False)
    w = log.writer("src", fsync="never")
    huge = Decimal("12345678901234567890.123456789012345678")  # 38 digits: 2^63 is far short of it in units
    w.append([Draft("Bar", {"instrument_id": "BTCUSDT.SIM", "timeframe": "1m", "open_ts": T0 + 500 * MINUTE,
                            "open": huge, "high": huge, "low": huge, "close": huge, "volume": Decimal(1),
                            "trades": None}, T0 + 501 * MINUTE, "BTCUSDT.SIM", "test")])
    w.close()
    s = started_of(log, "src")
    rows, cached = market_rows(log, s)
    assert cached.state == "uncacheable" and "64" in cached.detail
    assert exact(rows) == exact(log_rows(log, s))
    assert not list(cache_dir(log, "src").glob("market-*.cols"))


def digest(root: Path, ns: str) -> str:
    h = hashlib.sha256()
    base = root / ns
    for dirpath, dirnames, files in os.walk(base):
        dirnames.sort()
        for f in sorted(files):
            p = Path(dirpath) / f
            if p.suffix != ".lock":
                h.update(str(p.relative_to(base)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


@pytest.mark.parametrize("instruments", [1, 2])
def test_a_backtest_is_the_same_byte_for_byte_with_and_without_columns(tmp_path: Path, instruments: int) -> None:
    log = Log.open(f"file:{tmp_path}")
    random_source(log, "src", 10 + instruments, n=1500, instruments=instruments, kinds=False)
    spec = BacktestSpec(source="src", strategy="sma_cross", params={"fast": "5", "slow": "20", "quantity": "1"},
                        venue=parse_venue_config({"starting_balances": {"USDT": "1000000"}}), snapshot_every=700,
                        from_ts=T0 + 100 * MINUTE)
    seen = []
    for mode in ("log", "built", "read"):
        r = run_backtest(log, spec, run_id="bt", cache=mode != "log")
        assert r.cached.state == ("off" if mode == "log" else mode)
        seen.append((digest(tmp_path, "bt"), r.statistics, [repr(x) for x in r.curve.samples], r.curve.in_market,
                     r.events_out))
        log.delete("bt")
    assert seen[0][4] > 100  # it traded
    assert seen[0] == seen[1] == seen[2]


def test_definitions_come_from_the_file_and_a_slice_with_other_instruments_reads_the_log(tmp_path: Path) -> None:
    log = Log.open(f"file:{tmp_path}")
    random_source(log, "src", 12, n=100, instruments=1, kinds=False)
    late = define("ETHUSDT.SIM")
    w = log.writer("src", fsync="never")
    w.append([Draft(late.type, late.payload, T0 + 300 * MINUTE, late.key, "test")])
    w.append_steps([(Draft("Bar", {"instrument_id": "ETHUSDT.SIM", "timeframe": "1m", "open_ts": T0 + i * MINUTE,
                                   "open": Decimal(5), "high": Decimal(6), "low": Decimal(4), "close": Decimal(5),
                                   "volume": Decimal(1), "trades": None}, T0 + (i + 1) * MINUTE, "ETHUSDT.SIM",
                           "test"),) for i in range(110, 160)])  # ETH bars before ETH is defined: the first stream's
    w.close()
    whole = started_of(log, "src")
    got = source_rows(log, whole)
    assert got.cached.state == "built" and [d["instrument_id"] for *_, d in got.definitions] == [
        "BTCUSDT.SIM", "ETHUSDT.SIM"]
    assert exact(got.market) == exact(log_rows(log, whole))
    early = started_of(log, "src", to_ts=T0 + 200 * MINUTE)
    got = source_rows(log, early)
    assert got.cached.state == "uncacheable" and "other instruments" in got.cached.detail
    assert [d["instrument_id"] for *_, d in got.definitions] == ["BTCUSDT.SIM"]
    assert exact(got.market) == exact(log_rows(log, early, to_ts=T0 + 200 * MINUTE))
    assert exact(source_rows(log, whole).definitions) == exact(source_rows(log, whole, cache=False).definitions)
