"""A run and its source as one stream: the order in which a backtest's engine processed both.

A backtest does not record its market inputs: the engine folded the source's events without writing them. To
rebuild its state (recovery, `tape runs show`, history), the run's events and the source's market events are merged
back into processing order, using the causation ids every run event carries. Every read of a run's source stops
at the run's horizon (RunStarted.source_to_seq): what was appended to the source since is not the run's.
"""
from __future__ import annotations

import heapq
from typing import Any, Callable, Iterable, Iterator

from eventstore.replay import Event
from eventstore.store import Log
from schemas.errors import TapeError
from schemas.ids import event_id
from schemas.names import PRICES


def source_instruments(log: Log, started: dict[str, Any]) -> Iterator[Any]:
    """The instrument definitions a run starts with: its source's, up to the slice's end and the run's horizon."""
    return iter(log.replay(started["source_namespace"], types=["InstrumentDefined"],
                           to_ts=started.get("source_to_ts"), to_seq=started.get("source_to_seq")))


class SourceMarket:
    """A run's market inputs in the order it processes them: by event time, then seq — its source's slice up to the
    run's horizon, each instrument's events in seq order merged with the others' by time. One instrument (the
    common case) is one pass in seq order; several are one pass each, so a namespace that got its second
    instrument's history after the first's is read in time order, not in import order. Each instrument's events
    must be in time order (ingest keeps a series so); one that is not is named, never reordered."""

    def __init__(self, log: Log, started: dict[str, Any], *, from_seq: int = 1, instruments: list[str] | None = None):
        self.log, self.started, self.from_seq = log, started, from_seq
        self.source = started["source_namespace"]
        self.codec = log.codec(self.source)
        if instruments is None:  # the ones defined up to the slice's end (a caller that read them passes them)
            instruments = sorted({e.key for e in source_instruments(log, started)})
        self.instruments = instruments

    def _replay(self, from_seq: int) -> Any:
        s = self.started
        return self.log.replay(self.source, types=PRICES, from_ts=s.get("source_from_ts"), to_ts=s.get("source_to_ts"),
                               to_seq=s.get("source_to_seq"), from_seq=from_seq)

    def records(self) -> Iterator[Any]:
        if len(self.instruments) < 2:
            return self._in_order(self._replay(self.from_seq).records())
        after = (-1, 0)
        if self.from_seq > 1:  # resuming after an input: everything at or before it in (time, seq) order is done
            for r in self.log.replay(self.source, from_seq=self.from_seq - 1, to_seq=self.from_seq - 1).records():
                after = (r.ts, r.seq)
        others = {i.encode() for i in self.instruments[1:]}
        streams = [self._stream(lambda k: k not in others, after)]  # the first instrument, and any undefined one
        streams += [self._stream(_only(i.encode()), after) for i in self.instruments[1:]]
        return heapq.merge(*streams, key=lambda r: (r.ts, r.seq))

    def _stream(self, wanted: Callable[[bytes], bool], after: tuple[int, int]) -> Iterator[Any]:
        for r in self._in_order(r for r in self._replay(1).records() if wanted(r.key)):
            if (r.ts, r.seq) > after:
                yield r

    def _in_order(self, records: Iterator[Any]) -> Iterator[Any]:
        last = None
        for r in records:
            if last is not None and r.ts < last.ts:
                raise TapeError(f"source {self.source}: {r.key.decode()} at seq {r.seq:,} is older than the event "
                                f"at seq {last.seq:,}; a backtest reads each instrument in time order — re-import "
                                "the series in time order into a new namespace")
            last = r
            yield r

    def __iter__(self) -> Iterator[Event]:
        codec = self.codec
        for r in self.records():
            yield Event(r, codec)


def _only(key: bytes) -> Callable[[bytes], bool]:
    return lambda k: k == key


def source_market(log: Log, started: dict[str, Any], *, from_seq: int = 1) -> SourceMarket:
    """The market events a run reads (SourceMarket), from the input after seq from_seq - 1 when resuming."""
    return SourceMarket(log, started, from_seq=from_seq)


def merged(log: Log, run: str, started: dict[str, Any], *, run_from_seq: int = 1,
            source_from_seq: int = 1, market: Iterable[Any] | None = None) -> Iterator[tuple[str, Event]]:
    """Source market events and the run's events in the order the engine processed them.

    Each run step starts with an event caused by its input (the source event id) or by a timer (no cause);
    every later event of the step is caused by an event of the run itself. From a step boundary (a snapshot's
    point), start at run_from_seq and at the source event after the snapshot's last input. `market`: the source's
    events as the caller read them (from its columns: runtime/replay/columns.py source_events), from the start.
    """
    source = started["source_namespace"]
    run_prefix = f"{run}:"
    run_events = iter(log.replay(run, from_seq=run_from_seq))
    peek = next(run_events, None)

    def cause(e: Event) -> str | None:
        return e.envelope["causation_id"]

    if market is None:
        market = source_market(log, started, from_seq=source_from_seq)
    for s in market:
        sid = event_id(source, s.seq)
        while peek is not None and peek.envelope["ts_init"] <= s.ts_event and (
                cause(peek) is None or cause(peek).startswith(run_prefix)):
            yield "run", peek
            peek = next(run_events, None)
        yield "source", s
        while peek is not None and (cause(peek) == sid or (cause(peek) or "").startswith(run_prefix)):
            yield "run", peek
            peek = next(run_events, None)
        yield "sample", s
    while peek is not None:
        yield "run", peek
        peek = next(run_events, None)
