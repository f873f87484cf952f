"""The control channel of a namespace on Kafka: the one-partition topic NS._control (eventstore/control.py)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eventstore.control import ControlChannel, ControlRecord, encode_record, parse_record
from eventstore.kafka.transport import Consumer, Message, TopicPartition

if TYPE_CHECKING:
    from eventstore.kafka import KafkaLog

CONTROL = "_control"


class KafkaControl(ControlChannel):
    """Commands as records of NS._control (key = command id), read by offset."""

    def __init__(self, log: KafkaLog, ns: str):
        self.log = log
        self.topic = f"{ns}.{CONTROL}"
        self._consumer: Consumer | None = None

    def send(self, data: dict[str, Any]) -> int:
        log = self.log
        if self.topic not in log.describe([self.topic]):  # never auto-created: one partition, kept
            log.create_topics({self.topic: (1, {"cleanup.policy": "delete", "retention.ms": "-1"})})
        with log.errors(f"sending a command to {self.topic}"):
            p = log.plain_producer()
            d = p.send(self.topic, key=str(data.get("command_id", "")).encode(), value=encode_record(data),
                       partition=0)
            p.flush([d], log.timeout)
            return p.offset(d)

    def read(self, start: int) -> tuple[list[ControlRecord], int]:
        log = self.log
        if self._consumer is None:
            if self.topic not in log.describe([self.topic]):
                return [], start
            self._consumer = log.consumer()
            self._consumer.assign([TopicPartition(self.topic, 0)])
            self._at = -1
        tp = TopicPartition(self.topic, 0)
        if self._at != start:
            self._consumer.seek(tp, start)
        out: list[ControlRecord] = []
        nxt = [start]

        def take(_tp: TopicPartition, m: Message) -> None:
            out.append(parse_record(m.value or b"", m.offset, f"{self.topic} at offset {m.offset}"))
            nxt[0] = m.offset + 1

        log.read_to_end(self._consumer, [tp], take, f"reading commands from {self.topic}")
        self._at = nxt[0]
        return out, nxt[0]

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
