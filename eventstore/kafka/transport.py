"""What the Kafka backend needs from a Kafka client, tape's typed errors for what goes wrong, and the kafka-python
implementation of both (the default client; confluent.py is the other).

The backend talks to the broker only through these protocols: an admin (describe and create topics, list them), a
consumer for manual assignment (assign, seek, poll, position, the Fetch high watermark, end offsets, close), and a
producer (send, flush the records sent and check their acknowledgements, the transactional calls, close). Every call
turns the client's own exceptions into the typed errors below, so the backend tests types and never message text.

Every reach into kafka-python's private internals is in this file, each with its reason next to it. kafka-python is
imported only when its transport is made: client=confluent runs without it (confluent.py imports this module).
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, NamedTuple, Protocol

from eventstore.errors import CorruptLog, LockedNamespace, StoreError

# kafka-python logs every lost connection at ERROR; without a handler of the application's, Python's last-resort
# handler would print them all on stderr next to the one-line TapeError that says the same
logging.getLogger("kafka").addHandler(logging.NullHandler())

FETCH_WAIT_MS = 20  # tansu does not answer a Fetch early when data arrives: latency ~ fetch_max_wait_ms / 2


# ---- errors ------------------------------------------------------------------------------------------------


class TransportError(StoreError):
    """A Kafka client call failed (broker gone or silent, request refused); KafkaLog.errors names store and step."""

    def __init__(self, detail: str, url: str = "", what: str = ""):
        self.detail, self.url, self.what = detail, url, what
        super().__init__(self.line() if url else detail)

    def line(self) -> str:
        """The one line a user reads: the store, what tape was doing, what failed."""
        return f"Kafka at {self.url} failed ({self.what}): {self.detail}"

    def at(self, url: str, what: str) -> "TransportError":
        """This error named by its store and step; one already named keeps the innermost (most precise) step."""
        return self if self.url else type(self)(self.detail, url, what)


class Unreachable(TransportError):
    """No broker of the store answered the first connection."""

    def line(self) -> str:
        return f"cannot reach a Kafka broker at {self.url} ({self.what}): check the address and that the broker runs"


class TimedOut(TransportError):
    """The broker did not answer, or did not acknowledge records, within the store's timeout."""

    def line(self) -> str:
        return f"Kafka at {self.url} did not answer in time ({self.what}): {self.detail}; is the broker up?"


class OffsetGone(TransportError, CorruptLog):
    """The broker no longer has an offset tape committed (offset out of range): the log lost records."""

    def line(self) -> str:
        return (f"Kafka at {self.url} no longer has records tape committed ({self.what}: offset out of range "
                f"{self.detail}); was the broker restarted without its data?")


class Fenced(LockedNamespace):
    """Another writer took the namespace's transactional id over: this writer's produce and commit are refused."""


# ---- the protocol ------------------------------------------------------------------------------------------


class TopicPartition(NamedTuple):
    """A topic and a partition; equal to (and hashed like) the clients' own topic-partition tuples."""

    topic: str
    partition: int


