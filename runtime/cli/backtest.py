"""`tape backtest` and `tape runs`: the research runtime from the command line."""
from __future__ import annotations

import json
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any, List, Optional

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from handlers.queue import QueueConfig
from handlers.risk.limits import RiskLimits
from handlers.venues.sim.config import VenueConfig
from runtime.backtest.runner import SNAPSHOT_EVERY, BacktestSpec, RunExists, RunInterrupted, run_backtest
from runtime.backtest.runs import list_runs, rebuild_run, remove_run, run_report, run_state
from runtime.cli import output
from runtime.cli.context import cli_context
from runtime.configfiles import risk_file, venue_file
from runtime.times import human_ns
from schemas.decimals import exact_text, plain
from schemas.errors import TapeError

runs_app = typer.Typer(no_args_is_help=True, help="Backtest runs recorded in the store.")


def backtest(
    ctx: typer.Context,
    source: str = typer.Option(..., "--source", metavar="NS", help="Namespace holding the market history."),
    strategy: str = typer.Option(..., "--strategy", metavar="NAME", help="Built-in name or module:Class."),
    param: Optional[List[str]] = typer.Option(None, "--param", metavar="K=V", help="Strategy parameter (repeatable)."),
    from_: Optional[str] = typer.Option(None, "--from", metavar="TIME", help="Start of the slice (inclusive)."),
    to: Optional[str] = typer.Option(None, "--to", metavar="TIME", help="End of the slice (exclusive)."),
    risk: Optional[Path] = typer.Option(None, "--risk", metavar="FILE", help="Risk limits, and the outbound queue's [queue] table (TOML or JSON)."),
    venue: Optional[Path] = typer.Option(None, "--venue", metavar="FILE", help="Simulated venue (TOML or JSON)."),
    run_id: Optional[str] = typer.Option(None, "--run-id", metavar="NAME", help="Run namespace (default: bt-<hash of inputs>)."),
    snapshot_every: int = typer.Option(SNAPSHOT_EVERY, "--snapshot-every", min=0, metavar="N",
                                       help="Write a state snapshot every N events folded (0: none)."),
    as_json: bool = typer.Option(False, "--json", help="Statistics and round trips as JSON."),
    force: bool = typer.Option(False, "--force", help="Run again even when a complete run of the same inputs exists "
                                                     "(it is replaced)."),
) -> None:
    """Replay a slice of history through a strategy, the risk engine and the simulated venue.

    The run's id is the content address of its inputs (the source's content up to its last seq now, the slice,
    strategy, parameters, configs and code): the same command over the same data finds the run it made before and
    shows its stored result; an interrupted or failed one is replaced."""
    limits, queue = risk_file(risk) if risk is not None else (RiskLimits(), QueueConfig())
    spec = BacktestSpec(source=source, strategy=strategy, params=output.params_option(param or []),
                        from_ts=output.time_option(from_, "--from"), to_ts=output.time_option(to, "--to"),
                        risk=limits, queue=queue, venue=venue_file(venue) if venue is not None else VenueConfig(),
                        snapshot_every=snapshot_every)
    log = cli_context(ctx).open()
    console = output.console(stderr=True)
    report = None
    for _ in range(2):
        try:
            with Progress(TextColumn("[bold]backtest"), BarColumn(), TextColumn("{task.completed:,} events"),
                          TimeElapsedColumn(), console=console, transient=True,
                          disable=not sys.stderr.isatty()) as bar:
                task = bar.add_task("replay", total=None)
                result = run_backtest(log, spec, run_id=run_id,
                                      progress=lambda n, ts, t=task: bar.update(t, completed=n))
            report = run_report(result)
            break
        except RunExists as e:
            status, why = run_state(log, e.run_id)
            if status == "complete" and not force:
                if run_id is not None:
                    raise
                _note(f"run {e.run_id} ran before with these inputs (its id is their content address): its stored "
                      "result follows; --force runs it again")
                report = rebuild_run(log, e.run_id)
                break
            _note(f"replacing run {e.run_id} ({status}{': ' + why if why else ''})")
            remove_run(log, e.run_id, _read_models(ctx, None))
        except RunInterrupted as e:
            _note(str(e))
            raise typer.Exit(130) from None
    assert report is not None
    if as_json:
        sys.stdout.write(json.dumps(plain(report), indent=2, sort_keys=True) + "\n")
        return
    _print_report(report)


