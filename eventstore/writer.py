"""The single writer of a namespace: numbers events, fills their envelope, chains hashes, commits steps."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import Decimal
from io import BytesIO
from typing import Any, Callable, Iterable, Sequence

from fastavro import schemaless_writer

from eventstore.avroencoder import Encoder, encoder_for
from eventstore.backend import Commit, NamespaceWriter
from eventstore.batch import Record
from eventstore.catalog import Catalog, EventType
from eventstore.codec import Registry, raw_decimals, unscaled_bytes
from eventstore.errors import SchemaError
from eventstore.murmur2 import murmur2
from schemas.ids import event_id


@dataclass(slots=True)
class Draft:
    """An event about to be written: its type, payload fields and the envelope fields only its author knows."""

    type: str
    payload: dict[str, Any]
    ts_event: int
    key: str = ""
    source: str = ""
    causation_id: str | None = None
    correlation_id: str | None = None
    ts_init: int | None = None


def own_fields(payload: dict[str, Any]) -> dict[str, Any]:
    """A payload without the envelope the writer adds to it in place (for a copy kept past the write)."""
    return {k: v for k, v in payload.items() if k != "envelope"}


def partition_for(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner (murmur2), so a key lands in the same partition on every backend."""
    if partitions == 1:
        return 0
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class Writer:
    """Appends steps atomically; a step's events get consecutive seqs and land all together or not at all."""

    def __init__(self, backend_writer: NamespaceWriter, namespace: str, catalog: Catalog, registry: Registry,
                 clock: Callable[[], int] | None = None):
        self.backend = backend_writer
        self.namespace = namespace
        self.catalog = catalog
        self.registry = registry
        self.clock = clock
        # per type: (event type, type name bytes, partitions, parsed schema to write with, decimal fields to convert,
        # the generated encoder or None)
        self._types: dict[str, tuple[EventType, bytes, int, Any, tuple, Encoder | None]] = {}
        self._buf = BytesIO()

    @property
    def next_seq(self) -> int:
        return self.backend.next_seq

    @property
    def last_hash(self) -> bytes:
        return self.backend.last_hash

    def _type(self, name: str) -> tuple[EventType, bytes, int, Any, tuple, Encoder | None]:
        hit = self._types.get(name)
        if hit is None:
            et = self.catalog.get(name)
            self.registry.register(et)
            raw = raw_decimals(et.schema)  # top-level decimals converted here: the same bytes, faster than fastavro
            parsed, decimals = (et.parsed, ()) if raw is None else (raw.parsed, raw.exact)
            hit = self._types[name] = self._types[et.full_name] = (
                et, et.full_name.encode(), self.backend.partitions[et.topic], parsed, decimals,
                encoder_for(et.fingerprint, et.schema, decimals))
        return hit

    def append(self, drafts: Sequence[Draft]) -> int:
        """Commit one step; returns the seq of its first event."""
        return self.append_steps([drafts])

    def append_steps(self, steps: Iterable[Sequence[Draft]]) -> int:
        """Commit several steps as one unit (group commit); returns the first seq."""
        first = seq = self.backend.next_seq
        prev = self.backend.last_hash
        ns = self.namespace
        buf = self._buf
        seek, truncate, write, getvalue = buf.seek, buf.truncate, buf.write, buf.getvalue
        sha = hashlib.sha256
        batches: dict[tuple[str, int], list[Record]] = {}
        ts_last = 0
        types = self._types
        clock = self.clock
        new = tuple.__new__
        last_type = last_key = None
        bucket: list[Record] = []
        for step in steps:
            for d in step:
                hit = types.get(d.type)
                if hit is None:
                    hit = self._type(d.type)
                et, type_b, nparts, parsed, decimals, fast = hit
                ts_init = d.ts_init
                if ts_init is None:
                    ts_init = clock() if clock is not None else d.ts_event
                record = d.payload
                record["envelope"] = {
                    "event_id": event_id(ns, seq),
                    "seq": seq,
                    "ts_event": d.ts_event,
                    "ts_init": ts_init,
                    "causation_id": d.causation_id,
                    "correlation_id": d.correlation_id,
                    "source": d.source,
                    "prev_hash": prev,
                }
                value = None
                if fast is not None:
                    try:
                        value = et.prefix + fast(record)
                    except Exception:  # anything the generated encoder does not write exactly as fastavro: fastavro
                        value = None
                if value is None:  # codec.encode_value, inlined
                    seek(0)
                    truncate()
                    write(et.prefix)
                    try:
                        if decimals:
                            record = record.copy()  # the payload stays as the author made it (state may hold it)
                            for name, scale, exact in decimals:
                                v = record.get(name)
                                if isinstance(v, Decimal):
                                    record[name] = unscaled_bytes(v, scale, exact)
                        schemaless_writer(buf, parsed, record)
                    except Exception as e:  # fastavro raises ValueError/TypeError/KeyError on mismatches
                        raise SchemaError(f"{et.name} (seq {seq}): event does not match its schema ({e!r}); "
                                          "fix its fields") from None
                    value = getvalue()
                prev = sha(value).digest()
                if d.type is not last_type or d.key is not last_key:  # most batches repeat one type and key
                    last_type, last_key = d.type, d.key
                    key = d.key.encode()
                    part = 0 if nparts == 1 else partition_for(key, nparts)
                    bucket = batches.get((et.topic, part))  # type: ignore[assignment]
                    if bucket is None:
                        bucket = batches[(et.topic, part)] = []
                bucket.append(new(Record, (seq, d.ts_event, key, type_b, value)))
                ts_last = ts_init
                seq += 1
        if seq == first:
            return first
        self.backend.commit(batches, Commit(first, seq - 1, prev, ts_last))
        return first

    def sync(self) -> None:
        """Force durability now, whatever the fsync policy."""
        self.backend.sync()

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> "Writer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["Draft", "Writer", "partition_for"]
