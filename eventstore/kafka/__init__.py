"""The Kafka backend (kafka://HOST:PORT[,HOST:PORT]): the file log's model on Kafka topics, through kafka-python
(or confluent-kafka with ?client=confluent, confluent.py); both behind the client protocol of transport.py.

Layout of a namespace NS:

- ``NS.market``, ``NS.intents``, ``NS.executions``, ``NS.system``: the events. Kafka key = instrument id, value = the
  same Avro single-object bytes as the file log, headers ``tape.type`` (full type name), ``tape.seq`` and ``tape.ts``
  (8-byte big-endian seq and ts_event ns). Kafka timestamp = ts_event // 1_000_000. Infinite retention.
- ``NS._commits``: one partition, the commit journal. Offset 0 holds the namespace metadata record (``tape.meta``:
  JSON ``{"format": 1, "partitions": {...}}``, the partition map, decided once by the first writer); every later
  record is one commit (``tape.commit``): first seq, last seq (header), last hash, and for every data partition its
  state after the commit (end offset, running max ts_event, record count, payload bytes). Format and reading:
  journal.py, which also says why readers never trust a broker watermark and how time slices use the journal.
- ``NS._schemas``: compacted registry, key = fingerprint hex, value = schema JSON text (registry.py).
- ``NS._control``: one partition, the operators' commands for the session writing NS (control.py), created by the
  first command sent; not part of the log (the session records each command it reads as an event).

Why an in-band journal and not broker transactions for atomicity: on the test broker (tansu 0.6.0) read_committed
consumers receive the records of *aborted* transactions, and a transaction left open by a crashed writer blocks
read_committed readers of that partition forever. So transactions are used for one thing only, fencing (a second
writer's init_transactions bumps the epoch of ``tape-writer-NS`` and the first writer's next produce or commit fails,
writer.py), while what is committed is decided by the journal, exactly as in the file log: a step's records are
produced and acknowledged first, then its commit record; readers deliver only seqs inside committed ranges and read
each partition only up to the end offset recorded by the last commit they know (reader.py). Readers use
read_uncommitted: the journal, not the broker, decides what is visible, and read_committed would stall behind a
dangling transaction on tansu.

No consumer groups anywhere: replay is manual assignment + seek, deterministic and immediate (tansu joins a group
only after about session_timeout_ms / 2).

URL options: ``kafka://HOST:PORT[,HOST:PORT]?timeout=SECONDS&fetch_bytes=N&replication_factor=N&client=NAME`` (also
keyword arguments of KafkaLog): how long to wait for the broker before a one-line StoreError (default 15 s; connecting
gives up after at most 5 s), the most bytes one fetch brings per partition (default 4 MiB), the replication factor of
new topics (default -1, the cluster's default), and the client library: ``kafka-python`` (default) or ``confluent``
(confluent-kafka on librdkafka, optional, faster; confluent.py). Both write the same records; a namespace written
through one reads through the other.
"""
from __future__ import annotations

import time
import weakref
from contextlib import contextmanager
from typing import Any, Callable, Iterator
from urllib.parse import parse_qs

from eventstore.backend import Backend, NamespaceReader, NamespaceWriter, valid_namespace
from eventstore.errors import NoNamespace, StoreError
from eventstore.kafka.control import KafkaControl
from eventstore.kafka.journal import JOURNAL
from eventstore.kafka.reader import KafkaCursor, KafkaNamespaceReader
from eventstore.kafka.registry import KafkaSchemaStore
from eventstore.kafka.transport import (
    Admin,
    Connection,
    Consumer,
    Fenced,
    Message,
    Producer,
    TopicPartition,
    Transport,
    TransportError,
)
from eventstore.kafka.writer import KafkaNamespaceWriter

DEFAULT_TIMEOUT = 15.0
CLIENTS = ("kafka-python", "confluent")  # confluent: confluent.py, the optional librdkafka transport


def _transport(client: str, conn: Connection) -> Transport:
    """The client library's transport; ImportError (one line, naming the package) when it is not installed."""
    if client == "confluent":
        from eventstore.kafka.confluent import Confluent

        return Confluent(conn)
    from eventstore.kafka.transport import KafkaPython

    return KafkaPython(conn)


