"""A run and its source as one stream: the order in which a backtest's engine processed both.

A backtest does not record its market inputs: the engine folded the source's events without writing them. To
rebuild its state (recovery, `tape runs show`, history), the run's events and the source's market events are merged
back into processing order, using the causation ids every run event carries. Every read of a run's source stops
at the run's horizon (RunStarted.source_to_seq): what was appended to the source since is not the run's.
"""
from __future__ import annotations

from typing import Any, Iterator

from eventstore.replay import Event
from eventstore.store import Log
from schemas.ids import event_id
from schemas.names import PRICES


def source_instruments(log: Log, started: dict[str, Any]) -> Iterator[Any]:
    """The instrument definitions a run starts with: its source's, up to the slice's end and the run's horizon."""
    return iter(log.replay(started["source_namespace"], types=["InstrumentDefined"],
                           to_ts=started.get("source_to_ts"), to_seq=started.get("source_to_seq")))


def source_market(log: Log, started: dict[str, Any], *, from_seq: int = 1) -> Any:
    """The market events a run reads: its source's slice, up to the run's horizon."""
    return log.replay(started["source_namespace"], types=PRICES, from_ts=started.get("source_from_ts"),
                      to_ts=started.get("source_to_ts"), to_seq=started.get("source_to_seq"), from_seq=from_seq)


def merged(log: Log, run: str, started: dict[str, Any], *, run_from_seq: int = 1,
            source_from_seq: int = 1) -> Iterator[tuple[str, Event]]:
    """Source market events and the run's events in the order the engine processed them.

    Each run step starts with an event caused by its input (the source event id) or by a timer (no cause);
    every later event of the step is caused by an event of the run itself. From a step boundary (a snapshot's
    point), start at run_from_seq and at the source event after the snapshot's last input.
    """
    source = started["source_namespace"]
    run_prefix = f"{run}:"
    run_events = iter(log.replay(run, from_seq=run_from_seq))
    peek = next(run_events, None)

    def cause(e: Event) -> str | None:
        return e.envelope["causation_id"]

    for s in source_market(log, started, from_seq=source_from_seq):
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
