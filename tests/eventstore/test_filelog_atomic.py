"""A step spans several topics; torn anywhere before its commit record, no reader ever sees any of it."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from logkit import check_chain, open_log, segment, step, steps_of

from eventstore.partition import Partition

ORDER = ["market-0", "intents-0", "executions-0", "system-0", "_commits"]  # the order a KINDS step is written


def _sizes(ns: Path) -> dict[str, int]:
    return {name: segment(ns, name).stat().st_size for name in ORDER}


def _tear(ns: Path, before: dict[str, int], kept: int, partial: int = 0) -> None:
    """Undo the last step's writes after the first `kept` files; `partial` bytes of the next one stay (torn)."""
    for j, name in enumerate(ORDER[kept:]):
        os.truncate(segment(ns, name), before[name] + (partial if j == 0 else 0))


def _torn_seqs(ns: Path, committed: set[int]) -> set[int]:
    return {r.seq for name in ORDER[:-1] for r in Partition(ns / name).records()} - committed


@pytest.mark.parametrize("kept", [1, 2, 3, 4])
def test_step_torn_before_its_commit_is_never_delivered(store_dir, kept):
    log = open_log(store_dir)
    ns = store_dir / "ns"
    with log.writer("ns", fsync="never") as w:
        for s in (1, 2):
            w.append(step(s))
        before = _sizes(ns)
        torn_first = w.append(step(3, ts=5_000))
    _tear(ns, before, kept, partial=17 if kept < 4 else 0)
    committed = {e.seq for e in log.replay("ns")}
    torn = _torn_seqs(ns, committed)
    assert torn == set(range(torn_first, torn_first + kept))  # the first `kept` events' batches survived whole

    def delivered(**options) -> list:
        return list(log.replay("ns", **options))

    for rnd in range(3):
        for options in ({}, {"from_seq": torn_first}, {"from_ts": 5_000}, {"types": ["TradeTick"]},
                        {"types": ["Heartbeat", "OrderFilled"]}, {"from_seq": torn_first, "to_seq": torn_first + 3}):
            events = delivered(**options)
            assert not {e.seq for e in events} & torn, (options, rnd)
            assert all(e.ts_event != 5_000 for e in events), options
        everything = delivered()
        assert [s for s, _ in steps_of(everything)] == [1, 2] + [10 + r for r in range(rnd)]
        check_chain(everything)
        # the writer resumes, and appends more: fresh seqs after every seq the torn step left on disk
        with log.writer("ns", fsync="never") as w:
            assert w.next_seq > max(torn)
            first = w.append(step(10 + rnd))
        assert first > max(torn)


def test_two_torn_steps_in_a_row_keep_seqs_fresh(store_dir):
    """Crash 1 leaves a whole uncommitted batch; crash 2 tears the next batch of that partition mid-write."""
    log = open_log(store_dir)
    ns = store_dir / "ns"
    with log.writer("ns", fsync="never", index_interval=1) as w:
        for s in (1, 2, 3):
            w.append(step(s))
        before = _sizes(ns)
        w.append(step(4, ts=4_444))
    _tear(ns, before, kept=1)  # step 4: only its market batch made it
    torn = _torn_seqs(ns, {e.seq for e in log.replay("ns")})
    assert len(torn) == 1
    with log.writer("ns", fsync="never", index_interval=1) as w:
        before = _sizes(ns)
        first5 = w.append(step(5, ts=5_555))
    assert first5 > max(torn)
    _tear(ns, before, kept=0, partial=30)  # step 5: its market batch is cut 30 bytes in
    with log.writer("ns", fsync="never", index_interval=1) as w:
        assert w.next_seq > max(torn)
        w.append(step(6))
    events = list(log.replay("ns"))
    assert [s for s, _ in steps_of(events)] == [1, 2, 3, 6]
    assert not {e.seq for e in events} & torn
    assert all(e.ts_event not in (4_444, 5_555) for e in events)
    check_chain(events)
    seqs = [r.seq for r in Partition(ns / "market-0").records()]
    assert len(seqs) == len(set(seqs)), f"a seq was used twice in market-0: {seqs}"
