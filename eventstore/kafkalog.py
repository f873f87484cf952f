"""The Kafka backend (kafka://HOST:PORT[,HOST:PORT]): the file log's model on Kafka topics, through kafka-python
(or confluent-kafka with ?client=confluent, eventstore/rdkafka.py).

Layout of a namespace NS:

- ``NS.market``, ``NS.intents``, ``NS.executions``, ``NS.system``: the events. Kafka key = instrument id, value = the
  same Avro single-object bytes as the file log, headers ``tape.type`` (full type name), ``tape.seq`` and ``tape.ts``
  (8-byte big-endian seq and ts_event ns). Kafka timestamp = ts_event // 1_000_000. Infinite retention.
- ``NS._commits``: one partition, the commit journal. Offset 0 holds the namespace metadata record (``tape.meta``:
  JSON ``{"format": 1, "partitions": {...}}``, the partition map, decided once by the first writer); every later
  record is one commit (``tape.commit``): first seq, last seq (header), last hash, and for every data partition its
  state after the commit (end offset, running max ts_event, record count, payload bytes).
- ``NS._schemas``: compacted registry, key = fingerprint hex, value = schema JSON text.

Why an in-band journal and not broker transactions for atomicity: on the test broker (tansu 0.6.0) read_committed
consumers receive the records of *aborted* transactions, and a transaction left open by a crashed writer blocks
read_committed readers of that partition forever. So transactions are used for one thing only, fencing (a second
writer's init_transactions bumps the epoch of ``tape-writer-NS`` and the first writer's next produce or commit fails),
while what is committed is decided by the journal, exactly as in the file log: a step's records are produced and
acknowledged first, then its commit record; readers deliver only seqs inside committed ranges and read each
partition only up to the end offset recorded by the last commit they know. Readers use read_uncommitted: the journal,
not the broker, decides what is visible, and read_committed would stall behind a dangling transaction on tansu.

The per-partition end offsets in the commit records also mean a reader never has to decide "this partition is read
to its end" from a broker watermark: on tansu ListOffsets (end_offsets) returns the base offset of the last record
batch + 1, not the log end. Only a writer recovering the torn tail after the last commit, and the journal tail search,
read "to the end"; they do it with the Fetch response's high watermark (correct on tansu) taken by the same consumer
after its own fetches, and use end_offsets only as a hint where to start looking.

Time slices do not use offsets_for_times: on tansu it matches the broker's append time at batch granularity and
answers "not found" with offset 0. The commit records carry each partition's running maximum ts_event, so the
journal is a time index: a cursor for time T starts at the end offset of the last commit whose running maximum is
below T (a binary search with single-record fetches); Replay filters the rest. Seqs are found the same way.

No consumer groups anywhere: replay is manual assignment + seek, deterministic and immediate (tansu joins a group
only after about session_timeout_ms / 2).

URL options: ``kafka://HOST:PORT[,HOST:PORT]?timeout=SECONDS&fetch_bytes=N&replication_factor=N&client=NAME`` (also
keyword arguments of KafkaLog): how long to wait for the broker before a one-line StoreError (default 15 s; connecting
gives up after at most 5 s), the most bytes one fetch brings per partition (default 4 MiB), the replication factor of
new topics (default -1, the cluster's default), and the client library: ``kafka-python`` (default) or ``confluent``
(confluent-kafka on librdkafka, optional, faster; eventstore/rdkafka.py). Both write the same records; a namespace
written through one reads through the other.
"""
from __future__ import annotations

import json
import logging
import re
import struct
import time
import weakref
from contextlib import contextmanager
from typing import Any, Iterator, NamedTuple
from urllib.parse import parse_qs

from .backend import TOPIC_PARTITIONS, Backend, Commit, Cursor, NamespaceReader, NamespaceWriter, PartitionInfo
from .batch import Record
from .codec import check_fingerprint, schema_file_text
from .errors import CorruptLog, LockedNamespace, StoreError, TapeError

try:  # kafka-python is a dependency, but keep the import error one line (store.backend_for reports it)
    import kafka.errors as KErr
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import KafkaAdminClient
except ImportError as e:  # pragma: no cover
    raise ImportError(f"the Kafka backend needs kafka-python ({e})") from None

# kafka-python logs every lost connection at ERROR; without a handler of the application's, Python's last-resort
# handler would print them all on stderr next to the one-line TapeError that says the same
logging.getLogger("kafka").addHandler(logging.NullHandler())

