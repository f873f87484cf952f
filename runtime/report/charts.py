"""What a report shows, decided once for both renderers (html.py, png.py): each chart as lines, markers, shaded
bands and heatmaps of plain numbers, computed from a folded run (build.RunReport)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import pairwise
from typing import TYPE_CHECKING, Sequence

from runtime.backtest.sweep import FRACTIONS, LOWER_IS_BETTER, PointResult

if TYPE_CHECKING:
    from runtime.report.build import RunReport

POINTS = 5000  # points kept of a longer line: each bucket's first, lowest, highest and last (its shape survives)
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True, slots=True)
class Line:
    name: str
    ts: list[int]
    values: list[float]
    step: bool = False  # the value holds until the next point (a position)
    fill: bool = False  # shaded down to zero (the drawdown)
    total: int = 0  # points before thinning (0: none thinned)


@dataclass(frozen=True, slots=True)
class Markers:
    name: str
    ts: list[int]
    values: list[float]
    up: bool  # ▲ (buys) or ▼ (sells)
    text: list[str]
    entry: bool = False  # entries are drawn outlined, exits plain


@dataclass(frozen=True, slots=True)
class Band:
    """A span shaded on the time axis: a halt (trading not ACTIVE) or an open incident."""

    from_ts: int
    to_ts: int
    kind: str  # halt | incident
    label: str


@dataclass(frozen=True, slots=True)
class Chart:
    id: str
    title: str
    y_title: str
    lines: list[Line]
    markers: list[Markers] = field(default_factory=list)
    bands: list[Band] = field(default_factory=list)
    percent: bool = False  # values are fractions shown as percentages
    note: str = ""  # what the reader should know (points thinned, too few samples)


@dataclass(frozen=True, slots=True)
class Heatmap:
    id: str
    title: str
    rows: list[str]
    columns: list[str]
    values: list[list[float | None]]  # rows × columns
    note: str = ""
    percent: bool = True  # fractions shown as percentages (else ratios)
    low_is_good: bool = False  # green for low values (a drawdown)


def thinned(ts: Sequence[int], values: Sequence[float], limit: int = POINTS) -> tuple[list[int], list[float]]:
    """At most about `limit` points of a line: all of them when it has fewer, else per bucket its first, lowest,
    highest and last point in time order — every peak and trough a reader would look for stays drawn."""
    n = len(ts)
    if n <= limit:
        return list(ts), list(values)
    buckets = max(1, limit // 4)
    keep: list[int] = []
    for b in range(buckets):
        lo, hi = b * n // buckets, (b + 1) * n // buckets
        if lo >= hi:
            continue
        part = range(lo, hi)
        low = min(part, key=values.__getitem__)
        high = max(part, key=values.__getitem__)
        keep.extend(sorted({lo, low, high, hi - 1}))
    return [ts[i] for i in keep], [values[i] for i in keep]


def _line(name: str, ts: Sequence[int], values: Sequence[float], **kw: bool) -> Line:
    t, v = thinned(ts, values)
    return Line(name, t, v, total=len(ts) if len(t) < len(ts) else 0, **kw)


def drawdown_line(values: Sequence[float]) -> list[float]:
    """Below the running peak, as a negative fraction (0 at a new high): the underwater curve."""
    out, peak = [], -math.inf
    for v in values:
        peak = max(peak, v)
        out.append(v / peak - 1.0 if peak > 0 else 0.0)
    return out


def rolling_sharpe(values: Sequence[float], window: int, periods_per_year: float,
                   risk_free_rate: float = 0.0) -> list[float | None]:
    """The Sharpe ratio of the last `window` returns at each sample, annualised as the run's is (sample standard
    deviation, excess over the risk-free rate per period); None until the window is full or when flat."""
    per_period = (1.0 + risk_free_rate) ** (1.0 / periods_per_year) - 1.0 if risk_free_rate else 0.0
    rets = [0.0] + [b / a - 1.0 - per_period if a > 0 else 0.0 for a, b in pairwise(values)]
    out: list[float | None] = []
    s = s2 = 0.0
    scale = math.sqrt(periods_per_year)
    for i, r in enumerate(rets):
        s += r
        s2 += r * r
        if i >= window:
            old = rets[i - window]
            s -= old
            s2 -= old * old
        if i < window:
            out.append(None)
            continue
        mean = s / window
        var = (s2 - window * mean * mean) / (window - 1)
        out.append(mean / math.sqrt(var) * scale if var > 1e-18 else None)
    return out


def monthly_returns(ts: Sequence[int], values: Sequence[float]) -> dict[tuple[int, int], float]:
    """(year, month) → the equity's return over that calendar month in UTC, from the last sample before it (the
    first sample for the first month) to its own last sample."""
    out: dict[tuple[int, int], float] = {}
    base = values[0] if values else 0.0
    month: tuple[int, int] | None = None
    last = base
    for t, v in zip(ts, values):
        d = datetime.fromtimestamp(t / 1e9, tz=timezone.utc)
        key = (d.year, d.month)
        if key != month:
            if month is not None:
                out[month] = last / base - 1.0 if base > 0 else 0.0
                base = last
            month = key
        last = v
    if month is not None:
        out[month] = last / base - 1.0 if base > 0 else 0.0
    return out


def run_charts(r: RunReport) -> list[Chart | Heatmap]:
    """Every chart of one run's report, in reading order."""
    ts, equity = r.curve_ts, r.curve_equity
    bands = [Band(h["from_ts"], h["to_ts"] if h["to_ts"] is not None else r.end_ts, "halt",
                  f"{h['state']}: {h['reason']}") for h in r.report["interventions"]["halts"]]
    bands += [Band(i.from_ts, i.to_ts if i.to_ts is not None else r.end_ts, "incident",
                   f"{i.severity} {i.kind} {i.scope_id}: {i.detail}".strip()) for i in r.timeline.incidents]
    growth = r.timeline.growth()
    start = equity[0] if equity else 0.0
    charts: list[Chart | Heatmap] = [
        Chart("equity", "Equity against buy-and-hold", r.currency,
              [_line("equity", ts, equity), _line("buy and hold", growth.ts, [start * g for g in growth.values])],
              bands=bands, note=_thin_note(len(ts))),
        Chart("drawdown", "Drawdown (under the running peak)", "drawdown",
              [_line("drawdown", ts, drawdown_line(equity), fill=True)], bands=bands, percent=True),
        monthly_heatmap(ts, equity),
    ]
    for iid, series in sorted(r.timeline.prices.items()):
        fills = [f for f in r.timeline.fills if f.instrument_id == iid]
        markers = []
        for entry in (True, False):
            for side in ("BUY", "SELL"):
                got = [f for f in fills if f.entry == entry and f.side == side]
                if got:
                    markers.append(Markers(f"{'entry' if entry else 'exit'} {side.lower()}", [f.ts for f in got],
                                           [float(f.price) for f in got], side == "BUY",
                                           [f"{side} {f.quantity} @ {f.price}" for f in got], entry))
        charts.append(Chart(f"price-{iid}", f"{iid}: price, entries and exits", "price",
                            [_line(iid, series.ts, series.values)], markers=markers, bands=bands,
                            note=_thin_note(len(series.ts))))
    positions = [_line(iid, [ts[0], *s.ts, r.end_ts] if ts else s.ts, [0.0, *s.values, s.values[-1]] if ts else
                       s.values, step=True) for iid, s in sorted(r.timeline.positions.items())]
    charts.append(Chart("position", "Position", "quantity", positions, bands=bands,
                        note="" if positions else "no position was ever held"))
    ppy = r.report["statistics"]["periods_per_year"]
    window = _sharpe_window(ppy, len(equity))
    if ppy and window:
        sharpe = rolling_sharpe(equity, window, ppy, r.report["statistics"]["risk_free_rate"] or 0.0)
        pts = [(t, v) for t, v in zip(ts, sharpe) if v is not None]
        charts.append(Chart("sharpe", f"Rolling Sharpe ratio ({window:,} samples, annualised)", "sharpe",
                            [_line("rolling sharpe", [p[0] for p in pts], [p[1] for p in pts])], bands=bands))
    else:
        charts.append(Chart("sharpe", "Rolling Sharpe ratio", "sharpe", [],
                            note="too few samples, or no annualisation, for a rolling Sharpe ratio"))
    return charts