class Message(Protocol):
    """A consumed record, as far as the backend reads one."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


@dataclass(frozen=True)
class Connection:
    """The brokers of one store and how long to wait for them: what every client of the store is made with."""

    servers: tuple[str, ...]
    timeout: float  # seconds

    @property
    def timeout_ms(self) -> int:
        return max(1000, int(self.timeout * 1000))


class Admin(Protocol):
    def describe(self, topics: list[str]) -> dict[str, int]:
        """Partition counts of those topics that exist (a metadata request that never auto-creates them)."""

    def create(self, spec: dict[str, tuple[int, dict[str, str]]], replication_factor: int,
               timeout_ms: int) -> dict[str, str]:
        """Create topics (partitions, configs); the refusals by topic name (a topic that exists is no refusal)."""

    def topics(self) -> list[str]:
        """Every topic name of the cluster."""

    def delete(self, topics: list[str], timeout_ms: int) -> dict[str, str]:
        """Delete topics; the refusals by topic name (a topic that does not exist is no refusal)."""

    def close(self) -> None: ...


class Consumer(Protocol):
    def assign(self, tps: list[TopicPartition]) -> None:
        """Read these partitions (manual assignment, no group); fetching starts at the next seek."""

    def seek(self, tp: TopicPartition, offset: int) -> None:
        """Fetch tp from offset on; highwater(tp) is None again until a Fetch made after the seek answers."""

    def poll(self, timeout_ms: int = 0, max_records: int = 500) -> dict[TopicPartition, list[Message]]:
        """What has arrived, up to max_records; waits up to timeout_ms only while nothing has."""

    def position(self, tp: TopicPartition) -> int:
        """The offset of the next record poll() returns for tp."""

    def highwater(self, tp: TopicPartition) -> int | None:
        """The broker's high watermark of tp from this consumer's last Fetch since the seek: "read to the end"."""

    def end_offsets(self, tps: list[TopicPartition], timeout_ms: int | None = None) -> dict[TopicPartition, int]:
        """ListOffsets: a hint only (on tansu it is below the true end)."""

    def close(self) -> None:
        """Close, never raising: a client that cannot finish is stopped."""


class Producer(Protocol):
    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None, partition: int | None = None,
             timestamp_ms: int | None = None, headers: list[tuple[str, bytes]] | None = None) -> Any:
        """Queue one record; returns its delivery, which only this producer reads (flush, offset)."""

    def flush(self, deliveries: list[Any], timeout: float) -> None:
        """Send what is queued and wait until these records are acknowledged; raises the first failure."""

    def offset(self, delivery: Any) -> int:
        """The offset of an acknowledged record."""

    def init_transactions(self) -> None:
        """Take the transactional id over: fences every earlier producer that holds it."""

    def begin_transaction(self) -> None: ...

    def commit_transaction(self, timeout: float) -> None:
        """Commit the open transaction, waiting at most timeout seconds."""

    def close(self, timeout: float | None = None) -> None:
        """Close, never raising: a client that cannot finish is stopped."""


class Transport(Protocol):
    """One Kafka client library, made for one store's Connection."""

    def admin(self) -> Admin: ...

    def consumer(self, fetch_bytes: int) -> Consumer:
        """A consumer for manual assignment: no group, no auto commit, no silent offset reset, read_uncommitted."""

    def producer(self, *, timeout_ms: int, linger_ms: int, transactional_id: str | None = None,
                 transaction_timeout_ms: int | None = None) -> Producer:
        """An idempotent producer with acks=all; transactional when given a transactional id."""


# ---- kafka-python ------------------------------------------------------------------------------------------

kafka: Any = None  # the kafka-python package and its errors module, imported by the first KafkaPython()
KErr: Any = None


def _import_kafka_python() -> None:
    global kafka, KErr
    try:
        import kafka
        import kafka.admin
        import kafka.errors as KErr
    except ImportError as e:
        raise ImportError(f"client=kafka-python needs the kafka-python package ({e}): pip install kafka-python, "
                          "or use client=confluent") from None


def _typed(e: BaseException) -> BaseException:
    """A kafka-python error as tape's typed error; anything else unchanged."""
    if not isinstance(e, KErr.KafkaError):
        return e
    if isinstance(e, (KErr.ProducerFencedError, KErr.InvalidProducerEpochError)):
        return Fenced(f"{type(e).__name__}: {e}")
    if isinstance(e, KErr.KafkaTimeoutError):
        # kafka-python has no type of its own for "no broker answered the bootstrap": only its message says so
        return Unreachable(str(e)) if "bootstrap" in str(e) else TimedOut(str(e))
    if isinstance(e, KErr.OffsetOutOfRangeError):
        return OffsetGone(str(e))
    return TransportError(f"{type(e).__name__}: {e}")


@contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except Exception as e:
        t = _typed(e)
        if t is e:
            raise
        raise t from None


def _close_quietly(c: Any, timeout: float | None = None) -> None:
    """Close a client; if it cannot finish (broker gone, records unsent), stop its IO thread anyway.

    kafka-python's KafkaProducer.close() raises from flush() when records cannot be delivered and then leaves its
    sender thread running, and __del__ raises again later; force the close so nothing outlives the backend.
    """
    try:
        c.close() if timeout is None else c.close(timeout=timeout)
    except Exception:
        try:
            sender = getattr(c, "_sender", None)  # private: the producer's IO thread, which close() left running
            if sender is not None:
                sender.force_close()
                sender.join(1.0)
            c._closed = True  # private: tells kafka-python's __del__ the client is closed, so it does not raise again
        except Exception:
            pass


