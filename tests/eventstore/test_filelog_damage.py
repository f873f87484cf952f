"""Damage away from a torn tail: every read gives the undamaged answer or one line naming file and byte — never a
different answer — and a writer never appends to a namespace whose committed data it cannot read back."""
from __future__ import annotations

import json
import os
import random
import struct
from pathlib import Path

import pytest
from logkit import files, open_log, restore, segment, step

from eventstore import segindex
from eventstore.codec import schema_file_text
from eventstore.errors import CorruptLog, SchemaError
from eventstore.partition import Partition
from eventstore.registryfile import CONTENT
from eventstore.writer import Draft
from schemas.errors import TapeError

STEPS = 300


def _ts(s: int) -> int:
    """Event times that rise on the whole but not step by step, so the time index has work to do."""
    return 10_000 + s * 10 + (s * 7919) % 97


def _write(root: Path, steps: int = STEPS, ns: str = "ns", **options) -> Path:
    """A namespace of `steps` steps (a trade and a heartbeat each), densely indexed."""
    log = open_log(root)
    with log.writer(ns, fsync="never", index_interval=options.pop("index_interval", 256), **options) as w:
        for s in range(1, steps + 1):
            w.append(step(s, ["trade", "heartbeat"], ts=_ts(s)))
    return root / ns


def _seqs(root: Path, ns: str = "ns", **options) -> list[int]:
    return [r.seq for r in open_log(root).replay(ns, **options).records()]


def _one_line(e: BaseException, *names: object) -> str:
    text = str(e)
    assert "\n" not in text and "Traceback" not in text, text
    for name in names:
        assert str(name) in text, (name, text)
    return text


# ---- the index: checksummed, checked on use, rebuilt — never a different answer ------------------------------


def _flip_answers(root: Path, index: Path, slices: list[dict], seed: int = 5) -> list[tuple]:
    """Flip every byte of an index file in turn (a seeded random bit pattern each) and read each slice; return the
    (byte, slice, what) of every answer that differs from the undamaged one, or refusal that does not name the
    index file in one line (a read sent into the middle of a batch blames the segment: a misleading error)."""
    rng = random.Random(seed)
    want = [_seqs(root, **s) for s in slices]
    original = index.read_bytes()
    wrong = []
    try:
        for pos in range(len(original)):
            data = bytearray(original)
            data[pos] ^= rng.randrange(1, 256)
            index.write_bytes(bytes(data))
            for s, expected in zip(slices, want):
                try:
                    got = _seqs(root, **s)
                except CorruptLog as e:
                    if str(index) not in str(e) or "\n" in str(e):
                        wrong.append((pos, s, str(e)))
                    continue
                if got != expected:
                    wrong.append((pos, s, f"{len(got)} events instead of {len(expected)}"))
    finally:
        index.write_bytes(original)
    return wrong


