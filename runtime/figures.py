"""A run's figures as people read them — money, percentages, ratios, durations and the summary rows — the same
text in the terminal (`tape backtest`, `tape runs show`) and in the HTML report (`tape report`)."""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from projections.performance import YEAR_NS
from runtime.times import human_ns
from schemas.decimals import exact_text


def money(value: Decimal | None, currency: str = "", sign: bool = False) -> str:
    """Money to 2 places, grouped (the exact amount is in --json)."""
    if value is None:
        return "-"
    text = f"{value.quantize(Decimal('0.01')):{'+' if sign else ''},.2f}"
    return f"{text} {currency}" if currency else text


def pct(value: float | None, sign: bool = False) -> str:
    """A fraction as a percentage to 2 places, fixed notation."""
    return "-" if value is None else f"{value * 100:{'+' if sign else ''},.2f} %"


def ratio(value: float | None) -> str:
    """A ratio to 2 places, fixed notation."""
    return "-" if value is None else f"{value:,.2f}"


def count(value: float | None) -> str:
    """A count that may be fractional: 525,600 or 251.9."""
    if value is None:
        return "-"
    return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"


def plain_number(value: Decimal | None) -> str:
    """A price or quantity as the data has it: exact, digits grouped, never in exponent form."""
    return "-" if value is None else f"{Decimal(exact_text(value)):,f}"


def duration(ns: int | None) -> str:
    """A duration in days and hours, with years when it spans more than one."""
    if ns is None:
        return "-"
    text = human_ns(ns)
    return f"{text}, {ns / YEAR_NS:.2f} years" if ns > YEAR_NS else text


def fees(stats: dict[str, Any]) -> str:
    """The fees paid, per currency."""
    by = stats["fees_by_currency"]
    if not by:
        return money(Decimal(0))
    return ", ".join(money(amount, cur) for cur, amount in sorted(by.items()))


def params_text(params: dict[str, Any]) -> str:
    """KEY=VALUE of the parameters that have a value (an empty default says nothing)."""
    return " ".join(f"{k}={v}" for k, v in sorted(params.items()) if v != "")


def metric_text(value: Any, metric: str) -> str:
    """A sweep metric's value: a percentage for the fractions (returns, drawdown, win rate), else a ratio."""
    from runtime.backtest.sweep import FRACTIONS

    if value is None:
        return "-"
    return pct(float(value)) if metric in FRACTIONS else ratio(float(value))


def summary_rows(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(figure, value, what it is measured against or over) rows of a run's summary table (runs.run_report)."""
    stats, cur, bench = report["statistics"], report["currency"], report["benchmark"]
    rows = [("start equity", money(stats["start_equity"], cur), ""),
            ("end equity", money(stats["end_equity"], cur), ""),
            ("total return", pct(stats["total_return"], sign=True), "")]
    instruments = bench["instruments"]
    for iid, b in instruments.items():
        rows.append(("buy and hold", pct(b["return"], sign=True),
                     f"{iid} {plain_number(b['first_price'])} → {plain_number(b['last_price'])}"))
    if len(instruments) > 1:
        rows.append(("buy and hold", pct(bench["return"], sign=True), "the instruments in equal weights"))
    dd = stats["max_drawdown"]
    rows += [("annualised return", pct(stats["annualized_return"], sign=True), ""),
             ("buy and hold annualised", pct(bench["annualized_return"], sign=True), ""),
             ("sharpe", ratio(stats["sharpe"]), "annualised"), ("sortino", ratio(stats["sortino"]), "annualised"),
             ("max drawdown", pct(dd), f"over {duration(stats['max_drawdown_duration_ns'])}"
                                       + ("" if stats["max_drawdown_recovered"] else ", not recovered") if dd else ""),
             ("exposure", pct(stats["exposure_time"]), "of samples with a position open"),
             ("round trips", f"{stats['round_trips']:,}", ""), ("win rate", pct(stats["win_rate"]), ""),
             ("profit factor", ratio(stats["profit_factor"]), ""),
             ("average win", money(stats["average_win"], cur), ""),
             ("average loss", money(stats["average_loss"], cur), ""),
             ("round trips pnl", money(stats["trips_pnl"], cur), "after their fees"),
             ("fees", fees(stats), ""), ("fills", f"{stats['fills']:,}", ""),
             ("traded notional", money(stats["traded_notional"], cur), ""),
             ("turnover", ratio(stats["turnover"]), "× average equity")]
    return rows