JOURNAL = "_commits"
SCHEMAS = "_schemas"
H_TYPE, H_SEQ, H_TS = "tape.type", "tape.seq", "tape.ts"
T_COMMIT, T_META = b"tape.commit", b"tape.meta"
_U64 = struct.Struct(">Q")
_I64 = struct.Struct(">q")
# commit value: format u8 | first seq u64 | hash length u8 | hash | partition count u16 | per partition state
_COMMIT_HEAD = struct.Struct(">BQB")
_COUNT = struct.Struct(">H")
# per data partition, in meta order (topics as listed, partitions 0..n-1): end offset (after the partition's last
# record at this commit), running max ts_event, records, payload bytes (key + type + value)
_STATE = struct.Struct(">QqQQ")
_COMMIT_FORMAT = 1
_NO_TS = -(2**63)
_TOPIC_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
DEFAULT_TIMEOUT = 15.0
CLIENTS = ("kafka-python", "confluent")  # confluent: eventstore/rdkafka.py, the optional librdkafka transport
FETCH_WAIT_MS = 20  # tansu does not answer a Fetch early when data arrives: latency ~ fetch_max_wait_ms / 2


def _valid_namespace(ns: str) -> str:
    if not ns or not _TOPIC_RE.match(ns) or ns.startswith("_") or len(ns) + len("." + JOURNAL) > 249:
        raise StoreError(
            f"invalid namespace {ns!r} for Kafka: use letters, digits, '-', '_' and '.', not starting with '.' or '_'"
        )
    return ns


class _State(NamedTuple):
    end: int
    max_ts: int
    records: int
    bytes: int


_EMPTY = _State(0, _NO_TS, 0, 0)


class _JCommit(NamedTuple):
    """A commit record as read from the journal, with its offset and the partition states after it."""

    offset: int
    commit: Commit
    states: tuple[_State, ...]


def _encode_commit(c: Commit, states: list[_State]) -> bytes:
    return b"".join(
        [_COMMIT_HEAD.pack(_COMMIT_FORMAT, c.first, len(c.last_hash)), c.last_hash, _COUNT.pack(len(states))]
        + [_STATE.pack(*s) for s in states]
    )


def _header(m: Any, name: str) -> bytes | None:
    for k, v in m.headers or ():
        if k == name:
            return v
    return None


def _decode_journal(m: Any, url: str) -> _JCommit | dict | None:
    """A commit, the metadata dict, or None for anything else (a future record kind)."""
    kind = _header(m, H_TYPE)
    try:
        if kind == T_COMMIT:
            last = _U64.unpack(_header(m, H_SEQ))[0]
            ts = _I64.unpack(_header(m, H_TS))[0]
            v = m.value
            fmt, first, hlen = _COMMIT_HEAD.unpack_from(v)
            p = _COMMIT_HEAD.size
            h = bytes(v[p : p + hlen])
            p += hlen
            (n,) = _COUNT.unpack_from(v, p)
            p += _COUNT.size
            states = tuple(_State(*_STATE.unpack_from(v, p + i * _STATE.size)) for i in range(n))
            return _JCommit(m.offset, Commit(first, last, h, ts), states)
        if kind == T_META:
            return json.loads(m.value)
    except (struct.error, TypeError, ValueError) as e:
        raise CorruptLog(f"{url}: unreadable journal record {m.topic}@{m.offset} ({e}): the journal is damaged") from None
    return None


def _record_of(m: Any) -> Record:
    """A stored Record from a Kafka record written by tape (seq/ts/type from the headers)."""
    h = m.headers
    if len(h) == 3 and h[0][0] == H_TYPE and h[1][0] == H_SEQ and h[2][0] == H_TS:
        t, s, ts = h[0][1], h[1][1], h[2][1]
    else:
        t, s, ts = _header(m, H_TYPE), _header(m, H_SEQ), _header(m, H_TS)
        if t is None or s is None or ts is None:
            raise CorruptLog(
                f"record {m.topic}[{m.partition}]@{m.offset} lacks tape headers: something other than tape wrote "
                "to this topic; a namespace's topics hold only tape records"
            )
    return Record(_U64.unpack(s)[0], _I64.unpack(ts)[0], m.key or b"", t, m.value)