class KafkaPython:
    """The transport on kafka-python, tape's default client."""

    def __init__(self, conn: Connection):
        _import_kafka_python()
        self.conn = conn

    def _common(self) -> dict[str, Any]:
        ms = self.conn.timeout_ms
        return {
            "bootstrap_servers": list(self.conn.servers),
            "client_id": "tape",
            "bootstrap_timeout_ms": min(ms, 5000),  # "no broker there" should not take long to say
            "request_timeout_ms": max(ms, FETCH_WAIT_MS + 1000),
            "reconnect_backoff_max_ms": 1000,
        }

    def admin(self) -> "KafkaPythonAdmin":
        with _translated():
            return KafkaPythonAdmin(kafka.admin.KafkaAdminClient(**self._common()))

    def consumer(self, fetch_bytes: int) -> "KafkaPythonConsumer":
        with _translated():
            return KafkaPythonConsumer(kafka.KafkaConsumer(
                **self._common(),
                group_id=None,
                enable_auto_commit=False,
                # never jump silently: a position the broker no longer has is an error, not a rewind
                auto_offset_reset="none",
                # the journal decides what is committed; see eventstore/kafka/__init__.py (tansu's aborted/dangling
                # transactions)
                isolation_level="read_uncommitted",
                fetch_max_wait_ms=FETCH_WAIT_MS,
                # tansu ignores the per-partition limit and answers a Fetch with up to fetch_max_bytes of one
                # partition (50 MB by default): bound both, so a replay holds a few MB at a time
                max_partition_fetch_bytes=fetch_bytes,
                fetch_max_bytes=fetch_bytes,
                allow_auto_create_topics=False,
                enable_incremental_fetch_sessions=False,
            ))

    def producer(self, *, timeout_ms: int, linger_ms: int, transactional_id: str | None = None,
                 transaction_timeout_ms: int | None = None) -> "KafkaPythonProducer":
        cfg = dict(self._common(), acks="all", enable_idempotence=True, allow_auto_create_topics=False,
                   max_block_ms=timeout_ms, request_timeout_ms=timeout_ms, delivery_timeout_ms=timeout_ms + linger_ms,
                   linger_ms=linger_ms, batch_size=512 * 1024, max_in_flight_requests_per_connection=5)
        if transactional_id is not None:
            cfg.update(transactional_id=transactional_id, transaction_timeout_ms=transaction_timeout_ms or 60_000)
        with _translated():
            return KafkaPythonProducer(kafka.KafkaProducer(**cfg))


class KafkaPythonAdmin:
    """KafkaAdminClient behind the Admin protocol."""

    def __init__(self, admin: Any):
        self._a = admin

    def describe(self, topics: list[str]) -> dict[str, int]:
        with _translated():
            return {t["name"]: len(t["partitions"]) for t in self._a.describe_topics(topics) if t["error_code"] == 0}

    def create(self, spec: dict[str, tuple[int, dict[str, str]]], replication_factor: int,
               timeout_ms: int) -> dict[str, str]:
        req = {name: {"num_partitions": n, "replication_factor": replication_factor, "configs": cfg}
               for name, (n, cfg) in spec.items()}
        with _translated():
            res = self._a.create_topics(req, timeout_ms=timeout_ms, raise_errors=False)
        refused = {}
        for t in res["topics"]:
            code = t["error_code"]
            if code not in (0, KErr.TopicAlreadyExistsError.errno):
                refused[t["name"]] = f"{KErr.for_code(code).__name__} {t.get('error_message') or ''}".rstrip()
        return refused

    def topics(self) -> list[str]:
        with _translated():
            return list(self._a.list_topics())

    def delete(self, topics: list[str], timeout_ms: int) -> dict[str, str]:
        with _translated():
            res = self._a.delete_topics(topics, timeout_ms=timeout_ms)
        refused = {}
        for t in getattr(res, "topic_error_codes", None) or getattr(res, "topic_errors", None) or []:
            name, code = t[0], t[1]
            if code not in (0, KErr.UnknownTopicOrPartitionError.errno):
                refused[name] = KErr.for_code(code).__name__
        return refused

    def close(self) -> None:
        _close_quietly(self._a)


