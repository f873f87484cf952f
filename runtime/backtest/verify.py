"""`tape replay RUN --verify`: re-run a backtest from what its RunStarted records and compare every event.

The handlers run again (run_backtest with the recorded strategy, parameters, risk, queue and venue configuration,
snapshot interval and source slice) into a scratch store under the same run id (`into=`), reading the source from
the recorded store. Then the recorded and the recomputed events are compared in seq order as decoded records,
field by field, envelope included (a snapshot's state bytes are decoded and compared field by field too). The
first difference is the divergence: seq, type, field path, recorded and recomputed values.

Expected differences are reported as notes, not divergences: RunStarted.code_version when the code changed
since the run was recorded, and RunStarted.params.<k> for each parameter overridden with --param. Either one
changes RunStarted's bytes, hence the hash chain: every later envelope.prev_hash differs with it and is not
compared once such a note was made (the fields it hashes are compared one by one).
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from itertools import zip_longest
from typing import Any, Iterator

from eventstore.filelog import FileLog
from eventstore.store import Log
from handlers.queue import parse_queue_config
from handlers.risk.limits import parse_risk_config
from handlers.venues.sim.config import parse_venue_config
from projections.performance import Annualisation
from projections.snapshot import decode as decode_state
from runtime.backtest.runner import BacktestSpec, run_backtest
from runtime.replay.recovery import run_started
from schemas.errors import TapeError

MISSING = "(absent)"


@dataclass
class Divergence:
    seq: int
    recorded_type: str
    recomputed_type: str
    path: str
    recorded: Any
    recomputed: Any

    @property
    def type(self) -> str:
        return self.recorded_type if self.recorded_type == self.recomputed_type else \
            f"{self.recorded_type} vs {self.recomputed_type}"


@dataclass
class VerifyResult:
    run: str
    events: int  # events compared (identical ones before the divergence, or all)
    recorded_events: int
    recomputed_events: int
    divergence: Divergence | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return self.divergence is None


def _diffs(a: Any, b: Any, path: str) -> Iterator[tuple[str, Any, Any]]:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in list(a) + [k for k in b if k not in a]:
            p = f"{path}.{k}" if path else str(k)
            if k not in a:
                yield p, MISSING, b[k]
            elif k not in b:
                yield p, a[k], MISSING
            else:
                yield from _diffs(a[k], b[k], p)
    elif isinstance(a, list) and isinstance(b, list):
        for i in range(max(len(a), len(b))):
            p = f"{path}[{i}]"
            if i >= len(a):
                yield p, MISSING, b[i]
            elif i >= len(b):
                yield p, a[i], MISSING
            else:
                yield from _diffs(a[i], b[i], p)
    elif type(a) is not type(b) or a != b:
        yield path, a, b


def spec_of(started: dict[str, Any], overrides: dict[str, str] | None = None) -> BacktestSpec:
    """The BacktestSpec a RunStarted records (with parameters overridden)."""
    if not started.get("source_namespace") or started.get("mode") != "BACKTEST":
        raise TapeError(f"{started.get('run_id')}: --verify re-runs backtests (mode BACKTEST with a source); this run "
                        f"is {started.get('mode')}")
    config = json.loads(started["config"])
    risk = dict(config.get("risk", {}))
    queue = config.get("queue", risk.pop("queue", {}))  # runs recorded before the queue had its own config
    where = f"{started.get('run_id')} RunStarted.config"
    return BacktestSpec(source=started["source_namespace"], strategy=started["strategy"],
                        params={**dict(started["params"]), **(overrides or {})},
                        from_ts=started.get("source_from_ts"), to_ts=started.get("source_to_ts"),
                        risk=parse_risk_config(risk, f"{where} risk"), queue=parse_queue_config(queue, f"{where} queue"),
                        venue=parse_venue_config(config.get("venue", {}), f"{where} venue"),
                        seed=started.get("seed") or 0, snapshot_every=int(config.get("snapshot_every", 0)),
                        source_to_seq=started.get("source_to_seq"), source_hash=started.get("source_hash"),
                        annualisation=Annualisation.parse(config.get("statistics", {}), f"{where} statistics"))


def verify_run(log: Log, run: str, overrides: dict[str, str] | None = None) -> VerifyResult:
    """Re-run `run` from its RunStarted (parameters overridden) and compare every event with the recorded ones."""
    if run not in log.namespaces():
        raise TapeError(f"no namespace {run!r} in {log.url}: `tape runs list` shows the runs")
    started = run_started(log, run)
    if started is None:
        raise TapeError(f"{run} is not a run (its first system event is not RunStarted): `tape runs list` shows the runs")
    overrides = dict(overrides or {})
    spec = spec_of(started, overrides)
    with tempfile.TemporaryDirectory(prefix="tape-verify-") as tmp:
        scratch = Log(FileLog(tmp), log.catalog)
        try:
            run_backtest(log, spec, run_id=run, into=scratch, cache=False)  # from the log itself, the truth
            return _compare(log, scratch, run, overrides)
        finally:
            scratch.close()


def _compare(log: Log, other: Log, run: str, overrides: dict[str, str]) -> VerifyResult:
    notes: list[str] = []
    chain_explained = False
    n = n_rec = n_new = 0
    reg_a = reg_b = None
    result: VerifyResult | None = None
    for a, b in zip_longest(log.replay(run), other.replay(run)):
        n_rec += a is not None
        n_new += b is not None
        if result is not None:
            continue  # count the rest
        if a is None or b is None:
            seq = (a or b).seq
            result = VerifyResult(run, n, 0, 0, Divergence(seq, a.name if a else MISSING, b.name if b else MISSING,
                                                             "(event)", a.name if a else MISSING,
                                                             b.name if b else MISSING), notes)
            continue
        if a.type != b.type:
            result = VerifyResult(run, n, 0, 0, Divergence(a.seq, a.name, b.name, "(type)", a.name, b.name), notes)
            continue
        da, db = a.data, b.data
        found = None
        for path, ra, rb in _diffs({"(key)": a.key, **da}, {"(key)": b.key, **db}, ""):
            if a.name == "RunStarted" and path == "code_version":
                notes.append(f"code_version differs: recorded {ra}, recomputed {rb} — the code changed since the run "
                             "was recorded")
                chain_explained = True
                continue
            if a.name == "RunStarted" and path == "applied" and ra is None:
                notes.append("the run was recorded before runs recorded the settings that applied (RunStarted.applied)")
                chain_explained = True
                continue
            if a.name == "RunStarted" and path in ("source_to_seq", "source_hash") and ra is None:
                if path == "source_to_seq":
                    notes.append("the run was recorded before runs were pinned to their source's horizon: re-run over "
                                 f"the source as it is now (up to seq {rb:,})")
                chain_explained = True
                continue
            if a.name == "RunStarted" and path.startswith("params.") and path[7:] in overrides:
                notes.append(f"{path}: recorded {ra}, recomputed {rb} (overridden with --param)")
                chain_explained = True
                continue
            if path == "envelope.prev_hash" and chain_explained:
                continue
            if a.name == "SnapshotTaken" and path == "state":
                if reg_a is None:
                    reg_a, reg_b = log.registry(run), other.registry(run)
                sa, sb = decode_state(ra, log.catalog, reg_a), decode_state(rb, other.catalog, reg_b)
                inner = next(_diffs(sa, sb, "state"), None)
                if inner is None:
                    continue  # same state, different bytes (another writer schema): not a divergence
                path, ra, rb = inner
            found = (path, ra, rb)
            break
        if found is not None:
            result = VerifyResult(run, n, 0, 0, Divergence(a.seq, a.name, b.name, *found), notes)
            continue
        n += 1
    if chain_explained:
        notes.append("RunStarted's bytes differ, so every later envelope.prev_hash differs with them: not compared")
    if result is None:
        result = VerifyResult(run, n, 0, 0, None, notes)
    result.recorded_events, result.recomputed_events = n_rec, n_new
    return result
