"""Torn tails: a crash can cut the last write anywhere; recovery delivers whole committed steps and goes on."""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest
from logkit import KINDS, check_chain, files, open_log, restore, segment, step, steps_of

from eventstore.partition import Partition

N = 5


def _write_template(root: Path, kinds, index_interval: int, steps: int = N) -> list[dict[str, int]]:
    """Write `steps` steps; return, after each step, the size of every segment file touched."""
    log = open_log(root)
    sizes = []
    with log.writer("ns", fsync="never", index_interval=index_interval) as w:
        for s in range(1, steps + 1):
            w.append(step(s, KINDS if s == 1 else kinds))  # step 1 registers every type and creates every partition
            sizes.append({p.parent.name: p.stat().st_size for p in (root / "ns").glob("*/*.log")})
    return sizes


def _present_seqs(ns_dir: Path) -> set[int]:
    """Seqs in every valid batch on disk, committed or not (a torn tail ends the scan quietly)."""
    return {r.seq for d in ns_dir.iterdir() if d.is_dir() and not d.name.startswith("_") for r in Partition(d).records()}


def _check_recovery(root: Path, committed_steps: list[int], index_interval: int) -> None:
    log = open_log(root)
    before = list(log.replay("ns"))
    assert [s for s, _ in steps_of(before)] == committed_steps
    check_chain(before)
    present = _present_seqs(root / "ns")
    with log.writer("ns", fsync="never", index_interval=index_interval) as w:
        first = w.append(step(99))
        second = w.append(step(100, ["trade"]))
    assert first > max(present | {e.seq for e in before})
    after = list(log.replay("ns"))
    assert [s for s, _ in steps_of(after)] == committed_steps + [99, 100]
    assert [e.value for e in after[: len(before)]] == [e.value for e in before]
    new = after[len(before)]
    assert new.seq == first and after[-1].seq == second == first + len(KINDS)
    previous = hashlib.sha256(before[-1].value).digest() if before else b""
    assert new.envelope["prev_hash"] == previous
    check_chain(after)


@pytest.mark.parametrize("index_interval", [1, 4096])
@pytest.mark.parametrize("torn", ["market-0", "system-0", "_commits"])
def test_torn_tail_at_every_byte(tmp_path, torn, index_interval):
    """Cut the last step's write at every byte of its batch in one file; later files never got their write."""
    kinds = ["trade", "heartbeat"]  # market-0 is written first, then system-0, then the commit
    template = tmp_path / "template"
    sizes = _write_template(template, kinds, index_interval)
    order = ["market-0", "system-0", "_commits"]
    before_last, last = sizes[-2], sizes[-1]
    batch = last[torn] - before_last[torn]
    assert batch > 0
    snapshot = files(template)
    ns = template / "ns"
    for k in range(1, batch + 1):
        for name in order[order.index(torn):]:
            size = last[name] - k if name == torn else before_last[name]
            os.truncate(segment(ns, name), size)
        _check_recovery(template, list(range(1, N)), index_interval)
        restore(template, snapshot)


@pytest.mark.parametrize("torn", ["market-0", "_commits"])
def test_torn_tail_across_segment_roll(tmp_path, torn):
    """With tiny segments the torn batch is the first of a fresh segment; earlier sealed segments stay whole."""
    kinds = ["trade", "heartbeat"]
    template = tmp_path / "template"
    log = open_log(template)
    ns = template / "ns"
    with log.writer("ns", fsync="never", segment_bytes=1024, index_interval=256) as w:
        s = 0
        while s < 500:
            s += 1
            w.append(step(s, KINDS if s == 1 else kinds))
            if s > 3 and len(list((ns / torn).glob("*.log"))) >= 3 and segment(ns, torn).stat().st_size > 0:
                last_seg = segment(ns, torn)
                if last_seg.stat().st_size < 400:  # the last step opened this segment
                    break
    steps_total = s
    sizes_last = {n: segment(ns, n).stat().st_size for n in ("market-0", "system-0", "_commits")}
    assert sizes_last[torn] < 400  # the last step opened the last segment
    for k in range(1, sizes_last[torn] + 1, 7):
        root = tmp_path / f"k{k}"
        shutil.copytree(template, root)
        os.truncate(segment(root / "ns", torn), sizes_last[torn] - k)
        if torn == "market-0":
            # the later writes of that step never happened
            for name in ("system-0", "_commits"):
                p = segment(root / "ns", name)
                os.truncate(p, p.stat().st_size - _last_batch_size(p))
        _check_recovery(root, list(range(1, steps_total)), 256)
        shutil.rmtree(root)


def _last_batch_size(path: Path) -> int:
    part = Partition(path.parent)
    infos = [(info.size) for info, _, base, _ in part.batches() if base == int(path.stem)]
    return infos[-1]


def test_batches_larger_than_a_read_chunk_and_straddling_chunks(store_dir):
    """Reads go in 4 MiB chunks: a batch bigger than a chunk, and batches across chunk borders, read whole."""
    from decimal import Decimal

    from eventstore.partition import CHUNK
    from eventstore.writer import Draft

    def tick(s: int, size: int) -> Draft:
        return Draft("TradeTick", {"instrument_id": "X", "price": Decimal(s), "quantity": Decimal(1),
                                   "trade_id": f"s{s}/0/1" + "x" * size}, ts_event=s, key="X")

    log = open_log(store_dir)
    sizes = [1000] * 3 + [CHUNK + 12345] + [300_001] * 20 + [CHUNK * 2]
    with log.writer("ns", fsync="never") as w:
        for s, size in enumerate(sizes, 1):
            w.append([tick(s, size)])
    seg = segment(store_dir / "ns", "market-0")
    assert seg.stat().st_size > 3 * CHUNK
    events = list(log.replay("ns"))
    assert [len(e.data["trade_id"]) - len(f"s{e.seq}/0/1") for e in events] == sizes
    check_chain(events)
    # the last, huge batch torn: recovery drops exactly it
    os.truncate(seg, seg.stat().st_size - CHUNK)
    journal = segment(store_dir / "ns", "_commits")
    os.truncate(journal, journal.stat().st_size - _last_batch_size(journal))  # its commit was never written
    assert [e.seq for e in log.replay("ns")] == list(range(1, len(sizes)))
    with log.writer("ns", fsync="never") as w:
        assert w.append([tick(99, 10)]) == len(sizes)  # seq 25 was cut away with its batch: free again
    check_chain(list(log.replay("ns")))
