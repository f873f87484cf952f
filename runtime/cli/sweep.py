"""`tape sweep`: a grid of backtests over one source, in parallel, ranked by a metric."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, List, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from handlers.queue import QueueConfig
from handlers.risk.limits import RiskLimits
from handlers.venues.sim.config import VenueConfig
from runtime.backtest.runner import BacktestSpec
from runtime.backtest.sweep import METRICS, Grid, PointResult, check_points, ranked, sweep
from runtime.cli import output
from runtime.cli.context import cli_context
from runtime.configfiles import risk_file, venue_file
from runtime.figures import metric_text
from runtime.ingest.merge import one_source
from runtime.times import format_ns, parse_timeframe
from schemas.decimals import plain
from schemas.errors import TapeError


def sweep_command(
    ctx: typer.Context,
    source: List[str] = typer.Option(..., "--source", metavar="NS",
                                     help="Namespace holding the market history (repeatable: merged by event time)."),
    strategy: str = typer.Option(..., "--strategy", metavar="NAME",
                                 help="Built-in name, module:Class or ./file.py:Class."),
    param: List[str] = typer.Option(..., "--param", metavar="K=SPEC",
                                    help="An axis: K=V, K=V1,V2,… or K=START..STOP:STEP (repeatable)."),
    metric: str = typer.Option("sharpe", "--metric", help=f"Rank by: {', '.join(METRICS)}."),
    workers: int = typer.Option(0, "--workers", min=0, help="Processes at a time (0: one per core)."),
    cluster: Optional[str] = typer.Option(None, "--cluster", metavar="tcp://HOST:PORT",
                                          help="Run the points on this Dask scheduler's workers (the store must be "
                                               "Kafka or a path every worker shares)."),
    sample: Optional[int] = typer.Option(None, "--random", metavar="N", help="Run N points drawn from the grid."),
    seed: int = typer.Option(0, "--seed", help="Seed of the --random draw (the same seed draws the same points)."),
    from_: Optional[str] = typer.Option(None, "--from", metavar="TIME", help="Start of the slice (inclusive)."),
    to: Optional[str] = typer.Option(None, "--to", metavar="TIME", help="End of the slice (exclusive)."),
    risk: Optional[Path] = typer.Option(None, "--risk", metavar="FILE", help="Risk limits (TOML or JSON)."),
    venue: Optional[Path] = typer.Option(None, "--venue", metavar="FILE", help="Simulated venue (TOML or JSON)."),
    as_json: bool = typer.Option(False, "--json", help="Every point with its run id and statistics, as JSON."),
    html: Optional[Path] = typer.Option(None, "--html", metavar="FILE",
                                        help="Also write the ranked points and a heatmap of the metric as a page."),
    train: Optional[str] = typer.Option(None, "--train", metavar="DURATION",
                                        help="Walk forward: fit the grid on windows this long (e.g. 30d) ..."),
    test: Optional[str] = typer.Option(None, "--test", metavar="DURATION",
                                       help="... and run the best point on the window this long after each (e.g. 7d)."),
    step: Optional[str] = typer.Option(None, "--step", metavar="DURATION",
                                       help="How far each window moves on (default: --test)."),
    heatmap: Optional[str] = typer.Option(None, "--heatmap", metavar="X,Y",
                                          help="The two parameters of the heatmap (default: the first two that "
                                               "vary)."),
) -> None:
    """Run a grid of backtests — every point an ordinary run with its own content address, so points run before are
    read back instead of run again — and rank them by a metric."""
    grid = Grid.parse(param)
    points = grid.points(sample, seed)
    axes = heatmap_axes(grid, heatmap)
    if html is not None:
        output.writable(html)
    if metric not in METRICS:
        raise typer.BadParameter(f"use one of {', '.join(METRICS)}", param_hint="--metric")
    limits, queue = risk_file(risk) if risk is not None else (RiskLimits(), QueueConfig())
    check_points(BacktestSpec(source="", strategy=strategy), points)  # refused before a merge is written
    log = cli_context(ctx).open()
    named = one_source(log, source, note=lambda line: sys.stderr.write(line + "\n"))
    spec = BacktestSpec(source=named, strategy=strategy, from_ts=output.time_option(from_, "--from"),
                        to_ts=output.time_option(to, "--to"), risk=limits, queue=queue,
                        venue=venue_file(venue) if venue is not None else VenueConfig())
    n = workers or os.cpu_count() or 1
    console = output.console(stderr=True)
    if train is not None or test is not None:
        if train is None or test is None:
            raise TapeError("walk forward with both --train and --test (e.g. --train 30d --test 7d)")
        _walk(log, spec, points, metric, [k for k, _ in grid.axes], _duration(train, "--train"),
              _duration(test, "--test"), _duration(step, "--step") if step else None, min(n, len(points)), cluster,
              as_json)
        return
    with Progress(TextColumn("[bold]sweep"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                  transient=True, disable=not sys.stderr.isatty()) as bar:
        task = bar.add_task("sweep", total=len(points))
        results = sweep(log, spec, points, workers=min(n, len(points)),
                        progress=lambda r: bar.update(task, advance=1), cluster=cluster)
    best = ranked(results, metric)
    if html is not None:
        from runtime.report.charts import sweep_heatmap
        from runtime.report.html import sweep_html

        output.written(html, sweep_html(named, strategy, best, metric, [k for k, _ in grid.axes],
                                 sweep_heatmap(best, grid.axes, axes, metric)))
        sys.stderr.write(f"wrote {html}\n")
    if as_json:
        rows = [{"params": r.params, "run_id": r.run_id, "status": r.status, "why": r.why,
                 "statistics": r.statistics} for r in best]
        sys.stdout.write(json.dumps(plain({"metric": metric, "points": rows}), indent=2, sort_keys=True) + "\n")
        return
    _print(best, metric, [k for k, _ in grid.axes])


def _duration(text: str, option: str) -> int:
    try:
        return parse_timeframe(text)
    except TapeError:
        raise TapeError(f"{option} {text!r}: use a count and a unit s, m, h, d or w: 30d, 12h, 2w") from None


def _walk(log: Any, spec: BacktestSpec, points: list[dict[str, str]], metric: str, keys: list[str], train: int,
          test: int, step: int | None, workers: int, cluster: Optional[str], as_json: bool) -> None:
    """`tape sweep --train … --test …`: the walk-forward windows, their best points and out-of-sample figures."""
    from runtime.backtest.walkforward import out_of_sample, walk_forward

    results = walk_forward(log, spec, points, metric, train, test, step, workers=workers, cluster=cluster)
    summary = out_of_sample(results)
    if as_json:
        rows = [{"train_from": r.window.train_from, "train_to": r.window.train_to, "test_to": r.window.test_to,
                 "best": r.best.params if r.best else None, "train_run": r.best.run_id if r.best else None,
                 "train_statistics": r.best.statistics if r.best else None,
                 "test_run": r.test.run_id if r.test else None,
                 "test_statistics": r.test.statistics if r.test else None} for r in results]
        sys.stdout.write(json.dumps(plain({"metric": metric, "windows": rows, "out_of_sample": summary}), indent=2,
                                    sort_keys=True) + "\n")
        return
    table = output.table("train from", "test from", "test to", "best", f"train {metric}", "test return",
                         "test sharpe", "test run", right=(f"train {metric}", "test return", "test sharpe"))
    for r in results:
        best = " ".join(f"{k}={r.best.params[k]}" for k in keys) if r.best else "-"
        ts = (r.test.statistics or {}) if r.test else {}
        table.add_row(format_ns(r.window.train_from), format_ns(r.window.train_to), format_ns(r.window.test_to), best,
                      metric_text((r.best.statistics or {}).get(metric), metric) if r.best else "-",
                      output.pct(ts.get("total_return")), output.ratio(ts.get("sharpe")),
                      r.test.run_id if r.test else "")
    output.console().print(table)
    output.console().print(f"out of sample: {summary['tested']} of {summary['windows']} windows tested; their "
                           f"returns chained {output.pct(summary['return'], sign=True)}, mean Sharpe "
                           f"{output.ratio(summary['mean_sharpe'])}")


def heatmap_axes(grid: Grid, given: Optional[str]) -> list[str]:
    """The heatmap's parameters: --heatmap X,Y (each an axis of the grid), else the first two axes that vary (one
    when only one does, none when none does)."""
    names = [k for k, _ in grid.axes]
    if given is None:
        return [k for k, values in grid.axes if len(values) > 1][:2]
    picked = [k.strip() for k in given.split(",")]
    if len(picked) != 2 or picked[0] == picked[1] or not all(k in names for k in picked):
        raise TapeError(f"--heatmap {given!r}: name two different parameters of the grid ({', '.join(names)}), "
                        "e.g. --heatmap " + ",".join(names[:2] if len(names) > 1 else names * 2))
    return picked


def _print(results: list[PointResult], metric: str, keys: list[str]) -> None:
    table = output.table(*keys, metric, "return", "max dd", "trips", "run", "",
                         right=(*keys, metric, "return", "max dd", "trips"))
    for r in results:
        s = r.statistics or {}
        shown = metric_text(s.get(metric), metric)
        table.add_row(*(r.params[k] for k in keys), shown, output.pct(s.get("total_return")),
                      output.pct(s.get("max_drawdown")), f"{s['round_trips']:,}" if s else "-", r.run_id,
                      r.status if r.status != "failed" else f"failed: {r.why}")
    output.console().print(table)
    ran = sum(r.status == "ran" for r in results)
    reused = sum(r.status == "reused" for r in results)
    failed = len(results) - ran - reused
    output.console().print(f"{len(results)} points: {ran} run, {reused} read back from runs made before"
                           + (f", {failed} failed" if failed else ""))
