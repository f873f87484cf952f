"""`tape log copy` to and from Kafka resumes after any kill and after a broker restart, and ends byte identical."""
from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from eventstore.store import Log
from eventstore.writer import Draft
from runtime.cli.app import app

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_700_000_000_000_000_000

# `tape log copy` that SIGKILLs itself — to Kafka, KILL_AT=commit:K: with the data of its chunk acknowledged and its
# commit records before the K-th delivered (the K-th and later never sent); KILL_AT=record:N: as it is about to send
# its N-th data record, those before it delivered; to a file store, KILL_AT=file:K: as it is about to append its K-th
# journal batch; KILL_AT=none:0 does not die. CHUNK: events per transaction of the copy (20,000 in `tape`). NO_ADOPT:
# the negative control, a Kafka writer that keeps a kill's records.
KILLED = (
    "import os, signal, sys\n"
    "from eventstore import kafka\n"
    "from eventstore.kafka import writer as kw\n"
    "from eventstore import copy\n"
    "copy.copy_namespace.__kwdefaults__['chunk_events'] = int(os.environ.get('CHUNK', copy.CHUNK_EVENTS))\n"
    "mode, at = os.environ['KILL_AT'].split(':'); at = int(at); n = [0]\n"
    "def die(producer, deliveries):\n"
    "    producer.flush(deliveries, 30.0)\n"
    "    os.kill(os.getpid(), signal.SIGKILL)\n"
    "if mode == 'commit':\n"
    "    send_journal = kw.KafkaNamespaceWriter._send_journal\n"
    "    def dying(self, journal):\n"
    "        if n[0] + len(journal) >= at:\n"
    "            die(self.producer, send_journal(self, journal[:at - n[0] - 1]))\n"
    "        n[0] += len(journal)\n"
    "        return send_journal(self, journal)\n"
    "    kw.KafkaNamespaceWriter._send_journal = dying\n"
    "elif mode == 'file':\n"
    "    from eventstore import partition\n"
    "    append = partition.Partition.append\n"
    "    def dying_append(self, records):\n"
    "        if self.path.name == '_commits':\n"
    "            n[0] += 1\n"
    "            if n[0] == at:\n"
    "                os.kill(os.getpid(), signal.SIGKILL)\n"
    "        return append(self, records)\n"
    "    partition.Partition.append = dying_append\n"
    "elif mode == 'record':\n"
    "    make = kafka.KafkaLog.producer\n"
    "    def producer(self, **kw_):\n"
    "        p = make(self, **kw_)\n"
    "        if kw_.get('transactional_id'):\n"
    "            send, sent = p.send, []\n"
    "            def dying_send(topic, *a, **k):\n"
    "                if not topic.endswith(('._commits', '._schemas')):\n"
    "                    n[0] += 1\n"
    "                    if n[0] == at:\n"
    "                        die(p, sent)\n"
    "                d = send(topic, *a, **k)\n"
    "                sent.append(d)\n"
    "                return d\n"
    "            p.send = dying_send\n"
    "        return p\n"
    "    kafka.KafkaLog.producer = producer\n"
    "if os.environ.get('NO_ADOPT'):\n"
    "    kafka.KafkaLog.discards_uncommitted = False\n"
    "from runtime.cli.app import main\n"
    "sys.argv[0] = 'tape'\n"
    "main()\n")


def _write(url: str, ns: str, n: int, *, differ_from: int | None = None) -> None:
    """n commits of one trade each (from `differ_from` on, other prices: another history with the same start)."""
    with Log.open(url).writer(ns) as w:
        for i in range(n):
            price = Decimal(i) / 8 + (1 if differ_from is not None and i >= differ_from else 0)
            w.append([Draft("TradeTick", {"instrument_id": "X.SIM", "price": price, "quantity": Decimal("0.1"),
                                          "aggressor_side": "BUYER", "trade_id": str(i)}, T0 + i, "X.SIM", "test")])


