"""One contract for the Log interface, run against both backends (file:PATH and kafka://HOST:PORT).

Kafka runs against the session broker (see tests/conftest.py: tansu, an external broker or testcontainers), with a
fresh namespace per test. The Kafka-only tests at the end start private tansu brokers they can kill.
"""
from __future__ import annotations

import hashlib
import threading
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from eventstore.copy import copy_namespace
from eventstore.errors import LockedNamespace, StoreError, TapeError
from eventstore.kafka import Fenced, KafkaLog, KafkaNamespaceWriter
from eventstore.kafka.transport import Unreachable
from eventstore.store import Log
from eventstore.writer import Draft, partition_for

T0 = 1_700_000_000_000_000_000
KEYS = ("BTCUSDT.BINANCE", "ETHUSDT.BINANCE", "SOLUSDT.BINANCE", "XRPUSDT.BINANCE", "ADAUSDT.BINANCE",
        "DOGEUSDT.BINANCE", "BNBUSDT.BINANCE", "LTCUSDT.BINANCE")
KAFKA_TIMEOUT = 10.0


# ---- drafts ------------------------------------------------------------------------------------------------


def trade(i: int, key: str = KEYS[0], ts: int | None = None) -> Draft:
    return Draft("TradeTick", {"instrument_id": key, "price": Decimal(50_000 + i).scaleb(-2),
                               "quantity": Decimal(i % 97 + 1).scaleb(-3), "aggressor_side": "BUYER",
                               "trade_id": f"t{i}"}, T0 + i * 1_000 if ts is None else ts, key, "test")


def intent(i: int, key: str = KEYS[0], ts: int | None = None) -> Draft:
    return Draft("OrderIntent", {"instrument_id": key, "strategy_id": "s", "client_order_id": f"o{i}", "side": "BUY",
                                 "order_type": "LIMIT", "quantity": Decimal("1.5"), "price": Decimal("100.25"),
                                 "time_in_force": "GTC"}, T0 + i * 1_000 if ts is None else ts, key, "strategy:s",
                 causation_id=f"c{i}", correlation_id=f"o{i}")


def accepted(i: int, key: str = KEYS[0], ts: int | None = None) -> Draft:
    return Draft("OrderAccepted", {"instrument_id": key, "client_order_id": f"o{i}", "venue_order_id": f"v{i}"},
                 T0 + i * 1_000 if ts is None else ts, key, "venue:sim")


def heartbeat(i: int, ts: int | None = None) -> Draft:
    return Draft("Heartbeat", {"component": f"hb{i}"}, T0 + i * 1_000 if ts is None else ts, "runtime", "runtime")


def mixed_step(i: int) -> list[Draft]:
    """One step across all four topics."""
    key = KEYS[i % len(KEYS)]
    return [trade(i, key), intent(i, key), accepted(i, key), heartbeat(i)]


def rows(log: Log, ns: str, **kw: Any) -> list[tuple]:
    return [tuple(r) for r in log.replay(ns, **kw).records()]


def commits(log: Log, ns: str) -> list[tuple]:
    reader = log.backend.open_reader(ns)
    try:
        reader.horizon()
        return [(c.first, c.last, c.last_hash, c.ts) for c in reader.commits(1)]
    finally:
        reader.close()


class Crash(Exception):
    """Stands for the process dying between a step's records and its commit record."""


def crash_before_commit_record(writer) -> None:
    """Make the backend writer die after appending the step's records but before its commit record."""
    bw = writer.backend

    def die(*a, **k):
        raise Crash()

    if isinstance(bw, KafkaNamespaceWriter):
        bw._send_journal = die  # records produced and acknowledged; the journal entry never sent
    else:
        bw.journal.append = die  # partition batches appended; the journal record never written


# ---- the two backends --------------------------------------------------------------------------------------


@dataclass
class Store:
    kind: str
    url: str
    log: Log
    ns: str

    def fresh(self) -> Log:
        """A new Log from nothing but the URL (a different process would do the same)."""
        if self.kind == "kafka":
            return Log(KafkaLog(self.url, timeout=KAFKA_TIMEOUT))
        return Log.open(self.url)


