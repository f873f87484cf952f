"""The confluent-kafka (librdkafka) transport of the Kafka backend: kafka://…?client=confluent.

kafka-python is tape's default client; on the benchmark machine its per-record Python work is about half of tape's
Kafka append time, and bare confluent-kafka produces about 4x and consumes about 7x faster (bench/kafka_throughput.py).
This module implements transport.py's client protocol on confluent-kafka alone (it imports nothing of kafka-python),
so the backend runs unchanged on either client and the contract suite covers both:

- Admin: describe and list topics from one metadata request (without auto-creation), create topics.
- Producer: send() → a delivery report; flush(deliveries) waits for their acknowledgements; the transactional calls;
  close(). Errors come out as transport.py's typed errors, the same ones the kafka-python transport raises.
- Consumer: assign() + seek() (librdkafka's seek on a partition it fetches already, else an incremental assign),
  poll() returning {TopicPartition: [messages]}, position(), highwater(), end_offsets(), close().

highwater() is the offset of the last end-of-partition event since the last seek (enable.partition.eof): the
broker's high watermark at the moment this consumer caught up with it, which is what kafka-python's Fetch-response
watermark means to the backend ("read to the end"); end_offsets() is ListOffsets, only ever a hint (tansu's
answer is below the true end).
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Any, Iterator

from eventstore.kafka.transport import (
    FETCH_WAIT_MS,
    Connection,
    Fenced,
    OffsetGone,
    TimedOut,
    TopicPartition,
    TransportError,
    Unreachable,
)

try:
    import confluent_kafka as ck
    from confluent_kafka import KafkaError as CKError
    from confluent_kafka.admin import AdminClient, NewTopic
except ImportError as e:  # pragma: no cover - reported by KafkaLog as a one-line StoreError
    raise ImportError(f"client=confluent needs the confluent-kafka package ({e}): pip install confluent-kafka") from None

# librdkafka logs through this logger instead of printing to stderr next to tape's one-line errors
_LOG = logging.getLogger("tape.kafka.confluent")
_LOG.addHandler(logging.NullHandler())
_LOG.propagate = False

_FENCED = {CKError._FENCED, CKError.PRODUCER_FENCED, CKError.INVALID_PRODUCER_EPOCH}
_TIMEOUTS = {CKError._TIMED_OUT, CKError._MSG_TIMED_OUT, CKError._ALL_BROKERS_DOWN, CKError._TRANSPORT,
             CKError.REQUEST_TIMED_OUT}
# consumer events librdkafka recovers from on its own (a lost connection, a broker restarting)
_TRANSIENT = {CKError._TRANSPORT, CKError._ALL_BROKERS_DOWN, CKError._RESOLVE, CKError._TIMED_OUT,
              CKError.REQUEST_TIMED_OUT, CKError.NOT_LEADER_FOR_PARTITION, CKError.LEADER_NOT_AVAILABLE}
_OUT_OF_RANGE = {CKError.OFFSET_OUT_OF_RANGE, CKError._AUTO_OFFSET_RESET}


def _typed(err: Any, what: str = "") -> TransportError | Fenced:
    """A confluent KafkaError as tape's typed error."""
    code = err.code() if err is not None else None
    text = f"{what}: {err.str() if err is not None else 'unknown error'}".lstrip(": ")
    if code in _FENCED:
        return Fenced(text)
    if code in _TIMEOUTS:
        return TimedOut(text)
    if code in _OUT_OF_RANGE:
        return OffsetGone(text)
    return TransportError(text)


def _raise(e: BaseException, what: str) -> None:
    # confluent-kafka 2.x, once the producer hit a fatal error (fenced), calls the next delivery report with that
    # KafkaException still pending and so raises SystemError from flush(); the KafkaException is its __cause__
    if isinstance(e, SystemError) and isinstance(e.__cause__, ck.KafkaException):
        e = e.__cause__
    if isinstance(e, ck.KafkaException) and e.args and isinstance(e.args[0], CKError):
        raise _typed(e.args[0], what) from None
    raise e


@contextmanager
def _guard(what: str) -> Iterator[None]:
    """confluent-kafka's exceptions as tape's typed errors."""
    try:
        yield
    except (ck.KafkaException, SystemError) as e:
        _raise(e, what)


def _common(servers: tuple[str, ...], timeout_ms: int) -> dict[str, Any]:
    return {
        "bootstrap.servers": ",".join(servers),
        "client.id": "tape",
        "socket.timeout.ms": max(timeout_ms, 1000),
        "reconnect.backoff.max.ms": 1000,
        "allow.auto.create.topics": False,
        "logger": _LOG,
    }