def _bulk(url: str, ns: str, commits: int, per: int) -> None:
    """commits × per trades over two instruments (two partitions of the market topic)."""
    with Log.open(url).writer(ns, partitions={"market": 2}) as w:
        for c in range(commits):
            w.append([Draft("TradeTick", {"instrument_id": iid, "price": Decimal(c * per + i) / 4,
                                          "quantity": Decimal("0.5"), "aggressor_side": "SELLER",
                                          "trade_id": f"{c}-{i}"}, T0 + c * per + i, iid, "test")
                      for i in range(per) for iid in (("A.SIM",) if i % 3 else ("B.SIM",))])


def _events(url: str, ns: str) -> list[tuple[int, bytes]]:
    return [(e.seq, bytes(e.value)) for e in Log.open(url).replay(ns)]


def _commits(url: str, ns: str) -> list[tuple[int, int, bytes]]:
    reader = Log.open(url).backend.open_reader(ns)
    try:
        return [(c.first, c.last, c.last_hash) for c in reader.commits(1)]
    finally:
        reader.close()


def _stored_records(bootstrap: str, ns: str) -> int:
    """Every record in the namespace's data topics, committed or not (what was ever sent)."""
    from eventstore.kafka import KafkaLog
    from eventstore.kafka.transport import TopicPartition

    log = KafkaLog(f"kafka://{bootstrap}")
    try:
        parts = log.describe([f"{ns}.market"])
        consumer = log.consumer()
        tps = [TopicPartition(f"{ns}.market", i) for i in range(parts[f"{ns}.market"])]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, 0)
        seen = [0]
        log.read_to_end(consumer, tps, lambda _tp, _m: seen.__setitem__(0, seen[0] + 1), "counting")
        consumer.close()
        return seen[0]
    finally:
        log.close()


def _killed_copy(src: str, dst: str, ns: str, at: str, **env: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-c", KILLED, "log", "copy", src, dst, "--namespace", ns]
    return subprocess.run(argv, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "KILL_AT": at, "CHUNK": "1000",
                                               **env}, capture_output=True, text=True, timeout=180, check=False)


def _ns(tmp_path: Path, stem: str) -> str:
    return f"{stem}-{tmp_path.name[-10:]}".replace("_", "-").lower()


@pytest.mark.parametrize("source", ["file", "kafka"])
def test_a_copy_to_kafka_killed_anywhere_resumes_and_sends_nothing_twice(source: str, tmp_path: Path, kafka_bootstrap,
                                                                         tansu_factory) -> None:
    """SIGKILLs of `tape log copy` file → Kafka and Kafka → Kafka (1,000 events a transaction, as 20,000 are in
    `tape`) part way through a chunk's data, and between its data and its commit records, again and again: every
    re-run resumes — what a kill left on the broker is taken as sent when it is the copy's own bytes, never sent
    again — and the copy ends with the source's events and commits exactly."""
    ns = _ns(tmp_path, "resume")
    origin = f"file:{tmp_path / 'src'}"
    _bulk(origin, ns, commits=50, per=50)  # 2,500 events in 50 commits over two partitions: three chunks of the copy
    if source == "kafka":  # from the session's broker to a broker of this test's own
        src = f"kafka://{kafka_bootstrap}"
        assert CliRunner().invoke(app, ["log", "copy", origin, src, "--namespace", ns]).exit_code == 0
        kafka_bootstrap = tansu_factory().bootstrap
    else:
        src = origin
    dst = f"kafka://{kafka_bootstrap}"
    horizons, stored = [], []
    # part of the first chunk's data; the rest of it and 9 of its commits; part of the next chunk's data (the first
    # part adopted); the rest of it and 4 commits
    for at in ("record:600", "commit:10", "record:300", "commit:5"):
        p = _killed_copy(src, dst, ns, at)
        # it died where it was told to, not refusing to resume
        assert p.returncode == -9, (at, horizons, stored, p.stdout, p.stderr[-2000:])
        horizons.append(Log.open(dst).horizon(ns))
        stored.append(_stored_records(kafka_bootstrap, ns))
    assert stored == sorted(set(stored)), stored  # each run went further, sending only what was not there
    assert horizons == sorted(horizons) and horizons[-1] > horizons[1] > 0, horizons
    r = CliRunner().invoke(app, ["log", "copy", src, dst, "--namespace", ns])
    assert r.exit_code == 0, r.output
    assert _events(dst, ns) == _events(src, ns)
    assert _commits(dst, ns) == _commits(src, ns)
    assert _stored_records(kafka_bootstrap, ns) == 2500  # every record sent once: the killed runs' were adopted
    r = CliRunner().invoke(app, ["log", "copy", dst, f"file:{tmp_path / 'back'}", "--namespace", ns])
    assert r.exit_code == 0, r.output
    for seg in (f"{ns}/market-1/00000000000000000000.log", f"{ns}/_commits/00000000000000000000.log"):
        assert (tmp_path / "src" / seg).read_bytes() == (tmp_path / "back" / seg).read_bytes()


