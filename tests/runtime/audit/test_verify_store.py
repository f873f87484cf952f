"""`tape audit verify` over the whole store of a namespace: each kind of damage reported with its file and byte
offset (exit 1), notes for what a crash or an older format leaves (exit 0), and exit 0 on an intact store."""
from __future__ import annotations

import json
import os
import struct
import sys
import threading
import zlib
from decimal import Decimal
from pathlib import Path

from typer.testing import CliRunner

from eventstore import segindex
from eventstore.partition import Partition
from eventstore.writer import Draft
from runtime.audit.integrity import verify
from runtime.cli.app import app

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "eventstore"))
import logkit  # the helpers of the file-log tests


def _tape(store: Path, *args: str):
    return CliRunner().invoke(app, ["--store", f"file:{store}", *args])


def _build(root: Path, steps: int = 120, **options) -> Path:
    """A namespace of marked steps over the four topics, densely indexed."""
    log = logkit.open_log(root)
    with log.writer("ns", fsync="never", index_interval=options.pop("index_interval", 256), **options) as w:
        for s in range(1, steps + 1):
            w.append(logkit.step(s, ts=1_000 + (s * 37) % 500))
    return root / "ns"


def _verify(root: Path):
    r = _tape(root, "audit", "verify", "ns")
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert "Traceback" not in r.output
    return r


def _damaged(root: Path, path: Path, byte: int | None, *words: str) -> str:
    r = _verify(root)
    assert r.exit_code == 1, r.output
    where = f"DAMAGE {path} byte {byte}" if byte is not None else f"DAMAGE {path} byte"
    line = next((x for x in r.stdout.splitlines() if x.startswith(where)), None)
    assert line is not None, (where, r.stdout)
    for w in words:
        assert w in line, (w, line)
    findings = json.loads(_tape(root, "audit", "verify", "ns", "--json").stdout)["findings"]
    assert any(f["file"] == str(path) and f["damage"] for f in findings)
    return line


def _index(nsd: Path, part: str = "market-0") -> Path:
    return logkit.segment(nsd, part).with_suffix(".index")


def test_an_intact_store_verifies_with_exit_0(tmp_path: Path) -> None:
    _build(tmp_path, segment_bytes=4096)
    r = _verify(tmp_path)
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("OK ns: 480 events, 120 commits, 0 torn steps")
    assert json.loads(_tape(tmp_path, "audit", "verify", "ns", "--json").stdout)["findings"] == []


def test_a_flipped_index_byte_is_named_at_its_entry(tmp_path: Path) -> None:
    index = _index(_build(tmp_path))
    data = bytearray(index.read_bytes())
    entry = 7
    data[segindex.HEADER.size + entry * segindex.ENTRY.size + 13] ^= 0x10
    index.write_bytes(bytes(data))
    _damaged(tmp_path, index, segindex.HEADER.size + entry * segindex.ENTRY.size, f"entry {entry} fails its checksum")


def test_a_wrong_index_entry_with_a_good_checksum_is_named(tmp_path: Path) -> None:
    """An entry rewritten consistently (checksum recomputed) but with a wrong running max time: only the segments
    can tell, and verify reads them."""
    index = _index(_build(tmp_path))
    entries, _ = segindex.parse(index.read_bytes(), 0)
    last = len(entries) - 1
    entries.max_before[last] += 1  # still in order with the entry before it: the file alone cannot tell
    index.write_bytes(segindex.encode(0, entries))
    segindex.parse(index.read_bytes(), 0)
    _damaged(tmp_path, index, segindex.HEADER.size + last * segindex.ENTRY.size, "wrong max time before")


def test_a_missing_index_is_named(tmp_path: Path) -> None:
    index = _index(_build(tmp_path), "system-0")
    index.unlink()
    _damaged(tmp_path, index, 0, "missing", "rebuilds it in memory")


def test_a_format_1_index_is_a_note_not_damage(tmp_path: Path) -> None:
    index = _index(_build(tmp_path))
    entries, _ = segindex.parse(index.read_bytes(), 0)
    index.write_bytes(b"".join(struct.pack(">IIQq", o, p, s, m) for o, p, s, m in
                               zip(entries.offsets, entries.positions, entries.seqs, entries.max_before)))
    r = _verify(tmp_path)
    assert r.exit_code == 0, r.output
    assert f"note {index} byte 0: format 1" in r.stdout and r.stdout.splitlines()[-1].startswith("OK ns:")


def test_a_corrupt_batch_is_named_and_the_rest_still_checked(tmp_path: Path) -> None:
    nsd = _build(tmp_path)
    seg = logkit.segment(nsd, "intents-0")
    infos = [info for info, _, _, _ in Partition(seg.parent).batches()]
    data = bytearray(seg.read_bytes())
    data[infos[4].position + 60] ^= 0x01
    seg.write_bytes(bytes(data))
    index = _index(nsd)
    idx = bytearray(index.read_bytes())
    idx[-3] ^= 0x01
    index.write_bytes(bytes(idx))
    _damaged(tmp_path, seg, infos[4].position, "corrupt batch", "checksum mismatch")
    _damaged(tmp_path, index, len(idx) - segindex.ENTRY.size, "fails its checksum")  # found after it, elsewhere


def test_a_segment_cut_in_the_middle_is_named(tmp_path: Path) -> None:
    nsd = _build(tmp_path)
    seg = logkit.segment(nsd, "market-0")
    infos = [info for info, _, _, _ in Partition(seg.parent).batches()]
    cut = infos[60].position + 40  # inside a batch, past the part of its header that names its seq
    os.truncate(seg, cut)
    _damaged(tmp_path, seg, infos[60].position, f"ends at byte {cut}", "committed data was cut off")
    r = _verify(tmp_path)
    assert "missing event" in r.stdout and f"{seg} byte {infos[60].position}" in r.stdout


