"""One topic-partition of the file log: segment files, a sparse offset/time index, torn-tail recovery."""
from __future__ import annotations

import os
import struct
from bisect import bisect_right
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from eventstore.batch import Bad, BatchInfo, Record, Torn, encode_batch, iter_records, parse_header
from eventstore.errors import CorruptLog

# One sparse entry per indexed batch: relative offset u32, byte position u32, first seq u64, and the largest
# ts_event of every record before the batch i64. Offsets, seqs and that running maximum never decrease, so
# lookups by offset, by seq and by time are binary searches.
INDEX = struct.Struct(">IIQq")
CHUNK = 4 << 20


@dataclass
class Segment:
    """A segment file named by its base offset, with its in-memory index."""

    base: int
    path: Path
    offsets: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)
    max_before: list[int] = field(default_factory=list)

    @property
    def index_path(self) -> Path:
        return self.path.with_suffix(".index")

    def load_index(self) -> None:
        """Read the sparse index; entries past valid data are filtered by the caller."""
        self.offsets, self.positions, self.seqs, self.max_before = [], [], [], []
        try:
            data = self.index_path.read_bytes()
        except FileNotFoundError:
            return
        n = len(data) // INDEX.size
        for off, pos, seq, ts in INDEX.iter_unpack(data[: n * INDEX.size]):
            self.offsets.append(self.base + off)
            self.positions.append(pos)
            self.seqs.append(seq)
            self.max_before.append(ts)

    def start_position(self, *, offset: int | None = None, seq: int | None = None, ts: int | None = None) -> int:
        """Byte position of an indexed batch at or before the first record that may match."""
        if offset is not None:
            i = bisect_right(self.offsets, offset) - 1
        elif seq is not None:
            i = bisect_right(self.seqs, seq) - 1
        elif ts is not None:
            i = bisect_right(self.max_before, ts - 1) - 1
        else:
            i = -1
        return self.positions[i] if i >= 0 else 0


def _lower_bounds(entries: list[list[int]]) -> list[int]:
    """Each segment's first index key; a segment without index (lost or not yet written) borrows the next one's."""
    out, nxt = [], 2**63
    for keys in reversed(entries):
        nxt = keys[0] if keys else nxt
        out.append(nxt)
    return out[::-1]