def _ns() -> str:
    return "t" + uuid.uuid4().hex[:12]


# the Kafka backend on each client library: kafka-python (the default) and confluent-kafka (client=confluent)
KAFKA_CLIENTS = ["kafka-python", "confluent"]


@pytest.fixture(params=["file", "kafka", "kafka-confluent"])
def store(request, tmp_path: Path):
    if request.param == "file":
        url = f"file:{tmp_path / 'store'}"
        log = Log.open(url)
    else:
        url = f"kafka://{request.getfixturevalue('kafka_bootstrap')}"
        if request.param == "kafka-confluent":
            url += "?client=confluent"
        log = Log(KafkaLog(url, timeout=KAFKA_TIMEOUT))
    yield Store(request.param.partition("-")[0], url, log, _ns())
    log.close()


# ---- contract ----------------------------------------------------------------------------------------------


def test_append_and_read(store: Store) -> None:
    log, ns = store.log, store.ns
    with log.writer(ns) as w:
        assert w.next_seq == 1
        assert w.append([trade(1), trade(2, KEYS[1])]) == 1
        assert w.append([intent(3)]) == 3
        assert w.next_seq == 4
    assert ns in log.namespaces()
    events = list(log.replay(ns))
    assert [(e.seq, e.name, e.key) for e in events] == [
        (1, "TradeTick", KEYS[0]), (2, "TradeTick", KEYS[1]), (3, "OrderIntent", KEYS[0])]
    assert events[0].data["price"] == Decimal("500.01")
    assert events[2].data["quantity"] == Decimal("1.5")
    assert [e.envelope["event_id"] for e in events] == [f"{ns}:1", f"{ns}:2", f"{ns}:3"]
    assert [e.ts_event for e in events] == [T0 + 1_000, T0 + 2_000, T0 + 3_000]
    # the hash chain: each prev_hash is the sha256 of the previous record value
    assert events[0].envelope["prev_hash"] == b""
    for a, b in zip(events, events[1:]):
        assert b.envelope["prev_hash"] == hashlib.sha256(a.value).digest()
    # reopening goes on where it stopped, with the chain
    with log.writer(ns) as w:
        assert w.next_seq == 4
        assert w.last_hash == hashlib.sha256(events[-1].value).digest()
        w.append([heartbeat(4)])
    assert [e.seq for e in log.replay(ns)] == [1, 2, 3, 4]
    stats = log.stats(ns)
    assert (stats.events, stats.first_seq, stats.last_seq) == (4, 1, 4)
    assert sum(p.records for p in log.partitions(ns)) == 4


def test_unknown_namespace_is_one_line_error(store: Store) -> None:
    with store.log.writer(store.ns) as w:
        w.append([trade(1)])
    with pytest.raises(StoreError, match="no namespace"):
        list(store.log.replay("nothing-" + store.ns))


def test_steps_span_topics_and_are_committed_whole(store: Store) -> None:
    log, ns = store.log, store.ns
    with log.writer(ns) as w:
        for i in range(5):
            w.append(mixed_step(i))
        w.append_steps([mixed_step(5), mixed_step(6)])  # a group commit is one unit
    assert [(c[0], c[1]) for c in commits(log, ns)] == [(1, 4), (5, 8), (9, 12), (13, 16), (17, 20), (21, 28)]
    events = list(log.replay(ns))
    assert [e.seq for e in events] == list(range(1, 29))
    assert [e.name for e in events[:4]] == ["TradeTick", "OrderIntent", "OrderAccepted", "Heartbeat"]
    assert {e.topic for e in events} == {"market", "intents", "executions", "system"}
    only = list(log.replay(ns, types=["OrderAccepted", "Heartbeat"]))
    assert [e.seq for e in only] == [e.seq for e in events if e.name in ("OrderAccepted", "Heartbeat")]


