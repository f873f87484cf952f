"""Replay: a namespace's topic-partitions merged by seq, committed steps only, sliced and filtered."""
from __future__ import annotations

import heapq
import time
from typing import Any, Callable, Iterable, Iterator

from eventstore.backend import NamespaceReader
from eventstore.batch import Record
from eventstore.catalog import TOPICS, Catalog, topic_of
from eventstore.codec import Codec
from eventstore.ledger import Ledger


class Event:
    """A committed event as replay delivers it; the Avro body is decoded on first access to `data`."""

    __slots__ = ("record", "_codec", "_data")

    def __init__(self, record: Record, codec: Codec):
        self.record = record
        self._codec = codec
        self._data: dict[str, Any] | None = None

    @property
    def seq(self) -> int:
        return self.record.seq

    @property
    def ts_event(self) -> int:
        return self.record.ts

    @property
    def key(self) -> str:
        return self.record.key.decode()

    @property
    def type(self) -> str:
        """Full type name, e.g. 'tape.market.TradeTick'."""
        return self.record.type.decode()

    @property
    def value(self) -> bytes:
        """The stored record value: Avro single-object encoding."""
        return self.record.value

    @property
    def name(self) -> str:
        """Short type name, e.g. 'TradeTick'."""
        return self.record.type.rpartition(b".")[2].decode()

    @property
    def topic(self) -> str:
        return topic_of(self.type)

    @property
    def data(self) -> dict[str, Any]:
        """The decoded record (payload fields plus 'envelope'), resolved to today's reader schema."""
        data = self._data
        if data is None:
            data = self._data = self._codec.decode_data(self.record.value)
        return data

    @property
    def envelope(self) -> dict[str, Any]:
        return self.data["envelope"]

    def __repr__(self) -> str:
        return f"Event(seq={self.seq}, type={self.name}, ts_event={self.ts_event}, key={self.key!r})"


def merge_by_seq(streams: list[Iterator[Record]]) -> Iterator[Record]:
    """Merge partitions (each ascending in seq) into the writer's exact order."""
    heads = []
    for i, it in enumerate(streams):
        r = next(it, None)
        if r is not None:
            heads.append((r.seq, i, r, it))
    heapq.heapify(heads)
    while len(heads) > 1:
        _, i, r, it = heads[0]
        bound = heads[1][0] if len(heads) < 3 else min(heads[1][0], heads[2][0])
        yield r
        # run on this partition while it stays below every other head
        for r in it:
            if r.seq > bound:
                heapq.heapreplace(heads, (r.seq, i, r, it))
                break
            yield r
        else:
            heapq.heappop(heads)
    if heads:
        _, _, r, it = heads[0]
        yield r
        yield from it


class Replay:
    """Iterate the committed events of a namespace in seq order; optionally follow as it grows."""

    def __init__(
        self,
        reader: NamespaceReader,
        codec: Codec,
        *,
        types: Iterable[str] | None = None,
        from_ts: int | None = None,
        to_ts: int | None = None,
        from_seq: int | None = None,
        to_seq: int | None = None,
        follow: bool = False,
        poll_interval: float = 0.05,
        stop: Callable[[], bool] | None = None,
    ):
        self.reader = reader
        self.codec = codec
        self.type_names: set[bytes] | None = None
        topics = list(reader.partitions)
        if types:
            full = {_full(codec.catalog, t) for t in types}
            self.type_names = {t.encode() for t in full}
            topics = [t for t in TOPICS if any(topic_of(f) == t for f in full) and t in reader.partitions]
        self.topics = topics
        self.from_ts, self.to_ts = from_ts, to_ts
        self.from_seq, self.to_seq = from_seq or 1, to_seq
        self.follow = follow
        self.poll_interval = poll_interval
        self.stop = stop or (lambda: False)

    def records(self) -> Iterator[Record]:
        """Committed records that pass the filters, without decoding; each committed seq in range accounted for."""
        reader = self.reader
        start_seq = self.from_seq if self.from_seq > 1 else None
        cursors = [reader.cursor(t, i, seq=start_seq, ts=self.from_ts)
                   for t in self.topics for i in range(reader.partitions[t])]
        counters: list[Any] | None = None
        typed = self.type_names is not None
        if typed:  # the partitions of other topics, read as batch counts: what the read skips is accounted for
            counters = []
            for t in reader.partitions:
                if t not in self.topics:
                    for i in range(reader.partitions[t]):
                        c = reader.batch_counts(t, i, seq=start_seq, ts=self.from_ts)
                        if c is None:
                            counters = None
                            break
                        counters.append(c)
                if counters is None:
                    break
        ledger = Ledger(reader, self.from_seq, cursors, counters, by_time=self.from_ts is not None, typed=typed)
        first = 0
        last = -1  # the committed range the last record fell in
        expected = 0
        prev = 0
        delivered_to = self.from_seq - 1
        f_ts, t_ts, f_seq, t_seq, names = self.from_ts, self.to_ts, self.from_seq, self.to_seq, self.type_names
        while True:
            horizon = reader.horizon()
            if t_seq is not None:
                horizon = min(horizon, t_seq)
            if horizon > delivered_to:
                ledger.start(horizon)
                for r in merge_by_seq([c.read_until(horizon) for c in cursors]):
                    s = r[0]
                    if s < f_seq or s > horizon:
                        continue
                    if s <= prev:
                        ledger.twice(s, prev)
                    prev = s
                    if s > last:
                        first, last, expected = ledger.advance(s, expected)
                        if s < first or s > last:
                            continue  # a step torn by a crash: never delivered, by any reader
                    elif s < first:
                        continue
                    expected -= 1
                    if f_ts is not None and r[1] < f_ts:
                        continue
                    if t_ts is not None and r[1] >= t_ts:
                        continue
                    if names is not None and r[3] not in names:
                        continue
                    yield r
                first, last, expected = ledger.finish(horizon, expected)
                delivered_to = horizon
            if not self.follow or (t_seq is not None and delivered_to >= t_seq) or self.stop():
                return
            time.sleep(self.poll_interval)

    def __iter__(self) -> Iterator[Event]:
        codec = self.codec
        for r in self.records():
            yield Event(r, codec)


def _full(catalog: Catalog, name: str) -> str:
    if name in catalog.by_full:
        return name
    return catalog.get(name).full_name
