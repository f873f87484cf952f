"""Reading a namespace on Kafka: the reader (horizon, commits, where a slice starts) and the per-partition cursor
that delivers records only up to the end offsets the last known commit recorded."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Iterator

from eventstore.backend import Commit, Cursor, NamespaceReader, PartitionInfo
from eventstore.batch import Record
from eventstore.errors import CorruptLog, NamespaceBeingCreated, StoreError
from eventstore.kafka.journal import EMPTY, Journal, JournalCommit, PartitionState, decode_journal, record_of
from eventstore.kafka.transport import Consumer, TopicPartition

if TYPE_CHECKING:
    from eventstore.kafka import KafkaLog


class KafkaCursor(Cursor):
    """One data partition read forward up to the committed end offsets the reader knows."""

    def __init__(self, reader: KafkaNamespaceReader, topic: str, partition: int, index: int,
                 seq: int | None, ts: int | None):
        self.reader = reader
        self.tp = TopicPartition(f"{reader.ns}.{topic}", partition)
        self.index = index
        self.start_seq, self.start_ts = seq, ts
        self.consumer: Consumer | None = None
        self.next_offset = 0
        self.batch: list[Record] = []
        self.i = 0

    def _open(self) -> None:
        r = self.reader
        start = r.start_offset(self.index, self.start_seq, self.start_ts)
        self.consumer = r.new_consumer()
        self.consumer.assign([self.tp])
        self.consumer.seek(self.tp, start)
        self.next_offset = start

    def read_until(self, horizon: int) -> Iterator[Record]:
        r = self.reader
        if horizon > r.known_horizon:
            r.horizon()
        end = r.state(self.index).end
        if self.consumer is None:
            if self.next_offset >= end:
                return
            self._open()
        log = r.log
        while True:
            batch, i = self.batch, self.i
            n = len(batch)
            while i < n:
                rec = batch[i]
                if rec.seq > horizon:
                    self.i = i
                    return
                i += 1
                self.i = i
                yield rec
            if self.next_offset >= end:
                return
            # committed records reach `end` (from the journal): keep fetching until they are all here
            self.batch, self.i = self._fetch(log, end), 0

    def _fetch(self, log: KafkaLog, end: int) -> list[Record]:
        tp = self.tp
        since = time.monotonic()
        with log.errors(f"reading {tp.topic}[{tp.partition}]"):
            while True:
                got = self.consumer.poll(timeout_ms=200)
                ms = got.get(tp)
                if ms:
                    self.next_offset = ms[-1].offset + 1
                    return [record_of(m) for m in ms]
                if time.monotonic() - since > log.timeout:
                    raise StoreError(
                        f"Kafka at {log.url}: {tp.topic}[{tp.partition}] gives no records at offset {self.next_offset} "
                        f"although committed records reach offset {end} (waited {log.timeout:.0f}s): broker down, "
                        "or restarted without its data"
                    )

    def close(self) -> None:
        if self.consumer is not None:
            self.consumer.close()
        self.consumer = None

    def __del__(self) -> None:
        self.close()


class KafkaNamespaceReader(NamespaceReader):
    def __init__(self, log: KafkaLog, ns: str):
        self.log = log
        self.ns = ns
        self.journal = Journal(log, ns)
        self._tail: Consumer | None = None  # consumer following the journal tail
        self._probe: Consumer | None = None  # consumer for binary searches (small fetches)
        self._idle: list[Consumer] = []  # consumers of finished commits() iterators, for reuse
        self._all: list[Consumer] = []
        self.known_horizon = 0  # the last committed seq this reader has seen, without asking the broker
        self._last: JournalCommit | None = None
        self._journal_end = 0  # offset after the last commit known
        self._hint: tuple[int, int] | None = None  # (last seq, next offset) where a commits() scan stopped
        self._alive_at = time.monotonic()
        c = self.new_consumer()
        meta = self.journal.meta(c)
        if meta is None:
            raise NamespaceBeingCreated(f"namespace {ns!r} in {log.url} is being created (no metadata record yet): "
                                        "retry once its writer has started")
        self.partitions: dict[str, int] = dict(meta["partitions"])
        self.order = [(t, i) for t, n in self.partitions.items() for i in range(n)]
        self.index = {k: j for j, k in enumerate(self.order)}
        self._tail = c

    def new_consumer(self, fetch_bytes: int | None = None) -> Consumer:
        """A consumer this reader closes with itself."""
        c = self.log.consumer(fetch_bytes=fetch_bytes)
        self._all.append(c)
        return c

    def state(self, index: int) -> PartitionState:
        """Data partition `index` as of the last commit this reader knows."""
        return self._last.states[index] if self._last is not None and index < len(self._last.states) else EMPTY

    def horizon(self) -> int:
        tp = self.journal.tp
        if self._last is None and self._journal_end == 0:
            last, end = self.journal.tail(self._tail)
            self._journal_end = end
            self._set_last(last)
            return self.known_horizon
        # follow: whatever the tail consumer has fetched since (a stale answer is only late, never wrong)
        with self.log.errors("reading the commit journal"):
            self._check_alive()
            while True:
                got = self._tail.poll(timeout_ms=0, max_records=5000).get(tp)
                if not got:
                    break
                for m in got:
                    j = decode_journal(m, self.log.url)
                    if isinstance(j, JournalCommit):
                        self._set_last(j)
                self._journal_end = max(self._journal_end, got[-1].offset + 1)
        return self.known_horizon

    def _check_alive(self) -> None:
        """Every few seconds of following, ask the broker something: a poll on a dead broker just returns nothing.

        ListOffsets answers are only a liveness sign here (tansu's is below the true end), except that 0 for a
        journal known to hold records means the broker lost them (e.g. restarted on memory storage).
        """
        now = time.monotonic()
        if now - self._alive_at < max(1.0, self.log.timeout / 3):
            return
        tp = self.journal.tp
        hint = self._tail.end_offsets([tp], timeout_ms=int(self.log.timeout * 1000)).get(tp)
        if not hint and self._journal_end > 0:
            raise CorruptLog(f"Kafka at {self.log.url}: {tp.topic} is empty but held {self._journal_end} offsets: "
                             "the broker lost the namespace (restarted without its data?)")
        self._alive_at = time.monotonic()

    def _set_last(self, j: JournalCommit | None) -> None:
        if j is not None:
            self._last = j
            self.known_horizon = j.commit.last

    def commits(self, from_seq: int = 1) -> Iterator[Commit]:
        if self._last is None and self._journal_end == 0:
            self.horizon()
        if self._last is None:
            return
        tp = self.journal.tp
        if from_seq <= 1:
            start = 0
        elif self._hint is not None and from_seq > self._hint[0]:
            start = self._hint[1]
        else:
            found = self.journal.search(self._searcher(), self._last.offset + 1, lambda j: j.commit.last < from_seq)
            start = found.offset + 1 if found else 0
        c = self._idle.pop() if self._idle else self.new_consumer()
        try:
            c.assign([tp])
            c.seek(tp, start)
            offset = start
            since = time.monotonic()
            while True:
                stop = self._last.offset + 1
                if offset >= stop:
                    return
                with self.log.errors("reading the commit journal"):
                    ms = c.poll(timeout_ms=200, max_records=2000).get(tp)
                if not ms:
                    if time.monotonic() - since > self.log.timeout:
                        raise StoreError(f"Kafka at {self.log.url}: no answer reading {tp.topic} at offset {offset}; "
                                         "is the broker up?")
                    continue
                since = time.monotonic()
                for m in ms:
                    if m.offset >= stop:
                        return
                    offset = m.offset + 1
                    j = decode_journal(m, self.log.url)
                    if isinstance(j, JournalCommit):
                        self._hint = (j.commit.last, offset)
                        if j.commit.last >= from_seq:
                            yield j.commit
        finally:
            self._idle.append(c)

    def _searcher(self) -> Consumer:
        if self._probe is None:
            self._probe = self.new_consumer(fetch_bytes=1024)
            self._probe.assign([self.journal.tp])
        return self._probe

    def start_offset(self, index: int, seq: int | None, ts: int | None) -> int:
        """Where a cursor for a seq or time starts: the end offset of the last commit wholly before it."""
        if seq is None and ts is None:
            return 0
        if self._last is None and self._journal_end == 0:
            self.horizon()
        if self._last is None:
            return 0
        if seq is not None:
            def before(j: JournalCommit) -> bool:
                return j.commit.last < seq
        else:
            def before(j: JournalCommit) -> bool:  # running max of ts_event in the partition: monotone
                return index < len(j.states) and j.states[index].max_ts < ts
        found = self.journal.search(self._searcher(), self._last.offset + 1, before)
        return found.states[index].end if found is not None and index < len(found.states) else 0

    def cursor(self, topic: str, partition: int, *, seq: int | None = None, ts: int | None = None) -> Cursor:
        index = self.index.get((topic, partition))
        if index is None:
            raise StoreError(f"namespace {self.ns!r} has no partition {topic}[{partition}]")
        return KafkaCursor(self, topic, partition, index, seq, ts)

    def partition_info(self) -> list[PartitionInfo]:
        """From the last commit's partition states (records and payload bytes, torn tails after it excluded)."""
        self.horizon()
        return [PartitionInfo(t, i, s.records, s.bytes, 0)
                for (t, i), s in zip(self.order, (self.state(j) for j in range(len(self.order))))]

    def close(self) -> None:
        for c in self._all:
            c.close()
        self._all = []
        self._idle = []
        self._tail = self._probe = None

    def __del__(self) -> None:
        self.close()


__all__ = ["KafkaCursor", "KafkaNamespaceReader"]
