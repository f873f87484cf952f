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
from handlers.strategy import load_strategy, parse_params
from handlers.venues.sim.config import VenueConfig
from projections.performance import Annualisation
from runtime import figures
from runtime.backtest.runner import SNAPSHOT_EVERY, BacktestSpec, RunExists, RunInterrupted, run_backtest
from runtime.backtest.runs import list_runs, rebuild_run, remove_run, run_report, run_state
from runtime.cli import output
from runtime.cli.context import cli_context
from runtime.configfiles import risk_file, venue_file
from runtime.ingest.merge import merged_from, one_source
from runtime.times import format_ns, human_ns
from schemas.decimals import exact_text, plain
from schemas.errors import TapeError

runs_app = typer.Typer(no_args_is_help=True, help="Backtest runs recorded in the store.")


def backtest(
    ctx: typer.Context,
    source: List[str] = typer.Option(..., "--source", metavar="NS",
                                     help="Namespace holding the market history (repeatable: several are merged by "
                                          "event time into one derived source namespace)."),
    strategy: str = typer.Option(..., "--strategy", metavar="NAME", help="Built-in name or module:Class."),
    param: Optional[List[str]] = typer.Option(None, "--param", metavar="K=V", help="Strategy parameter (repeatable)."),
    from_: Optional[str] = typer.Option(None, "--from", metavar="TIME", help="Start of the slice (inclusive)."),
    to: Optional[str] = typer.Option(None, "--to", metavar="TIME", help="End of the slice (exclusive)."),
    risk: Optional[Path] = typer.Option(None, "--risk", metavar="FILE",
                                        help="Risk limits, and the outbound queue's [queue] table (TOML or JSON)."),
    venue: Optional[Path] = typer.Option(None, "--venue", metavar="FILE", help="Simulated venue (TOML or JSON)."),
    run_id: Optional[str] = typer.Option(None, "--run-id", metavar="NAME",
                                         help="Run namespace (default: bt-<hash of inputs>)."),
    snapshot_every: int = typer.Option(SNAPSHOT_EVERY, "--snapshot-every", min=0, metavar="N",
                                       help="Write a state snapshot every N events folded (0: none)."),
    periods_per_year: Optional[str] = typer.Option(
        None, "--periods-per-year", metavar="N", help="Annualise returns, Sharpe and Sortino with N periods (samples) "
        "a year, e.g. 252 for daily bars of an exchange (default: inferred from the data's calendar; recorded)."),
    risk_free_rate: Optional[str] = typer.Option(
        None, "--risk-free-rate", metavar="R", help="Annual risk-free rate Sharpe and Sortino are in excess of, as a "
        "fraction: 0.04 for 4 % (default 0; recorded)."),
    as_json: bool = typer.Option(False, "--json", help="Statistics, round trips and the equity curve as JSON."),
    force: bool = typer.Option(False, "--force", help="Run again even when a complete run of the same inputs exists "
                                                     "(it is replaced)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Decode the source from the log instead of its columns "
                                  "file (a derived copy, built on first use, that makes later runs faster; the run is "
                                  "the same byte for byte)."),
) -> None:
    """Replay a slice of history through a strategy, the risk engine and the simulated venue.

    The run's id is the content address of its inputs (the source's content up to its last seq now, the slice,
    strategy, parameters, configs and code): the same command over the same data finds the run it made before and
    shows its stored result; an interrupted or failed one is replaced."""
    limits, queue = risk_file(risk) if risk is not None else (RiskLimits(), QueueConfig())
    given = {k: v for k, v in (("periods_per_year", periods_per_year), ("risk_free_rate", risk_free_rate)) if v}
    annualisation = Annualisation.parse(given, "--periods-per-year / --risk-free-rate")
    params = output.params_option(param or [])
    parse_params(load_strategy(strategy), params)  # refused before anything is written (a merge of the sources)
    log = cli_context(ctx).open()
    spec = BacktestSpec(source=one_source(log, source, note=_note), strategy=strategy, params=params,
                        from_ts=output.time_option(from_, "--from"), to_ts=output.time_option(to, "--to"),
                        risk=limits, queue=queue, venue=venue_file(venue) if venue is not None else VenueConfig(),
                        snapshot_every=snapshot_every, annualisation=annualisation)
    console = output.console(stderr=True)
    report = None
    for _ in range(2):
        try:
            with Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed:,} events"),
                          TimeElapsedColumn(), console=console, transient=True,
                          disable=not sys.stderr.isatty()) as bar:
                task = bar.add_task("backtest", total=None)
                result = run_backtest(log, spec, run_id=run_id, cache=not no_cache,
                                      progress=lambda n, ts, t=task: bar.update(t, completed=n, description="backtest"),
                                      build_progress=lambda n, t=task: bar.update(
                                          t, completed=n, description="source columns"))
            report = run_report(result, curve=as_json)
            break
        except RunExists as e:
            status, why = run_state(log, e.run_id)
            if status == "complete" and not force:
                if run_id is not None:
                    raise
                _note(f"run {e.run_id} ran before with these inputs (its id is their content address): its stored "
                      "result follows; --force runs it again")
                report = rebuild_run(log, e.run_id, curve=as_json)
                break
            _note(f"replacing run {e.run_id} ({status}{': ' + why if why else ''})")
            remove_run(log, e.run_id, _read_models(ctx, None))
        except RunInterrupted as e:
            _note(str(e))
            raise typer.Exit(130) from None
    assert report is not None
    _name_merged(log, report)
    if as_json:
        sys.stdout.write(json.dumps(plain(report), indent=2, sort_keys=True) + "\n")
        return
    _print_report(report)


