"""Every file of a file namespace held to what its writer wrote: `tape audit verify`'s look at the store itself.

Each finding names a file and a byte offset. What each file is held to:

* `namespace.json` — the metadata checks (nsmeta.py), and every record's key must hash to the partition it is in;
* `_schemas/*.avsc` — the registry checks (registryfile.py), and today's schema of the same fingerprint must decode
  alike (a file from before content checksums is a note: accepted on its name);
* every segment of every partition and of the journal, read whole: each batch's framing and CRC, records that
  agree with their batch header, offsets contiguous from the segment's base and across segments, seqs
  increasing; a sealed segment ends on a whole batch; the active one may end in a batch a crash tore (a note),
  unless that batch holds a committed seq;
* every index: its format and checksums, and every entry against the batch it names — offset, first seq, the
  batch's max time, and the running max time before it, recomputed from the segments;
* the journal: commit records well formed and in order, no batch across two commits, and no partition holding
  more than one batch past the last commit (commit records lost: a cut journal, or a power loss under
  fsync=interval or never).

Completeness of each committed range and the hash chain are the chain walk's (runtime/audit/integrity.py).
"""
from __future__ import annotations

import json
import struct
from bisect import bisect_right
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any, Callable

from eventstore import segindex
from eventstore.batch import MAGIC, Bad, BatchInfo, Torn, iter_records, parse_header
from eventstore.catalog import Catalog
from eventstore.compat import can_read
from eventstore.nsmeta import NAME as META_NAME, counts_on_disk, meta_problem
from eventstore.registryfile import SUFFIX, RegistryDamage, read_registry_file
from eventstore.segindex import MIN_TS, IndexDamage
from eventstore.writer import partition_for

DERIVED = "derived data: every read rebuilds it in memory and the namespace's next writer rewrites it"
RESTORE = "restore the namespace from a copy"
COMMITS = "_commits"
_COMMIT_SIZE = 40
_FIRST = struct.Struct(">Q")
_FIRST_AT = 21  # a batch header's first seq: after length, crc, magic, base offset and count


@dataclass(frozen=True)
class Finding:
    """One thing wrong (damage) or worth knowing (a note) about a file of the store, where it shows."""

    path: Path
    byte: int
    what: str
    fix: str
    damage: bool = True

    def text(self) -> str:
        """One line: DAMAGE or note, file, byte, what, and what to do."""
        return f"{'DAMAGE' if self.damage else 'note'} {self.path} byte {self.byte}: {self.what}; {self.fix}"

    def as_dict(self) -> dict[str, Any]:
        return {"file": str(self.path), "byte": self.byte, "what": self.what, "fix": self.fix, "damage": self.damage}


@dataclass
class _Cut:
    """The active segment's tail torn inside a batch: where, and the first seq its header still names."""

    path: Path
    position: int
    size: int
    first_seq: int | None