def test_torn_step_is_never_delivered(store: Store) -> None:
    log, ns = store.log, store.ns
    w = log.writer(ns)
    w.append(mixed_step(0))  # seqs 1..4
    crash_before_commit_record(w)
    with pytest.raises(Crash):
        w.append(mixed_step(1) + [trade(99, KEYS[3])])  # seqs 5..9: records written, commit record never
    w.backend.close()
    # any reader: only the committed step
    assert [e.seq for e in store.fresh().replay(ns)] == [1, 2, 3, 4]
    # the next writer goes on after the torn seqs, never reusing them
    with log.writer(ns) as w2:
        assert w2.next_seq == 10
        assert w2.last_hash == commits(log, ns)[-1][2]
        w2.append(mixed_step(2))  # 10..13
    events = list(store.fresh().replay(ns))
    assert [e.seq for e in events] == [1, 2, 3, 4, 10, 11, 12, 13]
    assert [(c[0], c[1]) for c in commits(log, ns)] == [(1, 4), (10, 13)]
    # slices that start inside or just after the torn step
    assert [e.seq for e in log.replay(ns, from_seq=6)] == [10, 11, 12, 13]
    assert [e.seq for e in log.replay(ns, from_seq=3, to_seq=11)] == [3, 4, 10, 11]
    # the torn records stay on the partitions (as on disk), counted but never delivered
    assert sum(p.records for p in log.partitions(ns)) >= 8


def test_seq_merge_order_over_partitions(store: Store) -> None:
    log, ns = store.log, store.ns
    parts = {"market": 4, "intents": 2, "executions": 3, "system": 1}
    expected_per_partition: dict[tuple[str, int], int] = {}
    with log.writer(ns, partitions=parts) as w:
        assert w.backend.partitions == parts
        n = 0
        for s in range(40):
            step = []
            for j in range(1 + s % 5):
                key = KEYS[(s * 3 + j) % len(KEYS)]
                d = (trade, intent, accepted)[(s + j) % 3](n, key)
                step.append(d)
                n += 1
            w.append(step)
            for d in step:
                topic = {"TradeTick": "market", "OrderIntent": "intents", "OrderAccepted": "executions"}[d.type]
                k = (topic, partition_for(d.key.encode(), parts[topic]))
                expected_per_partition[k] = expected_per_partition.get(k, 0) + 1
    # a writer reopened with another map keeps the namespace's
    with log.writer(ns, partitions={"market": 1, "intents": 1, "executions": 1, "system": 1}) as w:
        assert w.backend.partitions == parts
    events = list(store.fresh().replay(ns))
    assert [e.seq for e in events] == list(range(1, n + 1))
    assert [e.data["envelope"]["seq"] for e in events] == list(range(1, n + 1))
    info = {(p.topic, p.partition): p.records for p in log.partitions(ns)}
    assert {k: v for k, v in info.items() if v} == expected_per_partition
    assert sum(1 for (t, _), v in info.items() if t == "market" and v) > 1  # really spread over partitions


def test_time_and_seq_slices(store: Store) -> None:
    log, ns = store.log, store.ns
    parts = {"market": 3, "intents": 1, "executions": 1, "system": 1}
    with log.writer(ns, partitions=parts) as w:
        i = 0
        for s in range(60):
            step = []
            for j in range(4):
                key = KEYS[(s + j) % len(KEYS)]
                # event time mostly rises, with per-instrument jitter, so no partition is strictly ordered by time
                ts = T0 + s * 1_000_000 + ((j * 7919 + s * 104729) % 1_500_000) - 750_000
                step.append(trade(i, key, ts) if j < 3 else heartbeat(i, ts))
                i += 1
            w.append(step)
    everything = rows(log, ns)
    assert len(everything) == 240
    for a, b in [(T0 + 10_000_000, T0 + 20_000_000), (T0 + 33_333_333, T0 + 33_900_000), (T0 - 10**12, T0 + 1),
                 (T0 + 59_000_000, T0 + 10**12), (T0 + 30_000_000, None)]:
        kw = {"from_ts": a} if b is None else {"from_ts": a, "to_ts": b}
        got = rows(store.fresh(), ns, **kw)
        want = [r for r in everything if r[1] >= a and (b is None or r[1] < b)]
        assert got == want, (a, b)
    assert rows(log, ns, from_seq=101, to_seq=150) == [r for r in everything if 101 <= r[0] <= 150]
    assert rows(log, ns, from_seq=239) == everything[-2:]
    assert rows(log, ns, from_seq=1000) == []
    got = [r[0] for r in rows(log, ns, types=["Heartbeat"], from_ts=T0 + 50_000_000)]
    assert got == [r[0] for r in everything if r[3].endswith(b"Heartbeat") and r[1] >= T0 + 50_000_000]


