"""Parameter sweeps: a grid (or a seeded sample of it) of ordinary backtests, run in parallel over the machine's
cores, each its own run namespace with its own content address — so a point run before is read back, not run
again, and every point stays a full run that `runs show`, `replay --verify` and `audit` read like any other.

The source's columns (runtime/replay/columns.py) are built once before the workers start; the workers read the one
file through mmap, shared in the page cache. Workers are forked processes, each opening the store itself.

Past one machine, the same points run on a Dask cluster (`cluster="tcp://SCHEDULER:PORT"`): each point is one task
of the same function, on a worker that opens the same store — Kafka, or a file store on a path every worker mounts
— so a point's run is the run it would be locally, byte for byte. Dask rather than Ray: a pure-Python wheel of a
few MB against several hundred, a scheduler and workers started with one command each (`dask scheduler`,
`dask worker ADDRESS`), and plain functions as tasks — what a sweep of independent backtests needs, nothing more.
A strategy given as a file is read by each worker from the same path (the path is part of the run's identity:
give it as the workers see it); a module:Class must be importable there.
"""
from __future__ import annotations

import itertools
import multiprocessing
import random
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Callable

from eventstore.store import Log
from handlers.strategy import load_strategy, parse_params
from runtime.backtest.runner import BacktestSpec, RunExists, pinned, run_backtest, run_code_version
from runtime.backtest.runs import IncompleteRun, rebuild_run, remove_run, run_state
from runtime.replay.columns import source_rows
from schemas.errors import TapeError

METRICS = ("sharpe", "sortino", "total_return", "annualized_return", "max_drawdown", "profit_factor", "win_rate",
           "trips_pnl", "end_equity")
LOWER_IS_BETTER = frozenset({"max_drawdown"})
FRACTIONS = frozenset({"total_return", "annualized_return", "max_drawdown", "win_rate"})  # shown as percentages
MAX_POINTS = 100_000
CLUSTER_TIMEOUT_S = 10


def parse_axis(text: str) -> tuple[str, list[str]]:
    """One --param of a sweep: KEY=V (one value), KEY=V1,V2,… (a list) or KEY=START..STOP:STEP (inclusive)."""
    key, sep, spec = text.partition("=")
    key, spec = key.strip(), spec.strip()
    if not sep or not key or not spec:
        raise TapeError(f"--param {text!r}: use KEY=VALUE, KEY=V1,V2,… or KEY=START..STOP:STEP")
    if ".." not in spec:
        values = [v.strip() for v in spec.split(",")]
        if any(not v for v in values):
            raise TapeError(f"--param {text!r}: an empty value in the list")
        return key, values
    lo, _, rest = spec.partition("..")
    hi, _, step = rest.partition(":")
    try:
        a, b, s = Decimal(lo), Decimal(hi), Decimal(step or "1")
    except InvalidOperation:
        raise TapeError(f"--param {text!r}: START..STOP:STEP must be numbers, e.g. fast=5..30:5") from None
    if not (a.is_finite() and b.is_finite() and s.is_finite()) or s <= 0 or b < a:
        raise TapeError(f"--param {text!r}: need START <= STOP and STEP > 0, e.g. fast=5..30:5")
    count = int((b - a) / s) + 1
    if count > MAX_POINTS:
        raise TapeError(f"--param {text!r}: {count:,} values; a sweep takes at most {MAX_POINTS:,} points")
    return key, [str(a + i * s) for i in range(count)]


@dataclass(frozen=True)
class Grid:
    """The points of a sweep: every combination of the axes' values, in axis order (or a seeded sample)."""

    axes: tuple[tuple[str, tuple[str, ...]], ...]

    @classmethod
    def parse(cls, items: list[str]) -> Grid:
        axes: dict[str, list[str]] = {}
        for item in items:
            key, values = parse_axis(item)
            if key in axes:
                raise TapeError(f"--param {key}: given twice; give one list or range for it")
            axes[key] = values
        return cls(tuple((k, tuple(v)) for k, v in axes.items()))

    def size(self) -> int:
        n = 1
        for _, values in self.axes:
            n *= len(values)
        return n

    def points(self, sample: int | None = None, seed: int = 0) -> list[dict[str, str]]:
        """Every point, or `sample` of them drawn without replacement by a seeded generator (the same each time)."""
        size = self.size()
        if size == 0:
            raise TapeError("the sweep's grid is empty: give each --param at least one value")
        if size > MAX_POINTS and sample is None:
            raise TapeError(f"the grid has {size:,} points; sample it (--random N) or narrow it")
        keys = [k for k, _ in self.axes]
        if sample is None:
            return [dict(zip(keys, combo)) for combo in itertools.product(*(v for _, v in self.axes))]
        if sample <= 0:
            raise TapeError(f"--random {sample}: sample at least one point")
        picks = sorted(random.Random(seed).sample(range(size), min(sample, size)))
        return [self._point(i) for i in picks]

    def _point(self, index: int) -> dict[str, str]:
        out = {}
        for key, values in reversed(self.axes):
            index, r = divmod(index, len(values))
            out[key] = values[r]
        return {k: out[k] for k, _ in self.axes}


@dataclass
class PointResult:
    """One point of a sweep: its parameters, its run and what it made (or why it has nothing)."""

    params: dict[str, str]
    run_id: str
    status: str  # "ran", "reused" or "failed"
    statistics: dict[str, Any] | None
    why: str = ""