class KafkaLog(Backend):
    """Namespaces as topic sets on a Kafka cluster (or any Kafka-protocol broker, e.g. tansu)."""

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
        self._rd: Any = None
        if self.client == "confluent":
            try:
                from . import rdkafka
            except ImportError as e:
                raise StoreError(f"store {url}: {e}") from None
            self._rd = rdkafka
        self.url = url
        self.servers = servers
        self._admin: Any = None
        self._plain: Any = None
        self._opened: weakref.WeakSet = weakref.WeakSet()

    # ---- clients -------------------------------------------------------------------------------------------

    def _ms(self, factor: float = 1.0) -> int:
        return max(1000, int(self.timeout * 1000 * factor))

    def _common(self) -> dict[str, Any]:
        return {
            "bootstrap_servers": self.servers,
            "client_id": "tape",
            "bootstrap_timeout_ms": min(self._ms(), 5000),  # "no broker there" should not take long to say
            "request_timeout_ms": max(self._ms(), FETCH_WAIT_MS + 1000),
            "reconnect_backoff_max_ms": 1000,
        }

    @contextmanager
    def _errors(self, what: str):
        """Kafka client errors as one-line TapeErrors naming the URL."""
        try:
            yield
        except TapeError:
            raise
        except KErr.KafkaTimeoutError as e:
            if "bootstrap" in str(e):
                raise StoreError(f"cannot reach a Kafka broker at {self.url} ({what}): check the address and that "
                                 "the broker runs") from None
            raise StoreError(f"Kafka at {self.url} did not answer in time ({what}): {e}; is the broker up?") from None
        except KErr.OffsetOutOfRangeError as e:
            raise CorruptLog(f"Kafka at {self.url} no longer has records tape committed ({what}: offset out of range "
                             f"{e}); was the broker restarted without its data?") from None
        except KErr.KafkaError as e:
            raise StoreError(f"Kafka at {self.url} failed ({what}): {type(e).__name__}: {e}") from None

    def admin(self) -> Any:
        if self._admin is None:
            with self._errors("connecting"):
                self._admin = KafkaAdminClient(**self._common())
        return self._admin

    def consumer(self, *, fetch_bytes: int | None = None) -> Any:
        """A consumer for manual assignment: no group, no auto commit, no silent offset reset."""
        if self._rd is not None:
            with self._errors("connecting a consumer"):
                return self._rd.Consumer(self.servers, timeout_ms=self._common()["request_timeout_ms"],
                                         fetch_bytes=fetch_bytes or self.fetch_bytes, fetch_wait_ms=FETCH_WAIT_MS)
        with self._errors("connecting a consumer"):
            return KafkaConsumer(
                **self._common(),
                group_id=None,
                enable_auto_commit=False,
                # never jump silently: a position the broker no longer has is an error, not a rewind
                auto_offset_reset="none",
                # the journal decides what is committed; see the module docstring (tansu's aborted/dangling txns)
                isolation_level="read_uncommitted",
                fetch_max_wait_ms=FETCH_WAIT_MS,
                # tansu ignores the per-partition limit and answers a Fetch with up to fetch_max_bytes of one
                # partition (50 MB by default): bound both, so a replay holds a few MB at a time
                max_partition_fetch_bytes=fetch_bytes or self.fetch_bytes,
                fetch_max_bytes=fetch_bytes or self.fetch_bytes,
                allow_auto_create_topics=False,
                enable_incremental_fetch_sessions=False,
            )

    def producer(self, **extra: Any) -> Any:
        cfg = dict(self._common(), acks="all", enable_idempotence=True, allow_auto_create_topics=False,
                   max_block_ms=self._ms(), linger_ms=50, batch_size=512 * 1024, max_in_flight_requests_per_connection=5)
        cfg["delivery_timeout_ms"] = cfg["request_timeout_ms"] + cfg["linger_ms"]
        cfg.update(extra)
        with self._errors("connecting a producer"):
            if self._rd is not None:
                return self._rd.Producer(self.servers, timeout_ms=cfg["request_timeout_ms"],
                                         transactional_id=cfg.get("transactional_id"),
                                         transaction_timeout_ms=cfg.get("transaction_timeout_ms"),
                                         linger_ms=min(cfg["linger_ms"], 5))
            return KafkaProducer(**cfg)

    def plain_producer(self) -> Any:
        if self._plain is None:
            self._plain = self.producer(linger_ms=0)
        return self._plain

    # ---- topics --------------------------------------------------------------------------------------------

    def describe(self, topics: list[str]) -> dict[str, int]:
        """Partition counts of the topics that exist (metadata request without auto-creation)."""
        with self._errors("reading topic metadata"):
            out = {}
            for t in self.admin().describe_topics(topics):
                if t["error_code"] == 0:
                    out[t["name"]] = len(t["partitions"])
            return out

    def create_topics(self, spec: dict[str, tuple[int, dict[str, str]]]) -> None:
        """Create missing topics with explicit partitions and configs (tansu would auto-create 4 partitions)."""
        if not spec:
            return
        req = {name: {"num_partitions": n, "replication_factor": self.replication_factor, "configs": cfg}
               for name, (n, cfg) in spec.items()}
        with self._errors("creating topics"):
            res = self.admin().create_topics(req, timeout_ms=self._ms(), raise_errors=False)
        for t in res["topics"]:
            code = t["error_code"]
            if code not in (0, KErr.TopicAlreadyExistsError.errno):
                err = KErr.for_code(code)
                raise StoreError(f"Kafka at {self.url} refused to create topic {t['name']}: {err.__name__} "
                                 f"{t.get('error_message') or ''}".rstrip())
        deadline = time.monotonic() + self.timeout
        while set(self.describe(list(spec))) != set(spec):
            if time.monotonic() > deadline:
                raise StoreError(f"Kafka at {self.url}: created topics did not appear in metadata in time")
            time.sleep(0.05)

    # ---- Backend -------------------------------------------------------------------------------------------

    def namespaces(self) -> list[str]:
        with self._errors("listing topics"):
            topics = self.admin().list_topics()
        suffix = "." + JOURNAL
        return sorted(t[: -len(suffix)] for t in topics if t.endswith(suffix))

    def open_writer(self, namespace: str, *, partitions: dict[str, int] | None = None,
                    timeout: float | None = None, **options: Any) -> NamespaceWriter:
        # the file log's durability knobs mean nothing here: every commit waits for acks=all
        unknown = set(options) - {"fsync", "fsync_interval", "segment_bytes", "index_interval"}
        if unknown:
            raise StoreError(f"unknown option(s) for a Kafka writer: {', '.join(sorted(unknown))}")
        writer = KafkaNamespaceWriter(self, _valid_namespace(namespace), partitions, timeout)
        self._opened.add(writer)
        return writer

    def open_reader(self, namespace: str) -> NamespaceReader:
        ns = _valid_namespace(namespace)
        journal = f"{ns}.{JOURNAL}"
        if journal not in self.describe([journal]):
            raise StoreError(f"no namespace {namespace!r} in {self.url}: `tape log namespaces` lists them")
        reader = KafkaNamespaceReader(self, ns)
        self._opened.add(reader)
        return reader

    def schema_store(self, namespace: str) -> "KafkaSchemaStore":
        return KafkaSchemaStore(self, _valid_namespace(namespace))

    def close(self) -> None:
        """Close every reader and writer opened through this backend, then the shared clients."""
        for obj in list(self._opened):
            obj.close()
        self._opened.clear()
        _close_quietly(self._plain, timeout=min(self.timeout, 5.0))
        _close_quietly(self._admin)
        self._plain = self._admin = None


