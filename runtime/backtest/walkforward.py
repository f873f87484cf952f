"""Walk-forward: the sweep's grid fitted on a training window, its best point run on the window that follows, again
and again along the history — the out-of-sample figures a trader can believe, where a single sweep's best point
only says what fitted the past.

Windows are consecutive spans of event time: `train` long, then `test` long, moved on by `step` (the test's length
unless given), from the first market event of the slice to its end; a last window whose test would run past the
end is left out. Every training point and every test run is an ordinary run, with its own content address: a
walk-forward run again reads everything back. Each test run starts from the venue's starting balances, flat; the
out-of-sample return chains the test windows' returns.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Callable

from eventstore.seek import last_event
from eventstore.store import Log
from runtime.backtest.runner import BacktestSpec, pinned
from runtime.backtest.sweep import PointResult, ranked, sweep
from schemas.errors import TapeError
from schemas.names import PRICES


@dataclass(frozen=True)
class Window:
    train_from: int
    train_to: int  # exclusive: the test starts here
    test_to: int


@dataclass
class WindowResult:
    window: Window
    best: PointResult | None  # the training point ranked first (None: no training point had the metric)
    test: PointResult | None  # the best point's run over the test window


def windows(start: int, end: int, train: int, test: int, step: int | None = None) -> list[Window]:
    """Consecutive (train, test) windows from `start`, each whole before `end`."""
    if train <= 0 or test <= 0 or (step is not None and step <= 0):
        raise TapeError("--train, --test and --step must be positive durations, e.g. --train 30d --test 7d")
    step = step or test
    out, t = [], start
    while t + train + test <= end:
        out.append(Window(t, t + train, t + train + test))
        t += step
    if not out:
        raise TapeError(f"the history is shorter than one window (train + test): it spans "
                        f"{(end - start) / 86_400e9:.1f} days; shorten --train or --test")
    return out


def span(log: Log, spec: BacktestSpec) -> tuple[int, int]:
    """The first and last market event time of the spec's slice of its source (pinned at its horizon)."""
    first = None
    for e in log.replay(spec.source, types=list(PRICES), from_ts=spec.from_ts, to_ts=spec.to_ts,
                        to_seq=spec.source_to_seq):
        first = e.ts_event
        break
    lasts = [e.ts_event for t in PRICES
             if (e := last_event(log, spec.source, t, to_seq=spec.source_to_seq)) is not None]
    if first is None or not lasts:
        raise TapeError(f"no market events in {spec.source} for the chosen slice: check --from/--to")
    last = min(max(lasts), spec.to_ts - 1) if spec.to_ts is not None else max(lasts)
    return first, last + 1


def walk_forward(log: Log, spec: BacktestSpec, points: list[dict[str, str]], metric: str, train: int, test: int,
                 step: int | None = None, *, workers: int = 1, cluster: str | None = None,
                 progress: Callable[[PointResult], None] | None = None) -> list[WindowResult]:
    """Every window: the grid swept over its training span, the best point run over its test span."""
    spec = pinned(log, spec)
    start, end = span(log, spec)
    out = []
    for w in windows(start, end, train, test, step):
        trained = sweep(log, replace(spec, from_ts=w.train_from, to_ts=w.train_to), points, workers=workers,
                        progress=progress, cluster=cluster)
        top = ranked(trained, metric)[0]
        if (top.statistics or {}).get(metric) is None:
            out.append(WindowResult(w, None, None))
            continue
        (tested,) = sweep(log, replace(spec, from_ts=w.train_to, to_ts=w.test_to), [top.params], workers=1,
                          progress=progress, cluster=cluster)
        out.append(WindowResult(w, top, tested))
    return out


def out_of_sample(results: list[WindowResult]) -> dict[str, Any]:
    """The test windows together: their returns chained, the mean of their Sharpe ratios, windows with a test."""
    rets = [float(r.test.statistics["total_return"]) for r in results
            if r.test is not None and r.test.statistics and r.test.statistics.get("total_return") is not None]
    sharpes = [float(r.test.statistics["sharpe"]) for r in results
               if r.test is not None and r.test.statistics and r.test.statistics.get("sharpe") is not None]
    return {"windows": len(results), "tested": len(rets),
            "return": math.prod(1 + r for r in rets) - 1 if rets else None,
            "mean_sharpe": sum(sharpes) / len(sharpes) if sharpes else None}
