"""murmur2, the hash of Kafka's default partitioner (org.apache.kafka.common.utils.Utils.murmur2), so the file log
puts a key in the same partition as Kafka without needing a Kafka client."""
from __future__ import annotations

import struct

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF
_WORDS = struct.Struct("<I")


def murmur2(data: bytes) -> int:
    """The 32-bit murmur2 of data as an unsigned int, as kafka-python's partitioner computes it."""
    n = len(data)
    h = (_SEED ^ n) & _MASK
    body = n & ~3
    for (k,) in _WORDS.iter_unpack(memoryview(data)[:body]):  # 4-byte little-endian words
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = n & 3
    if rest:
        if rest == 3:
            h ^= data[body + 2] << 16
        if rest >= 2:
            h ^= data[body + 1] << 8
        h ^= data[body]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h
