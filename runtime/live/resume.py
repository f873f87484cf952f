"""Startup is recovery: the live namespace's recorded inputs replayed through a fresh engine rebuild everything.

A live namespace records its inputs (market events from the feed, the venue's answers, sources `feed:…` and
`report:…`) together with every event the engine derived from them. The engine is deterministic, so processing the
same inputs again, in the same order, with the same session starts and stops, derives the same events: the
positions, orders and balances, and also what no snapshot holds — the strategy's indicators, the risk engine's
counters, the outbound queue, pending timers, the simulated venue's book in paper mode. While it replays, the
engine writes nothing (`ReplayWriter` checks each derived event against the one the log holds at that place and
raises RecoveryDiverged at the first difference) and the venue adapter sends nothing. Then the node hands the
engine its real writer and the loop continues.

A live namespace's snapshots carry the handlers' state too (runtime/engine/loop.py `handler_state`), so startup
restores the latest one and replays only the inputs after it: the same state, in a time that does not grow with
the log. Snapshots are states, not facts: a replay does not derive them (a session killed between a step and its
snapshot leaves none there); it counts those the log holds (`Engine.note_snapshot`), so event numbering and the
snapshot cadence continue as they were.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from eventstore.replay import Event
from eventstore.store import Log
from eventstore.writer import Draft, own_fields
from schemas.errors import TapeError

INPUT_SOURCES = ("feed:", "report:", "monitor:", "operator:")  # what a live namespace records as inputs (the engine derives
# the rest): market data, the venue's answers, the loop's own measures (Heartbeat)


class RecoveryDiverged(TapeError):
    """Replaying the log through the engine derived another event than the log holds: code or config changed."""


def is_input(event: Event) -> bool:
    """True for an event the live node fed in (market data, a venue's answer), not one the engine derived."""
    source = event.envelope["source"] or ""
    return event.envelope["causation_id"] is None and source.startswith(INPUT_SOURCES)


@dataclass
class ReplayWriter:
    """The engine's writer during recovery: compares what the engine derives with the log, writes nothing."""

    namespace: str
    catalog: Any
    registry: Any
    expected: Iterator[Event]
    next_seq: int = 1
    events: int = 0
    diverged: list[str] = field(default_factory=list)

    def append_steps(self, steps: list[list[Draft]]) -> int:
        for step in steps:
            for d in step:
                rec = next(self.expected, None)
                while rec is not None and rec.name == "SnapshotTaken":  # not derived here (Engine.note_snapshot)
                    rec = next(self.expected, None)
                if rec is None or rec.name != d.type or (d.payload.get("client_order_id") !=
                                                       rec.data.get("client_order_id")):
                    where = f"seq {rec.seq}: the log holds {rec.name}" if rec is not None else "past the log's end"
                    raise RecoveryDiverged(
                        f"{self.namespace}: replaying its inputs derived {d.type} where, at {where}; the code, the "
                        "strategy's parameters or the configs changed since it was written — run the code that wrote "
                        "it, or start a new namespace")
                self.events += 1
        return self.next_seq

    def sync(self) -> None:
        """Nothing is written, so nothing to sync."""


@dataclass
class Replayed:
    """What recovery found in the log, for the node to continue from."""

    events: int = 0
    inputs: int = 0
    sessions: int = 0
    last_ts: int = 0


def replay_inputs(log: Log, namespace: str, engine: Any, *, learn: Callable[[Event], None],
                  session_start: Callable[[Event, bool], None], session_stop: Callable[[Event], None],
                  from_seq: int = 1, sessions: int = 0) -> Replayed:
    """Drive `engine` (built on a ReplayWriter over the same events) through the namespace's inputs and sessions
    from `from_seq` (after a snapshot it was restored from: `sessions` started before it)."""
    out = Replayed(sessions=sessions)
    for e in log.replay(namespace, from_seq=from_seq):
        learn(e)
        out.events += 1
        out.last_ts = max(out.last_ts, e.ts_event)
        if e.name == "RunStarted":
            session_start(e, out.sessions == 0)
            out.sessions += 1
        elif e.name == "RunStopped":
            session_stop(e)
        elif e.name == "SnapshotTaken":
            engine.note_snapshot()
        elif is_input(e):
            data = own_fields(e.data)
            engine.process(e.name, data, e.ts_event, source=e.envelope["source"])
            out.inputs += 1
    return out
