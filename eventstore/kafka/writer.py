"""Writing a namespace on Kafka: the fenced single writer, and the recovery of the torn tail a crashed one left."""
from __future__ import annotations

from collections import deque
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator

from eventstore.backend import TOPIC_PARTITIONS, Commit, NamespaceWriter
from eventstore.batch import Record
from eventstore.errors import StoreError
from eventstore.kafka.journal import (
    EMPTY,
    H_SEQ,
    H_TS,
    H_TYPE,
    JOURNAL,
    META_HEADERS,
    NO_TS,
    SCHEMAS,
    SEQ,
    TS,
    Journal,
    PartitionState,
    commit_headers,
    encode_commit,
    encode_meta,
    record_of,
)
from eventstore.kafka.transport import Fenced, Message, Producer, TopicPartition

if TYPE_CHECKING:
    from eventstore.kafka import KafkaLog


class KafkaNamespaceWriter(NamespaceWriter):
    """The fenced single writer of a namespace: each commit is one transaction, data acknowledged before the journal.

    Fencing: the transactional id is derived from the namespace, so a second writer's init_transactions bumps the
    producer epoch and this writer's next produce or commit fails: the transport raises Fenced, a LockedNamespace.
    """

    def __init__(self, log: KafkaLog, ns: str, partitions: dict[str, int] | None, timeout: float | None,
                 discard_uncommitted: bool = False):
        self.log = log
        # a copy's writer: the records past the last commit are what the killed run of that copy sent; their seqs are
        # written again, and a record already there with the same bytes is taken as sent (Kafka cannot cut it)
        self.adopt = discard_uncommitted
        self.torn: list[deque[tuple[int, Record]]] = []
        self.ns = ns
        self.timeout = float(timeout if timeout is not None else log.timeout)
        self.transactional_id = f"tape-writer-{ns}"
        self.journal_topic = f"{ns}.{JOURNAL}"
        self.producer: Producer | None = None
        self._broken: str | None = None
        try:
            self._open(partitions)
        except BaseException:
            self.close()
            raise

    def _open(self, partitions: dict[str, int] | None) -> None:
        log, ns = self.log, self.ns
        jt, st = self.journal_topic, f"{ns}.{SCHEMAS}"
        existing = log.describe([jt, st])
        log.create_topics({name: spec for name, spec in {
            jt: (1, {"retention.ms": "-1", "cleanup.policy": "delete"}),
            st: (1, {"cleanup.policy": "compact", "retention.ms": "-1"}),
        }.items() if name not in existing})
        ms = int(self.timeout * 1000)
        self.producer = log.producer(timeout_ms=ms, transactional_id=self.transactional_id,
                                     transaction_timeout_ms=max(60000, ms))
        with self._errors("starting the writer"):
            self.producer.init_transactions()  # fences any earlier writer of the namespace
        consumer = log.consumer()
        try:
            journal = Journal(log, ns)
            meta = journal.meta(consumer)
            if meta is None:
                parts = dict(partitions or TOPIC_PARTITIONS)
                if not parts or any(not isinstance(n, int) or n < 1 for n in parts.values()):
                    raise StoreError(f"invalid partition map {parts!r}: give each topic 1 or more partitions")
                self._create_data_topics(parts)
                body = encode_meta(parts)
                self._transaction(lambda: [self.producer.send(jt, value=body, partition=0, headers=META_HEADERS)],
                                  "writing the namespace record")
                fresh = log.consumer()
                try:  # the first record wins if two first writers raced
                    meta = journal.meta(fresh, written=True)
                finally:
                    fresh.close()
            self.partitions = dict(meta["partitions"])
            self._create_data_topics(self.partitions)
            self.order = [(t, i) for t, n in self.partitions.items() for i in range(n)]
            self.index = {k: j for j, k in enumerate(self.order)}
            self.tps = [TopicPartition(f"{ns}.{t}", i) for t, i in self.order]
            last, _ = journal.tail(consumer)
            states = list(last.states) if last is not None else []
            states += [EMPTY] * (len(self.order) - len(states))
            # the torn tail: records after the last commit's end offsets (a step whose commit never landed)
            max_seq = 0
            tp_index = {tp: j for j, tp in enumerate(self.tps)}
            acc = [list(s) for s in states]

            torn: list[deque[tuple[int, Record]]] = [deque() for _ in self.tps]

            def take(tp: TopicPartition, m: Message) -> None:
                nonlocal max_seq
                r = record_of(m)
                if self.adopt:
                    torn[tp_index[tp]].append((m.offset, r))
                    return
                a = acc[tp_index[tp]]
                a[0] = m.offset + 1
                a[1] = max(a[1], r.ts)
                a[2] += 1
                a[3] += len(r.key) + len(r.type) + len(r.value)
                max_seq = max(max_seq, r.seq)

            consumer.assign(self.tps)
            for tp, s in zip(self.tps, states):
                consumer.seek(tp, s.end)
            log.read_to_end(consumer, self.tps, take, "recovering the namespace tail")
            self.states = [PartitionState(*a) for a in acc]
            self.torn = torn
            self.last_hash = last.commit.last_hash if last is not None else b""
            # a step torn by a crash keeps its seqs: the writer goes on after them, readers skip them
            self.next_seq = max(max_seq, last.commit.last if last is not None else 0) + 1
        finally:
            consumer.close()

    def _create_data_topics(self, parts: dict[str, int]) -> None:
        names = {f"{self.ns}.{t}": n for t, n in parts.items()}
        have = self.log.describe(list(names))
        for name, n in list(have.items()):
            if n == names[name]:
                continue
            if self.log.holds_records(name, n):
                raise StoreError(f"topic {name} has {n} partitions but namespace {self.ns!r} records {names[name]}: "
                                 "it was created by something else; remove it or use another namespace")
            # empty, of another shape: a broker that creates topics on a metadata request made it (a client asked
            # for it while the namespace did not exist, e.g. after the broker restarted empty); nothing of ours is
            # in it, so it is made again with the recorded partitions
            self.log.delete_topics([name], f"replacing the empty topic {name}")
            del have[name]
        self.log.create_topics({name: (n, {"retention.ms": "-1", "cleanup.policy": "delete"})
                                for name, n in names.items() if name not in have})

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            with self.log.errors(what):
                yield
        except Fenced:
            raise self._fenced() from None

    def _fenced(self) -> Fenced:
        self._broken = "fenced"
        return Fenced(f"namespace {self.ns!r} was taken over by another writer (Kafka transactional id "
                      f"{self.transactional_id!r} fenced this one): a namespace has one writer")

    def _transaction(self, send: Callable[[], list[Any]], what: str) -> None:
        """begin, send (returns the deliveries), wait for all acks, commit; any failure leaves the writer unusable."""
        p = self.producer
        try:
            with self._errors(what):
                p.begin_transaction()
                p.flush(send(), self.timeout)
                p.commit_transaction(self.timeout)
        except BaseException as e:
            if self._broken is None:
                self._broken = f"{type(e).__name__}: {e}"
            raise

    def commit(self, batches: dict[tuple[str, int], list[Record]], commit: Commit) -> None:
        self.commit_many([(batches, commit)])

    def commit_many(self, items: list[tuple[dict[tuple[str, int], list[Record]], Commit]]) -> None:
        """Several commits in one transaction (copy uses it): all data acknowledged, then all commit records."""
        if self._broken is not None:
            if self._broken == "fenced":
                raise self._fenced()
            raise StoreError(f"the writer of {self.ns!r} failed earlier ({self._broken}); whether its last step was "
                             "committed is unknown: open a new writer, it recovers from the log")
        if not items:
            return
        first, last = items[0][1].first, items[-1][1].last
        self._transaction(lambda: self._send_all(items), f"committing seq {first}..{last} of {self.ns!r}")
        self.next_seq = last + 1
        self.last_hash = items[-1][1].last_hash

    def _adopted(self, items: list[tuple[dict[tuple[str, int], list[Record]], Commit]]
                 ) -> dict[tuple[int, int], list[int]]:
        """Per (commit, partition index): the offsets of its leading records already on the broker, byte for byte,
        from the killed run of this copy (each partition's uncommitted records are a prefix of what that run sent)."""
        found: dict[tuple[int, int], list[int]] = {}
        if not any(self.torn):
            return found
        heads = [0] * len(self.torn)
        for k, (batches, _) in enumerate(items):
            for (topic, part), records in batches.items():
                j = self.index.get((topic, part))
                if j is None or heads[j] >= len(self.torn[j]):
                    continue
                offsets = found[(k, j)] = []
                for r in records:
                    if heads[j] >= len(self.torn[j]):
                        break
                    offset, there = self.torn[j][heads[j]]
                    if (there.seq, there.ts, bytes(there.key), bytes(there.type), bytes(there.value)) != (
                            r.seq, r.ts, bytes(r.key), bytes(r.type), bytes(r.value)):
                        raise StoreError(
                            f"namespace {self.ns!r} in {self.log.url} holds uncommitted records after seq "
                            f"{self.next_seq - 1} that are not this copy's (offset {offset} of {self.tps[j].topic}"
                            f"[{part}] holds seq {there.seq}, the copy writes seq {r.seq} there): remove the namespace "
                            "there and copy again")
                    offsets.append(offset)
                    heads[j] += 1
        for j, n in enumerate(heads):
            for _ in range(n):
                self.torn[j].popleft()
        return found

    def _send_all(self, items: list[tuple[dict[tuple[str, int], list[Record]], Commit]]) -> list[Any]:
        producer = self.producer
        adopted = self._adopted(items)
        send = producer.send
        ns = self.ns
        pack_u, pack_i = SEQ.pack, TS.pack
        deliveries = []
        lasts: list[list] = []  # per commit: (index, delivery of its last record in that partition, added stats)
        topics = {t: f"{ns}.{t}" for t in self.partitions}
        for k, (batches, _) in enumerate(items):
            mine = []
            for (topic, part), records in batches.items():
                j = self.index.get((topic, part))
                if j is None:
                    raise StoreError(f"namespace {ns!r} has no partition {topic}[{part}]")
                name = topics[topic]
                max_ts, size = NO_TS, 0
                d = None
                there = adopted.get((k, j), ())
                for seq, ts, key, type_, value in records[:len(there)]:  # already on the broker: not sent again
                    max_ts = max(max_ts, ts)
                    size += len(key) + len(type_) + len(value)
                    d = there[-1]
                for seq, ts, key, type_, value in records[len(there):]:
                    d = send(name, value=value, key=key, partition=part, timestamp_ms=max(0, ts // 1_000_000),
                             headers=[(H_TYPE, type_), (H_SEQ, pack_u(seq)), (H_TS, pack_i(ts))])
                    deliveries.append(d)
                    if ts > max_ts:
                        max_ts = ts
                    size += len(key) + len(type_) + len(value)
                if d is not None:
                    mine.append((j, d, max_ts, len(records), size))
            lasts.append(mine)
        # the data must be acknowledged before any commit record that makes it visible
        producer.flush(deliveries, self.timeout)
        states = list(self.states)
        journal = []
        for (batches, c), mine in zip(items, lasts):
            for j, d, max_ts, n, size in mine:
                s = states[j]
                end = (d if isinstance(d, int) else producer.offset(d)) + 1  # an int: the offset of an adopted record
                states[j] = PartitionState(end, max(s.max_ts, max_ts), s.records + n, s.bytes + size)
            journal.append((c, encode_commit(c, states)))
        deliveries = self._send_journal(journal)
        self.states = states
        return deliveries

    def _send_journal(self, journal: list[tuple[Commit, bytes]]) -> list[Any]:
        send = self.producer.send
        jt = self.journal_topic
        return [send(jt, value=value, partition=0, timestamp_ms=max(0, c.ts // 1_000_000), headers=commit_headers(c))
                for c, value in journal]

    def close(self) -> None:
        p, self.producer = self.producer, None
        if p is not None:
            p.close(timeout=0 if self._broken else min(self.timeout, 5.0))

    def __del__(self) -> None:
        self.close()


__all__ = ["KafkaNamespaceWriter"]
