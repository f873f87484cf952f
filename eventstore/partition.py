"""One topic-partition of the file log: segment files, their sparse indexes (checked on use), torn-tail recovery.

Indexes are derived data (segindex.py says how they are checked and who rebuilds them): a reader that finds one
bad rebuilds it in memory from its segment; the writer rewrites it atomically when it opens the partition.
"""
from __future__ import annotations

import os
import struct
from bisect import bisect_right
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from eventstore import segindex
from eventstore.batch import HEADER, MAGIC, Bad, BatchInfo, Record, Torn, encode_batch, iter_records, parse_header
from eventstore.errors import CorruptLog
from eventstore.segindex import MIN_TS, Entries, IndexDamage

INDEX = segindex.ENTRY  # one index entry (the file starts with segindex.FILE_HEADER)
CHUNK = 4 << 20
_HEADER_WINDOW = 4096  # bytes read at a time when only batch headers are wanted
_FIRST_SEQ = struct.Struct(">Q")
_FIRST_SEQ_AT = 21  # length u32, crc u32, magic u8, base offset u64, count u32, then the first seq
_REBUILT: OrderedDict[tuple, tuple[Entries, int]] = OrderedDict()  # indexes rebuilt in memory, by segment state
_REBUILT_KEEP = 64


class Segment:
    """A segment file named by its base offset, with its index entries (read on first use, rebuilt when bad)."""

    def __init__(self, base: int, path: Path, load: Callable[["Segment"], Entries]):
        self.base = base
        self.path = path
        self._load = load
        self._entries: Entries | None = None
        self.trusted = False  # the entries were derived from the segment by this process: no need to check them
        self.problem: str | None = None  # why the index file was not used as it is (None: it was, or not needed)
        self.rewrite = False  # the index file is not what it should be: a writer rewrites it whole
        self.torn_bytes = 0  # bytes of a torn last entry at the end of the index file (the entries before stand)

    @property
    def index_path(self) -> Path:
        return self.path.with_suffix(".index")

    @property
    def entries(self) -> Entries:
        """The index entries, loaded and checked on first use."""
        if self._entries is None:
            self._entries = self._load(self)
        return self._entries

    def replace_entries(self, entries: Entries, problem: str | None) -> None:
        """Use entries derived from the segment from now on (the file's were found wrong, or were missing)."""
        self._entries = entries
        self.trusted = True
        self.rewrite = True
        self.problem = problem

    @property
    def offsets(self) -> list[int]:
        return self.entries.offsets

    @property
    def positions(self) -> list[int]:
        return self.entries.positions

    @property
    def seqs(self) -> list[int]:
        return self.entries.seqs

    @property
    def max_before(self) -> list[int]:
        return self.entries.max_before


class _FirstKeys:
    """Each segment's first index key (by seq or time), loaded on demand for a binary search over segments; a
    segment without entries (empty) borrows the next one's."""

    def __init__(self, segments: list[Segment], key: Callable[[Entries], list[int]]):
        self.segments = segments
        self.key = key

    def __len__(self) -> int:
        return len(self.segments)

    def __getitem__(self, k: int) -> int:
        for j in range(k, len(self.segments)):
            keys = self.key(self.segments[j].entries)
            if keys:
                return keys[0]
        return 2**63


@dataclass
class TailPlan:
    """What recovering the active segment's tail finds, before anything is written: where the valid batches end,
    what a truncation there would cut, and the append state after the valid batches."""

    segment: Segment | None = None
    size: int = 0
    valid_end: int = 0
    cut_seq: int | None = None  # first seq of the batch cut short at valid_end, when its header still says it
    lost: list[tuple[int, int]] = field(default_factory=list)  # (byte, first seq) of index entries past valid_end
    next_offset: int = 0
    last_seq: int = 0
    max_ts: int = MIN_TS

    @property
    def cut(self) -> bool:
        """True when the segment ends inside a batch (a write torn by a crash, or a file cut short)."""
        return self.valid_end < self.size


def segment_name(base: int) -> str:
    return f"{base:020d}.log"


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