class Confluent:
    """The transport on confluent-kafka (librdkafka)."""

    def __init__(self, conn: Connection):
        self.conn = conn

    def admin(self) -> ConfluentAdmin:
        return ConfluentAdmin(self.conn)

    def consumer(self, fetch_bytes: int) -> ConfluentConsumer:
        return ConfluentConsumer(self.conn.servers, timeout_ms=max(self.conn.timeout_ms, FETCH_WAIT_MS + 1000),
                        fetch_bytes=fetch_bytes, fetch_wait_ms=FETCH_WAIT_MS)

    def producer(self, *, timeout_ms: int, linger_ms: int, transactional_id: str | None = None,
                 transaction_timeout_ms: int | None = None) -> ConfluentProducer:
        return ConfluentProducer(self.conn.servers, timeout_ms=timeout_ms, transactional_id=transactional_id,
                        transaction_timeout_ms=transaction_timeout_ms, linger_ms=min(linger_ms, 5))


class ConfluentAdmin:
    """Topic metadata and creation through librdkafka's AdminClient."""

    def __init__(self, conn: Connection):
        self.timeout = conn.timeout
        self._answered = False  # until the cluster first answers, a transport failure means "no broker there"
        with _guard("creating an admin client"):
            self._a = AdminClient(_common(conn.servers, conn.timeout_ms))

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            out = fn(*args, **kwargs)
        except ck.KafkaException as e:
            err = e.args[0] if e.args and isinstance(e.args[0], CKError) else None
            if not self._answered and err is not None and err.code() in _TIMEOUTS:
                raise Unreachable(f"{what}: {err.str()}") from None
            _raise(e, what)
        self._answered = True
        return out

    def describe(self, topics: list[str]) -> dict[str, int]:
        # all topics' metadata in one request: naming them would be one request each (a request for all never
        # creates a topic, whatever the broker's auto-creation setting)
        md = self._call("reading topic metadata", self._a.list_topics, timeout=self.timeout)
        wanted = set(topics)
        return {name: len(t.partitions) for name, t in md.topics.items() if name in wanted and t.error is None}

    def create(self, spec: dict[str, tuple[int, dict[str, str]]], replication_factor: int,
               timeout_ms: int) -> dict[str, str]:
        new = [NewTopic(name, n, replication_factor, config=dict(cfg)) for name, (n, cfg) in spec.items()]
        timeout = timeout_ms / 1000
        futures = self._call("creating topics", self._a.create_topics, new, request_timeout=timeout,
                             operation_timeout=timeout)
        return _refusals(futures, CKError.TOPIC_ALREADY_EXISTS, "creating topic")

    def topics(self) -> list[str]:
        return list(self._call("listing topics", self._a.list_topics, timeout=self.timeout).topics)

    def delete(self, topics: list[str], timeout_ms: int) -> dict[str, str]:
        timeout = timeout_ms / 1000
        futures = self._call("deleting topics", self._a.delete_topics, topics, request_timeout=timeout,
                             operation_timeout=timeout)
        return _refusals(futures, CKError.UNKNOWN_TOPIC_OR_PART, "deleting topic")

    def close(self) -> None:
        self._a = None  # AdminClient has no close(); its thread ends with the object


def _refusals(futures: dict[str, Any], fine: int, doing: str) -> dict[str, str]:
    """What the broker refused of a topic operation, by topic (`fine`: the error code that is no refusal — the topic
    already there, or already gone); no answer at all is raised, not a refusal."""
    refused = {}
    for name, f in futures.items():
        try:
            f.result()
        except ck.KafkaException as e:
            err = e.args[0] if e.args and isinstance(e.args[0], CKError) else None
            if err is not None and err.code() == fine:
                continue
            if err is None or err.code() in _TIMEOUTS:
                _raise(e, f"{doing} {name}")
            refused[name] = f"{err.name()} {err.str()}"
    return refused


class _Delivery:
    """The delivery report of one record (librdkafka calls it from poll()/flush())."""

    __slots__ = ("is_done", "offset", "exception")

    def __init__(self) -> None:
        self.is_done = False
        self.offset = -1
        self.exception: BaseException | None = None

    def __call__(self, err: Any, msg: Any) -> None:  # on_delivery, run inside poll()/flush(): must not raise
        try:
            if err is not None:
                self.exception = _typed(err, "delivering a record")
            else:
                self.offset = msg.offset()
        except Exception as e:  # pragma: no cover - defensive
            self.exception = TransportError(f"delivering a record: {e!r}")
        self.is_done = True