def _print_report(report: dict[str, Any]) -> None:
    console = output.console()
    console.print(f"run [bold]{report['run_id']}[/bold]  source {report['source']}  strategy {report['strategy']} "
                  f"{' '.join(f'{k}={v}' for k, v in sorted(report['params'].items()))}")
    table = output.table("statistic", "value", right=("value",))
    for key, value in report["statistics"].items():
        if key.endswith("_ns") and isinstance(value, int):  # durations read as durations; --json keeps the ns
            table.add_row(key[:-3], human_ns(value))
        else:
            table.add_row(key, _fmt(value))
    console.print(table)
    console.print(f"{len(report['round_trips'])} round trips; events in {report['events_in']:,}, "
                  f"events written {report['events_out']:,}")


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, Decimal):
        shown = value.quantize(Decimal("0.00000001")) if value.as_tuple().exponent < -8 else value
        return exact_text(shown)
    if isinstance(value, dict):
        return ", ".join(f"{k} {_fmt(v)}" for k, v in sorted(value.items()))
    return str(value)


def _note(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _read_models(ctx: typer.Context, db: Optional[str]) -> Any:
    """The read-model database to delete a run's rows from: --db / TAPE_DB, else the store's default SQLite file
    when it exists (None: no database holds rows of the store)."""
    from pathlib import Path as _Path

    from projections.sql.db import make_engine

    try:
        url = cli_context(ctx).db_url(db)
    except TapeError:
        return None
    if db is None and url.startswith("sqlite:///") and not _Path(url[len("sqlite:///"):]).exists():
        return None
    return make_engine(url)


@runs_app.command("list")
def runs_list(ctx: typer.Context) -> None:
    """Backtest runs: id, status, strategy, parameters, source slice, events."""
    log = cli_context(ctx).open()
    table = output.table("run", "status", "strategy", "params", "source", "from", "to", "events", right=("events",))
    for r in list_runs(log):
        status = r["status"] if r["status"] != "failed" else f"failed: {r['why']}"
        table.add_row(r["run_id"], status, r["strategy"], " ".join(f"{k}={v}" for k, v in sorted(r["params"].items())),
                      r["source"] or "", output.time_cell(r["from_ts"]), output.time_cell(r["to_ts"]), str(r["events"]))
    output.console().print(table)


@runs_app.command("rm")
def runs_rm(ctx: typer.Context, runs: List[str] = typer.Argument(..., metavar="RUN..."),
            db: Optional[str] = typer.Option(None, "--db", envvar="TAPE_DB", metavar="URL",
                                             help="Read-model database to delete the runs' rows from (default: the "
                                                  "store's tape.sqlite when it exists).")) -> None:
    """Delete runs: their namespaces and their rows in the read models."""
    log = cli_context(ctx).open()
    engine = _read_models(ctx, db)
    try:
        for run in runs:
            remove_run(log, run, engine)
            sys.stdout.write(f"removed {run}\n")
    finally:
        if engine is not None:
            engine.dispose()


@runs_app.command("show")
def runs_show(ctx: typer.Context, run: str = typer.Argument(..., metavar="RUN"),
              as_json: bool = typer.Option(False, "--json", help="Statistics and round trips as JSON.")) -> None:
    """A run's parameters and statistics, rebuilt by replaying its log (and the source marks, up to the source's
    seq the run read)."""
    report = rebuild_run(cli_context(ctx).open(), run)
    if as_json:
        sys.stdout.write(json.dumps(plain(report), indent=2, sort_keys=True) + "\n")
        return
    _print_report(report)
