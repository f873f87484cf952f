"""eventstore/murmur2.py gives Kafka's partitioner hash: the same as kafka-python's and the Java client's."""
from __future__ import annotations

import random

import pytest

from eventstore.murmur2 import murmur2

# org.apache.kafka.common.utils.UtilsTest.testMurmur2 (Java ints, signed)
JAVA = {b"21": -973932308, b"foobar": -790332482, b"a-little-bit-long-string": -985981536,
        b"a-little-bit-longer-string": -1486304829,
        b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971, b"abc": 479470107}


def _keys() -> list[bytes]:
    rng = random.Random(20261130)
    keys = [b"", b"\x00", b"\xff" * 7, bytes(range(256)), "BTCUSDT.BINANCE".encode(), "ÉTH/€uro".encode(),
            "株式.東証".encode(), "🚀".encode(), bytearray(b"bytearray key")]
    keys += [rng.randbytes(n) for n in range(0, 40) for _ in range(20)]  # every tail length, many times
    keys += [rng.randbytes(rng.randrange(40, 600)) for _ in range(500)]
    alphabet = "abcXYZ09._-éüß€中文字🙂"
    keys += ["".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 30))).encode() for _ in range(1000)]
    return keys


def test_murmur2_matches_the_java_client() -> None:
    for key, want in JAVA.items():
        assert murmur2(key) == want & 0xFFFFFFFF, key


def test_murmur2_matches_kafka_python_on_random_keys() -> None:
    default = pytest.importorskip("kafka.partitioner.default")
    for key in _keys():
        assert murmur2(key) == default.murmur2(bytes(key)), key