class KafkaLog(Backend):
    """Namespaces as topic sets on a Kafka cluster (or any Kafka-protocol broker, e.g. tansu)."""

    discards_uncommitted = True  # a copy's writer writes the seqs past the last commit again, adopting equal records

    def __init__(self, url: str, *, timeout: float | None = None, fetch_bytes: int | None = None,
                 replication_factor: int | None = None, client: str | None = None):
        if not url.startswith("kafka://"):
            raise StoreError(f"not a Kafka store URL: {url!r}; use kafka://HOST:PORT[,HOST:PORT]")
        rest = url[len("kafka://"):]
        hosts, _, query = rest.partition("?")
        hosts = hosts.rstrip("/")
        servers = [h.strip() for h in hosts.split(",") if h.strip()]
        if not servers or any(":" not in s for s in servers):
            raise StoreError(f"store {url}: name the brokers as kafka://HOST:PORT[,HOST:PORT]")
        opts = {k: v[-1] for k, v in parse_qs(query).items()}
        try:
            self.timeout = float(timeout if timeout is not None else opts.get("timeout", DEFAULT_TIMEOUT))
            self.fetch_bytes = int(fetch_bytes if fetch_bytes is not None else opts.get("fetch_bytes", 4 << 20))
            # -1: the cluster's default.replication.factor (CreateTopics v4+); tansu accepts it and uses 1
            self.replication_factor = int(
                replication_factor if replication_factor is not None else opts.get("replication_factor", -1))
        except ValueError:
            raise StoreError(f"store {url}: timeout, fetch_bytes and replication_factor must be numbers") from None
        self.client = client or opts.get("client", "kafka-python")
        if self.client not in CLIENTS:
            raise StoreError(f"store {url}: unknown client {self.client!r}; use client=kafka-python or client=confluent")
        self.url = url
        self.servers = servers
        self.connection = Connection(tuple(servers), self.timeout)
        try:
            self.transport = _transport(self.client, self.connection)
        except ImportError as e:
            raise StoreError(f"store {url}: {e}") from None
        self._admin: Admin | None = None
        self._plain: Producer | None = None
        self._opened: weakref.WeakSet = weakref.WeakSet()

    # ---- clients -------------------------------------------------------------------------------------------

    @contextmanager
    def errors(self, what: str) -> Iterator[None]:
        """The transport's typed errors as one line naming this store and what tape was doing."""
        try:
            yield
        except TransportError as e:
            raise e.at(self.url, what) from None

    def admin(self) -> Admin:
        if self._admin is None:
            with self.errors("connecting"):
                self._admin = self.transport.admin()
        return self._admin

    def consumer(self, *, fetch_bytes: int | None = None) -> Consumer:
        """A consumer for manual assignment: no group, no auto commit, no silent offset reset."""
        with self.errors("connecting a consumer"):
            return self.transport.consumer(fetch_bytes or self.fetch_bytes)

    def producer(self, *, timeout_ms: int | None = None, linger_ms: int = 50, transactional_id: str | None = None,
                 transaction_timeout_ms: int | None = None) -> Producer:
        with self.errors("connecting a producer"):
            return self.transport.producer(timeout_ms=timeout_ms or self.connection.timeout_ms, linger_ms=linger_ms,
                                           transactional_id=transactional_id,
                                           transaction_timeout_ms=transaction_timeout_ms)

    def plain_producer(self) -> Producer:
        """The store's shared non-transactional producer (the registry's)."""
        if self._plain is None:
            self._plain = self.producer(linger_ms=0)
        return self._plain

    def read_to_end(self, consumer: Consumer, tps: list[TopicPartition],
                    on_record: Callable[[TopicPartition, Message], None], what: str) -> None:
        """Poll assigned partitions until each is read to the high watermark of a Fetch made by this consumer.

        Not end_offsets(): tansu's ListOffsets answer is the base offset of the last batch + 1 (its quirk). The
        Fetch response's high watermark is right; position >= highwater after a fetch means "read to the end".
        """
        pending = set(tps)
        last_progress = time.monotonic()
        with self.errors(what):
            while pending:
                got = consumer.poll(timeout_ms=100, max_records=5000)
                for tp, ms in got.items():
                    for m in ms:
                        on_record(tp, m)
                if got:
                    last_progress = time.monotonic()
                for tp in list(pending):
                    hw = consumer.highwater(tp)
                    if hw is not None and consumer.position(tp) >= hw:
                        pending.discard(tp)
                if pending and time.monotonic() - last_progress > self.timeout:
                    names = ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(pending))
                    raise StoreError(f"Kafka at {self.url}: no answer reading {names} ({what}) for "
                                     f"{self.timeout:.0f}s; is the broker up?")

    # ---- topics --------------------------------------------------------------------------------------------

    def describe(self, topics: list[str]) -> dict[str, int]:
        """Partition counts of the topics that exist (metadata request without auto-creation)."""
        with self.errors("reading topic metadata"):
            return self.admin().describe(topics)

    def create_topics(self, spec: dict[str, tuple[int, dict[str, str]]]) -> None:
        """Create missing topics with explicit partitions and configs (tansu would auto-create 4 partitions)."""
        if not spec:
            return
        with self.errors("creating topics"):
            refused = self.admin().create(spec, self.replication_factor, self.connection.timeout_ms)
        if refused:
            name, why = next(iter(refused.items()))
            raise StoreError(f"Kafka at {self.url} refused to create topic {name}: {why}")
        deadline = time.monotonic() + self.timeout
        while set(self.describe(list(spec))) != set(spec):
            if time.monotonic() > deadline:
                raise StoreError(f"Kafka at {self.url}: created topics did not appear in metadata in time")
            time.sleep(0.05)

    def delete_topics(self, topics: list[str], what: str) -> None:
        """Delete topics and wait until metadata no longer lists them."""
        if not topics:
            return
        with self.errors(what):
            refused = self.admin().delete(topics, self.connection.timeout_ms)
        if refused:
            name, why = next(iter(refused.items()))
            raise StoreError(f"Kafka at {self.url} refused to delete topic {name}: {why}")
        deadline = time.monotonic() + self.timeout
        while self.describe(topics):
            if time.monotonic() > deadline:
                raise StoreError(f"Kafka at {self.url}: deleted topics {', '.join(topics)} still listed after "
                                 f"{self.timeout:.0f}s")
            time.sleep(0.05)

    def holds_records(self, topic: str, partitions: int) -> bool:
        """Whether any partition of the topic holds a record (read to the Fetch high watermark, not ListOffsets)."""
        consumer = self.consumer()
        found = [False]

        def take(_tp: TopicPartition, _m: Message) -> None:
            found[0] = True

        try:
            tps = [TopicPartition(topic, i) for i in range(partitions)]
            consumer.assign(tps)
            for tp in tps:
                consumer.seek(tp, 0)
            self.read_to_end(consumer, tps, take, f"looking into {topic}")
        finally:
            consumer.close()
        return found[0]

    # ---- Backend -------------------------------------------------------------------------------------------

    def namespaces(self) -> list[str]:
        with self.errors("listing topics"):
            topics = self.admin().topics()
        suffix = "." + JOURNAL
        return sorted(t[: -len(suffix)] for t in topics if t.endswith(suffix))

    def open_writer(self, namespace: str, *, partitions: dict[str, int] | None = None,
                    timeout: float | None = None, discard_uncommitted: bool = False,
                    **options: Any) -> NamespaceWriter:
        # the file log's durability knobs mean nothing here: every commit waits for acks=all
        unknown = set(options) - {"fsync", "fsync_interval", "segment_bytes", "index_interval"}
        if unknown:
            raise StoreError(f"unknown option(s) for a Kafka writer: {', '.join(sorted(unknown))}")
        writer = KafkaNamespaceWriter(self, valid_namespace(namespace), partitions, timeout, discard_uncommitted)
        self._opened.add(writer)
        return writer

    def open_reader(self, namespace: str) -> NamespaceReader:
        ns = valid_namespace(namespace)
        journal = f"{ns}.{JOURNAL}"
        if journal not in self.describe([journal]):
            raise NoNamespace(f"no namespace {namespace!r} in {self.url}: `tape log namespaces` lists them")
        reader = KafkaNamespaceReader(self, ns)
        self._opened.add(reader)
        return reader

    def schema_store(self, namespace: str) -> KafkaSchemaStore:
        return KafkaSchemaStore(self, valid_namespace(namespace))

    def delete(self, namespace: str) -> None:
        ns = valid_namespace(namespace)
        journal = f"{ns}.{JOURNAL}"
        if journal not in self.describe([journal]):
            raise NoNamespace(f"no namespace {namespace!r} in {self.url}: `tape log namespaces` lists them")
        others = [t for t in self.admin().topics() if t.startswith(ns + ".") and t != journal]
        for batch in ([journal], others):  # the journal first: from then on the namespace is gone for readers
            self.delete_topics(batch, f"deleting {namespace}")

    def control(self, namespace: str) -> KafkaControl:
        control = KafkaControl(self, valid_namespace(namespace))
        self._opened.add(control)
        return control

    def close(self) -> None:
        """Close every reader and writer opened through this backend, then the shared clients."""
        for obj in list(self._opened):
            obj.close()
        self._opened.clear()
        if self._plain is not None:
            self._plain.close(timeout=min(self.timeout, 5.0))
        if self._admin is not None:
            self._admin.close()
        self._plain = self._admin = None


__all__ = ["CLIENTS", "Fenced", "KafkaCursor", "KafkaLog", "KafkaNamespaceReader",
           "KafkaNamespaceWriter", "KafkaSchemaStore", "TransportError"]