class ConfluentProducer:
    """An idempotent (optionally transactional) librdkafka producer behind transport.py's Producer protocol."""

    def __init__(self, servers: tuple[str, ...], *, timeout_ms: int, transactional_id: str | None = None,
                 transaction_timeout_ms: int | None = None, linger_ms: int = 5):
        cfg = _common(servers, timeout_ms)
        cfg.update({"acks": "all", "enable.idempotence": True, "linger.ms": linger_ms,
                    "message.timeout.ms": timeout_ms + linger_ms, "request.timeout.ms": timeout_ms,
                    "queue.buffering.max.messages": 1_000_000, "batch.num.messages": 10_000})
        if transactional_id is not None:
            cfg["transactional.id"] = transactional_id
            cfg["transaction.timeout.ms"] = transaction_timeout_ms or 60_000
        self.timeout = timeout_ms / 1000
        self._transactional = transactional_id is not None
        with _guard("creating a producer"):
            self._p = ck.Producer(cfg)

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None, partition: int | None = None,
             timestamp_ms: int | None = None, headers: list[tuple[str, bytes]] | None = None) -> _Delivery:
        d = _Delivery()
        p = self._p
        while True:
            try:
                with _guard(f"producing to {topic}"):
                    if partition is None:
                        p.produce(topic, value, key, on_delivery=d, timestamp=timestamp_ms or 0, headers=headers)
                    else:
                        p.produce(topic, value, key, partition, on_delivery=d, timestamp=timestamp_ms or 0,
                                  headers=headers)
                return d
            except BufferError:  # the local queue is full: serve delivery reports, then retry
                self._call(p.poll, f"producing to {topic}", 0.05)

    def flush(self, deliveries: list[_Delivery], timeout: float) -> None:
        left = self._call(self._p.flush, "delivering records", timeout)
        if left:
            raise TimedOut(f"{left} records not delivered within {timeout:.0f}s")
        for d in deliveries:
            if not d.is_done:
                raise TimedOut(f"records not acknowledged within {timeout:.0f}s")
            if d.exception is not None:
                raise d.exception

    def offset(self, delivery: _Delivery) -> int:
        return delivery.offset

    def _call(self, fn: Any, what: str, *args: Any) -> Any:
        try:
            with _guard(what):
                return fn(*args)
        except SystemError:
            # the fatal error got lost on its way out of confluent-kafka (see _raise): a transactional producer
            # still reports it from abort_transaction()
            if self._transactional:
                with _guard(what):
                    self._p.abort_transaction(1)
            raise TransportError(f"{what}: confluent-kafka failed without saying why") from None

    def init_transactions(self) -> None:
        self._call(self._p.init_transactions, "initialising transactions", self.timeout)

    def begin_transaction(self) -> None:
        self._call(self._p.begin_transaction, "beginning a transaction")

    def commit_transaction(self, timeout: float) -> None:
        self._call(self._p.commit_transaction, "committing a transaction", timeout)

    def close(self, timeout: float | None = None) -> None:
        p, self._p = self._p, None
        if p is not None and timeout:
            try:
                p.flush(timeout)
            except Exception:  # closing never raises: the records' fate was reported (or not) by flush(deliveries)
                pass


class _Record:
    """A consumed record with the attributes of transport.py's Message (what the backend reads of one)."""

    __slots__ = ("topic", "partition", "offset", "key", "value", "headers")

    def __init__(self, m: Any, topic: str, partition: int):
        self.topic = topic
        self.partition = partition
        self.offset = m.offset()
        self.key = m.key()
        self.value = m.value()
        self.headers = m.headers() or []