def test_follow_mode_delivers_new_steps_in_order(store: Store) -> None:
    log, ns = store.log, store.ns
    w = log.writer(ns, partitions={"market": 2, "intents": 1, "executions": 1, "system": 1})
    w.append(mixed_step(0))
    got: list[int] = []
    stop = threading.Event()
    errors: list[BaseException] = []

    def follow() -> None:
        try:
            for e in store.fresh().replay(ns, follow=True, poll_interval=0.01, stop=stop.is_set):
                got.append(e.seq)
        except BaseException as e:  # surfaced below
            errors.append(e)

    t = threading.Thread(target=follow, daemon=True)
    t.start()
    try:
        for i in range(1, 16):
            w.append(mixed_step(i))
            if i % 5 == 0:
                time.sleep(0.1)
        deadline = time.monotonic() + 20
        while len(got) < 64 and time.monotonic() < deadline and not errors:
            time.sleep(0.02)
        latency_start = time.monotonic()
        w.append([heartbeat(99)])
        while len(got) < 65 and time.monotonic() < deadline and not errors:
            time.sleep(0.005)
        latency = time.monotonic() - latency_start
    finally:
        stop.set()
        t.join(10)
        w.close()
    assert not errors, errors
    assert got == list(range(1, 66))
    assert latency < 5.0  # a tail, not a batch job: a new step arrives in well under the broker timeout


def test_second_writer_is_refused_or_fences_the_first(store: Store) -> None:
    """One writer per namespace: the file log refuses a second one; Kafka's second writer fences the first."""
    log, ns = store.log, store.ns
    w1 = log.writer(ns)
    w1.append([trade(1)])
    try:
        w2 = log.writer(ns)
    except LockedNamespace as e:
        assert store.kind == "file"
        assert "already has a writer" in str(e) and "\n" not in str(e)
        w1.append([trade(2)])
        w1.close()
        with log.writer(ns) as w2:
            w2.append([trade(3)])
        assert [e.seq for e in log.replay(ns)] == [1, 2, 3]
        return
    assert store.kind == "kafka"
    try:
        # typed: Fenced, a LockedNamespace, so the CLI reports it as one line like the file log's refusal
        with pytest.raises(Fenced, match=f"namespace '{ns}' was taken over by another writer") as info:
            w1.append([trade(2)])
        assert isinstance(info.value, LockedNamespace)
        assert "\n" not in str(info.value)
        with pytest.raises(Fenced):  # and stays fenced
            w1.append([trade(3)])
        assert w2.next_seq == 2
        w2.append([trade(4)])
    finally:
        w1.close()
        w2.close()
    events = list(store.fresh().replay(ns))
    assert [(e.seq, e.data["trade_id"]) for e in events] == [(1, "t1"), (2, "t4")]


def test_registry_travels_with_the_log(store: Store) -> None:
    log, ns = store.log, store.ns
    with log.writer(ns) as w:
        for i in range(3):
            w.append(mixed_step(i))
    fresh = store.fresh()  # nothing but the URL
    registry = fresh.backend.schema_store(ns).load_schemas()
    used = {log.catalog.get(n).fingerprint for n in ("TradeTick", "OrderIntent", "OrderAccepted", "Heartbeat")}
    assert set(registry) == used
    decoded = [e.data for e in fresh.replay(ns)]
    assert len(decoded) == 12
    assert decoded[1]["price"] == Decimal("100.25")
    assert decoded[2]["venue_order_id"] == "v0"
    # saving again is idempotent; a reopened writer does not duplicate entries
    with fresh.writer(ns) as w:
        w.append([trade(50)])
    assert set(store.fresh().backend.schema_store(ns).load_schemas()) == used


