"""Several source namespaces as one backtest source: a derived namespace holding their instrument definitions and
market events merged by event time in a deterministic order (time, then the order the sources were named in, then
each source's seq), each source read up to the horizon it has now.

The merged namespace is content-addressed — `merged-<hash of each source's name, horizon and hash-chain value>` —
so the same sources, unchanged, give the same namespace (built once, reused by every later run and sweep), and a
source that grew gives another one, as a run over it must be another run. Its first step records what it was made
of (SourcesMerged: each source, the seq it was read up to, its chain value, its events), its last one that it is
complete: one that lacks it (a build killed part way) is removed and built again. An instrument defined in two of
the sources is refused: which source's bars would it trade on?
"""
from __future__ import annotations

import hashlib
import heapq
import json
from collections.abc import Callable, Iterator
from typing import Any

from eventstore.replay import Event
from eventstore.store import Log
from eventstore.writer import Draft
from schemas.errors import TapeError
from schemas.names import PRICES

PREFIX = "merged-"
STEP = 5000  # events a step while building


def _pinned(log: Log, sources: list[str]) -> list[dict[str, Any]]:
    out = []
    for ns in sources:
        if ns not in log.namespaces():
            raise TapeError(f"--source {ns}: no namespace {ns!r} in {log.url}: `tape log namespaces` lists them")
        horizon = log.horizon(ns)
        if horizon == 0:
            raise TapeError(f"--source {ns}: it holds no events: ingest history into it first (tape ingest)")
        out.append({"namespace": ns, "to_seq": horizon, "hash": log.chain_at(ns, horizon) or ""})
    return out


def merged_name(pinned: list[dict[str, Any]]) -> str:
    """The content address of a merge of these sources at these horizons."""
    text = json.dumps(pinned, sort_keys=True, separators=(",", ":"))
    return PREFIX + hashlib.sha256(text.encode()).hexdigest()[:12]


def _events(log: Log, source: dict[str, Any], index: int) -> Iterator[tuple[int, int, int, Event]]:
    for e in log.replay(source["namespace"], types=["InstrumentDefined", *PRICES], to_seq=source["to_seq"]):
        yield e.ts_event, index, e.seq, e


def _complete(log: Log, name: str) -> bool:
    return any(e.data.get("complete") for e in log.replay(name, types=["SourcesMerged"]))


def merge_sources(log: Log, sources: list[str], *,
                  progress: Callable[[int], None] | None = None) -> tuple[str, bool]:
    """The merged namespace of `sources` (named in this order), built now unless a complete one exists: (its
    name, whether it was built now)."""
    if len(set(sources)) != len(sources):
        raise TapeError("--source: a namespace is named twice; name each source once")
    pinned = _pinned(log, sources)
    name = merged_name(pinned)
    if name in log.namespaces():
        if _complete(log, name):
            return name, False
        log.delete(name)  # a build killed part way: built again from the start
    owner: dict[str, str] = {}
    for s in pinned:
        for e in log.replay(s["namespace"], types=["InstrumentDefined"], to_seq=s["to_seq"]):
            other = owner.setdefault(e.key, s["namespace"])
            if other != s["namespace"]:
                raise TapeError(f"--source: instrument {e.key} is defined in both {other} and {s['namespace']}: "
                                "a backtest would not know whose history to trade; merge sources of distinct "
                                "instruments")
    streams = [_events(log, s, i) for i, s in enumerate(pinned)]
    counts = [0] * len(pinned)
    with log.writer(name) as w:
        first_ts = None
        step: list[Draft] = []
        written = 0
        for ts, index, _seq, e in heapq.merge(*streams):
            if first_ts is None:
                first_ts = ts
                w.append([_record(pinned, counts, ts, complete=False)])
            counts[index] += 1
            step.append(Draft(e.name, _payload(e), ts, e.key, f"merge:{pinned[index]['namespace']}", None, None, ts))
            if len(step) >= STEP:
                w.append(step)
                written += len(step)
                step = []
                if progress is not None:
                    progress(written)
        if step:
            w.append(step)
        if first_ts is None:
            raise TapeError(f"--source: {', '.join(sources)} hold no instruments or market events to merge")
        w.append([_record(pinned, counts, ts, complete=True)])
    return name, True


def _payload(e: Event) -> dict[str, Any]:
    return {k: v for k, v in e.data.items() if k != "envelope"}


def _record(pinned: list[dict[str, Any]], counts: list[int], ts: int, *, complete: bool) -> Draft:
    sources = [{**s, "events": counts[i]} for i, s in enumerate(pinned)]
    return Draft("SourcesMerged", {"sources": sources, "complete": complete}, ts, "", "merge", None, None, ts)


def merged_from(log: Log, name: str) -> list[dict[str, Any]] | None:
    """What a merged namespace was made of, as its last record says (None: not a merged namespace)."""
    if not name.startswith(PREFIX) or name not in log.namespaces():
        return None
    last = None
    for e in log.replay(name, types=["SourcesMerged"]):
        last = [dict(s) for s in e.data["sources"]]
    return last


def one_source(log: Log, sources: list[str], *, note: Callable[[str], None] | None = None) -> str:
    """The namespace a backtest reads for `--source` given once or more (several: their merged namespace)."""
    if len(sources) == 1:
        return sources[0]
    name, built = merge_sources(log, sources)
    if note is not None:
        note(f"sources {', '.join(sources)} {'merged into' if built else 'read from their merge'} {name} (by event "
             "time, then in the order named; a source that grows makes another merge)")
    return name
