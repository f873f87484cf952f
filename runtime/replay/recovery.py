"""Recovery: the latest snapshot of a namespace + replay of the tail gives the state a full replay gives.

`restore(log, ns)` finds the namespace's latest SnapshotTaken by reading its system topic backwards from the
end (eventstore/seek.py; never the whole log), restores the state it carries, then folds every event with a
larger seq. Without a snapshot it folds the namespace from seq 1.

Namespaces whose market inputs live in another namespace — backtest runs, whose RunStarted names a
source_namespace — do not record those inputs: the engine folded them into its state without writing them.
Their snapshot holds the market part as of its point, and names the last source event folded
(EngineState.input_event_id, e.g. 'src:1234'); the tail is then the run's events after last_seq merged with the
source's market events after that input, in the order the engine processed them (runtime/replay/merge.py,
the same merge `tape runs show` uses). From scratch, a run starts with the source's instrument definitions up to
the end of its slice, as the engine did.

`recover(..., at=T)` is the state at instant T: only events with ts_event < T (strictly before) are folded, in
seq order, starting from the latest snapshot whose state holds nothing at or after T (its ts_event, the latest
time folded into it, is < T).
"""
from __future__ import annotations

import decimal
from dataclasses import dataclass
from typing import Any, Iterator

from eventstore.replay import Event
from eventstore.seek import first_event, last_event
from eventstore.store import Log
from projections.snapshot import Snapshot, read_snapshot
from projections.state import State
from runtime.replay.merge import merged, source_instruments
from schemas.errors import TapeError


def system_types(log: Log) -> list[str]:
    return [t.full_name for t in log.catalog.types if t.topic == "system"]


def run_started(log: Log, namespace: str) -> dict[str, Any] | None:
    """The RunStarted of a namespace when it is the first system event, else None (reads one event)."""
    first = first_event(log, namespace, system_types(log))
    if first is None or first.name != "RunStarted":
        return None
    return first.data


@dataclass
class Recovery:
    """A restored state and how it was obtained."""

    state: State
    last_seq: int  # seq of the last event of the namespace folded (0: none)
    snapshot: Snapshot | None = None  # the snapshot restored, if any
    snapshot_seq: int | None = None  # seq of its SnapshotTaken event
    folded: int = 0  # events folded after the snapshot (the namespace's own, plus source inputs for a run)
    started: dict[str, Any] | None = None  # RunStarted of a run reading another namespace's market events
    tail_from_seq: int = 1  # where the tail starts in the namespace
    source_from_seq: int = 1  # and, for a run, in its source
    last_input: str | None = None  # event id of the last source event folded (runs)
    at: int | None = None

    @property
    def strategy_state(self) -> dict[str, Any] | None:
        """The strategy's own state as of the snapshot (not advanced over the tail: feed it the tail's events)."""
        return self.snapshot.strategy_state if self.snapshot is not None else None


def _source_seq(event_id: str | None) -> int:
    if not event_id:
        return 0
    return int(event_id.rpartition(":")[2])


def tail(log: Log, namespace: str, started: dict[str, Any] | None, *, from_seq: int = 1,
         source_from_seq: int = 1) -> Iterator[tuple[bool, Event]]:
    """(own, event) in the order the engine processed them, from a step boundary; own=False: a source input."""
    if started is None or not started.get("source_namespace"):
        for e in log.replay(namespace, from_seq=from_seq):
            yield True, e
        return
    for kind, e in merged(log, namespace, started, run_from_seq=from_seq, source_from_seq=source_from_seq):
        if kind != "sample":
            yield kind == "run", e


def initial_state(log: Log, started: dict[str, Any] | None) -> State:
    """The state before the first event: a run starts with its source's instrument definitions (as the engine)."""
    state = State()
    if started is not None and started.get("source_namespace"):
        for e in source_instruments(log, started):
            state.apply("InstrumentDefined", e.data, e.ts_event)
    return state


def start(log: Log, namespace: str, *, at: int | None = None, use_snapshots: bool = True,
          snapshot_to_seq: int | None = None) -> Recovery:
    """The state to fold the tail onto: the latest usable snapshot (before `at`; at or before seq
    `snapshot_to_seq`), or the initial state."""
    started = run_started(log, namespace)
    if use_snapshots:
        ev = last_event(log, namespace, "SnapshotTaken", before_ts=at, to_seq=snapshot_to_seq)
        if ev is not None:
            snap = read_snapshot(ev.data, log.catalog, log.registry(namespace))
            return Recovery(snap.state, snap.last_seq, snap, ev.seq, 0, started, snap.last_seq + 1,
                            _source_seq(snap.input_event_id) + 1, snap.input_event_id, at)
    with decimal.localcontext(prec=60):
        state = initial_state(log, started)
    return Recovery(state, 0, None, None, 0, started, 1, 1, None, at)


def fold_tail(log: Log, namespace: str, rec: Recovery, *, to_ts: int | None = None, from_ts: int | None = None,
              observer: Any = None) -> Recovery:
    """Fold the tail after `rec`'s starting point into `rec.state`: events with from_ts <= ts_event < to_ts."""
    state = rec.state
    apply = state.apply
    n = 0
    last_seq = rec.last_seq
    last_input = rec.last_input
    source = (rec.started or {}).get("source_namespace")
    with decimal.localcontext(prec=60):
        for own, e in tail(log, namespace, rec.started, from_seq=rec.tail_from_seq,
                           source_from_seq=rec.source_from_seq):
            ts = e.ts_event
            if (to_ts is not None and ts >= to_ts) or (from_ts is not None and ts < from_ts):
                continue
            name = e.name
            if name == "SnapshotTaken":  # folds nothing (a state, not a fact)
                continue
            data = e.data
            if observer is not None:
                observer(name, data, ts, own)
            apply(name, data, ts)
            n += 1
            if own:
                last_seq = e.seq
            else:
                last_input = f"{source}:{e.seq}"
    rec.folded += n
    rec.last_seq = last_seq
    rec.last_input = last_input
    state.last_seq = last_seq
    return rec


def recover(log: Log, namespace: str, *, at: int | None = None, use_snapshots: bool = True,
            snapshot_to_seq: int | None = None) -> Recovery:
    """The namespace's state (at instant `at`: events with ts_event < at only), from its latest usable snapshot
    (or the latest at or before seq `snapshot_to_seq`)."""
    if namespace not in log.namespaces():
        raise TapeError(f"no namespace {namespace!r} in {log.url}: `tape log namespaces` lists them")
    rec = start(log, namespace, at=at, use_snapshots=use_snapshots, snapshot_to_seq=snapshot_to_seq)
    return fold_tail(log, namespace, rec, to_ts=at)


def restore(log: Log, namespace: str) -> tuple[State, int]:
    """Latest snapshot + replay of the tail: (the state, seq of the last event folded)."""
    rec = recover(log, namespace)
    return rec.state, rec.last_seq


__all__ = ["Recovery", "fold_tail", "recover", "restore", "run_started", "start", "tail"]
