"""Backtest runs in the store: list them, report them, rebuild their state by replaying their log."""
from __future__ import annotations

import decimal
import json
from typing import Any, Iterator, Protocol

from eventstore.replay import Event
from eventstore.store import Log
from handlers.venues.sim.config import parse_venue_config
from projections.interventions import Interventions
from projections.performance import (
    Annualisation,
    BuyAndHold,
    EquityCurve,
    RoundTrips,
    drawdowns,
    instrument_statistics,
    statistics,
)
from projections.state import State
from runtime.backtest.runner import COMPLETE, FAILED, INTERRUPTED, BacktestResult, applied_venue, report_currency
from runtime.replay.columns import source_events
from runtime.replay.merge import merged
from runtime.times import format_ns
from schemas.decimals import ARITHMETIC
from schemas.errors import TapeError
from schemas.names import PRICES


class NotARun(TapeError):
    """A namespace without RunStarted."""


def _run_header(log: Log, run: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    started = stopped = None
    for e in log.replay(run, types=["RunStarted", "RunStopped"]):
        if e.name == "RunStarted" and started is None:
            started = e.data
        elif e.name == "RunStopped":
            stopped = e.data
    if started is None:
        raise NotARun(f"{run} is not a run (no RunStarted event): `tape runs list` shows the runs")
    return started, stopped


def run_status(stopped: dict[str, Any] | None) -> tuple[str, str]:
    """(complete | interrupted | failed, why) from a run's RunStopped (none: killed, or still running)."""
    if stopped is None:
        return "interrupted", "no RunStopped: killed, crashed, or still running"
    reason = stopped.get("reason") or ""
    if reason == COMPLETE:
        return "complete", ""
    if reason.startswith(FAILED):
        return "failed", reason[len(FAILED):].lstrip(": ")
    if reason == INTERRUPTED:
        return "interrupted", "Ctrl-C"
    return "complete", reason  # a live or paper session that stopped: what it did is whole


def list_runs(log: Log) -> list[dict[str, Any]]:
    """Every namespace that starts with a RunStarted event, oldest name first."""
    out = []
    for ns in log.namespaces():
        if not ns.startswith("bt-") and not ns.startswith("live-"):
            continue
        try:
            started, stopped = _run_header(log, ns)
        except NotARun:
            if ns.startswith("bt-") and log.horizon(ns) == 0:  # killed before its first commit
                out.append({"run_id": ns, "strategy": "", "params": {}, "source": None, "from_ts": None, "to_ts": None,
                            "events": 0, "status": "interrupted", "why": "nothing committed: killed as it began"})
            continue
        out.append({"run_id": ns, "strategy": started["strategy"], "params": dict(started["params"]),
                    "source": started.get("source_namespace"), "from_ts": started.get("source_from_ts"),
                    "to_ts": started.get("source_to_ts"), "events": stopped["events"] if stopped else 0,
                    "status": run_status(stopped)[0], "why": run_status(stopped)[1]})
    return out


def _trips_json(trips: RoundTrips) -> list[dict[str, Any]]:
    return [t.as_dict() for t in trips.trips]


def _positions(result: BacktestResult) -> dict[str, Any]:
    """Every position the run held, the open ones with their mark and open PnL at the end."""
    pf = result.state.portfolio
    out = {}
    for iid, p in sorted(pf.positions.items()):
        mark = pf.mark(iid) if p.quantity else None
        out[iid] = {"quantity": p.quantity, "avg_price": p.avg_price, "realized_pnl": p.realized_pnl,
                    "currency": p.currency, "mark": mark,
                    "unrealized_pnl": p.unrealized_pnl(mark) if mark is not None else None}
    return out


def _venue(result: BacktestResult, config: dict[str, Any]) -> dict[str, Any]:
    """The simulated venue's settings the run had (applied_venue, from its opening account)."""
    return applied_venue(parse_venue_config(config, "RunStarted.config venue"), result.state.market.instruments,
                         result.opening_balances)


def _equity_curve(curve: EquityCurve) -> list[dict[str, Any]]:
    """The curve as rows to plot: time (ISO-8601 and ns), equity, drawdown from the peak before it (a fraction)."""
    return [{"time": format_ns(ts), "ts": ts, "equity": equity, "drawdown": dd}
            for (ts, equity), dd in zip(curve.samples, drawdowns(curve.samples), strict=True)]


def run_report(result: BacktestResult, started: dict[str, Any] | None = None, *, curve: bool = False,
               rejections: bool = False) -> dict[str, Any]:
    """What `tape backtest` prints (and `--json` emits): statistics, the buy-and-hold benchmark, halts and
    rejections, the venue settings that applied, round trips and positions; the equity curve (`curve`) and every
    rejection (`rejections`, from an Interventions fold that kept them) when asked."""
    pf = result.state.portfolio
    started = started or result.started
    stats = result.statistics
    config = json.loads(started["config"]) if started else {}
    report = {
        "run_id": result.run_id,
        "source": started["source_namespace"] if started else None,
        "source_to_seq": started.get("source_to_seq") if started else None,
        "strategy": started["strategy"] if started else None,
        "params": dict(started["params"]) if started else {},
        "currency": result.currency,
        "statistics": stats,
        "benchmark": result.benchmark.report(result.state.market.last_price, max(0, stats["samples"] - 1),
                                             stats["periods_per_year"]),
        "interventions": result.interventions.summary(stats["start_ts"], stats["end_ts"]),
        "venue": _venue(result, config.get("venue", {})) if started and started["source_namespace"] else None,
        "round_trips": _trips_json(result.trips),
        "instruments": instrument_statistics(result.trips),
        "positions": _positions(result),
        "balances": dict(sorted(pf.balances.items())),
        "events_in": result.events_in,
        "events_out": result.events_out,
    }
    if curve:
        report["equity_curve"] = _equity_curve(result.curve)
    if rejections:
        report["rejected"] = result.interventions.rows()
    return report


class IncompleteRun(TapeError):
    """A run that did not read its whole slice: it has no statistics to show."""


class Observer(Protocol):
    """What a report collects while a run is folded: called after each processed event with the state it left."""

    def __call__(self, kind: str, event: Event, state: State) -> None: ...


def fold_run(log: Log, run: str, *, rejections: bool = False, observer: Observer | None = None) -> BacktestResult:
    """Fold a run's log back into state and statistics, as it ran: a backtest with its source's market events
    (marks, up to its horizon) merged in processing order; a live or paper namespace from its own recorded inputs,
    up to now. An incomplete backtest is refused with its status (its statistics would describe a slice it never
    finished); `observer` sees every processed event (kind run / source / sample) with the state after it."""
    started, stopped = _run_header(log, run)
    status, why = run_status(stopped)
    live = started["source_namespace"] is None
    if status != "complete" and not live:
        raise IncompleteRun(f"run {run} is {status}{' (' + why + ')' if why else ''}: it has no statistics; run the "
                            "same command again to replace it, or `tape runs rm " + run + "`")
    state = State()
    equity = EquityCurve()
    trips = RoundTrips()
    interventions = Interventions(keep=rejections)
    benchmark = BuyAndHold()
    opening: dict[str, Any] | None = None
    config = json.loads(started["config"])
    annualisation = Annualisation.parse(config.get("statistics", {}), f"{run} RunStarted.config statistics")
    venue = parse_venue_config(config.get("venue", {}) if not live else {})
    currency = None
    with decimal.localcontext(ARITHMETIC):
        if live:
            processed = _recorded(log, run)
        else:
            definitions, market = source_events(log, started)
            for _seq, ts, name, data in definitions:
                state.apply(name, data, ts)
            currency = report_currency(state, venue)
            processed = merged(log, run, started, market=market)
        n = 0
        for kind, e in processed:
            if kind == "sample":
                if currency is None:
                    currency = report_currency(state, venue)
                equity.add(e.ts_event, state.portfolio.equity(currency), state.portfolio.in_market())
                benchmark.observe(state.market.last_price, e.ts_event)
            else:
                state.apply(e.name, e.data, e.ts_event)
                if kind == "source":
                    n += 1
                elif e.name == "OrderFilled":
                    trips.apply(e.name, e.data, e.ts_event)
                elif e.name in Interventions.EVENTS:
                    interventions.apply(e.name, e.data, e.ts_event)
                elif e.name == "AccountState" and opening is None:
                    opening = dict(state.portfolio.balances)
            if observer is not None:
                observer(kind, e, state)
    if currency is None:
        currency = report_currency(state, venue)
    stats = statistics(equity, trips, periods_per_year=annualisation.periods_per_year,
                       risk_free_rate=annualisation.risk_free_rate)
    return BacktestResult(run, run, state, equity, trips, stats, n, log.horizon(run) if live else stopped["events"],
                          currency, started, interventions, benchmark, opening or {})


def _recorded(log: Log, run: str) -> Iterator[tuple[str, Event]]:
    """A live or paper namespace as it was processed: its recorded market events are the inputs (each followed by
    an equity sample), everything else the session's own."""
    for e in log.replay(run):
        if e.name in PRICES:
            yield "source", e
            yield "sample", e
        else:
            yield "run", e


def rebuild_run(log: Log, run: str, *, curve: bool = False, rejections: bool = False) -> dict[str, Any]:
    """The report run_report makes of the run as it ran, rebuilt by fold_run."""
    result = fold_run(log, run, rejections=rejections)
    return run_report(result, result.started, curve=curve, rejections=rejections)


def run_state(log: Log, run: str) -> tuple[str, str]:
    """(status, why) of a run in the store (run_status of its RunStopped); a run namespace killed before it
    committed its RunStarted is interrupted too."""
    try:
        _, stopped = _run_header(log, run)
    except NotARun:
        if log.horizon(run) == 0:
            return "interrupted", "nothing committed: killed as it began"
        raise
    return run_status(stopped)


def remove_run(log: Log, run: str, db: Any = None) -> None:
    """Delete a run's namespace and, given a read-model database engine, its rows there (refused for a namespace
    that is not a run, and — on a file store — for one someone is writing)."""
    if run not in log.namespaces():
        raise TapeError(f"no run {run!r} in {log.url}: `tape runs list` shows the runs")
    run_state(log, run)  # a namespace that is not a run is not removed by `runs rm`
    log.delete(run)
    if db is not None:
        from projections.sql.projector import Projector

        Projector(db, run).rebuild()
