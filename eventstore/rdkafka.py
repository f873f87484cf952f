"""The confluent-kafka (librdkafka) transport of the Kafka backend: kafka://…?client=confluent.

kafka-python is tape's default client; on the benchmark machine its per-record Python work is about half of tape's
Kafka append time, and bare confluent-kafka produces about 4x and consumes about 7x faster (bench/kafka_throughput.py).
This module gives the Kafka backend the small part of kafka-python's producer and consumer API it uses, on top of
confluent-kafka, so kafkalog.py runs unchanged on either client and the contract suite covers both:

- Producer: send() → a future with .is_done/.failed()/.exception/.value.offset/.get(); flush(); the transactional
  calls; close(). Errors come out as kafka-python's exception classes, so the backend maps them the same way.
- Consumer: assign() + seek() (librdkafka's seek on a partition it fetches already, else an incremental assign),
  poll() returning {TopicPartition: [messages]}, position(), highwater(), end_offsets(), close().

highwater() is the offset of the last end-of-partition event since the last seek (enable.partition.eof): the
broker's high watermark at the moment this consumer caught up with it, which is what kafka-python's Fetch-response
watermark means to the backend ("read to the end"); end_offsets() is ListOffsets, only ever a hint (tansu's
answer is below the true end).
"""
from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from typing import Any, Iterator

import kafka.errors as KErr
from kafka import TopicPartition

try:
    import confluent_kafka as ck
    from confluent_kafka import KafkaError as CKError
except ImportError as e:  # pragma: no cover - reported by KafkaLog as a one-line StoreError
    raise ImportError(f"client=confluent needs the confluent-kafka package ({e}): pip install confluent-kafka") from None

# librdkafka logs through this logger instead of printing to stderr next to tape's one-line errors
_LOG = logging.getLogger("tape.kafka.rdkafka")
_LOG.addHandler(logging.NullHandler())
_LOG.propagate = False

_FENCED = {CKError._FENCED, CKError.PRODUCER_FENCED, CKError.INVALID_PRODUCER_EPOCH}
_TIMEOUTS = {CKError._TIMED_OUT, CKError._MSG_TIMED_OUT, CKError._ALL_BROKERS_DOWN, CKError._TRANSPORT,
             CKError.REQUEST_TIMED_OUT}
# consumer events librdkafka recovers from on its own (a lost connection, a broker restarting)
_TRANSIENT = {CKError._TRANSPORT, CKError._ALL_BROKERS_DOWN, CKError._RESOLVE, CKError._TIMED_OUT,
              CKError.REQUEST_TIMED_OUT, CKError.NOT_LEADER_FOR_PARTITION, CKError.LEADER_NOT_AVAILABLE}
_OUT_OF_RANGE = {CKError.OFFSET_OUT_OF_RANGE, CKError._AUTO_OFFSET_RESET}


def _kerr(err: Any, what: str = "") -> Exception:
    """A confluent KafkaError as the kafka-python exception the backend already maps to one-line errors."""
    code = err.code() if err is not None else None
    text = f"{what}: {err.str() if err is not None else 'unknown error'}".lstrip(": ")
    if code in _FENCED:
        return KErr.ProducerFencedError(text)
    if code in _TIMEOUTS:
        return KErr.KafkaTimeoutError(text)
    if code in _OUT_OF_RANGE:
        return KErr.OffsetOutOfRangeError(text)
    return KErr.KafkaError(text)


def _raise(e: BaseException, what: str) -> None:
    # confluent-kafka 2.x, once the producer hit a fatal error (fenced), calls the next delivery report with that
    # KafkaException still pending and so raises SystemError from flush(); the KafkaException is its __cause__
    if isinstance(e, SystemError) and isinstance(e.__cause__, ck.KafkaException):
        e = e.__cause__
    if isinstance(e, ck.KafkaException) and e.args and isinstance(e.args[0], CKError):
        raise _kerr(e.args[0], what) from None
    raise e


@contextmanager
def _guard(what: str) -> Iterator[None]:
    """confluent-kafka's exceptions as kafka-python's, which the backend maps to one-line errors."""
    try:
        yield
    except (ck.KafkaException, SystemError) as e:
        _raise(e, what)


def _common(servers: list[str], timeout_ms: int) -> dict[str, Any]:
    return {
        "bootstrap.servers": ",".join(servers),
        "client.id": "tape",
        "socket.timeout.ms": max(timeout_ms, 1000),
        "reconnect.backoff.max.ms": 1000,
        "allow.auto.create.topics": False,
        "logger": _LOG,
    }


class _Meta:
    __slots__ = ("topic", "partition", "offset")

    def __init__(self, topic: str, partition: int, offset: int):
        self.topic, self.partition, self.offset = topic, partition, offset


class _Future:
    """The delivery report of one record, shaped like kafka-python's FutureRecordMetadata."""

    __slots__ = ("is_done", "value", "exception", "_producer")

    def __init__(self, producer: "Producer"):
        self.is_done = False
        self.value: _Meta | None = None
        self.exception: Exception | None = None
        self._producer = producer

    def __call__(self, err: Any, msg: Any) -> None:  # on_delivery, run inside poll()/flush(): must not raise
        try:
            if err is not None:
                self.exception = _kerr(err, "delivering a record")
            else:
                self.value = _Meta(msg.topic(), msg.partition(), msg.offset())
        except Exception as e:  # pragma: no cover - defensive
            self.exception = KErr.KafkaError(f"delivering a record: {e!r}")
        self.is_done = True

    def failed(self) -> bool:
        return self.exception is not None

    def get(self, timeout: float | None = None) -> _Meta:
        deadline = time.monotonic() + (timeout if timeout is not None else 3600)
        while not self.is_done:
            if time.monotonic() > deadline:
                raise KErr.KafkaTimeoutError("record not acknowledged in time")
            self._producer._call(self._producer._p.poll, "delivering a record", 0.05)
        if self.exception is not None:
            raise self.exception
        return self.value  # type: ignore[return-value]