def test_a_sealed_segment_that_lost_its_last_batch_is_named(tmp_path: Path) -> None:
    nsd = _build(tmp_path, segment_bytes=4096)
    sealed = sorted((nsd / "market-0").glob("*.log"))[2]
    infos = [info for info, _, base, _ in Partition(sealed.parent).batches() if base == int(sealed.stem)]
    os.truncate(sealed, infos[-1].position)
    _damaged(tmp_path, sealed, infos[-1].position, "record(s) missing")


def test_a_journal_cut_short_is_named_where_the_orphaned_batches_are(tmp_path: Path) -> None:
    nsd = _build(tmp_path)
    journal = logkit.segment(nsd, "_commits")
    infos = [info for info, _, _, _ in Partition(journal.parent).batches()]
    os.truncate(journal, infos[100].position)  # the last 20 commit records gone, their batches still there
    market = logkit.segment(nsd, "market-0")
    first = next(info for info, _, _, _ in Partition(market.parent).batches() if info.first_seq > infos[99].last_seq)
    _damaged(tmp_path, market, first.position, "past the journal's last commit", "commit records were lost")


def test_a_registry_file_with_an_edited_scale_is_named(tmp_path: Path) -> None:
    nsd = _build(tmp_path, steps=3)
    fp = logkit.catalog().get("TradeTick").fingerprint
    reg = nsd / "_schemas" / f"{fp:016x}.avsc"
    text = reg.read_text()
    reg.write_text(text.replace('"scale": 18', '"scale": 10', 1))
    at = len(text[: text.index('"scale": 18')].encode()) + len('"scale": 1')
    _damaged(tmp_path, reg, at, "does not match its checksum")
    r = _verify(tmp_path)
    assert "BROKEN ns: schema registry" in r.stdout  # and nothing is decoded with it


def test_a_flipped_registry_byte_is_named(tmp_path: Path) -> None:
    nsd = _build(tmp_path, steps=3)
    reg = sorted((nsd / "_schemas").glob("*.avsc"))[1]
    data = bytearray(reg.read_bytes())
    data[77] ^= 0xFF
    reg.write_bytes(bytes(data))
    _damaged(tmp_path, reg, 77, "not UTF-8")


def test_a_flipped_namespace_json_byte_is_named(tmp_path: Path) -> None:
    nsd = _build(tmp_path, steps=3)
    meta = nsd / "namespace.json"
    data = bytearray(meta.read_bytes())
    data[20] ^= 0xFF
    meta.write_bytes(bytes(data))
    _damaged(tmp_path, meta, 20, "not UTF-8")
    assert "BROKEN ns: unreadable namespace" in _verify(tmp_path).stdout


def test_a_partition_count_the_records_were_not_written_with_is_named(tmp_path: Path) -> None:
    """namespace.json edited to a count that is valid JSON and matches the directories: the keys tell."""
    log = logkit.open_log(tmp_path)
    with log.writer("ns", fsync="never", partitions={"market": 2, "intents": 1, "executions": 1, "system": 1}) as w:
        for s in range(1, 30):
            w.append([Draft("TradeTick", {"instrument_id": f"K{s}", "price": Decimal(1), "quantity": Decimal(1),
                                           "trade_id": str(s)},
                            ts_event=s, key=f"K{s}")])
    meta = tmp_path / "ns" / "namespace.json"
    meta.write_text(meta.read_text().replace('"market": 2', '"market": 3'))
    assert {e.seq for e in log.replay("ns")} == set(range(1, 30))  # readers see nothing wrong
    line = _damaged(tmp_path, logkit.segment(tmp_path / "ns", "market-0"), None, "belongs in partition")
    assert "of 3" in line


def test_a_record_altered_with_its_crc_fixed_is_named_at_its_batch(tmp_path: Path) -> None:
    """The chain walk's break names the batch the record is in (file and byte) as well as its seq."""
    nsd = _build(tmp_path, steps=10)
    seg = logkit.segment(nsd, "executions-0")
    infos = [info for info, _, _, _ in Partition(seg.parent).batches()]
    data = bytearray(seg.read_bytes())
    b = infos[5]
    at = data.index(b"s6/", b.position)
    data[at] ^= 0x01
    length = struct.unpack_from(">I", data, b.position)[0]
    struct.pack_into(">I", data, b.position + 4, zlib.crc32(bytes(data[b.position + 8: b.position + 4 + length])))
    seg.write_bytes(bytes(data))
    r = _verify(tmp_path)
    assert r.exit_code == 1 and f"{seg} byte {b.position}" in r.stdout, r.stdout


def test_verify_while_a_writer_appends_finds_no_damage(tmp_path: Path) -> None:
    """Index before segment, partitions before journal: what a writer appends meanwhile is never taken for damage."""
    _build(tmp_path, steps=20)
    log = logkit.open_log(tmp_path)
    stop = threading.Event()
    written = []

    def append() -> None:
        with log.writer("ns", fsync="never", index_interval=64, segment_bytes=8192) as w:
            s = 1_000
            while not stop.is_set():
                s += 1
                w.append(logkit.step(s, ts=2_000 + s))
                written.append(s)

    thread = threading.Thread(target=append)
    thread.start()
    try:
        for _ in range(15):
            res = verify(logkit.open_log(tmp_path), "ns")
            assert res.ok, ([f.text() for f in res.damage], res.brk)
    finally:
        stop.set()
        thread.join()
    assert len(written) > 20
    assert verify(logkit.open_log(tmp_path), "ns").ok
