"""The records tape writes to Kafka and the commit journal that decides which of them are committed: the record
headers, the metadata and commit record formats, and reading the journal (metadata, tail, binary search).

The per-partition end offsets in the commit records mean a reader never has to decide "this partition is read to
its end" from a broker watermark: on tansu ListOffsets (end_offsets) returns the base offset of the last record
batch + 1, not the log end. Only a writer recovering the torn tail after the last commit, and the journal tail search,
read "to the end"; they do it with the Fetch response's high watermark (correct on tansu) taken by the same consumer
after its own fetches (KafkaLog.read_to_end), and use end_offsets only as a hint where to start looking.

Time slices do not use offsets_for_times: on tansu it matches the broker's append time at batch granularity and
answers "not found" with offset 0. The commit records carry each partition's running maximum ts_event, so the
journal is a time index: a cursor for time T starts at the end offset of the last commit whose running maximum is
below T (a binary search with single-record fetches, Journal.search); Replay filters the rest. Seqs are found the
same way.
"""
from __future__ import annotations

import json
import struct
import time
from typing import TYPE_CHECKING, Callable, NamedTuple

from eventstore.backend import Commit
from eventstore.batch import Record
from eventstore.errors import CorruptLog, StoreError
from eventstore.kafka.transport import Consumer, Message, TopicPartition

if TYPE_CHECKING:
    from eventstore.kafka import KafkaLog

JOURNAL = "_commits"
SCHEMAS = "_schemas"
H_TYPE, H_SEQ, H_TS = "tape.type", "tape.seq", "tape.ts"
T_COMMIT, T_META = b"tape.commit", b"tape.meta"
SEQ = struct.Struct(">Q")  # the tape.seq header: a data record's seq, a commit's last seq
TS = struct.Struct(">q")  # the tape.ts header: ts_event ns (a commit's: the step's last ts_init)
# commit value: format u8 | first seq u64 | hash length u8 | hash | partition count u16 | per partition state
_COMMIT_HEAD = struct.Struct(">BQB")
_COUNT = struct.Struct(">H")
# per data partition, in meta order (topics as listed, partitions 0..n-1): end offset (after the partition's last
# record at this commit), running max ts_event, records, payload bytes (key + type + value)
_STATE = struct.Struct(">QqQQ")
_COMMIT_FORMAT = 1
NO_TS = -(2**63)


class PartitionState(NamedTuple):
    """One data partition as of a commit: end offset, running max ts_event, records and payload bytes."""

    end: int
    max_ts: int
    records: int
    bytes: int


EMPTY = PartitionState(0, NO_TS, 0, 0)


class JournalCommit(NamedTuple):
    """A commit record as read from the journal, with its offset and the partition states after it."""

    offset: int
    commit: Commit
    states: tuple[PartitionState, ...]


def encode_meta(partitions: dict[str, int]) -> bytes:
    """The namespace metadata record (offset 0 of the journal): the partition map, decided once by the first writer."""
    return json.dumps({"format": 1, "partitions": partitions}, sort_keys=False).encode()


META_HEADERS = [(H_TYPE, T_META)]


def encode_commit(c: Commit, states: list[PartitionState]) -> bytes:
    return b"".join(
        [_COMMIT_HEAD.pack(_COMMIT_FORMAT, c.first, len(c.last_hash)), c.last_hash, _COUNT.pack(len(states))]
        + [_STATE.pack(*s) for s in states]
    )


def commit_headers(c: Commit) -> list[tuple[str, bytes]]:
    return [(H_TYPE, T_COMMIT), (H_SEQ, SEQ.pack(c.last)), (H_TS, TS.pack(c.ts))]


def header(m: Message, name: str) -> bytes | None:
    for k, v in m.headers or ():
        if k == name:
            return v
    return None


def decode_journal(m: Message, url: str) -> JournalCommit | dict | None:
    """A commit, the metadata dict, or None for anything else (a future record kind)."""
    kind = header(m, H_TYPE)
    try:
        if kind == T_COMMIT:
            last = SEQ.unpack(header(m, H_SEQ))[0]
            ts = TS.unpack(header(m, H_TS))[0]
            v = m.value
            fmt, first, hlen = _COMMIT_HEAD.unpack_from(v)
            p = _COMMIT_HEAD.size
            h = bytes(v[p : p + hlen])
            p += hlen
            (n,) = _COUNT.unpack_from(v, p)
            p += _COUNT.size
            states = tuple(PartitionState(*_STATE.unpack_from(v, p + i * _STATE.size)) for i in range(n))
            return JournalCommit(m.offset, Commit(first, last, h, ts), states)
        if kind == T_META:
            return json.loads(m.value)
    except (struct.error, TypeError, ValueError) as e:
        raise CorruptLog(f"{url}: unreadable journal record {m.topic}@{m.offset} ({e}): the journal is damaged") from None
    return None