class ConfluentConsumer:
    """A librdkafka consumer with manual assignment behind transport.py's Consumer protocol."""

    def __init__(self, servers: tuple[str, ...], *, timeout_ms: int, fetch_bytes: int, fetch_wait_ms: int):
        cfg = _common(servers, timeout_ms)
        cfg.update({
            "group.id": "tape-replay",  # required by librdkafka; never joined: assignment is manual
            "enable.auto.commit": False, "enable.auto.offset.store": False,
            "enable.partition.eof": True,  # the end-of-partition events give highwater()
            "auto.offset.reset": "error",  # never jump silently: an offset the broker lacks is an error
            "isolation.level": "read_uncommitted",  # the journal decides what is committed (see kafka/__init__.py)
            "fetch.wait.max.ms": fetch_wait_ms,
            # librdkafka wants fetch.max.bytes >= message.max.bytes; tansu answers up to fetch.max.bytes of one
            # partition whatever the per-partition limit says, so both bound what one fetch brings
            "fetch.max.bytes": max(fetch_bytes, 1000), "message.max.bytes": max(fetch_bytes, 1000),
            "max.partition.fetch.bytes": fetch_bytes,
            # the local prefetch: about two fetches, so a replay holds a few MB (and a lost broker shows soon)
            "queued.max.messages.kbytes": max(1, 2 * fetch_bytes // 1024), "queued.min.messages": 1000,
            # librdkafka waits 1 s (fetch.queue.backoff.ms) once that prefetch is full, and 500 ms after a fetch
            # error: a seek (binary search over the journal) would wait that long too
            "fetch.queue.backoff.ms": 5, "fetch.error.backoff.ms": 50,
        })
        self.timeout = timeout_ms / 1000
        with _guard("creating a consumer"):
            self._c = ck.Consumer(cfg)
        self._assigned: list[TopicPartition] = []
        self._pos: dict[TopicPartition, int] = {}
        self._hw: dict[TopicPartition, int] = {}
        self._live: set[TopicPartition] = set()  # partitions librdkafka has assigned
        self._known: set[str] = set()  # topics whose metadata this client has asked for

    def assign(self, tps: list[TopicPartition]) -> None:
        """Remember the partitions; fetching starts at the first seek (the backend always seeks after assign)."""
        self._assigned = [TopicPartition(*tp) for tp in tps]
        gone = [tp for tp in self._live if tp not in self._assigned]
        if gone:
            with _guard("unassigning partitions"):
                self._c.incremental_unassign([ck.TopicPartition(tp.topic, tp.partition) for tp in gone])
            for tp in gone:
                self._live.discard(tp)
        for tp in list(self._pos):
            if tp not in self._assigned:
                self._pos.pop(tp, None)
                self._hw.pop(tp, None)
        # a topic this client has no metadata for waits for librdkafka's next metadata refresh (about 1 s) before
        # its first fetch; asking for it now fills the cache at once
        for topic in sorted({tp.topic for tp in self._assigned} - self._known):
            with _guard(f"reading metadata of {topic}"):
                self._c.list_topics(topic, self.timeout)
            self._known.add(topic)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        """Fetch tp from offset on: librdkafka's seek when it fetches tp already, else an incremental assign.

        (Re-assigning everything on each seek works too, but restarts every partition's fetcher: on a consumer
        reused for other partitions, the first fetch of the new ones then waited about a second.)
        """
        if tp not in self._assigned:
            raise TransportError(f"seeking {tp.topic}[{tp.partition}]: the partition is not assigned")
        self._pos[tp] = offset
        self._hw.pop(tp, None)
        part = ck.TopicPartition(tp.topic, tp.partition, offset)
        with _guard(f"seeking {tp.topic}[{tp.partition}]"):
            if tp in self._live:
                try:
                    self._c.seek(part)
                    return
                except ck.KafkaException:  # e.g. not fetching yet right after the assign: assign it again
                    self._c.incremental_unassign([ck.TopicPartition(tp.topic, tp.partition)])
                    self._live.discard(tp)
            self._c.incremental_assign([part])
            self._live.add(tp)

    def poll(self, timeout_ms: int = 0, max_records: int = 500) -> dict[TopicPartition, list[_Record]]:
        """What has arrived, up to max_records; waits up to timeout_ms only while nothing has."""
        c = self._c
        with _guard("fetching"):
            got = c.consume(max_records, 0)
            if not got and timeout_ms > 0:
                first = c.poll(timeout_ms / 1000)
                got = [first] if first is not None else []
                if got and max_records > 1:
                    got += c.consume(max_records - 1, 0)
        out: dict[TopicPartition, list[_Record]] = {}
        tp = None
        for m in got:
            err = m.error()
            topic, partition = m.topic(), m.partition()
            if tp is None or tp.partition != partition or tp.topic != topic:  # a poll is mostly one partition
                tp = TopicPartition(topic, partition)
            if err is not None:
                code = err.code()
                if code == CKError._PARTITION_EOF:
                    self._hw[tp] = self._pos[tp] = m.offset()
                    continue
                if code in _TRANSIENT and not err.fatal():
                    # librdkafka reconnects by itself; the backend's own deadlines decide when silence is an error
                    continue
                raise _typed(err, f"fetching {m.topic()}[{m.partition()}]")
            rec = _Record(m, topic, partition)
            self._pos[tp] = rec.offset + 1
            lst = out.get(tp)
            if lst is None:
                out[tp] = [rec]
            else:
                lst.append(rec)
        return out

    def position(self, tp: TopicPartition) -> int:
        return self._pos[tp]

    def highwater(self, tp: TopicPartition) -> int | None:
        return self._hw.get(tp)

    def end_offsets(self, tps: list[TopicPartition], timeout_ms: int | None = None) -> dict[TopicPartition, int]:
        timeout = self.timeout if timeout_ms is None else timeout_ms / 1000
        out = {}
        for tp in tps:
            with _guard(f"listing offsets of {tp.topic}[{tp.partition}]"):
                _low, high = self._c.get_watermark_offsets(ck.TopicPartition(tp.topic, tp.partition), timeout)
            out[tp] = high
        return out

    def close(self) -> None:
        c, self._c = self._c, None
        if c is not None:
            try:
                c.close()
            except Exception:  # closing never raises (the protocol's contract): the broker may be gone
                pass


__all__ = ["Confluent", "ConfluentAdmin", "ConfluentConsumer", "ConfluentProducer"]