class _Walk:
    """One partition's segments read whole, batch by batch, with what the index checks need."""

    def __init__(self, path: Path, out: list[Finding], on_batch: Callable[[Path, int, BatchInfo, list], None]):
        self.path = path
        self.out = out
        self.on_batch = on_batch
        self.cut: _Cut | None = None
        self.batches: list[tuple[Path, int, BatchInfo]] = []

    def run(self) -> None:
        segs = sorted(self.path.glob("*.log"))
        expected: int | None = None
        prev: tuple[Path, int] | None = None  # the segment before and where its batches end
        prev_seq = 0
        running = MIN_TS
        for k, seg in enumerate(segs):
            try:
                base = int(seg.stem)
            except ValueError:
                self.out.append(Finding(seg, 0, "not a segment name (20 digits: its base offset)", RESTORE))
                continue
            sealed = k < len(segs) - 1
            if expected is not None and prev is not None and base != expected:
                self.out.append(Finding(prev[0], prev[1], f"the sealed segment ends after offset {expected - 1}, but "
                                        f"the next one ({seg.name}) starts at offset {base}: {abs(base - expected)} "
                                        f"record(s) {'missing' if base > expected else 'overlap'}", RESTORE))
            expected = base
            try:  # the index before its segment: a writer appends a batch, then its entry
                index = seg.with_suffix(".index").read_bytes()
            except FileNotFoundError:
                index = None
            data = seg.read_bytes()
            starts: dict[int, tuple[BatchInfo, int]] = {}
            p, whole = 0, True
            while p < len(data):
                try:
                    info = parse_header(data, p, len(data))
                except Torn:
                    if sealed:
                        self.out.append(Finding(seg, p, "a batch cut short in a sealed segment", RESTORE))
                    else:
                        head = data[p:p + _FIRST_AT + 8]
                        named = len(head) == _FIRST_AT + 8 and head[8] == MAGIC
                        first = _FIRST.unpack_from(head, _FIRST_AT)[0] if named else None
                        self.cut = _Cut(seg, p, len(data), first or None)
                    break
                except Bad as e:
                    self.out.append(Finding(seg, p, f"corrupt batch ({e}): nothing after it can be read", RESTORE))
                    whole = False
                    break
                if info.base_offset != expected:
                    self.out.append(Finding(seg, p, f"the batch has offset {info.base_offset}, expected {expected}: "
                                            f"records are missing or repeated before it", RESTORE))
                if info.first_seq <= prev_seq:
                    self.out.append(Finding(seg, p, f"the batch starts at seq {info.first_seq}, not after seq "
                                            f"{prev_seq}: seqs must increase", RESTORE))
                records = list(iter_records(data, info))
                self._frame(seg, p, info, records)
                starts[p] = (info, running)
                self.batches.append((seg, p, info))
                self.on_batch(seg, p, info, records)
                running = max(running, info.max_ts)
                prev_seq = max(prev_seq, info.last_seq)
                expected = info.base_offset + info.count
                p += info.size
            _check_index(seg, base, index, starts, p, whole, self.out)
            prev = (seg, p)
            if not whole:
                expected = None

    def _frame(self, seg: Path, p: int, info: BatchInfo, records: list) -> None:
        seqs = [r.seq for r in records]
        if (len(records) != info.count or not records or seqs[0] != info.first_seq or seqs[-1] != info.last_seq
                or any(b <= a for a, b in pairwise(seqs)) or max(r.ts for r in records) != info.max_ts):
            self.out.append(Finding(seg, p, "the batch's records disagree with its header (count, seqs or max "
                                    "time)", RESTORE))


def _check_index(seg: Path, base: int, data: bytes | None, starts: dict[int, tuple[BatchInfo, int]], valid_end: int,
                 whole: bool, out: list[Finding]) -> None:
    """Hold a segment's index (its bytes `data`, None: no file) to the batches just read: format, checksums, and
    each entry to its batch."""
    path = seg.with_suffix(".index")
    if data is None:
        if starts:
            out.append(Finding(path, 0, "missing", DERIVED))
        return
    try:
        entries, torn = segindex.parse(data, base)
    except IndexDamage as e:
        if e.reason.startswith("format 1"):
            out.append(Finding(path, 0, "format 1 (entries without checksums): never trusted", DERIVED, damage=False))
        elif starts or data:
            out.append(Finding(path, e.byte, e.reason, DERIVED))
        return
    if torn:
        out.append(Finding(path, len(data) - torn, "a torn last entry (a crash while it was written)", DERIVED,
                           damage=False))
    past = [i for i, pos in enumerate(entries.positions) if pos >= valid_end]
    if past and whole:
        at = segindex.HEADER.size + past[0] * segindex.ENTRY.size
        out.append(Finding(path, at, f"{len(past)} entr{'y' if len(past) == 1 else 'ies'} from entry {past[0]} on "
                           f"name bytes past the segment's batches (from byte {entries.positions[past[0]]}; the "
                           f"batches end at byte {valid_end})", DERIVED))
    for i in range(len(entries)):
        at = segindex.HEADER.size + i * segindex.ENTRY.size
        pos = entries.positions[i]
        if pos >= valid_end:
            continue
        hit = starts.get(pos)
        if hit is None:
            out.append(Finding(path, at, f"entry {i} names byte {pos} of the segment, where no batch starts", DERIVED))
            continue
        info, before = hit
        wrong = [name for name, a, b in (("offset", entries.offsets[i], info.base_offset),
                                         ("first seq", entries.seqs[i], info.first_seq),
                                         ("max time", entries.batch_max[i], info.max_ts),
                                         ("max time before", entries.max_before[i], before)) if a != b]
        if wrong:
            out.append(Finding(path, at, f"entry {i} has the wrong {', '.join(wrong)} for the batch at byte {pos}",
                               DERIVED))


