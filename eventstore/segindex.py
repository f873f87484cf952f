"""A segment's sparse index: checksummed entries, derived from the segment, rebuilt whenever it cannot be trusted.

File (format 2): the header `TIDX` + version u32, then one 36-byte entry per indexed batch: offset u32 (relative to
the segment's base offset) | byte position u32 | first seq u64 | the largest ts_event of every record before the
batch, in this segment and the ones before it, i64 | the batch's own max ts_event i64 | crc32 u32 of the entry's
other 32 bytes, seeded with the segment's base offset (so an entry copied into another segment's index fails too).
Offsets, positions, seqs and the running maximum only grow, so lookups by offset, seq and time are binary searches.

An index is derived data and never trusted on its own: every entry must pass its CRC and the ordering rules, and
a read that starts from an entry first checks that the batch at its position carries the entry's offset, first
seq and max ts (partition.py). A file that fails — missing, torn, damaged, or in format 1 (24-byte entries
without checksums, written before this one) — is rebuilt from its segment, the way Kafka rebuilds its indexes
after an unclean shutdown. Who rebuilds: a reader rebuilds in memory, for its own read, and never writes into a
namespace (its writer may be appending to it); the writer, which holds the namespace's lock, rewrites a bad index
atomically (a temporary file renamed over it) when it opens the partition, so later readers find it good.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from eventstore.durable import replace_file

MAGIC = b"TIDX"
VERSION = 2
HEADER = struct.Struct(">4sI")
FILE_HEADER = HEADER.pack(MAGIC, VERSION)
# offset (relative) u32 | position u32 | first seq u64 | max ts before i64 | batch max ts i64, then crc32 u32
BODY = struct.Struct(">IIQqq")
ENTRY = struct.Struct(">IIQqqI")
V1_ENTRY = 24  # format 1: offset u32 | position u32 | first seq u64 | max ts before i64, no checksum
MIN_TS = -(2**63)


class IndexDamage(Exception):
    """An index file that cannot be used as it is: why, and the byte of the file where that shows."""

    def __init__(self, reason: str, byte: int):
        super().__init__(f"{reason} at byte {byte}")
        self.reason = reason
        self.byte = byte


@dataclass
class Entries:
    """The entries of one segment's index, as parallel lists (what the binary searches run over)."""

    offsets: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)
    max_before: list[int] = field(default_factory=list)
    batch_max: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.positions)

    def add(self, offset: int, position: int, seq: int, max_before: int, batch_max: int) -> None:
        """Index one more batch (its position and keys must be past the last entry's)."""
        self.offsets.append(offset)
        self.positions.append(position)
        self.seqs.append(seq)
        self.max_before.append(max_before)
        self.batch_max.append(batch_max)

    def keep(self, n: int) -> None:
        """Drop every entry after the first n (their batches were cut away)."""
        for values in (self.offsets, self.positions, self.seqs, self.max_before, self.batch_max):
            del values[n:]


def _seed(base: int) -> int:
    return zlib.crc32(base.to_bytes(8, "big"))


def entry_bytes(base: int, offset: int, position: int, seq: int, max_before: int, batch_max: int) -> bytes:
    """One entry as it is appended to the index file of the segment based at `base`, its checksum included."""
    body = BODY.pack(offset - base, position, seq, max_before, batch_max)
    return body + zlib.crc32(body, _seed(base)).to_bytes(4, "big")


def encode(base: int, entries: Entries) -> bytes:
    """The whole index file of a segment: header and every entry."""
    return FILE_HEADER + b"".join(
        entry_bytes(base, *row)
        for row in zip(entries.offsets, entries.positions, entries.seqs, entries.max_before, entries.batch_max))


def parse(data: bytes, base: int) -> tuple[Entries, int]:
    """The entries of an index file's bytes and the count of trailing bytes of a torn last entry.

    Raises IndexDamage naming the first byte that shows the file cannot be used: a missing or foreign header,
    format 1, an entry failing its checksum, or entries out of order.
    """
    if len(data) < HEADER.size:
        if len(data) % V1_ENTRY == 0 and data:
            raise IndexDamage("format 1 (entries without checksums)", 0)
        raise IndexDamage("no header (empty or cut short)", 0)
    magic, version = HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        if len(data) % V1_ENTRY == 0:
            raise IndexDamage("format 1 (entries without checksums)", 0)
        raise IndexDamage(f"not an index header ({bytes(data[:4])!r})", 0)
    if version != VERSION:
        raise IndexDamage(f"unknown index format {version}", 4)
    out = Entries()
    seed = _seed(base)
    crc32 = zlib.crc32
    view = memoryview(data)
    size = ENTRY.size
    body = BODY.size
    end = HEADER.size + (len(data) - HEADER.size) // size * size
    last_off = last_pos = last_seq = -1
    last_max = last_batch = MIN_TS
    p = HEADER.size
    for rel, pos, seq, before, batch, crc in ENTRY.iter_unpack(view[HEADER.size:end]):
        if crc32(view[p:p + body], seed) != crc:
            raise IndexDamage(f"entry {len(out)} fails its checksum", p)
        if rel <= last_off or pos <= last_pos or seq <= last_seq or before < last_max or before < last_batch:
            raise IndexDamage(f"entry {len(out)} is out of order with the one before it", p)
        out.add(base + rel, pos, seq, before, batch)
        last_off, last_pos, last_seq, last_max, last_batch = rel, pos, seq, before, batch
        p += size
    return out, len(data) - end


def derive(batches: Iterable[tuple[int, int, int, int, int, int]], seed_max: int, interval: int) -> tuple[Entries, int]:
    """The entries a writer makes for a segment's batches, and the running max ts after the last of them.

    `batches` yields (position, size, base offset, count, first seq, max ts) of every valid batch in order;
    `seed_max` is the largest ts_event of every record in the segments before. A batch is indexed when at least
    `interval` bytes were written since the last indexed one (the first batch always), as the writer does.
    """
    out = Entries()
    since = interval
    running = seed_max
    for position, size, offset, _count, first_seq, max_ts in batches:
        if since >= interval:
            out.add(offset, position, first_seq, running, max_ts)
            since = 0
        since += size
        running = max(running, max_ts)
    return out, running


def write_atomic(path: Path, base: int, entries: Entries) -> None:
    """Replace an index file whole (a reader sees the old file or the new one, never a mix)."""
    replace_file(path, encode(base, entries))
