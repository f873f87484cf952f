"""client=confluent and the file log work in a process where kafka-python cannot be imported.

The subprocess blocks `kafka` and `kafka.*` with a meta-path finder, then writes and reads a namespace on the test
broker through confluent-kafka, writes the same steps to a file store (whose partitioner is eventstore/murmur2.py),
and opens the default client, which must refuse in one line.
"""
from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

pytest.importorskip("confluent_kafka")

SCRIPT = r'''
import importlib.abc
import json
import sys


class NoKafkaPython(importlib.abc.MetaPathFinder):
    """Makes kafka-python look uninstalled to this process."""

    def find_spec(self, name, path=None, target=None):
        if name == "kafka" or name.startswith("kafka."):
            raise ImportError(f"No module named {name!r} (blocked by the test)")
        return None


sys.meta_path.insert(0, NoKafkaPython())

from decimal import Decimal

from eventstore.errors import StoreError
from eventstore.store import Log
from eventstore.writer import Draft

bootstrap, ns, root = sys.argv[1:4]
KEYS = ["BTCUSDT.BINANCE", "ETHUSDT.BINANCE", "SOLUSDT.BINANCE", "XRPUSDT.BINANCE", "ADAUSDT.BINANCE"]
PARTS = {"market": 3, "intents": 1, "executions": 1, "system": 1}


def trade(i):
    key = KEYS[i % len(KEYS)]
    return Draft("TradeTick", {"instrument_id": key, "price": Decimal(50_000 + i).scaleb(-2),
                               "quantity": Decimal("0.001"), "aggressor_side": "BUYER", "trade_id": f"t{i}"},
                 1_700_000_000_000_000_000 + i * 1_000, key, "test")


def write_and_read(url):
    log = Log.open(url)
    try:
        with log.writer(ns, partitions=PARTS) as w:
            w.append([trade(i) for i in range(6)])
            w.append_steps([[trade(i)] for i in range(6, 10)])
        events = [(e.seq, e.key, e.data["trade_id"]) for e in log.replay(ns)]
        parts = sorted((p.topic, p.partition, p.records) for p in log.partitions(ns))
        return events, parts
    finally:
        log.close()


out = {}
out["kafka"], out["kafka_parts"] = write_and_read(f"kafka://{bootstrap}?client=confluent&timeout=10")
out["file"], out["file_parts"] = write_and_read(f"file:{root}")
try:
    Log.open(f"kafka://{bootstrap}")
except StoreError as e:
    out["default_client"] = str(e)
out["kafka_modules"] = sorted(m for m in sys.modules if m == "kafka" or m.startswith("kafka."))
print(json.dumps(out))
'''


def test_confluent_and_file_store_run_without_kafka_python(kafka_bootstrap: str, python: str, py_env: dict,
                                                            tmp_path: Path) -> None:
    ns = "t" + uuid.uuid4().hex[:12]
    proc = subprocess.run([python, "-c", SCRIPT, kafka_bootstrap, ns, str(tmp_path / "store")], env=py_env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    want = [[i + 1, f"{['BTCUSDT', 'ETHUSDT', 'SOLUSDT', 'XRPUSDT', 'ADAUSDT'][i % 5]}.BINANCE", f"t{i}"]
            for i in range(10)]
    assert out["kafka"] == want
    assert out["file"] == want
    # the same murmur2 partitions on both backends, and really spread over the three
    assert out["kafka_parts"] == out["file_parts"]
    assert sum(1 for t, _, n in out["file_parts"] if t == "market" and n) > 1
    assert "needs the kafka-python package" in out["default_client"] and "\n" not in out["default_client"]
    assert out["kafka_modules"] == []