class Producer:
    """kafka-python's KafkaProducer, as far as the backend uses it, on librdkafka."""

    def __init__(self, servers: list[str], *, timeout_ms: int, transactional_id: str | None = None,
                 transaction_timeout_ms: int | None = None, linger_ms: int = 5, **_ignored: Any):
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
             timestamp_ms: int | None = None, headers: list[tuple[str, bytes]] | None = None) -> _Future:
        f = _Future(self)
        p = self._p
        while True:
            try:
                with _guard(f"producing to {topic}"):
                    if partition is None:
                        p.produce(topic, value, key, on_delivery=f, timestamp=timestamp_ms or 0, headers=headers)
                    else:
                        p.produce(topic, value, key, partition, on_delivery=f, timestamp=timestamp_ms or 0,
                                  headers=headers)
                return f
            except BufferError:  # the local queue is full: serve delivery reports, then retry
                self._call(p.poll, f"producing to {topic}", 0.05)

    def flush(self, timeout: float | None = None) -> None:
        left = self._call(self._p.flush, "delivering records", self.timeout if timeout is None else timeout)
        if left:
            raise KErr.KafkaTimeoutError(f"{left} records not delivered within {timeout}s")

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
            raise KErr.KafkaError(f"{what}: confluent-kafka failed without saying why") from None

    def init_transactions(self) -> None:
        self._call(self._p.init_transactions, "initialising transactions", self.timeout)

    def begin_transaction(self) -> None:
        self._call(self._p.begin_transaction, "beginning a transaction")

    def commit_transaction(self) -> None:
        self._call(self._p.commit_transaction, "committing a transaction", self.timeout)

    def abort_transaction(self) -> None:
        self._call(self._p.abort_transaction, "aborting a transaction", self.timeout)

    def close(self, timeout: float | None = None) -> None:
        p, self._p = self._p, None
        if p is not None and timeout:
            p.flush(timeout)


class _Record:
    """A consumed record with kafka-python's ConsumerRecord attributes (what the backend reads of one)."""

    __slots__ = ("topic", "partition", "offset", "key", "value", "headers", "timestamp")

    def __init__(self, m: Any, topic: str, partition: int):
        self.topic = topic
        self.partition = partition
        self.offset = m.offset()
        self.key = m.key()
        self.value = m.value()
        self.headers = m.headers() or []
        self.timestamp = m.timestamp()[1]


class Consumer:
    """kafka-python's KafkaConsumer with manual assignment, as far as the backend uses it, on librdkafka."""

    def __init__(self, servers: list[str], *, timeout_ms: int, fetch_bytes: int, fetch_wait_ms: int):
        cfg = _common(servers, timeout_ms)
        cfg.update({
            "group.id": "tape-replay",  # required by librdkafka; never joined: assignment is manual
            "enable.auto.commit": False, "enable.auto.offset.store": False,
            "enable.partition.eof": True,  # the end-of-partition events give highwater()
            "auto.offset.reset": "error",  # never jump silently: an offset the broker lacks is an error
            "isolation.level": "read_uncommitted",  # the journal decides what is committed (see kafkalog.py)
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
        self._assigned: list[Any] = []
        self._pos: dict[Any, int] = {}
        self._hw: dict[Any, int] = {}
        self._live: set[Any] = set()  # partitions librdkafka has assigned
        self._known: set[str] = set()  # topics whose metadata this client has asked for

    def assign(self, tps: list[Any]) -> None:
        """Remember the partitions; fetching starts at the first seek (the backend always seeks after assign)."""
        self._assigned = list(tps)
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

    def seek(self, tp: Any, offset: int) -> None:
        """Fetch tp from offset on: librdkafka's seek when it fetches tp already, else an incremental assign.

        (Re-assigning everything on each seek works too, but restarts every partition's fetcher: on a consumer
        reused for other partitions, the first fetch of the new ones then waited about a second.)
        """
        if tp not in self._assigned:
            raise KErr.IllegalStateError(f"{tp} is not assigned")
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

    def poll(self, timeout_ms: int = 0, max_records: int = 500) -> dict[Any, list[_Record]]:
        """What has arrived, up to max_records; waits up to timeout_ms only while nothing has."""
        c = self._c
        with _guard("fetching"):
            got = c.consume(max_records, 0)
            if not got and timeout_ms > 0:
                first = c.poll(timeout_ms / 1000)
                got = [first] if first is not None else []
                if got and max_records > 1:
                    got += c.consume(max_records - 1, 0)
        out: dict[Any, list[_Record]] = {}
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
                raise _kerr(err, f"fetching {m.topic()}[{m.partition()}]")
            rec = _Record(m, topic, partition)
            self._pos[tp] = rec.offset + 1
            lst = out.get(tp)
            if lst is None:
                out[tp] = [rec]
            else:
                lst.append(rec)
        return out

    def position(self, tp: Any) -> int:
        return self._pos[tp]

    def highwater(self, tp: Any) -> int | None:
        return self._hw.get(tp)

    def end_offsets(self, tps: list[Any], timeout_ms: int | None = None) -> dict[Any, int]:
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
            c.close()