def check_points(spec: BacktestSpec, points: list[dict[str, str]]) -> None:
    """Every point's parameters parsed by the strategy before anything runs: an unknown key or a bad value is one
    line naming the point."""
    cls = load_strategy(spec.strategy)
    for p in points:
        params = parse_params(cls, {**spec.params, **p})
        try:
            cls(params, None)  # the strategy's own checks (0 < fast < slow, …), made as it is made
        except TapeError as e:
            raise TapeError(f"sweep point {_label(p)}: {e}") from None
        except Exception:  # noqa: BLE001 — a constructor that reads its context: checked when the point runs
            pass


def _label(p: dict[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in p.items())


def _run_point(job: tuple[str, BacktestSpec, dict[str, str]]) -> PointResult:
    url, base, point = job
    log = Log.open(url)
    spec = replace(base, params={**base.params, **point})
    try:
        for _ in range(2):
            try:
                r = run_backtest(log, spec)
                return PointResult(point, r.run_id, "ran", r.statistics)
            except RunExists as e:
                status, why = run_state(log, e.run_id)
                if status == "complete":
                    try:
                        return PointResult(point, e.run_id, "reused", rebuild_run(log, e.run_id)["statistics"])
                    except IncompleteRun as gone:  # its status changed under us: run it again
                        why = str(gone)
                remove_run(log, e.run_id)
        raise TapeError("the run was replaced twice while this point ran")
    except Exception as e:  # noqa: BLE001 — the run recorded why it failed; the sweep goes on with the others
        why = " ".join(str(e).split()) or type(e).__name__
        return PointResult(point, spec.run_id(run_code_version(load_strategy(spec.strategy))), "failed", None, why)
    finally:
        log.close()


def sweep(log: Log, spec: BacktestSpec, points: list[dict[str, str]], *, workers: int = 1,
          progress: Callable[[PointResult], None] | None = None, cluster: str | None = None) -> list[PointResult]:
    """Run every point (the source's columns built first), `workers` at a time or as tasks of the Dask cluster at
    `cluster`; results in the points' order."""
    spec = pinned(log, spec)
    check_points(spec, points)
    started = {"source_namespace": spec.source, "source_from_ts": spec.from_ts, "source_to_ts": spec.to_ts,
               "source_to_seq": spec.source_to_seq, "source_hash": spec.source_hash}
    for _ in source_rows(log, started).market:  # the columns, built once, before the workers fork
        break
    jobs = [(_portable_url(log.url) if cluster is not None else log.url, spec, p) for p in points]
    if cluster is not None:
        return _on_cluster(cluster, jobs, progress)
    results: list[PointResult] = []
    if workers <= 1:
        for job in jobs:
            results.append(_run_point(job))
            if progress is not None:
                progress(results[-1])
        return results
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        for r in pool.imap(_run_point, jobs):
            results.append(r)
            if progress is not None:
                progress(r)
    return results


def _portable_url(url: str) -> str:
    """A file store's URL with an absolute path (the workers' working directory is not ours)."""
    if url.startswith("file:"):
        return f"file:{Path(url[len('file:'):]).resolve()}"
    return url


def _on_cluster(address: str, jobs: list[tuple[str, BacktestSpec, dict[str, str]]],
                progress: Callable[[PointResult], None] | None) -> list[PointResult]:
    """Every job a task of the Dask cluster at `address`, results in the jobs' order."""
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise TapeError("--cluster runs on Dask: install it with pip install 'distributed>=2024.1' (or tape[cluster])"
                        ) from None
    if not address.startswith(("tcp://", "tls://")):
        raise TapeError(f"--cluster {address!r}: give the Dask scheduler's address, tcp://HOST:PORT")
    try:
        client = Client(address, timeout=CLUSTER_TIMEOUT_S)
    except (OSError, TimeoutError) as e:
        raise TapeError(f"--cluster {address}: no Dask scheduler answered in {CLUSTER_TIMEOUT_S} s "
                        f"({type(e).__name__}); start one with `dask scheduler` and workers with "
                        f"`dask worker {address}`") from None
    try:
        if not client.scheduler_info().get("workers"):
            client.wait_for_workers(1, timeout=CLUSTER_TIMEOUT_S)
        futures = client.map(_run_point, jobs, pure=False)
        index = {f.key: i for i, f in enumerate(futures)}
        results: list[PointResult | None] = [None] * len(jobs)
        for future in as_completed(futures):
            r = future.result()
            results[index[future.key]] = r
            if progress is not None:
                progress(r)
        return [r for r in results if r is not None]
    except TimeoutError:
        raise TapeError(f"--cluster {address}: the scheduler has no worker; start one with "
                        f"`dask worker {address}`") from None
    finally:
        client.close()


def ranked(results: list[PointResult], metric: str) -> list[PointResult]:
    """The points by `metric`, best first (lowest first for drawdown); points without it last, then by run id."""
    if metric not in METRICS:
        raise TapeError(f"--metric {metric!r}: use one of {', '.join(METRICS)}")
    sign = 1 if metric in LOWER_IS_BETTER else -1

    def key(r: PointResult) -> tuple[int, Any, str]:
        value = (r.statistics or {}).get(metric)
        return (1, 0, r.run_id) if value is None else (0, sign * float(value), r.run_id)

    return sorted(results, key=key)

