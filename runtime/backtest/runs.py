"""Backtest runs in the store: list them, report them, rebuild their state by replaying their log."""
from __future__ import annotations

import decimal
import json
from typing import Any

from eventstore.store import Log
from handlers.venues.sim.config import parse_venue_config
from projections.performance import EquityCurve, RoundTrips, statistics
from projections.state import State
from runtime.backtest.runner import BacktestResult, report_currency
from runtime.replay.merge import merged
from schemas.decimals import ARITHMETIC
from schemas.errors import TapeError


def _run_header(log: Log, run: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    started = stopped = None
    for e in log.replay(run, types=["RunStarted", "RunStopped"]):
        if e.name == "RunStarted" and started is None:
            started = e.data
        elif e.name == "RunStopped":
            stopped = e.data
    if started is None:
        raise TapeError(f"{run} is not a run (no RunStarted event): `tape runs list` shows the runs")
    return started, stopped


def list_runs(log: Log) -> list[dict[str, Any]]:
    """Every namespace that starts with a RunStarted event, oldest name first."""
    out = []
    for ns in log.namespaces():
        if not ns.startswith("bt-") and not ns.startswith("live-"):
            continue
        try:
            started, stopped = _run_header(log, ns)
        except TapeError:
            continue
        out.append({"run_id": ns, "strategy": started["strategy"], "params": dict(started["params"]),
                    "source": started.get("source_namespace"), "from_ts": started.get("source_from_ts"),
                    "to_ts": started.get("source_to_ts"), "events": stopped["events"] if stopped else 0})
    return out


def _trips_json(trips: RoundTrips) -> list[dict[str, Any]]:
    return [t.as_dict() for t in trips.trips]


def run_report(result: BacktestResult, started: dict[str, Any] | None = None) -> dict[str, Any]:
    """What `tape backtest` prints (and `--json` emits): statistics and round trips."""
    pf = result.state.portfolio
    started = started or result.started
    report = {
        "run_id": result.run_id,
        "source": started["source_namespace"] if started else None,
        "strategy": started["strategy"] if started else None,
        "params": dict(started["params"]) if started else {},
        "currency": result.currency,
        "statistics": result.statistics,
        "round_trips": _trips_json(result.trips),
        "positions": {iid: {"quantity": p.quantity, "avg_price": p.avg_price, "realized_pnl": p.realized_pnl}
                      for iid, p in sorted(pf.positions.items())},
        "balances": dict(sorted(pf.balances.items())),
        "events_in": result.events_in,
        "events_out": result.events_out,
    }
    return report


def rebuild_run(log: Log, run: str) -> dict[str, Any]:
    """Fold the run's log (with the source's market events for marks) back into state and statistics."""
    started, stopped = _run_header(log, run)
    state = State()
    curve = EquityCurve()
    trips = RoundTrips()
    source = started["source_namespace"]
    with decimal.localcontext(ARITHMETIC):
        for e in log.replay(source, types=["InstrumentDefined"], to_ts=started.get("source_to_ts")):
            state.apply("InstrumentDefined", e.data, e.ts_event)
        currency = report_currency(state, parse_venue_config(json.loads(started["config"]).get("venue", {})))
        n = 0
        for kind, e in merged(log, run, started):
            if kind == "sample":
                curve.add(e.ts_event, state.portfolio.equity(currency), state.portfolio.in_market())
                continue
            state.apply(e.name, e.data, e.ts_event)
            if kind == "source":
                n += 1
            elif e.name == "OrderFilled":
                trips.apply(e.name, e.data, e.ts_event)
    result = BacktestResult(run, run, state, curve, trips, statistics(curve, trips), n,
                            stopped["events"] if stopped else 0, currency, started)
    return run_report(result, started)