def _check_meta(ns_dir: Path, out: list[Finding]) -> dict[str, int]:
    path = ns_dir / META_NAME
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        out.append(Finding(path, 0, "missing", RESTORE))
        return counts_on_disk(ns_dir)
    problem = meta_problem(ns_dir, data)
    if problem is not None:
        out.append(Finding(path, problem[0], problem[1], f"{RESTORE}, or write it as what the partition "
                           "directories hold"))
        return counts_on_disk(ns_dir)
    return dict(json.loads(data)["partitions"])


def _check_registry(directory: Path, catalog: Catalog | None, out: list[Finding]) -> None:
    today = {t.fingerprint: t for t in [*catalog.types, *catalog.records.values()]} if catalog else {}
    for path in sorted(directory.glob(f"*{SUFFIX}")) if directory.is_dir() else []:
        try:
            fp, schema, sealed = read_registry_file(path)
        except RegistryDamage as e:
            out.append(Finding(path, e.byte, e.reason, "restore the file from a copy of the namespace"))
            continue
        current = today.get(fp)
        problems = can_read(current.schema, schema) if current is not None and current.full_name == schema["name"] \
            else []
        if problems:
            out.append(Finding(path, 0, f"decodes otherwise than today's schema of the same fingerprint "
                               f"({problems[0]})", "restore the file from a copy of the namespace"))
        elif not sealed:
            out.append(Finding(path, 0, "written before registry files carried a content checksum: accepted on "
                               "its name", "nothing to do", damage=False))


class _Journal:
    """The commit journal read whole: commit ranges in order, with where each record is."""

    def __init__(self, out: list[Finding]):
        self.out = out
        self.firsts: list[int] = []
        self.lasts: list[int] = []

    def on_batch(self, seg: Path, p: int, info: BatchInfo, records: list) -> None:
        for r in records:
            if len(r.value) != _COMMIT_SIZE:
                self.out.append(Finding(seg, p, f"the commit record of seq {r.seq} has {len(r.value)} bytes, not "
                                        f"{_COMMIT_SIZE}", RESTORE))
                continue
            first = _FIRST.unpack_from(r.value)[0]
            prev = self.lasts[-1] if self.lasts else 0
            if first > r.seq or first <= prev:
                self.out.append(Finding(seg, p, f"commit {first}..{r.seq} does not follow the one before it (last "
                                        f"seq {prev})", RESTORE))
                continue
            self.firsts.append(first)
            self.lasts.append(r.seq)

    @property
    def horizon(self) -> int:
        return self.lasts[-1] if self.lasts else 0

    def holding(self, seq: int) -> tuple[int, int] | None:
        """The committed range that holds seq, or None (a gap: a torn step)."""
        i = bisect_right(self.firsts, seq) - 1
        if i >= 0 and seq <= self.lasts[i]:
            return self.firsts[i], self.lasts[i]
        return None