class KafkaPythonConsumer:
    """KafkaConsumer behind the Consumer protocol."""

    def __init__(self, consumer: Any):
        self._c = consumer

    def assign(self, tps: list[TopicPartition]) -> None:
        with _translated():
            self._c.assign([kafka.TopicPartition(*tp) for tp in tps])  # kafka-python checks the type, not the tuple

    def seek(self, tp: TopicPartition, offset: int) -> None:
        k = kafka.TopicPartition(*tp)
        with _translated():
            self._c.seek(k, offset)
        # kafka-python keeps the last Fetch's high watermark across seek(); a consumer reused after new records were
        # written would otherwise take the old watermark as the end and stop short. Private: there is no public reset.
        try:
            self._c._subscription.assignment[k].highwater = None
        except (AttributeError, KeyError):  # another kafka-python layout: the watermark is refreshed by the next Fetch
            pass

    def poll(self, timeout_ms: int = 0, max_records: int = 500) -> dict[Any, list[Any]]:
        with _translated():
            return self._c.poll(timeout_ms=timeout_ms, max_records=max_records)

    def position(self, tp: TopicPartition) -> int:
        with _translated():
            return self._c.position(kafka.TopicPartition(*tp))

    def highwater(self, tp: TopicPartition) -> int | None:
        with _translated():
            return self._c.highwater(kafka.TopicPartition(*tp))

    def end_offsets(self, tps: list[TopicPartition], timeout_ms: int | None = None) -> dict[Any, int]:
        with _translated():
            return self._c.end_offsets([kafka.TopicPartition(*tp) for tp in tps], timeout_ms)

    def close(self) -> None:
        _close_quietly(self._c)


class KafkaPythonProducer:
    """KafkaProducer behind the Producer protocol."""

    def __init__(self, producer: Any):
        self._p = producer
        self._send = producer.send

    def _typed(self, e: BaseException) -> BaseException:
        t = _typed(e)
        if isinstance(t, TransportError) and self._fenced():
            return Fenced(f"{type(e).__name__}: {e}")
        return t

    def _fenced(self) -> bool:
        # kafka-python reports a fenced producer's later calls as a plain KafkaError ("... in an error state:
        # ProducerFencedError"); its transaction manager (private) keeps the error with its type
        tm = getattr(self._p, "_transaction_manager", None)
        return isinstance(getattr(tm, "last_error", None), (KErr.ProducerFencedError, KErr.InvalidProducerEpochError))

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except Exception as e:
            t = self._typed(e)
            if t is e:
                raise
            raise t from None

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None, partition: int | None = None,
             timestamp_ms: int | None = None, headers: list[tuple[str, bytes]] | None = None) -> Any:
        try:  # not the context manager: this runs once per record written
            return self._send(topic, value=value, key=key, partition=partition, timestamp_ms=timestamp_ms,
                              headers=headers)
        except Exception as e:
            t = self._typed(e)
            if t is e:
                raise
            raise t from None

    def flush(self, deliveries: list[Any], timeout: float) -> None:
        with self._translated():
            self._p.flush(timeout=timeout)
        for f in deliveries:
            if not f.is_done:
                raise TimedOut(f"records not acknowledged within {timeout:.0f}s")
            if f.failed():
                e = self._typed(f.exception)
                raise e from None

    def offset(self, delivery: Any) -> int:
        return delivery.value.offset

    def init_transactions(self) -> None:
        with self._translated():
            self._p.init_transactions()

    def begin_transaction(self) -> None:
        with self._translated():
            self._p.begin_transaction()

    def commit_transaction(self, timeout: float) -> None:
        # KafkaProducer.commit_transaction() waits without a bound; wait on its result with our timeout instead.
        # Private: the transaction manager and the sender thread, which commit_transaction() drives the same way.
        p = self._p
        tm = getattr(p, "_transaction_manager", None)
        with self._translated():
            if tm is None or not hasattr(tm, "begin_commit"):  # pragma: no cover - other kafka-python versions
                p.commit_transaction()
                return
            result = tm.begin_commit()
            p._sender.wakeup()
            if not result.wait(timeout_ms=int(timeout * 1000)):
                raise TimedOut(f"transaction commit not acknowledged within {timeout:.0f}s")

    def close(self, timeout: float | None = None) -> None:
        _close_quietly(self._p, timeout)


__all__ = ["Admin", "Connection", "Consumer", "FETCH_WAIT_MS", "Fenced", "KafkaPython", "Message", "OffsetGone",
           "Producer", "TimedOut", "TopicPartition", "Transport", "TransportError", "Unreachable"]