# ---- reading helpers ---------------------------------------------------------------------------------------


def _read_to_end(log: KafkaLog, consumer: Any, tps: list[Any], on_record, what: str) -> None:
    """Poll assigned partitions until each is read to the high watermark of a Fetch made by this consumer.

    Not end_offsets(): tansu's ListOffsets answer is the base offset of the last batch + 1 (its quirk). The
    Fetch response's high watermark is right; position >= highwater after a fetch means "read to the end".
    """
    pending = set(tps)
    last_progress = time.monotonic()
    with log._errors(what):
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
            if pending and time.monotonic() - last_progress > log.timeout:
                names = ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(pending))
                raise StoreError(f"Kafka at {log.url}: no answer reading {names} ({what}) for {log.timeout:.0f}s; "
                                 "is the broker up?")


def _seek(consumer: Any, tp: Any, offset: int) -> None:
    """Seek and forget the partition's cached high watermark, so "read to the end" waits for a fresh Fetch.

    kafka-python keeps the last Fetch's high watermark across seek(); a consumer reused after new records were
    written would otherwise take the old watermark as the end and stop short.
    """
    consumer.seek(tp, offset)
    try:
        consumer._subscription.assignment[tp].highwater = None
    except (AttributeError, KeyError):  # another kafka-python layout: the watermark is refreshed by the next Fetch
        pass


def _close_quietly(c: Any, timeout: float | None = None) -> None:
    """Close a client; if it cannot finish (broker gone, records unsent), stop its IO thread anyway.

    kafka-python's KafkaProducer.close() raises from flush() when records cannot be delivered and then leaves its
    sender thread running, and __del__ raises again later; force the close so nothing outlives the backend.
    """
    if c is None:
        return
    try:
        c.close() if timeout is None else c.close(timeout=timeout)
    except Exception:
        try:
            sender = getattr(c, "_sender", None)
            if sender is not None:
                sender.force_close()
                sender.join(1.0)
            c._closed = True
        except Exception:
            pass


