"""Find the last event of a type without reading the namespace from its start."""
from __future__ import annotations

from eventstore.replay import Event
from eventstore.store import Log

FIRST_WINDOW = 1 << 14
GROWTH = 8


def last_event(log: Log, namespace: str, type_name: str, *, before_ts: int | None = None,
               to_seq: int | None = None) -> Event | None:
    """The last committed event of `type_name` (seq <= to_seq when given), or None.

    Reads only the type's topic, backwards from the end in seq windows that grow 8x (each window forward from
    a seq the partition's sparse index finds), so the cost is the topic's records after the hit, not the log.
    With `before_ts`: the last one whose ts_event < before_ts, for types whose ts_event never decreases along
    seq (SnapshotTaken: the latest time folded into the state) — a window stops at the first later one.
    """
    probe = log.replay(namespace, types=[type_name], to_seq=to_seq)
    hi = probe.reader.horizon()
    if to_seq is not None:
        hi = min(hi, to_seq)
    width = FIRST_WINDOW
    while hi >= 1:
        lo = max(1, hi - width + 1)
        replay = log.replay(namespace, types=[type_name], from_seq=lo, to_seq=hi)
        hit = None
        for r in replay.records():
            if before_ts is not None and r.ts >= before_ts:
                break
            hit = r
        if hit is not None:
            return Event(hit, replay.codec)
        hi = lo - 1
        width *= GROWTH
    return None


def first_event(log: Log, namespace: str, types: list[str]) -> Event | None:
    """The first committed event among `types` (reads only their topics, stops at the first)."""
    return next(iter(log.replay(namespace, types=types)), None)