def _sharpe_window(ppy: float | None, samples: int) -> int:
    """About a month of samples (a quarter of the run when it is shorter), at least 5."""
    if not ppy:
        return 0
    window = min(max(5, round(ppy / 12)), samples // 4)
    return window if window >= 5 else 0


def _thin_note(n: int) -> str:
    if n <= POINTS:
        return ""
    return (f"{n:,} points drawn as about {POINTS:,} (each stretch's first, lowest, highest and last); the exact "
            "values are in `tape runs show RUN --json`")


def monthly_heatmap(ts: Sequence[int], equity: Sequence[float]) -> Heatmap:
    """Monthly returns as a year × month grid."""
    months = monthly_returns(ts, equity)
    years = sorted({y for y, _ in months})
    return Heatmap("monthly", "Monthly returns", [str(y) for y in years], list(MONTHS),
                   [[months.get((y, m)) for m in range(1, 13)] for y in years],
                   note="" if months else "no samples")


def sweep_heatmap(points: Sequence[PointResult], axes: Sequence[tuple[str, list[str]]], over: Sequence[str],
                  metric: str) -> Heatmap | None:
    """The metric over one or two of a sweep's parameters (rows: the second, columns: the first); where other
    parameters vary too, each cell is the best point among those sharing its two values. None: nothing varies."""
    if not over:
        return None
    values = dict(axes)
    x, y = over[0], (over[1] if len(over) > 1 else None)
    rows = values[y] if y is not None else [metric]
    cells: dict[tuple[str, str], float] = {}
    low = metric in LOWER_IS_BETTER
    for p in points:
        v = (p.statistics or {}).get(metric)
        if v is None:
            continue
        key = (p.params[x], p.params[y] if y is not None else metric)
        if key not in cells or (float(v) < cells[key] if low else float(v) > cells[key]):
            cells[key] = float(v)
    others = [k for k, vs in axes if k not in over and len(vs) > 1]
    note = (f"each cell: the best {metric} over {', '.join(others)}" if others else "") + (
        "; blank: the point failed or was not drawn" if len(cells) < len(rows) * len(values[x]) else "")
    return Heatmap("sweep", f"{metric} over {x}" + (f" and {y}" if y else ""), [f"{y}={r}" if y else r for r in rows],
                   [f"{x}={c}" for c in values[x]], [[cells.get((c, r)) for c in values[x]] for r in rows],
                   note=note.lstrip("; "), percent=metric in FRACTIONS, low_is_good=low)


def compare_chart(reports: Sequence[RunReport]) -> Chart:
    """The runs' equity curves overlaid."""
    return Chart("compare-equity", "Equity of the runs compared", reports[0].currency if reports else "",
                 [_line(r.run_id, r.curve_ts, r.curve_equity) for r in reports])