def _name_merged(log: Any, report: dict[str, Any]) -> None:
    """A run over merged sources names them: `merged_from` (each source and the seq it was read up to)."""
    sources = merged_from(log, report["source"]) if report.get("source") else None
    if sources is not None:
        report["merged_from"] = sources


def _print_report(report: dict[str, Any]) -> None:
    """The run as a trader reads it: what ran, over which period, with which venue settings and annualisation,
    the figures next to buy-and-hold, the position left open, halts, rejections and warnings."""
    console = output.console()
    stats, cur = report["statistics"], report["currency"]
    console.print(f"run [bold]{report['run_id']}[/bold]  source {report['source']}  strategy {report['strategy']} "
                  f"{figures.params_text(report['params'])}")
    if report.get("merged_from"):
        console.print("merged from " + ", ".join(f"{s['namespace']} (up to seq {s['to_seq']:,})"
                                                 for s in report["merged_from"]))
    if stats["samples"]:
        console.print(f"period  {format_ns(stats['start_ts'])} → {format_ns(stats['end_ts'])}  "
                      f"({figures.duration(stats['duration_ns'])}; {stats['samples']:,} samples)")
    for i, line in enumerate(_venue_lines(report["venue"]) if report["venue"] else []):
        console.print(f"{'venue' if i == 0 else '':8}{line}")
    basis = stats["periods_per_year_basis"]
    console.print(f"annualised with {figures.count(stats['periods_per_year'])} periods a year, "
                  f"{'given (--periods-per-year, recorded in the run)' if basis == 'given' else basis}; "
                  f"risk-free rate {output.pct(stats['risk_free_rate'])}")
    table = output.table("figure", "value", "", right=("value",))
    for label, value, detail in figures.summary_rows(report):
        table.add_row(label, value, detail)
    console.print(table)
    if len(report["instruments"]) > 1:  # what each instrument's own trips made, next to the totals above
        per = output.table("instrument", "round trips", "win rate", "profit factor", "trips pnl", "fees", "fills",
                           right=("round trips", "win rate", "profit factor", "trips pnl", "fees", "fills"))
        for iid, s in report["instruments"].items():
            per.add_row(iid, f"{s['round_trips']:,}", output.pct(s["win_rate"]), output.ratio(s["profit_factor"]),
                        output.money(s["trips_pnl"], s["currency"], sign=True), output.money(s["fees"], s["currency"]),
                        f"{s['fills']:,}")
        console.print(per)
    for line in _position_lines(report["positions"], cur):
        console.print(line)
    for line in _intervention_lines(report["interventions"]):
        console.print(line)
    console.print(f"{len(report['round_trips'])} round trips; events in {report['events_in']:,}, "
                  f"events written {report['events_out']:,}")


def _venue_lines(v: dict[str, Any]) -> list[str]:
    """The venue settings that applied, each default marked as such."""
    d = set(v["defaults"])

    def tag(key: str) -> str:
        return " (default)" if key in d else ""

    balances = ", ".join(output.money(a, c) for c, a in v["starting_balances"].items()) or "none"
    rates = {(r["maker"], r["taker"]) for r in v["fee_rates"].values()}
    if len(rates) == 1:
        maker, taker = next(iter(rates))
        fees = f"maker {_rate(maker)} / taker {_rate(taker)}"
    else:
        fees = "; ".join(f"{iid} maker {_rate(r['maker'])} / taker {_rate(r['taker'])}"
                         for iid, r in v["fee_rates"].items()) or "none"
    cap = v["volume_participation"]
    cap_text = "none" if cap in (None, "unlimited") else f"{_rate(cap)} of each event's volume"
    fill = {"next_open": "at the next event's first price", "same_close": "at the last price seen"}.get(
        v["market_fill"], v["market_fill"])
    leverage = ("" if v["account_type"] == "cash"
                else f", leverage {figures.plain_number(v['leverage'])}{tag('leverage')}")
    return [f"{v['name']}, {v['account_type']} account{tag('account_type')}{leverage}; "
            f"starting balance {balances}{tag('starting_balances')}",
            f"fees {fees} (from the {v['fee_rates_from']}); volume cap {cap_text}{tag('volume_participation')}",
            f"market orders fill {fill}{tag('market_fill')}; latency {human_ns(v['latency_ns'])}{tag('latency_ns')}"]


