"""Slices by time and seq, type filters, partition merge and the sparse index, against brute force."""
from __future__ import annotations

import itertools
import os
from pathlib import Path

import hypothesis.strategies as st
from hypothesis import HealthCheck, given, settings
from logkit import KEYS, KINDS, check_chain, draft, open_log, segment

from eventstore.partition import INDEX, Partition
from eventstore import segindex
from eventstore.segindex import HEADER as INDEX_HEADER
from eventstore.writer import partition_for

_ns = itertools.count()
SMALL = {"segment_bytes": 4096, "index_interval": 256}
PARTS = {"market": 3, "intents": 2, "executions": 1, "system": 1}
SLOW = settings(max_examples=25, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _write(root: Path, ts_list: list[int], sizes: list[int], partitions=None) -> str:
    """One event per ts, grouped into steps of the given sizes, kinds and keys cycling; returns the namespace."""
    ns = f"s{next(_ns)}"
    kinds, keys = itertools.cycle(KINDS[:3] + ("heartbeat", "trade")), itertools.cycle(KEYS)
    with open_log(root).writer(ns, fsync="never", partitions=partitions, **SMALL) as w:
        it, s = iter(ts_list), 0
        for n in itertools.cycle(sizes):
            chunk = list(itertools.islice(it, n))
            if not chunk:
                break
            s += 1
            w.append([draft(next(kinds), s, i, len(chunk), ts, next(keys)) for i, ts in enumerate(chunk)])
    return ns


def _seqs(replay) -> list[int]:
    return [r.seq for r in replay.records()]


TS = st.lists(st.integers(0, 5_000), min_size=1, max_size=400)
BOUND = st.none() | st.integers(-10, 5_010)


@SLOW
@given(ts_list=TS, sizes=st.lists(st.integers(1, 4), min_size=1, max_size=5),
       bounds=st.lists(st.tuples(BOUND, BOUND, BOUND, BOUND), min_size=1, max_size=8))
def test_time_and_seq_slices_match_brute_force(tmp_path_factory, ts_list, sizes, bounds):
    root = tmp_path_factory.mktemp("slice")
    ns = _write(root, ts_list, sizes)
    log = open_log(root)
    everything = list(log.replay(ns))
    assert [e.ts_event for e in everything] == ts_list
    all_records = [(e.seq, e.ts_event) for e in everything]
    n = len(ts_list)
    for f_ts, t_ts, f_seq, t_seq in bounds:
        f_seq = None if f_seq is None else f_seq * n // 5_000 + 1
        t_seq = None if t_seq is None else max(t_seq * n // 5_000, 1)
        options = {"from_ts": f_ts, "to_ts": t_ts, "from_seq": f_seq, "to_seq": t_seq}
        want = [s for s, ts in all_records
                if (f_ts is None or ts >= f_ts) and (t_ts is None or ts < t_ts)
                and (f_seq is None or s >= f_seq) and (t_seq is None or s <= t_seq)]
        assert _seqs(log.replay(ns, **options)) == want, options
        for only in (["TradeTick"], ["Heartbeat", "OrderIntent"]):
            typed = [e.seq for e in everything if e.name in only and e.seq in set(want)]
            assert [e.seq for e in log.replay(ns, types=only, **options)] == typed, (only, options)


@SLOW
@given(keys=st.lists(st.sampled_from(KEYS + ("k1", "k2", "k3", "")), min_size=1, max_size=300),
       sizes=st.lists(st.integers(1, 6), min_size=1, max_size=4))
def test_multi_partition_merge_is_seq_order(tmp_path_factory, keys, sizes):
    root = tmp_path_factory.mktemp("merge")
    ns = f"m{next(_ns)}"
    with open_log(root).writer(ns, fsync="never", partitions=PARTS, **SMALL) as w:
        it, s = iter(enumerate(keys)), 0
        for n in itertools.cycle(sizes):
            chunk = list(itertools.islice(it, n))
            if not chunk:
                break
            s += 1
            w.append([draft(KINDS[j % 3], s, i, len(chunk), j, key) for i, (j, key) in enumerate(chunk)])
    log = open_log(root)
    events = list(log.replay(ns))
    assert [e.seq for e in events] == list(range(1, len(keys) + 1))
    assert [e.key for e in events] == list(keys)
    check_chain(events)
    # every event sits in the partition Kafka's partitioner picks for its key
    for topic, count in PARTS.items():
        for p in range(count):
            for r in Partition(root / ns / f"{topic}-{p}").records():
                assert partition_for(r.key, count) == p
    # slices keep the merge exact too
    mid = len(keys) // 2 + 1
    assert [e.seq for e in log.replay(ns, from_seq=mid)] == list(range(mid, len(keys) + 1))
    assert [e.seq for e in log.replay(ns, types=["TradeTick"])] == [e.seq for e in events if e.name == "TradeTick"]


def test_segments_roll_and_index_starts_reads_mid_log(store_dir):
    """Many segments; from_seq / from_ts anywhere equals brute force, and really skips the early segments."""
    ts_list = [i * 10 + (i * 7919) % 97 for i in range(1_500)]  # rising, but not monotonic
    ns = _write(store_dir, ts_list, [1, 3, 2])
    market = store_dir / ns / "market-0"
    segments = sorted(market.glob("*.log"))
    assert len(segments) >= 10 and all(s.stat().st_size <= 4096 for s in segments)
    assert all(len(s.with_suffix(".index").read_bytes()) >= INDEX.size for s in segments)
    log = open_log(store_dir)
    everything = [(e.seq, e.ts_event) for e in log.replay(ns)]
    for from_seq in (1, 2, 500, 777, 1_234, 1_500, 1_501):
        assert _seqs(log.replay(ns, from_seq=from_seq)) == [s for s, _ in everything if s >= from_seq]
    for from_ts in (0, 1, 5_000, 7_777, 14_990, 15_100):
        assert _seqs(log.replay(ns, from_ts=from_ts)) == [s for s, ts in everything if ts >= from_ts]
    # the cursor starts near the target: a late from_seq / from_ts never reads the first half of the segments
    part = Partition(market)
    middle = int(segments[len(segments) // 2].stem)
    for start in ({"seq": 1_400}, {"ts": 14_000}):
        info, _, base, chunk = next(iter(part.batches(**start)))
        assert base >= middle, start
    # and inside its segment at the index's last entry at or before the seq (segment boundaries move with the
    # envelopes' sizes from run to run, so the expected position is read from the index, not assumed)
    info, _, base, chunk = next(iter(part.batches(seq=1_400)))
    entries, _ = segindex.parse((market / f"{base:020d}.index").read_bytes(), base)
    at = [pos for pos, seq in zip(entries.positions, entries.seqs, strict=True) if seq <= 1_400]
    assert chunk + info.position == (at[-1] if at else 0) and info.first_seq <= 1_400


def test_lost_or_torn_index_files_lose_nothing(store_dir):
    """Indexes are derived data: without them (or with a torn last entry) reads and appends stay exact; the writer
    rebuilds the lost ones (a sealed segment's too)."""
    ts_list = [(i * 7919) % 10_000 for i in range(600)]
    ns = _write(store_dir, ts_list, [1, 2])
    nsd = store_dir / ns
    segment(nsd, "market-0").with_suffix(".index").unlink()  # the active segment's index is lost
    sealed = sorted((nsd / "system-0").glob("*.index"))[-2]
    sealed.unlink()
    torn = segment(nsd, "executions-0").with_suffix(".index")
    os.truncate(torn, torn.stat().st_size - 5)  # a torn index entry
    log = open_log(store_dir)
    everything = [(e.seq, e.ts_event) for e in log.replay(ns)]
    assert [ts for _, ts in everything] == ts_list

    def check() -> None:
        every = [(e.seq, e.ts_event) for e in log.replay(ns)]
        for from_seq in range(1, len(every) + 2, 37):
            assert _seqs(log.replay(ns, from_seq=from_seq)) == [s for s, _ in every if s >= from_seq], from_seq
        for from_ts in range(0, 10_001, 613):
            assert _seqs(log.replay(ns, from_ts=from_ts)) == [s for s, ts in every if ts >= from_ts], from_ts

    check()
    # the writer reopens and appends: new index entries land on whole entries, lookups stay right
    with log.writer(ns, fsync="never", **SMALL) as w:
        for s in range(1_000, 1_060):
            w.append([draft(k, s, i, 3, (s * 31) % 10_000) for i, k in enumerate(("trade", "fill", "heartbeat"))])
    check()
    for part in ("market-0", "system-0", "executions-0"):  # every index entry points at a batch of its segment
        p = Partition(nsd / part)
        starts = {(base, chunk + info.position) for info, _, base, chunk in p.batches()}
        for seg in p.segments:
            assert {(seg.base, q) for q in seg.positions} <= starts, seg.index_path
            # the writer rewrote the indexes it found lost or torn: every one whole, every entry checksummed
            assert seg.index_path.stat().st_size == INDEX_HEADER.size + len(seg.positions) * INDEX.size
            assert seg.problem is None and not seg.trusted, seg.index_path  # read from its file, as it is


def test_time_index_survives_reopening_a_fresh_segment(store_dir):
    """The time index keeps the running max ts of everything before; a writer reopened right after a roll too."""
    log = open_log(store_dir)
    opts = {"segment_bytes": 1024, "index_interval": 1}
    market = store_dir / "t" / "market-0"
    with log.writer("t", fsync="never", **opts) as w:
        w.append([draft("trade", 1, 0, 1, 1_000_000)])  # the largest ts, in the first segment
        s = 1
        while True:
            s += 1
            w.append([draft("trade", s, 0, 1, s % 100)])
            last = sorted(market.glob("*.log"))
            if len(last) >= 3 and len(list(Partition(market).batches(offset=int(last[-1].stem)))) == 1:
                break  # the last step opened a fresh segment
    for _ in range(2):  # reopen, and roll past more segments with small ts
        with log.writer("t", fsync="never", **opts) as w:
            for _ in range(20):
                s += 1
                w.append([draft("trade", s, 0, 1, s % 100)])
    everything = [(e.seq, e.ts_event) for e in log.replay("t")]
    for from_ts in (1, 50, 99, 100, 500, 1_000_000, 1_000_001):
        assert _seqs(log.replay("t", from_ts=from_ts)) == [q for q, ts in everything if ts >= from_ts], from_ts