SLICES = [{"from_ts": _ts(STEPS // 3)}, {"from_ts": _ts(2 * STEPS // 3), "types": ["TradeTick"]},
          {"from_seq": STEPS}]


def _sparse(store_dir: Path) -> Path:
    """A namespace indexed every 4 KiB (the default): a few entries, each deciding where many reads start."""
    index = segment(_write(store_dir, index_interval=4096), "market-0").with_suffix(".index")
    assert (index.stat().st_size - segindex.HEADER.size) // segindex.ENTRY.size >= 10
    return index


def test_index_byte_flips_never_change_an_answer(store_dir):
    assert _flip_answers(store_dir, _sparse(store_dir), SLICES) == []


def test_index_byte_flips_do_change_answers_when_nothing_checks_them(store_dir, monkeypatch):
    """The negative control: without the checksums and the check on use, the same flips give wrong answers."""

    def unchecked(data: bytes, base: int):
        out = segindex.Entries()
        body = data[segindex.HEADER.size:]
        n = len(body) // segindex.ENTRY.size
        for rel, pos, seq, before, batch, _crc in segindex.ENTRY.iter_unpack(body[: n * segindex.ENTRY.size]):
            out.add(base + rel, pos, seq, before, batch)
        return out, len(body) - n * segindex.ENTRY.size

    index = _sparse(store_dir)
    monkeypatch.setattr(segindex, "parse", unchecked)
    monkeypatch.setattr(Partition, "_mismatch", lambda self, seg, i: None)
    wrong = _flip_answers(store_dir, index, SLICES)
    assert any("instead of" in what for _, _, what in wrong), wrong[:5]


def test_index_of_another_segment_or_a_stale_index_is_not_trusted(store_dir):
    """An index whose every entry passes its checksum but names batches the segment does not hold at those bytes
    (a stale copy, one from before the segment was rewritten) is rebuilt from the segment."""
    nsd = _write(store_dir)
    seg = segment(nsd, "market-0")
    want = [_seqs(store_dir, **s) for s in SLICES]
    entries, _ = segindex.parse(seg.with_suffix(".index").read_bytes(), 0)
    shifted = segindex.Entries([o + 1 for o in entries.offsets], list(entries.positions), [s + 2 for s in entries.seqs],
                               [m + 10**6 for m in entries.max_before], list(entries.batch_max))
    seg.with_suffix(".index").write_bytes(segindex.encode(0, shifted))
    assert [_seqs(store_dir, **s) for s in SLICES] == want
    p = Partition(seg.parent)
    next(iter(p.batches(ts=_ts(STEPS // 2))))
    assert p.segments[0].problem and "another batch" in p.segments[0].problem


def _as_format_1(data: bytes, base: int) -> bytes:
    entries, _ = segindex.parse(data, base)
    return b"".join(struct.pack(">IIQq", o - base, p, s, m) for o, p, s, m in
                    zip(entries.offsets, entries.positions, entries.seqs, entries.max_before))


def test_format_1_indexes_are_rebuilt_not_trusted_and_the_writer_rewrites_them(store_dir):
    """Indexes written before checksums (format 1) still serve reads, by being rebuilt in memory; even a wrong
    one gives right answers. The namespace's next writer rewrites them in format 2."""
    nsd = _write(store_dir, segment_bytes=8192)
    want = {json.dumps(s): _seqs(store_dir, **s) for s in SLICES}
    for index in sorted((nsd / "market-0").glob("*.index")):
        old = bytearray(_as_format_1(index.read_bytes(), int(index.stem)))
        if len(old) >= 48:
            old[40:48] = struct.pack(">q", -(2**62))  # a wrong max time before entry 1: format 1 cannot tell
        index.write_bytes(bytes(old))
    before = files(store_dir)
    assert {json.dumps(s): _seqs(store_dir, **s) for s in SLICES} == want
    assert files(store_dir) == before  # readers rebuild in memory: they never write into a namespace
    with open_log(store_dir).writer("ns", fsync="never"):
        pass
    for index in sorted((nsd / "market-0").glob("*.index")):
        assert index.read_bytes()[:4] == segindex.MAGIC
        segindex.parse(index.read_bytes(), int(index.stem))  # whole and checksummed
    assert {json.dumps(s): _seqs(store_dir, **s) for s in SLICES} == want


def test_a_reader_never_writes_a_namespace_its_writer_is_appending_to(store_dir):
    """A damaged index met while a writer holds the namespace is rebuilt in the reader's memory; the file stays as
    it is (the writer appends to it), and the writer's next open rewrites it whole."""
    nsd = _write(store_dir)
    index = segment(nsd, "market-0").with_suffix(".index")
    log = open_log(store_dir)
    w = log.writer("ns", fsync="never", index_interval=256)
    try:
        data = bytearray(index.read_bytes())
        data[segindex.HEADER.size + 5 * segindex.ENTRY.size + 20] ^= 0x40  # entry 5's max time before
        index.write_bytes(bytes(data))
        want = [e.seq for e in log.replay("ns") if e.ts_event >= _ts(STEPS // 2)]
        assert _seqs(store_dir, from_ts=_ts(STEPS // 2)) == want
        assert index.read_bytes() == bytes(data)
        for s in range(STEPS + 1, STEPS + 40):
            w.append(step(s, ["trade", "heartbeat"], ts=_ts(s)))
        assert _seqs(store_dir, from_ts=_ts(STEPS // 2)) == [e.seq for e in log.replay("ns")
                                                              if e.ts_event >= _ts(STEPS // 2)]
    finally:
        w.close()
    with pytest.raises(segindex.IndexDamage):
        segindex.parse(index.read_bytes(), 0)
    with log.writer("ns", fsync="never"):
        pass
    segindex.parse(index.read_bytes(), 0)  # rewritten whole by the writer, which holds the lock


# ---- committed data missing: every kind of read names it ----------------------------------------------------


READS = [{}, {"from_ts": _ts(10)}, {"types": ["TradeTick"]}, {"types": ["Heartbeat"]}, {"from_seq": 20},
         {"from_ts": _ts(10), "types": ["Heartbeat"]}, {"to_seq": 2 * STEPS - 1}]


@pytest.mark.parametrize("part", ["market-0", "system-0"])
def test_a_segment_cut_in_the_middle_is_reported_by_every_read(store_dir, part):
    nsd = _write(store_dir)
    seg = segment(nsd, part)
    os.truncate(seg, seg.stat().st_size // 2)
    for options in READS:
        with pytest.raises(CorruptLog) as err:
            _seqs(store_dir, **options)
        text = _one_line(err.value, seg, "is in no partition")
        assert "byte" in text, options


def test_a_segment_cut_at_a_batch_boundary_is_reported_too(store_dir):
    """No torn batch left to notice: only the journal says those committed events existed."""
    nsd = _write(store_dir, ns="ns")
    seg = segment(nsd, "market-0")
    starts = [info.position for info, _, _, _ in Partition(seg.parent).batches()]
    os.truncate(seg, starts[len(starts) // 2])
    for options in READS:
        with pytest.raises(CorruptLog) as err:
            _seqs(store_dir, **options)
        _one_line(err.value, seg, f"byte {starts[len(starts) // 2]}")


def test_a_batch_stored_twice_is_refused(store_dir):
    nsd = _write(store_dir, steps=20)
    seg = segment(nsd, "market-0")
    data = seg.read_bytes()
    infos = [info for info, _, _, _ in Partition(seg.parent).batches()]
    b = infos[5]
    seg.write_bytes(data[: b.position + b.size] + data[b.position: b.position + b.size] + data[b.position + b.size:])
    for options in [{}, {"from_seq": 3}, {"types": ["TradeTick"]}]:
        with pytest.raises(CorruptLog) as err:
            _seqs(store_dir, **options)
        _one_line(err.value, seg, f"seq {b.first_seq} is read twice", f"byte {b.position}")


# ---- a writer never appends after committed data it cannot read back ----------------------------------------


def _cuts(nsd: Path) -> dict[str, int]:
    seg = segment(nsd, "market-0")
    infos = [info for info, _, _, _ in Partition(seg.parent).batches()]
    return {"mid-batch": seg.stat().st_size // 2 + 7, "header cut": infos[len(infos) // 2].position + 5,
            "batch boundary": infos[len(infos) // 2].position, "last batch gone": infos[-1].position}


@pytest.mark.parametrize("cut", ["mid-batch", "header cut", "batch boundary", "last batch gone"])
def test_a_writer_refuses_to_append_after_committed_data_was_cut_off(store_dir, cut):
    nsd = _write(store_dir)
    seg = segment(nsd, "market-0")
    size = _cuts(nsd)[cut]
    os.truncate(seg, size)
    before = _data_files(store_dir)
    with pytest.raises(CorruptLog) as err:
        open_log(store_dir).writer("ns", fsync="never")
    text = _one_line(err.value, seg.parent, "committed", "refuses to append")
    if cut == "mid-batch":  # the cut batch's header still names its seq: that one is named
        assert f"{seg}: the batch at byte" in text and "holds committed seq" in text, text
    assert _data_files(store_dir) == before  # nothing truncated, nothing rewritten: the evidence stays


def _data_files(root: Path) -> dict[str, bytes]:
    return {k: v for k, v in files(root).items() if not k.endswith(".lock")}


def test_a_writer_refuses_a_sealed_segment_that_lost_records(store_dir):
    nsd = _write(store_dir, segment_bytes=4096)
    sealed = sorted((nsd / "market-0").glob("*.log"))[1]
    infos = [info for info, _, base, _ in Partition(sealed.parent).batches() if base == int(sealed.stem)]
    os.truncate(sealed, infos[-1].position)  # a whole batch off the end of a sealed segment
    with pytest.raises(CorruptLog) as err:
        open_log(store_dir).writer("ns", fsync="never")
    _one_line(err.value, sealed, "record(s) are missing")


def test_a_torn_uncommitted_tail_still_recovers(store_dir):
    """The refusal is for committed data only: a crash's torn last step is cut away as before."""
    nsd = _write(store_dir, steps=10)
    log = open_log(store_dir)
    w = log.writer("ns", fsync="never")
    w.backend.journal.append = lambda records: None  # killed before its commit record
    w.append(step(11, ["trade", "heartbeat"], ts=_ts(11)))
    w.close()
    seg = segment(nsd, "market-0")
    os.truncate(seg, seg.stat().st_size - 9)  # and its market batch torn
    with log.writer("ns", fsync="never") as w:
        w.append(step(12, ["trade", "heartbeat"], ts=_ts(12)))
    assert len(_seqs(store_dir)) == 22


# ---- the registry and namespace.json ------------------------------------------------------------------------


def _registry_file(root: Path, type_name: str = "TradeTick") -> Path:
    fp = open_log(root).catalog.get(type_name).fingerprint
    return root / "ns" / "_schemas" / f"{fp:016x}.avsc"


def _reader_and_writer_refuse(root: Path, error: type, *names: object) -> None:
    with pytest.raises(error) as err:
        [e.data for e in open_log(root).replay("ns")]
    _one_line(err.value, *names)
    with pytest.raises(error) as err, open_log(root).writer("ns", fsync="never") as w:
        w.append(step(999, ["trade", "heartbeat"], ts=_ts(999)))
    _one_line(err.value, *names)


def test_a_registry_file_with_an_edited_decimal_scale_is_refused(store_dir):
    """The fingerprint leaves logical types out: the content checksum catches what the name cannot."""
    _write(store_dir, steps=5)
    path = _registry_file(store_dir)
    text = path.read_text()
    assert '"scale": 18' in text
    path.write_text(text.replace('"scale": 18', '"scale": 10', 1))
    at = len(text[: text.index('"scale": 18')].encode()) + len('"scale": 1')  # the byte the edit changed
    _reader_and_writer_refuse(store_dir, SchemaError, path, f"byte {at}")


def test_a_registry_file_from_before_content_checksums_is_held_to_todays_schema(store_dir):
    """A file written before `tape.content` is accepted on its name — unless it decodes otherwise than today's
    schema of the same fingerprint; a writer of that type seals it."""
    _write(store_dir, steps=5)
    path = _registry_file(store_dir)
    schema = json.loads(path.read_text())
    schema.pop(CONTENT)
    path.write_text(schema_file_text(schema))
    assert len(_seqs(store_dir)) == 10 and [e.data for e in open_log(store_dir).replay("ns")]
    with open_log(store_dir).writer("ns", fsync="never") as w:  # a writer of the type seals the file it agrees with
        w.append(step(6, ["trade", "heartbeat"], ts=_ts(6)))
    assert json.loads(path.read_text())[CONTENT]
    path.write_text(schema_file_text(schema).replace('"scale": 18', '"scale": 10', 1))
    with pytest.raises(SchemaError) as err:
        [e.data for e in open_log(store_dir).replay("ns")]
    _one_line(err.value, path, "decimal scale 10")


@pytest.mark.parametrize("where", ["registry", "namespace.json"])
def test_byte_flips_in_metadata_are_one_line_for_readers_and_writers(store_dir, where):
    """Every flipped byte of the file: a right answer or a one-line refusal naming it, for a reader and a writer."""
    _write(store_dir, steps=5)
    path = _registry_file(store_dir) if where == "registry" else store_dir / "ns" / "namespace.json"
    want = [(e.seq, e.data["envelope"]["event_id"]) for e in open_log(store_dir).replay("ns")]
    snapshot = files(store_dir)
    original = path.read_bytes()
    rng = random.Random(3)
    positions = range(len(original)) if len(original) < 300 else sorted(rng.sample(range(len(original)), 300))
    refused = 0
    for pos in positions:
        data = bytearray(original)
        data[pos] ^= 0xFF if pos % 2 else rng.randrange(1, 256)
        path.write_bytes(bytes(data))
        try:
            got = [(e.seq, e.data["envelope"]["event_id"]) for e in open_log(store_dir).replay("ns")]
            assert got == want, pos
        except TapeError as e:
            _one_line(e, path, "byte")
            refused += 1
        try:
            open_log(store_dir).writer("ns", fsync="never").close()
        except TapeError as e:
            _one_line(e, path, "byte")
        restore(store_dir, snapshot)
    assert refused >= len(positions) // 2


@pytest.mark.parametrize("edit, what", [
    (lambda t: t.replace('"market": 1', '"market": 0'), "not a count"),
    (lambda t: t.replace('"market"', '"markets"'), "must name the topics"),
    (lambda t: t.replace('"format": 1', '"format": 2'), "unknown format"),
    (lambda t: t.replace(", ", ",  ", 1), "not the text a writer writes"),
    (lambda t: t[:-5], "not JSON"),
])
def test_namespace_json_is_validated_and_its_damage_named(store_dir, edit, what):
    _write(store_dir, steps=3)
    path = store_dir / "ns" / "namespace.json"
    path.write_text(edit(path.read_text()))
    _reader_and_writer_refuse(store_dir, CorruptLog, path, what, "byte")


def test_namespace_json_with_fewer_partitions_than_on_disk_is_refused(store_dir):
    log = open_log(store_dir)
    with log.writer("ns", fsync="never", partitions={"market": 2, "intents": 1, "executions": 1, "system": 1}) as w:
        for s in range(1, 20):
            w.append([Draft("Heartbeat", {"component": "x"}, ts_event=s, key="k"),
                      step(s, ["trade"], key=f"K{s}")[0]])
    assert (store_dir / "ns" / "market-1").is_dir()
    path = store_dir / "ns" / "namespace.json"
    path.write_text(path.read_text().replace('"market": 2', '"market": 1'))
    _reader_and_writer_refuse(store_dir, CorruptLog, path, "market-1 exists")


def test_damage_leaves_other_namespaces_readable(store_dir):
    _write(store_dir, steps=3, ns="a")
    _write(store_dir, steps=3, ns="b")
    (store_dir / "a" / "namespace.json").write_bytes(b"\xff")
    assert open_log(store_dir).namespaces() == ["a", "b"] and len(_seqs(store_dir, "b")) == 6