def test_copy_to_a_file_store_and_resume(store: Store, tmp_path: Path) -> None:
    """This backend -> file store: same records and commits; resumes; refuses a destination that diverged."""
    log, ns = store.log, store.ns
    with log.writer(ns, partitions={"market": 2, "intents": 1, "executions": 1, "system": 1}) as w:
        for i in range(6):
            w.append(mixed_step(i))
    dst = Log.open(f"file:{tmp_path / 'copy'}")
    seen: list[tuple[int, int]] = []
    assert copy_namespace(log, dst, ns, progress=lambda done, total: seen.append((done, total))) == 24
    assert seen[-1] == (24, 24)
    assert rows(dst, ns) == rows(log, ns)
    assert commits(dst, ns) == commits(log, ns)
    assert copy_namespace(log, dst, ns) == 0  # nothing new
    with log.writer(ns) as w:
        w.append(mixed_step(6))
        w.append([trade(7)])
    assert copy_namespace(log, dst, ns) == 5
    assert rows(dst, ns) == rows(log, ns)
    assert commits(dst, ns) == commits(log, ns)
    # a destination that diverged is refused, not appended to
    with dst.writer(ns) as w:
        w.append([heartbeat(77)])
    with log.writer(ns) as w:
        w.append([heartbeat(78)])
    with pytest.raises(StoreError, match="not a prefix"):
        copy_namespace(log, dst, ns)
    dst.close()


def test_copy_file_to_kafka_to_file_is_byte_identical(kafka_bootstrap: str, tmp_path: Path) -> None:
    ns = _ns()
    src = Log.open(f"file:{tmp_path / 'src'}")
    parts = {"market": 3, "intents": 2, "executions": 1, "system": 1}
    w = src.writer(ns, partitions=parts)
    for i in range(10):
        w.append(mixed_step(i))
    w.append_steps([[trade(100 + j, KEYS[j % 8])] for j in range(30)])
    crash_before_commit_record(w)
    with pytest.raises(Crash):
        w.append(mixed_step(11))  # a torn step in the source: never copied
    w.backend.close()
    with src.writer(ns) as w:
        for i in range(12, 15):
            w.append(mixed_step(i))
    url = f"kafka://{kafka_bootstrap}"
    kafka = Log(KafkaLog(url, timeout=KAFKA_TIMEOUT))
    back = Log.open(f"file:{tmp_path / 'back'}")
    n = len(rows(src, ns))
    assert n == 40 + 30 + 12
    assert copy_namespace(src, kafka, ns) == n
    assert copy_namespace(kafka, back, ns) == n
    want = rows(src, ns)
    fresh_kafka = Log(KafkaLog(url, timeout=KAFKA_TIMEOUT))
    assert rows(fresh_kafka, ns) == want
    assert rows(back, ns) == want
    assert commits(kafka, ns) == commits(src, ns) == commits(back, ns)
    assert fresh_kafka.backend.open_reader(ns).partitions == parts
    assert [e.data for e in fresh_kafka.replay(ns)] == [e.data for e in src.replay(ns)]
    assert [e.data for e in back.replay(ns)] == [e.data for e in src.replay(ns)]
    # and resumable in both hops
    with src.writer(ns) as w:
        w.append(mixed_step(20))
    assert copy_namespace(src, kafka, ns) == 4
    assert copy_namespace(kafka, back, ns) == 4
    assert rows(back, ns) == rows(src, ns) == rows(fresh_kafka, ns)
    for log in (src, kafka, back, fresh_kafka):
        log.close()


# ---- Kafka only --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("client", KAFKA_CLIENTS)
def test_kafka_unreachable_broker_is_one_line_store_error(client: str) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"kafka://127.0.0.1:{port}"
    t = time.monotonic()
    with pytest.raises(Unreachable, match=f"cannot reach a Kafka broker at {url}") as info:
        Log(KafkaLog(url, timeout=2, client=client)).namespaces()
    assert isinstance(info.value, StoreError)
    assert "\n" not in str(info.value)
    assert time.monotonic() - t < 10
    with pytest.raises(StoreError, match="kafka://HOST:PORT"):
        KafkaLog("kafka://")