def _position_lines(positions: dict[str, Any], currency: str) -> list[str]:
    """The positions left open at the end, each with its mark and open PnL."""
    open_ = {iid: p for iid, p in positions.items() if p["quantity"]}
    if not open_:
        return ["open at the end: none (flat)"]
    lines = []
    for iid, p in open_.items():
        q = p["quantity"]
        lines.append(f"open at the end: {iid} {'long' if q > 0 else 'short'} {figures.plain_number(abs(q))} at "
                     f"{_price(p['avg_price'], p['mark'])}, mark {figures.plain_number(p['mark'])}, open PnL "
                     f"{output.money(p['unrealized_pnl'], p['currency'], sign=True)}")
    return lines


def _intervention_lines(iv: dict[str, Any]) -> list[str]:
    """Halts (when, why, for how long), rejections by who and rule (counts), and the warnings."""
    lines = []
    if not iv["halts"]:
        lines.append("halts: none")
    for h in iv["halts"]:
        until = f"until {format_ns(h['to_ts'])} ({h['ended_by']})" if h["to_ts"] is not None else "to the end"
        lines.append(f"halt: {h['state']} at {format_ns(h['from_ts'])} for {figures.duration(h['duration_ns'])}, "
                     f"{until}: {h['reason']}")
    if iv["halts"] and iv["halted_share"] is not None:
        lines.append(f"       trading not ACTIVE for {output.pct(iv['halted_share'])} of the run")
    intents = iv["order_intents"]
    if not iv["rejected"]:
        lines.append(f"rejections: none of {intents:,} order intents")
    else:
        lines.append(f"rejections: {iv['rejected']:,} of {intents:,} order intents "
                     f"({output.pct(iv['rejected_share'])})")
        for g in iv["rejections"]:
            limit = f" {g['limit']}" if g["limit"] else ""
            lines.append(f"  {g['count']:>9,}  {g['by']} {g['rule']}{limit}, {format_ns(g['first_ts'])} → "
                         f"{format_ns(g['last_ts'])}: e.g. {g['example']}")
    lines += [f"[bold yellow]warning:[/bold yellow] {w}" for w in iv["warnings"]]
    return lines


def _print_rejections(report: dict[str, Any]) -> None:
    """Every rejection of the run: time, instrument, who refused, rule and limit, reason."""
    console = output.console()
    console.print(f"run [bold]{report['run_id']}[/bold]  source {report['source']}  strategy {report['strategy']} "
                  f"{figures.params_text(report['params'])}")
    if report.get("merged_from"):
        console.print("merged from " + ", ".join(f"{s['namespace']} (up to seq {s['to_seq']:,})"
                                                 for s in report["merged_from"]))
    table = output.table("time", "instrument", "by", "rule", "limit", "reason")
    for r in report["rejected"]:
        table.add_row(format_ns(r["ts"]), r["instrument_id"], r["by"], r["rule"], r["limit"], r["reason"])
    console.print(table)
    iv = report["interventions"]
    console.print(f"{iv['rejected']:,} rejections of {iv['order_intents']:,} order intents")


def _rate(value: Decimal) -> str:
    """A rate (a fee, a share) as an exact percentage: 0.0005 → 0.05 %."""
    return f"{exact_text(value * 100)} %"


def _price(value: Decimal, like: Decimal | None) -> str:
    """An average price to the places of the price it is set against (at least 2)."""
    places = max(2, -(like.normalize().as_tuple().exponent) if like is not None else 2)  # type: ignore[operator]
    return f"{value.quantize(Decimal(1).scaleb(-places)):,.{places}f}"


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
        table.add_row(r["run_id"], status, r["strategy"], figures.params_text(r["params"]),
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
              rejections: bool = typer.Option(False, "--rejections", help="List every rejected order: time, "
                                              "instrument, who refused it, rule, reason."),
              as_json: bool = typer.Option(False, "--json", help="Statistics, round trips and the equity curve "
                                                                 "(and the rejections) as JSON.")) -> None:
    """A run's parameters and statistics, rebuilt by replaying its log (and the source marks, up to the source's
    seq the run read)."""
    log = cli_context(ctx).open()
    report = rebuild_run(log, run, curve=as_json, rejections=rejections)
    _name_merged(log, report)
    if as_json:
        sys.stdout.write(json.dumps(plain(report), indent=2, sort_keys=True) + "\n")
        return
    if rejections:
        _print_rejections(report)
        return
    _print_report(report)