def record_of(m: Message) -> Record:
    """A stored Record from a Kafka record written by tape (seq/ts/type from the headers)."""
    h = m.headers
    if len(h) == 3 and h[0][0] == H_TYPE and h[1][0] == H_SEQ and h[2][0] == H_TS:
        t, s, ts = h[0][1], h[1][1], h[2][1]
    else:
        t, s, ts = header(m, H_TYPE), header(m, H_SEQ), header(m, H_TS)
        if t is None or s is None or ts is None:
            raise CorruptLog(
                f"record {m.topic}[{m.partition}]@{m.offset} lacks tape headers: something other than tape wrote "
                "to this topic; a namespace's topics hold only tape records"
            )
    return Record(SEQ.unpack(s)[0], TS.unpack(ts)[0], m.key or b"", t, m.value)


class Journal:
    """Reading a namespace's commit journal: metadata, tail, binary search."""

    def __init__(self, log: KafkaLog, ns: str):
        self.log = log
        self.ns = ns
        self.tp = TopicPartition(f"{ns}.{JOURNAL}", 0)

    def meta(self, consumer: Consumer, written: bool = False) -> dict | None:
        """The metadata record at offset 0, or None when the namespace has none yet.

        written: the caller has just committed the record, so wait for it instead of trusting a high watermark
        (a Fetch sent before the commit may still answer "empty").
        """
        consumer.assign([self.tp])
        consumer.seek(self.tp, 0)
        found: list = []

        # the journal may be long: stop at the first record instead of reading it all
        deadline = time.monotonic() + self.log.timeout
        with self.log.errors("reading namespace metadata"):
            while not found:
                for ms in consumer.poll(timeout_ms=100, max_records=1).values():
                    if ms and not found:
                        found.append(decode_journal(ms[0], self.log.url))
                hw = consumer.highwater(self.tp)
                if not found and not written and hw is not None and consumer.position(self.tp) >= hw:
                    return None
                if time.monotonic() > deadline:
                    raise StoreError(f"Kafka at {self.log.url}: no answer reading {self.tp.topic}; is the broker up?")
        meta = found[0]
        if not isinstance(meta, dict) or "partitions" not in meta:
            raise CorruptLog(f"{self.log.url}: {self.tp.topic} does not start with tape's namespace record: "
                             "the topic was not created by tape")
        return meta

    def tail(self, consumer: Consumer) -> tuple[JournalCommit | None, int]:
        """The last commit and the offset after it, reading backwards in growing windows from a hint.

        end_offsets() is only a hint where to start: on tansu it is below the true end (base offset of the last
        batch + 1); on Kafka it is exact but the last offsets may be transaction markers. Either way the window is
        then read forward to the fetch high watermark, and widened until it contains a commit.
        """
        tp = self.tp
        consumer.assign([tp])
        with self.log.errors("reading the commit journal"):
            hint = consumer.end_offsets([tp]).get(tp) or 0
        window = 16
        start = max(0, hint - window)
        while True:
            last: list[JournalCommit] = []

            def take(_tp: TopicPartition, m: Message) -> None:
                j = decode_journal(m, self.log.url)
                if isinstance(j, JournalCommit):
                    last[:] = [j]

            consumer.seek(tp, start)
            try:
                self.log.read_to_end(consumer, [tp], take, "reading the commit journal")
            except CorruptLog:
                if start == 0:
                    raise
                start = 0  # a hint past the end (never seen): read it all
                continue
            end = consumer.position(tp)
            if last or start == 0:
                return (last[0] if last else None), end
            window *= 4
            start = max(0, start - window)

    def probe(self, consumer: Consumer, offset: int, hi: int) -> JournalCommit | None:
        """The first commit at or after offset and before hi (one small fetch, usually)."""
        tp = self.tp
        consumer.seek(tp, offset)
        deadline = time.monotonic() + self.log.timeout
        with self.log.errors("searching the commit journal"):
            while True:
                for ms in consumer.poll(timeout_ms=100, max_records=50).values():
                    for m in ms:
                        if m.offset >= hi:
                            return None
                        j = decode_journal(m, self.log.url)
                        if isinstance(j, JournalCommit):
                            return j
                if consumer.position(tp) >= hi:
                    return None
                if time.monotonic() > deadline:
                    raise StoreError(f"Kafka at {self.log.url}: no answer reading {tp.topic}; is the broker up?")

    def search(self, consumer: Consumer, hi: int, before: Callable[[JournalCommit], bool]) -> JournalCommit | None:
        """The last commit (below offset hi) for which before(commit) holds; before must be monotone."""
        lo, best = 0, None
        while lo < hi:
            mid = (lo + hi) // 2
            j = self.probe(consumer, mid, hi)
            if j is None or not before(j):
                hi = mid
            else:
                best = j
                lo = j.offset + 1
        return best


__all__ = ["EMPTY", "H_SEQ", "H_TS", "H_TYPE", "JOURNAL", "META_HEADERS", "NO_TS", "SCHEMAS", "SEQ", "TS", "Journal",
           "JournalCommit", "PartitionState", "commit_headers", "decode_journal", "encode_commit", "encode_meta",
           "header", "record_of"]