def _write_many(log: Log, ns: str, steps: int, per_step: int) -> int:
    with log.writer(ns) as w:
        for s in range(steps):
            w.append_steps([[trade(s * per_step + j, KEYS[j % 8])] for j in range(per_step)])
    return steps * per_step


@pytest.mark.parametrize("client", KAFKA_CLIENTS)
@pytest.mark.parametrize("case", ["killed", "restarted-empty", "killed-while-following"])
def test_kafka_broker_lost_mid_replay_is_an_error_not_silent_loss(tansu_factory, case: str, client: str) -> None:
    broker = tansu_factory()
    # small fetches, so most of the namespace is still on the broker when it goes away
    log = Log(KafkaLog(f"kafka://{broker.bootstrap}", timeout=3, fetch_bytes=4096, client=client))
    ns = _ns()
    total = _write_many(log, ns, 20, 100)
    follow = case == "killed-while-following"
    it = iter(log.replay(ns, follow=follow, poll_interval=0.01))
    seen = [next(it).seq for _ in range(total if follow else 150)]
    broker.stop()
    if case == "restarted-empty":
        tansu_factory(broker.port)  # same address, memory storage: every topic and record is gone
    t = time.monotonic()
    with pytest.raises(TapeError) as info:
        for e in it:
            seen.append(e.seq)
    assert time.monotonic() - t < 30
    assert seen == list(range(1, len(seen) + 1))
    assert len(seen) == total if follow else len(seen) < total
    assert "\n" not in str(info.value) and "kafka://" in str(info.value)
    log.close()


@pytest.mark.parametrize("client", KAFKA_CLIENTS)
def test_kafka_producer_errors_are_surfaced(tansu_factory, client: str) -> None:
    broker = tansu_factory()
    log = Log(KafkaLog(f"kafka://{broker.bootstrap}", timeout=3, client=client))
    ns = _ns()
    w = log.writer(ns, timeout=2)
    w.append([trade(1)])
    broker.stop()
    t = time.monotonic()
    with pytest.raises(TapeError) as info:
        w.append([trade(2)])
    assert time.monotonic() - t < 20
    assert "\n" not in str(info.value)
    with pytest.raises(StoreError, match="failed earlier"):
        w.append([trade(3)])
    w.close()
    log.close()


def test_kafka_clients_read_each_others_namespaces(kafka_bootstrap: str) -> None:
    """kafka-python and confluent-kafka write the same records and journal: either reads what the other wrote."""
    logs = {c: Log(KafkaLog(f"kafka://{kafka_bootstrap}?client={c}", timeout=KAFKA_TIMEOUT)) for c in KAFKA_CLIENTS}
    try:
        written = {}
        for client, log in logs.items():
            ns = _ns()
            with log.writer(ns) as w:
                for s in range(5):
                    w.append_steps([[trade(s * 10 + j, KEYS[j % 8]), intent(s * 10 + j)] for j in range(10)])
            written[client] = ns
        for ns in written.values():
            a, b = (rows(log, ns) for log in logs.values())
            assert len(a) == 100 and a == b
            assert commits(logs["kafka-python"], ns) == commits(logs["confluent"], ns)
            assert [e.data for e in logs["confluent"].replay(ns, types=["TradeTick"])] == \
                [e.data for e in logs["kafka-python"].replay(ns, types=["TradeTick"])]
    finally:
        for log in logs.values():
            log.close()


def test_delete_removes_a_namespace_and_a_new_one_of_the_name_starts_afresh(store: Store) -> None:
    log, ns = store.log, store.ns
    with log.writer(ns) as w:
        w.append([trade(1), trade(2)])
    log.control(ns).send({"command": "halt"})
    if store.kind == "file":  # a namespace someone writes is not deleted under them
        with log.writer(ns):
            with pytest.raises(LockedNamespace, match="already has a writer"):
                log.delete(ns)
    log.delete(ns)
    assert ns not in log.namespaces()
    with pytest.raises(StoreError, match="no namespace"):
        log.delete(ns)
    with log.writer(ns) as w:
        assert w.next_seq == 1
        w.append([trade(3)])
    assert [e.seq for e in log.replay(ns)] == [1]
    assert log.control(ns).read(0) == ([], 0)  # the old namespace's commands went with it