class _Journal:
    """Reading a namespace's commit journal: metadata, tail, binary search."""

    def __init__(self, log: KafkaLog, ns: str):
        self.log = log
        self.ns = ns
        self.tp = TopicPartition(f"{ns}.{JOURNAL}", 0)

    def meta(self, consumer: Any, written: bool = False) -> dict | None:
        """The metadata record at offset 0, or None when the namespace has none yet.

        written: the caller has just committed the record, so wait for it instead of trusting a high watermark
        (a Fetch sent before the commit may still answer "empty").
        """
        consumer.assign([self.tp])
        _seek(consumer, self.tp, 0)
        found: list = []

        def take(tp, m):
            if not found:
                found.append(_decode_journal(m, self.log.url))

        # the journal may be long: stop at the first record instead of reading it all
        deadline = time.monotonic() + self.log.timeout
        with self.log._errors("reading namespace metadata"):
            while not found:
                for ms in consumer.poll(timeout_ms=100, max_records=1).values():
                    for m in ms:
                        take(self.tp, m)
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

    def tail(self, consumer: Any) -> tuple[_JCommit | None, int]:
        """The last commit and the offset after it, reading backwards in growing windows from a hint.

        end_offsets() is only a hint where to start: on tansu it is below the true end (base offset of the last
        batch + 1); on Kafka it is exact but the last offsets may be transaction markers. Either way the window is
        then read forward to the fetch high watermark, and widened until it contains a commit.
        """
        tp = self.tp
        consumer.assign([tp])
        with self.log._errors("reading the commit journal"):
            hint = consumer.end_offsets([tp]).get(tp) or 0
        window = 16
        start = max(0, hint - window)
        while True:
            last: list[_JCommit] = []

            def take(_tp, m):
                j = _decode_journal(m, self.log.url)
                if isinstance(j, _JCommit):
                    last[:] = [j]

            _seek(consumer, tp, start)
            try:
                _read_to_end(self.log, consumer, [tp], take, "reading the commit journal")
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

    def probe(self, consumer: Any, offset: int, hi: int) -> _JCommit | None:
        """The first commit at or after offset and before hi (one small fetch, usually)."""
        tp = self.tp
        _seek(consumer, tp, offset)
        deadline = time.monotonic() + self.log.timeout
        with self.log._errors("searching the commit journal"):
            while True:
                for ms in consumer.poll(timeout_ms=100, max_records=50).values():
                    for m in ms:
                        if m.offset >= hi:
                            return None
                        j = _decode_journal(m, self.log.url)
                        if isinstance(j, _JCommit):
                            return j
                if consumer.position(tp) >= hi:
                    return None
                if time.monotonic() > deadline:
                    raise StoreError(f"Kafka at {self.log.url}: no answer reading {tp.topic}; is the broker up?")

    def search(self, consumer: Any, hi: int, before) -> _JCommit | None:
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


class KafkaCursor(Cursor):
    """One data partition read forward up to the committed end offsets the reader knows."""

    def __init__(self, reader: "KafkaNamespaceReader", topic: str, partition: int, index: int,
                 seq: int | None, ts: int | None):
        self.reader = reader
        self.tp = TopicPartition(f"{reader.ns}.{topic}", partition)
        self.index = index
        self.start_seq, self.start_ts = seq, ts
        self.consumer: Any = None
        self.next_offset = 0
        self.batch: list[Record] = []
        self.i = 0

    def _open(self) -> None:
        r = self.reader
        start = r._start_offset(self.index, self.start_seq, self.start_ts)
        self.consumer = r._new_consumer()
        self.consumer.assign([self.tp])
        _seek(self.consumer, self.tp, start)
        self.next_offset = start

    def read_until(self, horizon: int) -> Iterator[Record]:
        r = self.reader
        if horizon > r._horizon:
            r.horizon()
        end = r._state(self.index).end
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
        with log._errors(f"reading {tp.topic}[{tp.partition}]"):
            while True:
                got = self.consumer.poll(timeout_ms=200)
                ms = got.get(tp)
                if ms:
                    self.next_offset = ms[-1].offset + 1
                    return [_record_of(m) for m in ms]
                if time.monotonic() - since > log.timeout:
                    raise StoreError(
                        f"Kafka at {log.url}: {tp.topic}[{tp.partition}] gives no records at offset {self.next_offset} "
                        f"although committed records reach offset {end} (waited {log.timeout:.0f}s): broker down, "
                        "or restarted without its data"
                    )

    def close(self) -> None:
        _close_quietly(self.consumer)
        self.consumer = None

    def __del__(self) -> None:
        self.close()