def segment_name(base: int) -> str:
    return f"{base:020d}.log"


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

    # ---- reading -------------------------------------------------------------------------------------------

    def reload(self) -> None:
        """Re-list segment files (new ones appear as a writer rolls)."""
        known = {s.base: s for s in self.segments}
        bases = sorted(int(p.stem) for p in self.path.glob("*.log")) if self.path.is_dir() else []
        self.segments = [known.get(b) or Segment(b, self.path / segment_name(b)) for b in bases]
        for s in self.segments:
            if s.base not in known:
                s.load_index()

    def _segment_from(self, *, offset: int | None, seq: int | None, ts: int | None) -> int:
        segs = self.segments
        if offset is not None:
            return max(0, bisect_right([s.base for s in segs], offset) - 1)
        if seq is not None:
            return max(0, bisect_right(_lower_bounds([s.seqs for s in segs]), seq) - 1)
        if ts is not None:
            return max(0, bisect_right(_lower_bounds([s.max_before for s in segs]), ts - 1) - 1)
        return 0

    def batches(
        self, *, offset: int | None = None, seq: int | None = None, ts: int | None = None, resume: tuple[int, int] | None = None
    ) -> Iterator[tuple[BatchInfo, bytes, int, int]]:
        """Valid batches from a start point (offset, seq, time or a (segment base, position) resume point).

        Yields (info, buffer, segment base, position of the buffer's chunk in the segment file) where
        info.position indexes into buffer. Stops quietly at a torn
        tail; raises CorruptLog for a bad batch with more data after it.
        """
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
                pos = seg.start_position(offset=offset, seq=seq, ts=ts)
            else:
                pos = 0
            first = False
            last_segment = seg_i == len(self.segments) - 1
            torn, pos = yield from self._scan(seg, pos, last_segment)
            if last_segment and seg_i < len(self.segments) - 1:
                # it was the active segment when opened, and a later one has appeared since (a long-lived reader):
                # the writer sealed it before rolling, so read what it appended meanwhile before going on
                torn, pos = yield from self._scan(seg, pos, False)
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

    def records(self, **start) -> Iterator[Record]:
        """Every valid record from a start point, in offset order."""
        for info, buf, _, _ in self.batches(**start):
            yield from iter_records(buf, info)

    # ---- writing -------------------------------------------------------------------------------------------

    @property
    def appending(self) -> bool:
        """True once open_for_append has run (the partition holds its append file descriptors)."""
        return self._fd is not None

    def open_for_append(self) -> None:
        """Recover the tail (truncate a torn write) and get ready to append."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.reload()
        if not self.segments:
            self._new_segment(0)
        seg = self.segments[-1]
        size = seg.path.stat().st_size
        # start one entry before the last index entry inside the file: the last indexed batch may be the torn
        # one, and the seq of the batch before it still counts (a whole batch of a torn step keeps its seqs)
        keep = bisect_right(seg.positions, size - 1) - 1
        pos = seg.positions[keep - 1] if keep > 0 else 0
        self.next_offset = seg.offsets[keep - 1] if keep > 0 else seg.base
        self.max_ts = seg.max_before[keep - 1] if keep > 0 else self._max_ts_before(seg)
        self.last_seq = 0
        valid_end = pos
        with open(seg.path, "rb") as f:
            f.seek(pos)
            buf = f.read()
        p = 0
        while p < len(buf):
            try:
                info = parse_header(buf, p, len(buf))
            except Torn:
                break
            except Bad as e:
                raise CorruptLog(f"{seg.path}: corrupt batch at byte {pos + p} ({e}); "
                                 "refusing to append after it: restore the segment from a copy") from None
            self.next_offset = info.base_offset + info.count
            self.last_seq = info.last_seq
            self.max_ts = max(self.max_ts, info.max_ts)
            p += info.size
        valid_end = pos + p
        if valid_end < size:
            os.truncate(seg.path, valid_end)
        # drop index entries that point at or past the truncation point, and the last seq of the segment
        entries = [i for i, q in enumerate(seg.positions) if q < valid_end]
        index_size = seg.index_path.stat().st_size if seg.index_path.exists() else -1
        if len(entries) != len(seg.positions) or index_size != len(seg.positions) * INDEX.size:  # or a torn entry
            seg.offsets, seg.positions = seg.offsets[: len(entries)], seg.positions[: len(entries)]
            seg.seqs, seg.max_before = seg.seqs[: len(entries)], seg.max_before[: len(entries)]
            self._rewrite_index(seg)
        if self.last_seq == 0:
            self.last_seq = self._last_seq_before(seg)
        self.size = valid_end
        self._since_index = self.index_interval  # index the next batch
        self._open_fds(seg)

    def _max_ts_before(self, seg: Segment) -> int:
        """Largest ts_event of every record in the segments before seg (the running maximum the time index keeps)."""
        if seg.positions and seg.positions[0] == 0:
            return seg.max_before[0]
        i = self.segments.index(seg)
        if i == 0:
            return -(2**63)
        m = self._max_ts_before(self.segments[i - 1])
        for info, _, _, _ in self._scan_all(self.segments[i - 1]):
            m = max(m, info.max_ts)
        return m

    def _last_seq_before(self, seg: Segment) -> int:
        i = self.segments.index(seg)
        for prev in reversed(self.segments[:i]):
            last = 0
            for info, _, _, _ in self._scan_all(prev):
                last = info.last_seq
            if last:
                return last
        return 0

    def _scan_all(self, seg: Segment):
        return self._scan(seg, 0, False)

    def _rewrite_index(self, seg: Segment) -> None:
        data = b"".join(
            INDEX.pack(o - seg.base, p, s, t) for o, p, s, t in zip(seg.offsets, seg.positions, seg.seqs, seg.max_before)
        )
        seg.index_path.write_bytes(data)

    def _new_segment(self, base: int) -> Segment:
        seg = Segment(base, self.path / segment_name(base))
        seg.path.touch()
        seg.index_path.touch()
        self.segments.append(seg)
        return seg

    def _open_fds(self, seg: Segment) -> None:
        self.close()
        # O_CREAT: a crash between creating a segment and its index leaves the index missing
        self._fd = os.open(seg.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._index_fd = os.open(seg.index_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def append(self, records: list[Record]) -> None:
        """Write one batch (buffered by the OS; durability is the caller's fsync)."""
        data = encode_batch(self.next_offset, records)
        if self.size and self.size + len(data) > self.segment_bytes:
            self.roll()
        seg = self.segments[-1]
        if self._since_index >= self.index_interval:
            entry = INDEX.pack(self.next_offset - seg.base, self.size, records[0].seq, self.max_ts)
            seg.offsets.append(self.next_offset)
            seg.positions.append(self.size)
            seg.seqs.append(records[0].seq)
            seg.max_before.append(self.max_ts)
            self._pending_index = entry
            self._since_index = 0
        else:
            self._pending_index = None
        _write_all(self._fd, data)
        if self._pending_index is not None:
            _write_all(self._index_fd, self._pending_index)
        self._since_index += len(data)
        self.size += len(data)
        self.next_offset += len(records)
        self.last_seq = records[-1].seq
        for r in records:
            if r.ts > self.max_ts:
                self.max_ts = r.ts

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


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