class _Data:
    """What a data partition's batches are checked against: the partition their keys hash to, and (once the journal
    is read, after every partition: a writer appending meanwhile only adds commits) the journal."""

    def __init__(self, index: int, count: int, out: list[Finding]):
        self.index = index
        self.count = count
        self.out = out
        self._keys: dict[bytes, int] = {}
        self._misplaced = False

    def on_batch(self, seg: Path, p: int, info: BatchInfo, records: list) -> None:
        if self.count > 1 and not self._misplaced:
            for r in records:
                key = bytes(r.key)
                j = self._keys.get(key)
                if j is None:
                    j = self._keys[key] = partition_for(key, self.count)
                if j != self.index:
                    self._misplaced = True
                    self.out.append(Finding(seg, p, f"seq {r.seq} has key {key.decode(errors='replace')!r}, which "
                                            f"belongs in partition {j} of {self.count}: namespace.json's partition "
                                            "count is not the one the records were written with", RESTORE))
                    break

    def judge(self, walk: _Walk, journal: _Journal) -> None:
        """Hold the partition's batches to the journal: none across two commits, at most one past the last."""
        beyond = []
        for seg, p, info in walk.batches:
            if info.first_seq > journal.horizon:
                beyond.append((seg, p, info))
                continue
            c = journal.holding(info.first_seq)
            if c is not None and info.last_seq > c[1]:
                self.out.append(Finding(seg, p, f"the batch of seqs {info.first_seq}..{info.last_seq} runs past the "
                                        f"end of commit {c[0]}..{c[1]}", RESTORE))
        if len(beyond) >= 2:
            seg, p, info = beyond[0]
            self.out.append(Finding(seg, p, f"{len(beyond)} batches from seq {info.first_seq} on lie past the journal's"
                                    f" last commit (seq {journal.horizon}), where a crash leaves at most one: commit "
                                    "records were lost (a cut journal, or a power loss under fsync=interval or never)",
                                    RESTORE))
        cut = walk.cut
        if cut is None:
            return
        c = journal.holding(cut.first_seq) if cut.first_seq is not None else None
        if c is not None and _written_since(cut):
            return  # a batch a writer was appending as it was read, whole now and committed since: not damage
        if c is not None:
            self.out.append(Finding(cut.path, cut.position, f"the segment ends at byte {cut.size} inside the batch of "
                                    f"committed seq {cut.first_seq} (commit {c[0]}..{c[1]}): committed data was cut "
                                    "off", RESTORE))
        elif cut.first_seq is not None:
            self.out.append(Finding(cut.path, cut.position, f"a batch of seq {cut.first_seq} on torn by a crash (never "
                                    "committed)", "nothing to do: the next writer truncates it", damage=False))
        else:
            self.out.append(Finding(cut.path, cut.position, f"the segment ends at byte {cut.size} inside a batch whose "
                                    "header is cut too (a write torn by a crash, or the file cut short)",
                                    "a committed event it held is reported missing below; else the next writer "
                                    "truncates it", damage=False))


def _written_since(cut: _Cut) -> bool:
    """Whether the batch found torn at the end of a segment is whole when read again (after the journal, which a
    writer extends only once the batch is written): a write that was under way, not a file cut short."""
    try:
        data = cut.path.read_bytes()
        parse_header(data, cut.position, len(data))
    except (OSError, Torn, Bad):
        return False
    return True


def check_namespace(ns_dir: Path, catalog: Catalog | None = None) -> list[Finding]:
    """Every finding about the files of one namespace of a file store (empty: every file is what was written)."""
    out: list[Finding] = []
    counts = _check_meta(ns_dir, out)
    _check_registry(ns_dir / "_schemas", catalog, out)
    walks = []
    for topic, n in counts.items():
        for i in range(n):
            path = ns_dir / f"{topic}-{i}"
            if path.is_dir():
                data = _Data(i, n, out)
                walk = _Walk(path, out, data.on_batch)
                walk.run()
                walks.append((walk, data))
    journal = _Journal(out)
    jwalk = _Walk(ns_dir / COMMITS, out, journal.on_batch)
    jwalk.run()
    if jwalk.cut is not None:
        out.append(Finding(jwalk.cut.path, jwalk.cut.position, "a commit record torn by a crash (never committed)",
                           "nothing to do: the next writer truncates it", damage=False))
    for walk, data in walks:
        data.judge(walk, journal)
    return out