class KafkaNamespaceReader(NamespaceReader):
    def __init__(self, log: KafkaLog, ns: str):
        self.log = log
        self.ns = ns
        self.journal = _Journal(log, ns)
        self._tail: Any = None  # consumer following the journal tail
        self._probe: Any = None  # consumer for binary searches (small fetches)
        self._idle: list[Any] = []  # consumers of finished commits() iterators, for reuse
        self._all: list[Any] = []
        self._horizon = 0
        self._last: _JCommit | None = None
        self._journal_end = 0  # offset after the last commit known
        self._hint: tuple[int, int] | None = None  # (last seq, next offset) where a commits() scan stopped
        self._alive_at = time.monotonic()
        c = self._new_consumer()
        meta = self.journal.meta(c)
        if meta is None:
            raise StoreError(f"namespace {ns!r} in {log.url} is being created (no metadata record yet): retry")
        self.partitions: dict[str, int] = dict(meta["partitions"])
        self.order = [(t, i) for t, n in self.partitions.items() for i in range(n)]
        self.index = {k: j for j, k in enumerate(self.order)}
        self._tail = c

    def _new_consumer(self, fetch_bytes: int | None = None) -> Any:
        c = self.log.consumer(fetch_bytes=fetch_bytes)
        self._all.append(c)
        return c

    def _state(self, index: int) -> _State:
        return self._last.states[index] if self._last is not None and index < len(self._last.states) else _EMPTY

    def horizon(self) -> int:
        tp = self.journal.tp
        if self._last is None and self._journal_end == 0:
            last, end = self.journal.tail(self._tail)
            self._journal_end = end
            self._set_last(last)
            return self._horizon
        # follow: whatever the tail consumer has fetched since (a stale answer is only late, never wrong)
        with self.log._errors("reading the commit journal"):
            self._check_alive()
            while True:
                got = self._tail.poll(timeout_ms=0, max_records=5000).get(tp)
                if not got:
                    break
                for m in got:
                    j = _decode_journal(m, self.log.url)
                    if isinstance(j, _JCommit):
                        self._set_last(j)
                self._journal_end = max(self._journal_end, got[-1].offset + 1)
        return self._horizon

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

    def _set_last(self, j: _JCommit | None) -> None:
        if j is not None:
            self._last = j
            self._horizon = j.commit.last

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
        c = self._idle.pop() if self._idle else self._new_consumer()
        try:
            c.assign([tp])
            _seek(c, tp, start)
            offset = start
            since = time.monotonic()
            while True:
                stop = self._last.offset + 1
                if offset >= stop:
                    return
                with self.log._errors("reading the commit journal"):
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
                    j = _decode_journal(m, self.log.url)
                    if isinstance(j, _JCommit):
                        self._hint = (j.commit.last, offset)
                        if j.commit.last >= from_seq:
                            yield j.commit
        finally:
            self._idle.append(c)

    def _searcher(self) -> Any:
        if self._probe is None:
            self._probe = self._new_consumer(fetch_bytes=1024)
            self._probe.assign([self.journal.tp])
        return self._probe

    def _start_offset(self, index: int, seq: int | None, ts: int | None) -> int:
        """Where a cursor for a seq or time starts: the end offset of the last commit wholly before it."""
        if seq is None and ts is None:
            return 0
        if self._last is None and self._journal_end == 0:
            self.horizon()
        if self._last is None:
            return 0
        if seq is not None:
            def before(j: _JCommit) -> bool:
                return j.commit.last < seq
        else:
            def before(j: _JCommit) -> bool:  # running max of ts_event in the partition: monotone
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
                for (t, i), s in zip(self.order, (self._state(j) for j in range(len(self.order))))]

    def close(self) -> None:
        for c in self._all:
            _close_quietly(c)
        self._all = []
        self._idle = []
        self._tail = self._probe = None

    def __del__(self) -> None:
        self.close()


# ---- writing -----------------------------------------------------------------------------------------------


