"""Cheap facts about a namespace for `tape log namespaces`: from the commit journal and two record reads."""
from __future__ import annotations

from dataclasses import dataclass

from eventstore.store import Log


@dataclass
class Overview:
    namespace: str
    events: int = 0
    last_seq: int = 0
    first_ts: int | None = None  # ts_event of the first committed event
    last_ts: int | None = None  # ts_event of the last committed event


def overview(log: Log, namespace: str) -> Overview:
    """Event count and last seq from the commit journal; first/last time from the first and last events."""
    reader = log.backend.open_reader(namespace)
    try:
        horizon = reader.horizon()
        out = Overview(namespace, last_seq=horizon)
        if horizon == 0:
            return out
        out.events = sum(c.last - c.first + 1 for c in reader.commits() if c.last <= horizon)
        first = next(iter(log.replay(namespace, to_seq=horizon).records()), None)
        last = next(iter(log.replay(namespace, from_seq=horizon, to_seq=horizon).records()), None)
        out.first_ts = first.ts if first else None
        out.last_ts = last.ts if last else None
        return out
    finally:
        reader.close()