def test_a_copy_from_kafka_to_a_file_store_killed_again_and_again_ends_byte_identical(tmp_path: Path,
                                                                                     kafka_bootstrap) -> None:
    """Kafka → file, killed before its k-th journal batch, five times: each re-run cuts what the kill left and goes on;
    the segments and the journal end byte for byte the file store the namespace came from."""
    ns = _ns(tmp_path, "tofile")
    origin, src, dst = f"file:{tmp_path / 'src'}", f"kafka://{kafka_bootstrap}", f"file:{tmp_path / 'dst'}"
    _bulk(origin, ns, commits=30, per=30)
    assert CliRunner().invoke(app, ["log", "copy", origin, src, "--namespace", ns]).exit_code == 0
    horizons = []
    for at in ("file:1", "file:3", "file:2", "file:5", "file:2"):
        p = _killed_copy(src, dst, ns, at)
        assert p.returncode == -9, (at, horizons, p.stdout, p.stderr[-2000:])
        horizons.append(Log.open(dst).horizon(ns))
    assert horizons == sorted(horizons) and horizons[-1] > 0, horizons
    r = CliRunner().invoke(app, ["log", "copy", src, dst, "--namespace", ns])
    assert r.exit_code == 0, r.output
    assert _events(dst, ns) == _events(origin, ns)
    logs = sorted(p.relative_to(tmp_path / "src") for p in (tmp_path / "src").rglob("*.log"))
    assert logs == sorted(p.relative_to(tmp_path / "dst") for p in (tmp_path / "dst").rglob("*.log"))
    for p in logs:
        assert (tmp_path / "src" / p).read_bytes() == (tmp_path / "dst" / p).read_bytes(), p


def test_the_resume_test_catches_a_kafka_writer_that_keeps_what_a_kill_left(tmp_path: Path, kafka_bootstrap) -> None:
    """Negative control: without adoption the run after a kill refuses — what the test above would catch."""
    src, dst = f"file:{tmp_path / 'src'}", f"kafka://{kafka_bootstrap}"
    ns = _ns(tmp_path, "noadopt")
    _write(src, ns, 20)
    assert _killed_copy(src, dst, ns, "commit:5", NO_ADOPT="1").returncode == -9
    again = _killed_copy(src, dst, ns, "commit:0", NO_ADOPT="1")
    assert again.returncode == 2 and "uncommitted records after seq 4" in again.stderr, again.stderr[-2000:]


