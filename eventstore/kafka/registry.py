"""The schema registry of a namespace on Kafka: the compacted topic NS._schemas."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from eventstore.codec import check_fingerprint, schema_file_text
from eventstore.errors import CorruptLog
from eventstore.kafka.journal import SCHEMAS
from eventstore.kafka.transport import Message, TopicPartition

if TYPE_CHECKING:
    from eventstore.kafka import KafkaLog


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

        def take(_tp: TopicPartition, m: Message) -> None:
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
            c.seek(tp, 0)
            self.log.read_to_end(c, [tp], take, "loading the schema registry")
        finally:
            c.close()
        return dict(sorted(out.items()))

    def save_schema(self, fp: int, schema: dict[str, Any]) -> None:
        """Durable (acks=all) before the first event that needs it is written."""
        log = self.log
        if self.topic not in log.describe([self.topic]):
            log.create_topics({self.topic: (1, {"cleanup.policy": "compact", "retention.ms": "-1"})})
        with log.errors(f"registering schema {fp:016x}"):
            p = log.plain_producer()
            d = p.send(self.topic, key=f"{fp:016x}".encode(), value=schema_file_text(schema).encode(), partition=0)
            p.flush([d], log.timeout)


__all__ = ["KafkaSchemaStore"]