class Partition:
    """Segments of one topic-partition; reads anywhere, appends when opened for writing."""

    def __init__(self, path: Path, *, segment_bytes: int = 64 << 20, index_interval: int = 4096):
        self.path = path
        self.segment_bytes = segment_bytes
        self.index_interval = index_interval
        self.segments: list[Segment] = []
        self._fd: int | None = None
        self._index_fd: int | None = None
        self.reload()

    # ---- the index ---------------------------------------------------------------------------------------

    def _load_index(self, seg: Segment) -> Entries:
        """The entries of seg's index file when it passes every check, else entries rebuilt from the segment."""
        try:
            data = seg.index_path.read_bytes()
        except FileNotFoundError:
            data = None
        try:
            if data is None:
                raise IndexDamage("missing", 0)
            entries, seg.torn_bytes = segindex.parse(data, seg.base)
            seg.rewrite = seg.torn_bytes > 0
            return entries
        except IndexDamage as e:
            seg.rewrite = True
            if _size(seg.path) == 0:
                return Entries()  # nothing to index yet: a fresh segment
            entries = self._rebuild(seg)
            seg.trusted = True
            seg.problem = str(e)
            return entries

    def _rebuild(self, seg: Segment) -> Entries:
        """The entries derived from the segment's batches (each checked whole, CRC included)."""
        seed = self._max_before(seg)
        try:
            st = os.stat(seg.path)
        except FileNotFoundError:
            return Entries()
        key = (str(seg.path), st.st_ino, st.st_size, st.st_mtime_ns, seed, self.index_interval)
        hit = _REBUILT.get(key)
        if hit is None:
            last = seg is self.segments[-1]
            rows = ((chunk + info.position, info.size, info.base_offset, info.count, info.first_seq, info.max_ts)
                    for info, _, _, chunk in self._scan(seg, 0, last))
            hit = _REBUILT[key] = segindex.derive(rows, seed, self.index_interval)
            while len(_REBUILT) > _REBUILT_KEEP:
                _REBUILT.popitem(last=False)
        e = hit[0]
        return Entries(list(e.offsets), list(e.positions), list(e.seqs), list(e.max_before), list(e.batch_max))

    def _mismatch(self, seg: Segment, i: int) -> str | None:
        """Why entry i does not name the batch at its position (None: it does)."""
        e = seg.entries
        pos = e.positions[i]
        try:
            with open(seg.path, "rb") as f:
                head = os.pread(f.fileno(), HEADER.size, pos)
        except FileNotFoundError:
            head = b""
        where = f"entry {i} (byte {segindex.HEADER.size + i * INDEX.size})"
        if len(head) < HEADER.size:
            return f"{where} points at byte {pos}, past the segment's data"
        _, _, magic, base, _, first, _, max_ts = HEADER.unpack(head)
        if magic != MAGIC or (base, first, max_ts) != (e.offsets[i], e.seqs[i], e.batch_max[i]):
            return (f"{where} names offset {e.offsets[i]}, seq {e.seqs[i]} at byte {pos}, but the segment holds "
                    "another batch there")
        return None

    def _entry(self, seg: Segment, find: Callable[[Entries], int]) -> int:
        """find(entries), after checking that the entry found names the batch at its position; when it does not,
        the index is rebuilt from the segment (and, by a writer, rewritten) and found again."""
        i = find(seg.entries)
        if i < 0 or seg.trusted:
            return i
        problem = self._mismatch(seg, i)
        if problem is None:
            return i
        seg.replace_entries(self._rebuild(seg), problem)
        if self.appending:
            self._rewrite_index(seg)
        return find(seg.entries)

    def replace_index(self, seg: Segment) -> None:
        """Rebuild a segment's index from the segment and write it (under the namespace's lock: `tape log repair`)."""
        seg.replace_entries(self._rebuild(seg), None)
        self._rewrite_index(seg)

    def _rewrite_index(self, seg: Segment) -> None:
        """Write a segment's index whole, atomically (the writer only: it holds the namespace's lock)."""
        segindex.write_atomic(seg.index_path, seg.base, seg.entries)
        seg.rewrite = False
        seg.torn_bytes = 0
        if self._index_fd is not None and seg is self.segments[-1]:
            os.close(self._index_fd)  # the old file is gone: append to the new one
            self._index_fd = os.open(seg.index_path, os.O_WRONLY | os.O_APPEND)

    def _tail_batches(self, seg: Segment) -> tuple[int, list[tuple[BatchInfo, int]]]:
        """The valid batches of a segment (info, byte position) from its last index entry whose batch is whole,
        and that entry's number (-1: read from the segment's start)."""
        last = seg is self.segments[-1]
        i = self._entry(seg, lambda e: len(e) - 1)
        while True:
            pos = seg.entries.positions[i] if i >= 0 else 0
            found = [(info, chunk + info.position) for info, _, _, chunk in self._scan(seg, pos, last)]
            if found or i < 0:
                return i, found
            i -= 1  # the batch at that entry is torn (the active segment's tail): start one entry earlier
            if i >= 0 and not seg.trusted:
                problem = self._mismatch(seg, i)
                if problem is not None:
                    seg.replace_entries(self._rebuild(seg), problem)
                    i = len(seg.entries) - 1

    def _end_of(self, seg: Segment) -> tuple[int, int, int]:
        """(last seq, largest ts_event, next offset) through the end of a segment; (0, the largest ts before it,
        its base) when it holds no batch."""
        i, found = self._tail_batches(seg)
        if not found:
            return 0, self._max_before(seg), seg.base
        e = seg.entries
        m = e.max_before[i] if i >= 0 else self._max_before(seg)
        for info, _ in found:
            m = max(m, info.max_ts)
        info = found[-1][0]
        return info.last_seq, m, info.base_offset + info.count

    def last_batch(self) -> tuple[BatchInfo, int, int] | None:
        """The last valid batch of the partition (info, segment base, byte position), or None when it has none."""
        self.reload()
        for seg in reversed(self.segments):
            if _size(seg.path):
                found = self._tail_batches(seg)[1]
                if found:
                    return found[-1][0], seg.base, found[-1][1]
        return None

    def _max_before(self, seg: Segment) -> int:
        """Largest ts_event of every record in the segments before seg (the running maximum the time index keeps)."""
        i = self.segments.index(seg)
        while i > 0:
            prev = self.segments[i - 1]
            if _size(prev.path):
                return self._end_of(prev)[1]
            i -= 1
        return MIN_TS

    # ---- reading -------------------------------------------------------------------------------------------

    def reload(self) -> None:
        """Re-list segment files (new ones appear as a writer rolls)."""
        known = {s.base: s for s in self.segments}
        bases = sorted(int(p.stem) for p in self.path.glob("*.log")) if self.path.is_dir() else []
        self.segments = [known.get(b) or Segment(b, self.path / segment_name(b), self._load_index) for b in bases]

    def _segment_from(self, *, offset: int | None, seq: int | None, ts: int | None) -> int:
        segs = self.segments
        if offset is not None:
            return max(0, bisect_right([s.base for s in segs], offset) - 1)
        if seq is not None:
            return max(0, bisect_right(_FirstKeys(segs, lambda e: e.seqs), seq) - 1)  # type: ignore[arg-type]
        if ts is not None:
            return max(0, bisect_right(_FirstKeys(segs, lambda e: e.max_before), ts - 1) - 1)  # type: ignore[arg-type]
        return 0

    def _start_position(self, seg: Segment, offset: int | None, seq: int | None, ts: int | None) -> int:
        """Byte position of a checked index entry at or before the first record that may match."""
        if offset is not None:
            i = self._entry(seg, lambda e: bisect_right(e.offsets, offset) - 1)
        elif seq is not None:
            i = self._entry(seg, lambda e: bisect_right(e.seqs, seq) - 1)
        elif ts is not None:
            i = self._entry(seg, lambda e: bisect_right(e.max_before, ts - 1) - 1)
        else:
            return 0
        return seg.entries.positions[i] if i >= 0 else 0

    def batches(
        self, *, offset: int | None = None, seq: int | None = None, ts: int | None = None,
        resume: tuple[int, int] | None = None, frames_only: bool = False,
    ) -> Iterator[tuple[BatchInfo, bytes, int, int]]:
        """Valid batches from a start point (offset, seq, time or a (segment base, position) resume point).

        Yields (info, buffer, segment base, position of the buffer's chunk in the segment file) where
        info.position indexes into buffer. Stops quietly at a torn
        tail; raises CorruptLog for a bad batch with more data after it. With frames_only, only each batch's header
        is read (no CRC, an empty buffer): enough to count what a read skips.
        """
        scan = self._scan_headers if frames_only else self._scan
        self.reload()
        if not self.segments:
            return
        if resume is not None:
            seg_i = max(0, bisect_right([s.base for s in self.segments], resume[0]) - 1)
        else:
            seg_i = self._segment_from(offset=offset, seq=seq, ts=ts)
        first = True
        while seg_i < len(self.segments):
            seg = self.segments[seg_i]
            if resume is not None and first:
                pos = resume[1] if seg.base == resume[0] else 0
            elif first:
                pos = self._start_position(seg, offset, seq, ts)
            else:
                pos = 0
            first = False
            last_segment = seg_i == len(self.segments) - 1
            torn, pos = yield from scan(seg, pos, last_segment)
            if last_segment and seg_i < len(self.segments) - 1:
                # it was the active segment when opened, and a later one has appeared since (a long-lived reader):
                # the writer sealed it before rolling, so read what it appended meanwhile before going on
                torn, pos = yield from scan(seg, pos, False)
            if torn and not last_segment:
                self.reload()
                if seg_i == len(self.segments) - 1:
                    return
            seg_i += 1

    def _scan(self, seg: Segment, pos: int, last_segment: bool):
        """Yield the valid batches of one segment from pos; return (stopped at a torn tail, where it stopped)."""
        try:
            f = open(seg.path, "rb")
        except FileNotFoundError:
            return True, pos
        with f:
            end = os.fstat(f.fileno()).st_size
            while pos < end:
                f.seek(pos)
                buf = f.read(min(CHUNK, end - pos))
                p = 0
                n = len(buf)
                while p < n:
                    try:
                        info = parse_header(buf, p, n)
                    except Torn:
                        if pos + n < end:
                            break  # the batch straddles the chunk: read on from its start
                        if not last_segment:
                            raise CorruptLog(f"{seg.path}: truncated batch at byte {pos + p} in a sealed segment; "
                                             "restore the segment from a copy") from None
                        return True, pos + p
                    except Bad as e:
                        raise CorruptLog(f"{seg.path}: corrupt batch at byte {pos + p} ({e}); "
                                         "the log cannot be read past it: restore the segment from a copy") from None
                    yield info, buf, seg.base, pos
                    p += info.size
                if p == 0:
                    # one batch larger than the chunk: read exactly it
                    length = struct.unpack_from(">I", buf, 0)[0] if len(buf) >= 4 else 0
                    f.seek(pos)
                    buf = f.read(4 + length)
                    try:
                        info = parse_header(buf, 0, len(buf))
                    except Torn:
                        if not last_segment:
                            raise CorruptLog(f"{seg.path}: truncated batch at byte {pos} in a sealed segment; "
                                             "restore the segment from a copy") from None
                        return True, pos
                    except Bad as e:
                        raise CorruptLog(f"{seg.path}: corrupt batch at byte {pos} ({e}); "
                                         "the log cannot be read past it: restore the segment from a copy") from None
                    yield info, buf, seg.base, pos
                    p = info.size
                pos += p
        return False, pos

    def _scan_headers(self, seg: Segment, pos: int, last_segment: bool):
        """Yield the batches of one segment from pos by their headers alone, read in small windows (a batch's body
        is skipped, not read); return (stopped at a torn tail, where it stopped)."""
        try:
            f = open(seg.path, "rb")
        except FileNotFoundError:
            return True, pos
        with f:
            fd = f.fileno()
            end = os.fstat(fd).st_size
            buf, at = b"", pos
            while pos < end:
                if pos + HEADER.size > at + len(buf):
                    buf, at = os.pread(fd, min(_HEADER_WINDOW, end - pos), pos), pos
                torn = len(buf) - (pos - at) < HEADER.size
                if not torn:
                    length, _, magic, base, count, first, last, max_ts = HEADER.unpack_from(buf, pos - at)
                    if magic != MAGIC or length < HEADER.size - 4 or count < 1 or first > last:
                        if any(buf[pos - at:]):
                            raise CorruptLog(f"{seg.path}: corrupt batch at byte {pos} (bad batch header); the log "
                                             "cannot be read past it: restore the segment from a copy")
                        torn = True  # a zero-filled tail
                    torn = torn or pos + 4 + length > end
                if torn:
                    if not last_segment:
                        raise CorruptLog(f"{seg.path}: truncated batch at byte {pos} in a sealed segment; "
                                         "restore the segment from a copy")
                    return True, pos
                yield BatchInfo(pos, 4 + length, base, count, first, last, max_ts), b"", seg.base, 0
                pos += 4 + length
        return False, pos

    def records(self, **start) -> Iterator[Record]:
        """Every valid record from a start point, in offset order."""
        for info, buf, _, _ in self.batches(**start):
            yield from iter_records(buf, info)

    # ---- writing -------------------------------------------------------------------------------------------

    @property
    def appending(self) -> bool:
        """True once open_for_append has run (the partition holds its append file descriptors)."""
        return self._fd is not None

    def recover(self) -> TailPlan:
        """Find where the active segment's valid batches end and what a truncation there would cut; writes nothing
        (the writer decides first whether the cut may go: a batch of a committed step must not)."""
        self.reload()
        if not self.segments:
            return TailPlan()
        seg = self.segments[-1]
        size = _size(seg.path)
        # start one entry before the last one inside the file: the last indexed batch may be the torn one
        i = self._entry(seg, lambda e: bisect_right(e.positions, size - 1) - 2)
        e = seg.entries
        if i >= 0:
            pos, next_offset, max_ts = e.positions[i], e.offsets[i], e.max_before[i]
        else:
            pos, next_offset, max_ts = 0, seg.base, self._max_before(seg)
        last_seq = 0
        with open(seg.path, "rb") as f:
            f.seek(pos)
            buf = f.read()
        p = 0
        cut_seq = None
        while p < len(buf):
            try:
                info = parse_header(buf, p, len(buf))
            except Torn:
                cut_seq = _cut_seq(buf, p)
                break
            except Bad as err:
                raise CorruptLog(f"{seg.path}: corrupt batch at byte {pos + p} ({err}); "
                                 "refusing to append after it: restore the segment from a copy") from None
            next_offset = info.base_offset + info.count
            last_seq = info.last_seq
            max_ts = max(max_ts, info.max_ts)
            p += info.size
        valid_end = pos + p
        if last_seq == 0:
            last_seq = self._last_seq_before(seg)
        lost = [(q, s) for q, s in zip(e.positions, e.seqs) if q >= valid_end]
        return TailPlan(seg, size, valid_end, cut_seq if valid_end < size else None, lost, next_offset, last_seq,
                        max_ts)

    def _last_seq_before(self, seg: Segment) -> int:
        i = self.segments.index(seg)
        for prev in reversed(self.segments[:i]):
            seq = self._end_of(prev)[0]
            if seq:
                return seq
        return 0

    def check_sealed(self) -> None:
        """Refuse sealed segments that lost records: each must end on a whole batch exactly at the next segment's
        base offset (read from its last index entry on: a few KB per segment)."""
        self.reload()
        for seg, nxt in zip(self.segments, self.segments[1:]):
            try:
                with open(seg.path, "rb") as f:
                    head = os.pread(f.fileno(), HEADER.size, 0)
            except FileNotFoundError:
                head = b""
            if len(head) == HEADER.size and HEADER.unpack(head)[3] != seg.base:
                raise CorruptLog(f"{seg.path}: the batch at byte 0 has offset {HEADER.unpack(head)[3]}, not the "
                                 f"segment's base {seg.base}; restore the segment from a copy")
            _, _, end = self._end_of(seg)
            if end != nxt.base:
                raise CorruptLog(
                    f"{seg.path}: the sealed segment ends at byte {_size(seg.path)} after offset {end - 1}, but the "
                    f"next segment starts at offset {nxt.base}: {abs(nxt.base - end)} record(s) "
                    f"{'are missing' if end < nxt.base else 'overlap'}; restore the segment from a copy")

    def open_for_append(self, plan: TailPlan | None = None) -> None:
        """Recover the tail (truncate a torn write), rewrite indexes that need it, and get ready to append."""
        self.path.mkdir(parents=True, exist_ok=True)
        if plan is None:
            plan = self.recover()
        if plan.segment is None:
            self._new_segment(0)
            plan = TailPlan(self.segments[-1], next_offset=0)
        self.check_sealed()
        seg = plan.segment
        if plan.valid_end < plan.size:
            os.truncate(seg.path, plan.valid_end)
        e = seg.entries
        n = bisect_right(e.positions, plan.valid_end - 1)
        if n < len(e):  # entries that point at or past the truncation point
            e.keep(n)
            seg.rewrite = True
        for s in self.segments:
            if s.rewrite or (s is seg and not _size(s.index_path)):
                self._rewrite_index(s)
        self.next_offset = plan.next_offset
        self.last_seq = plan.last_seq
        self.max_ts = plan.max_ts
        self.size = plan.valid_end
        self._since_index = self.index_interval  # index the next batch
        self._open_fds(seg)

    def _new_segment(self, base: int) -> Segment:
        seg = Segment(base, self.path / segment_name(base), self._load_index)
        segindex.write_atomic(seg.index_path, base, Entries())  # the index first: a segment never lacks one
        seg.path.touch()
        seg.replace_entries(Entries(), None)
        seg.rewrite = False
        self.segments.append(seg)
        return seg

    def _open_fds(self, seg: Segment) -> None:
        self.close()
        self._fd = os.open(seg.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._index_fd = os.open(seg.index_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def append(self, records: list[Record]) -> None:
        """Write one batch (buffered by the OS; durability is the caller's fsync)."""
        data = encode_batch(self.next_offset, records)
        if self.size and self.size + len(data) > self.segment_bytes:
            self.roll()
        seg = self.segments[-1]
        batch_max = records[0].ts
        for r in records:
            if r.ts > batch_max:
                batch_max = r.ts
        entry = None
        if self._since_index >= self.index_interval:
            entry = segindex.entry_bytes(seg.base, self.next_offset, self.size, records[0].seq, self.max_ts, batch_max)
            seg.entries.add(self.next_offset, self.size, records[0].seq, self.max_ts, batch_max)
            self._since_index = 0
        _write_all(self._fd, data)
        if entry is not None:
            _write_all(self._index_fd, entry)
        self._since_index += len(data)
        self.size += len(data)
        self.next_offset += len(records)
        self.last_seq = records[-1].seq
        if batch_max > self.max_ts:
            self.max_ts = batch_max

    def roll(self) -> None:
        """Seal the active segment (fsync it) and start a new one at the next offset."""
        self.fsync()
        seg = self._new_segment(self.next_offset)
        self.size = 0
        self._since_index = self.index_interval
        self._open_fds(seg)

    def fsync(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)
            os.fsync(self._index_fd)

    def close(self) -> None:
        for fd in (self._fd, self._index_fd):
            if fd is not None:
                os.close(fd)
        self._fd = self._index_fd = None


def _cut_seq(buf: bytes, p: int) -> int | None:
    """The first seq a batch cut short at buf[p:] says it holds, when enough of its header is left to say it."""
    if len(buf) - p < _FIRST_SEQ_AT + 8 or buf[p + 8] != MAGIC:
        return None
    return _FIRST_SEQ.unpack_from(buf, p + _FIRST_SEQ_AT)[0] or None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def readable_batches(seg: Path) -> Iterator[tuple[int, BatchInfo, bytes]]:
    """(position, header, segment bytes) of a segment's batches in order, up to the first that cannot be read."""
    data = seg.read_bytes()
    p = 0
    while p < len(data):
        try:
            info = parse_header(data, p, len(data))
        except (Torn, Bad):
            return
        yield p, info, data
        p += info.size


def cut_partition_after(path: Path, after_seq: int, *, through_damage: bool = False) -> bool:
    """Truncate one partition's directory after the last batch holding seqs <= after_seq (a commit's end); later
    segments go, with the index of every segment that changed (rebuilt when the partition is next opened). Where a
    batch cannot be read before one past after_seq is found, the cut is made there only `through_damage` (the
    user chose it: `tape log repair --truncate-after`); else nothing is cut (it may hold what is kept). Returns
    whether anything was cut."""
    segs = sorted(path.glob("*.log"))
    cut_at: tuple[int, int] | None = None  # (segment index, byte)
    for k, seg in enumerate(segs):
        end, past, size = 0, False, seg.stat().st_size
        for p, info, _ in readable_batches(seg):
            if info.first_seq > after_seq:
                past = True
                break
            if info.last_seq > after_seq:
                raise CorruptLog(f"{seg} byte {p}: a batch of seqs {info.first_seq}..{info.last_seq} spans seq "
                                 f"{after_seq}: cut at the end of a commit")
            end = p + info.size
        if past or (end < size and through_damage):
            cut_at = (k, end)
            break
        if end < size:
            return False  # an unreadable batch before anything past after_seq: not ours to cut
    if cut_at is None:
        return False
    k, end = cut_at
    os.truncate(segs[k], end)
    segs[k].with_suffix(".index").unlink(missing_ok=True)
    for seg in segs[k + 1:]:
        seg.unlink()
        seg.with_suffix(".index").unlink(missing_ok=True)
    return True