def test_records_a_kill_left_that_are_not_the_copys_are_refused(tmp_path: Path, kafka_bootstrap) -> None:
    """A copy of another history with the same first commits meets the first copy's uncommitted records: refused in
    one line naming the offset, and nothing of it committed."""
    a, b, dst = f"file:{tmp_path / 'a'}", f"file:{tmp_path / 'b'}", f"kafka://{kafka_bootstrap}"
    ns = _ns(tmp_path, "foreign")
    _write(a, ns, 30)
    _write(b, ns, 30, differ_from=12)
    assert _killed_copy(a, dst, ns, "commit:13").returncode == -9  # commits 1..12 landed, 13.. sent, uncommitted
    assert Log.open(dst).horizon(ns) == 12
    r = CliRunner().invoke(app, ["log", "copy", b, dst, "--namespace", ns])
    assert r.exit_code == 2, r.output
    assert "not this copy's" in r.stderr and "holds seq 13" in r.stderr and "Traceback" not in r.output
    assert len(r.stderr.strip().splitlines()) == 1
    assert Log.open(dst).horizon(ns) == 12
    r = CliRunner().invoke(app, ["log", "copy", a, dst, "--namespace", ns])  # the copy that left them resumes
    assert r.exit_code == 0, r.output
    assert _events(dst, ns) == _events(a, ns)


@pytest.mark.timeout(300)
def test_a_copy_resumes_after_the_broker_restarted_empty(tmp_path: Path, tansu_factory) -> None:
    """The broker restarts on memory storage (everything lost) while a copy to it runs; a client then asks for a
    topic of the namespace and the broker creates it with its default shape. The same command copies again, from
    nothing, byte for byte; a wrong-shaped topic that holds records is still refused; and a copy *from* the broker
    that lost a namespace says so, naming the copy that holds it."""
    from kafka import KafkaAdminClient, KafkaProducer
    from kafka.admin import NewTopic

    broker = tansu_factory()
    src, dst = f"file:{tmp_path / 'src'}", f"kafka://{broker.bootstrap}"
    ns = _ns(tmp_path, "restart")
    _bulk(src, ns, commits=100, per=50)  # 5,000 events in transactions of 200: long enough to be interrupted
    argv = [sys.executable, "-c", KILLED, "log", "copy", src, f"{dst}?timeout=5", "--namespace", ns]
    copying = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "KILL_AT": "none:0",
                                                    "CHUNK": "200"},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        import time

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and copying.poll() is None:
            try:
                if Log.open(dst).horizon(ns) > 0:
                    break
            except Exception:  # noqa: BLE001 - not created yet
                pass
            time.sleep(0.1)
        port = broker.port
        broker.stop()
        broker = tansu_factory(port)
        _, err = copying.communicate(timeout=120)
    finally:
        copying.kill()
    assert "Traceback" not in err, err[-2000:]
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    if f"{ns}.market" not in admin.list_topics():  # the dying copy's producer may have had the broker make it
        admin.create_topics([NewTopic(f"{ns}.market", 4, 1)])  # what a broker that auto-creates topics makes
    admin.close()
    r = CliRunner().invoke(app, ["log", "copy", src, dst, "--namespace", ns])
    assert r.exit_code == 0, r.output
    assert _events(dst, ns) == _events(src, ns)
    assert _commits(dst, ns) == _commits(src, ns)

    other = _ns(tmp_path, "shaped")
    _write(src, other, 3)
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    admin.create_topics([NewTopic(f"{other}.market", 4, 1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    producer.send(f"{other}.market", b"someone else's", partition=2).get(timeout=10)
    producer.close()
    r = CliRunner().invoke(app, ["log", "copy", src, dst, "--namespace", other])
    assert r.exit_code == 2 and "created by something else" in r.stderr, r.output

    back = f"file:{tmp_path / 'back'}"
    assert CliRunner().invoke(app, ["log", "copy", dst, back, "--namespace", ns]).exit_code == 0
    port = broker.port
    broker.stop()
    broker = tansu_factory(port)
    r = CliRunner().invoke(app, ["log", "copy", dst, back, "--namespace", ns])
    assert r.exit_code == 2, r.output
    assert "the broker lost the namespace" in r.stderr and f"through seq {len(_events(src, ns))}" in r.stderr, r.stderr
