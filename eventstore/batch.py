"""Record batch framing of the file log: one length + CRC per batch, Kafka-like."""
from __future__ import annotations

import struct
import zlib
from typing import Iterator, NamedTuple

# length u32 (bytes after it) | crc u32 (of bytes after it) | magic u8 | base_offset u64 | count u32
# | first_seq u64 | last_seq u64 | max_ts i64
HEADER = struct.Struct(">IIBQIQQq")
MAGIC = 1
# per record: value_len u32 | seq u64 | ts_event i64 | key_len u16 | type_len u8 | key | type | value
RECORD = struct.Struct(">IQqHB")
_HEAD_AFTER_LEN = HEADER.size - 8


class Record(NamedTuple):
    """A stored record: what both backends keep for one event."""

    seq: int
    ts: int
    key: bytes
    type: bytes
    value: bytes


class BatchInfo(NamedTuple):
    """Header fields of one batch and where it sits in its segment."""

    position: int
    size: int
    base_offset: int
    count: int
    first_seq: int
    last_seq: int
    max_ts: int


_packers: dict[tuple[int, int], object] = {}


def _packer(klen: int, tlen: int):
    """One struct.pack for a record's header, key and type (cached per key and type length)."""
    fn = _packers[(klen, tlen)] = struct.Struct(f">IQqHB{klen}s{tlen}s").pack
    return fn


def encode_batch(base_offset: int, records: list[Record]) -> bytes:
    """Frame records as one batch; the CRC covers everything after it."""
    parts = []
    append = parts.append
    max_ts = records[0].ts
    for seq, ts, key, type_, value in records:
        packer = _packers.get((len(key), len(type_)))
        if packer is None:
            packer = _packer(len(key), len(type_))
        append(packer(len(value), seq, ts, len(key), len(type_), key, type_))
        append(value)
        if ts > max_ts:
            max_ts = ts
    body = b"".join(parts)
    head = struct.pack(">BQIQQq", MAGIC, base_offset, len(records), records[0].seq, records[-1].seq, max_ts)
    crc = zlib.crc32(body, zlib.crc32(head))
    return struct.pack(">II", 4 + len(head) + len(body), crc) + head + body


class Torn(Exception):
    """The bytes at a position are an incomplete batch at the end of the data."""


class Bad(Exception):
    """The bytes at a position fail framing or checksum and more data follows."""


def parse_header(buf: bytes | memoryview, pos: int, end: int) -> BatchInfo:
    """Validate the batch at pos (CRC included) and return its header; raise Torn or Bad.

    A write cut short by a crash leaves a prefix of the last batch (or zeros, after a file system crash):
    that is Torn. Anything else that fails is Bad, and is never skipped silently.
    """
    if end - pos < HEADER.size:
        raise Torn()
    length, crc, magic, base, count, first, last, max_ts = HEADER.unpack_from(buf, pos)
    total = 4 + length
    if magic != MAGIC or length < _HEAD_AFTER_LEN + 4:
        if not any(bytes(buf[pos:end])):
            raise Torn()
        raise Bad(f"bad batch header (magic {magic}, length {length})")
    if pos + total > end:
        if _records_end(buf, pos, end, count, first, last) is not None:
            # whole records end before the data does: the length is damaged, not the write cut short
            raise Bad(f"batch length {length} disagrees with its {count} record(s)")
        raise Torn()
    if zlib.crc32(buf[pos + 8 : pos + total]) != crc:
        if pos + total == end:
            raise Torn()
        raise Bad("checksum mismatch")
    return BatchInfo(pos, total, base, count, first, last, max_ts)


def _records_end(buf: bytes | memoryview, pos: int, end: int, count: int, first: int, last: int) -> int | None:
    """Where the batch at pos ends by walking its records (seqs in [first, last]), or None if they run past end."""
    p = pos + HEADER.size
    for _ in range(count):
        if p + RECORD.size > end:
            return None
        vlen, seq, _, klen, tlen = RECORD.unpack_from(buf, p)
        if not first <= seq <= last:
            return None
        p += RECORD.size + klen + tlen + vlen
    return p if p <= end else None


def iter_records(buf: bytes | memoryview, info: BatchInfo) -> Iterator[Record]:
    """Records of a validated batch, in order."""
    unpack = RECORD.unpack_from
    size = RECORD.size
    new = tuple.__new__
    p = info.position + HEADER.size
    for _ in range(info.count):
        vlen, seq, ts, klen, tlen = unpack(buf, p)
        p += size
        k_end = p + klen
        t_end = k_end + tlen
        v_end = t_end + vlen
        yield new(Record, (seq, ts, buf[p:k_end], buf[k_end:t_end], buf[t_end:v_end]))
        p = v_end