class KafkaNamespaceWriter(NamespaceWriter):
    """The fenced single writer of a namespace: each commit is one transaction, data acknowledged before the journal.

    Fencing: the transactional id is derived from the namespace, so a second writer's init_transactions bumps the
    producer epoch and this writer's next produce or commit fails with ProducerFencedError -> LockedNamespace.
    """

    def __init__(self, log: KafkaLog, ns: str, partitions: dict[str, int] | None, timeout: float | None):
        self.log = log
        self.ns = ns
        self.timeout = float(timeout if timeout is not None else log.timeout)
        self.transactional_id = f"tape-writer-{ns}"
        self.journal_topic = f"{ns}.{JOURNAL}"
        self.producer: Any = None
        self._broken: str | None = None
        self._in_txn = False
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
        self.producer = log.producer(
            transactional_id=self.transactional_id, max_block_ms=ms, request_timeout_ms=ms,
            delivery_timeout_ms=ms + 50, transaction_timeout_ms=max(60000, ms),
        )
        with self._errors("starting the writer"):
            self.producer.init_transactions()  # fences any earlier writer of the namespace
        consumer = log.consumer()
        try:
            journal = _Journal(log, ns)
            meta = journal.meta(consumer)
            if meta is None:
                parts = dict(partitions or TOPIC_PARTITIONS)
                if not parts or any(not isinstance(n, int) or n < 1 for n in parts.values()):
                    raise StoreError(f"invalid partition map {parts!r}: give each topic 1 or more partitions")
                self._create_data_topics(parts)
                body = json.dumps({"format": 1, "partitions": parts}, sort_keys=False).encode()
                self._transaction(lambda: [self.producer.send(jt, value=body, partition=0, headers=[(H_TYPE, T_META)])],
                                  "writing the namespace record")
                fresh = log.consumer()
                try:  # the first record wins if two first writers raced
                    meta = journal.meta(fresh, written=True)
                finally:
                    _close_quietly(fresh)
            self.partitions = dict(meta["partitions"])
            self._create_data_topics(self.partitions)
            self.order = [(t, i) for t, n in self.partitions.items() for i in range(n)]
            self.index = {k: j for j, k in enumerate(self.order)}
            self.tps = [TopicPartition(f"{ns}.{t}", i) for t, i in self.order]
            last, _ = journal.tail(consumer)
            states = list(last.states) if last is not None else []
            states += [_EMPTY] * (len(self.order) - len(states))
            # the torn tail: records after the last commit's end offsets (a step whose commit never landed)
            max_seq = 0
            tp_index = {tp: j for j, tp in enumerate(self.tps)}
            acc = [list(s) for s in states]

            def take(tp, m):
                nonlocal max_seq
                r = _record_of(m)
                a = acc[tp_index[tp]]
                a[0] = m.offset + 1
                a[1] = max(a[1], r.ts)
                a[2] += 1
                a[3] += len(r.key) + len(r.type) + len(r.value)
                max_seq = max(max_seq, r.seq)

            consumer.assign(self.tps)
            for tp, s in zip(self.tps, states):
                _seek(consumer, tp, s.end)
            _read_to_end(log, consumer, self.tps, take, "recovering the namespace tail")
            self.states = [_State(*a) for a in acc]
            self.last_hash = last.commit.last_hash if last is not None else b""
            # a step torn by a crash keeps its seqs: the writer goes on after them, readers skip them
            self.next_seq = max(max_seq, last.commit.last if last is not None else 0) + 1
        finally:
            _close_quietly(consumer)

    def _create_data_topics(self, parts: dict[str, int]) -> None:
        names = {f"{self.ns}.{t}": n for t, n in parts.items()}
        have = self.log.describe(list(names))
        for name, n in have.items():
            if n != names[name]:
                raise StoreError(f"topic {name} has {n} partitions but namespace {self.ns!r} records {names[name]}: "
                                 "it was created by something else; remove it or use another namespace")
        self.log.create_topics({name: (n, {"retention.ms": "-1", "cleanup.policy": "delete"})
                                for name, n in names.items() if name not in have})

    @contextmanager
    def _errors(self, what: str):
        try:
            with self.log._errors(what):
                yield
        except StoreError as e:
            if "ProducerFenced" in str(e) or "InvalidProducerEpoch" in str(e):
                raise self._fenced() from None
            raise

    def _fenced(self) -> LockedNamespace:
        self._broken = "fenced"
        return LockedNamespace(f"namespace {self.ns!r} was taken over by another writer (Kafka transactional id "
                               f"{self.transactional_id!r} fenced this one): a namespace has one writer")

    def _transaction(self, send, what: str) -> list:
        """begin, send (returns futures), wait for all acks, commit; any failure leaves the writer unusable."""
        p = self.producer
        try:
            with self._errors(what):
                p.begin_transaction()
                self._in_txn = True
                futures = send()
                self._wait(futures, what)
                self._end_txn(what)
                return futures
        except BaseException as e:
            if self._broken is None:
                self._broken = f"{type(e).__name__}: {e}"
            raise

    def _wait(self, futures: list, what: str) -> None:
        self.producer.flush(timeout=self.timeout)
        for f in futures:
            if not f.is_done:
                raise KErr.KafkaTimeoutError(f"records not acknowledged within {self.timeout:.0f}s")
            if f.failed():
                raise f.exception

    def _end_txn(self, what: str) -> None:
        # KafkaProducer.commit_transaction() waits without a bound; wait on its result with our timeout instead
        p = self.producer
        tm = getattr(p, "_transaction_manager", None)
        if tm is None or not hasattr(tm, "begin_commit"):  # pragma: no cover - other kafka-python versions
            p.commit_transaction()
        else:
            result = tm.begin_commit()
            p._sender.wakeup()
            if not result.wait(timeout_ms=int(self.timeout * 1000)):
                raise KErr.KafkaTimeoutError(f"transaction commit not acknowledged within {self.timeout:.0f}s")
        self._in_txn = False

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

    def _send_all(self, items) -> list:
        send = self.producer.send
        ns = self.ns
        pack_u, pack_i = _U64.pack, _I64.pack
        futures = []
        lasts: list[list] = []  # per commit: (index, future of its last record in that partition, added stats)
        topics = {t: f"{ns}.{t}" for t in self.partitions}
        for batches, _ in items:
            mine = []
            for (topic, part), records in batches.items():
                j = self.index.get((topic, part))
                if j is None:
                    raise StoreError(f"namespace {ns!r} has no partition {topic}[{part}]")
                name = topics[topic]
                max_ts, size = _NO_TS, 0
                f = None
                for seq, ts, key, type_, value in records:
                    f = send(name, value=value, key=key, partition=part, timestamp_ms=max(0, ts // 1_000_000),
                             headers=[(H_TYPE, type_), (H_SEQ, pack_u(seq)), (H_TS, pack_i(ts))])
                    futures.append(f)
                    if ts > max_ts:
                        max_ts = ts
                    size += len(key) + len(type_) + len(value)
                if f is not None:
                    mine.append((j, f, max_ts, len(records), size))
            lasts.append(mine)
        # the data must be acknowledged before any commit record that makes it visible
        self._wait(futures, "producing records")
        states = list(self.states)
        journal = []
        for (batches, c), mine in zip(items, lasts):
            for j, f, max_ts, n, size in mine:
                s = states[j]
                states[j] = _State(f.value.offset + 1, max(s.max_ts, max_ts), s.records + n, s.bytes + size)
            journal.append((c, _encode_commit(c, states)))
        futures = self._send_journal(journal)
        self.states = states
        return futures

    def _send_journal(self, journal: list[tuple[Commit, bytes]]) -> list:
        send = self.producer.send
        jt = self.journal_topic
        return [send(jt, value=value, partition=0, timestamp_ms=max(0, c.ts // 1_000_000),
                     headers=[(H_TYPE, T_COMMIT), (H_SEQ, _U64.pack(c.last)), (H_TS, _I64.pack(c.ts))])
                for c, value in journal]

    def close(self) -> None:
        p, self.producer = self.producer, None
        _close_quietly(p, timeout=0 if self._broken else min(self.timeout, 5.0))

    def __del__(self) -> None:
        self.close()


# ---- registry ----------------------------------------------------------------------------------------------


class KafkaSchemaStore:
    """The registry in the compacted topic NS._schemas: key = fingerprint hex, value = schema JSON text."""

    def __init__(self, log: KafkaLog, ns: str):
        self.log = log
        self.topic = f"{ns}.{SCHEMAS}"

    def load_schemas(self) -> dict[int, dict[str, Any]]:
        if self.topic not in self.log.describe([self.topic]):
            return {}
        out: dict[int, dict[str, Any]] = {}
        tp = TopicPartition(self.topic, 0)

        def take(_tp, m):
            try:
                fp = int(m.key.decode(), 16)
            except (AttributeError, ValueError):
                raise CorruptLog(f"{self.log.url}: {self.topic}@{m.offset} has key {m.key!r}, not a fingerprint") from None
            if m.value is None:  # a tombstone
                out.pop(fp, None)
                return
            schema = json.loads(m.value)
            check_fingerprint(fp, schema)
            out[fp] = schema

        c = self.log.consumer()
        try:
            c.assign([tp])
            _seek(c, tp, 0)
            _read_to_end(self.log, c, [tp], take, "loading the schema registry")
        finally:
            _close_quietly(c)
        return dict(sorted(out.items()))

    def save_schema(self, fp: int, schema: dict[str, Any]) -> None:
        """Durable (acks=all) before the first event that needs it is written."""
        log = self.log
        if self.topic not in log.describe([self.topic]):
            log.create_topics({self.topic: (1, {"cleanup.policy": "compact", "retention.ms": "-1"})})
        with log._errors(f"registering schema {fp:016x}"):
            p = log.plain_producer()
            f = p.send(self.topic, key=f"{fp:016x}".encode(), value=schema_file_text(schema).encode(), partition=0)
            p.flush(timeout=log.timeout)
            f.get(timeout=log.timeout)


__all__ = ["KafkaLog", "KafkaSchemaStore", "KafkaNamespaceReader", "KafkaNamespaceWriter"]
