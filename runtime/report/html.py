"""A report as one self-contained HTML page: plotly's charts (zoom, pan, hover) with plotly.js embedded, so the
file opens offline and anywhere; the same run gives the same bytes."""
from __future__ import annotations

import html
from datetime import datetime, timezone
from typing import Any, Sequence

import plotly.graph_objects as go
import plotly.offline

from runtime import figures
from runtime.backtest.sweep import PointResult
from runtime.report.build import RunReport, compare_rows, source_text
from runtime.report.charts import Chart, Heatmap, compare_chart, run_charts
from runtime.times import format_ns

BAND_COLOURS = {"halt": "rgba(214, 39, 40, 0.12)", "incident": "rgba(255, 127, 14, 0.15)"}
STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto; max-width: 1200px;
       color: #222; padding: 0 16px; }
h1 { font-size: 20px; margin-bottom: 4px; } h2 { font-size: 16px; margin-top: 28px; }
table { border-collapse: collapse; margin: 8px 0; } td, th { padding: 3px 12px 3px 0; text-align: left; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; } th { border-bottom: 1px solid #bbb; }
.meta { color: #555; } .warn { color: #a4262c; font-weight: 600; } .note { color: #666; font-size: 12px; }
.chart { margin: 4px 0 16px 0; }
"""


def _time(ns: int) -> str:
    """An event time as plotly reads a date (UTC, to the microsecond)."""
    return datetime.fromtimestamp(ns // 1000 / 1e6, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")


def _figure(chart: Chart | Heatmap) -> go.Figure:
    fig = go.Figure()
    if isinstance(chart, Heatmap):
        shown = figures.pct if chart.percent else figures.ratio
        text = [["" if v is None else shown(v) for v in row] for row in chart.values]
        fig.add_trace(go.Heatmap(z=chart.values, x=chart.columns, y=chart.rows, text=text, texttemplate="%{text}",
                                 colorscale="RdYlGn_r" if chart.low_is_good else "RdYlGn", zmid=0,
                                 hovertemplate="%{y} %{x}: %{text}<extra></extra>",
                                 colorbar={"tickformat": "~%" if chart.percent else None}))
        fig.update_layout(title=chart.title, height=max(220, 80 + 28 * len(chart.rows)), yaxis={"type": "category"},
                          margin={"l": 60, "r": 20, "t": 50, "b": 40})
        return fig
    for line in chart.lines:
        fig.add_trace(go.Scatter(x=[_time(t) for t in line.ts], y=line.values, name=line.name, mode="lines",
                                 line={"shape": "hv" if line.step else "linear", "width": 1.4},
                                 fill="tozeroy" if line.fill else None))
    for m in chart.markers:
        fig.add_trace(go.Scatter(x=[_time(t) for t in m.ts], y=m.values, name=m.name, mode="markers", text=m.text,
                                 hovertemplate="%{text}<extra>%{fullData.name}</extra>",
                                 marker={"symbol": "triangle-up" if m.up else "triangle-down", "size": 9,
                                         "color": "#2ca02c" if m.up else "#d62728",
                                         "line": {"width": 1, "color": "#333"} if m.entry else {}}))
    for b in chart.bands:
        fig.add_vrect(x0=_time(b.from_ts), x1=_time(max(b.to_ts, b.from_ts)), fillcolor=BAND_COLOURS[b.kind],
                      line_width=0, layer="below")
    fig.update_layout(title=chart.title, height=340, hovermode="x unified", margin={"l": 60, "r": 20, "t": 50, "b": 40},
                      yaxis={"title": chart.y_title, "tickformat": "~%" if chart.percent else None},
                      xaxis={"type": "date"}, legend={"orientation": "h", "y": 1.12, "x": 1, "xanchor": "right"})
    return fig


def _chart_html(chart: Chart | Heatmap) -> str:
    body = _figure(chart).to_html(full_html=False, include_plotlyjs=False, div_id=chart.id,
                                  config={"displaylogo": False, "responsive": True})
    note = f'<p class="note">{html.escape(chart.note)}</p>' if chart.note else ""
    return f'<div class="chart">{body}{note}</div>'


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[int] = ()) -> str:
    head = "".join(f'<th{" class=n" if i in numeric else ""}>{html.escape(h)}</th>' for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(f'<td{" class=n" if i in numeric else ""}>{html.escape(c)}</td>'
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<style>{STYLE}</style><script type="text/javascript">{plotly.offline.get_plotlyjs()}</script>'
            f"</head><body>{body}</body></html>\n")


def _header(r: RunReport) -> str:
    rep, stats = r.report, r.report["statistics"]
    period = (f"{format_ns(stats['start_ts'])} → {format_ns(stats['end_ts'])} "
              f"({figures.duration(stats['duration_ns'])}; {stats['samples']:,} samples)" if stats["samples"] else
              "no samples")
    lines = [f"<h1>{html.escape(r.run_id)}</h1>",
             (f'<p class="meta">{r.mode.lower()} · strategy <b>{html.escape(str(rep["strategy"]))}</b> '
              f"{html.escape(figures.params_text(rep['params']) or '(defaults)')} · "
              f"source {html.escape(source_text(rep, r))}<br>"
              f"period {html.escape(period)} · figures in {html.escape(r.currency)}</p>")]
    lines += [f'<p class="warn">{html.escape(w)}</p>' for w in rep["interventions"]["warnings"]]
    return "".join(lines)


def _timeline_lists(r: RunReport) -> str:
    halts = [(format_ns(h["from_ts"]), format_ns(h["to_ts"]) if h["to_ts"] is not None else "the end",
              h["state"], h["reason"]) for h in r.report["interventions"]["halts"]]
    incidents = [(format_ns(i.from_ts), format_ns(i.to_ts) if i.to_ts is not None else "open", i.severity, i.kind,
                  i.scope_id, i.detail) for i in r.timeline.incidents]
    out = "<h2>Halts and incidents (shaded on the charts)</h2>"
    out += _table(("from", "until", "state", "why"), halts) if halts else "<p>No halts: trading stayed ACTIVE.</p>"
    out += (_table(("raised", "resolved", "severity", "kind", "scope", "detail"), incidents) if incidents else
            "<p>No incidents.</p>")
    return out


def _instruments(rep: dict[str, Any]) -> str:
    if len(rep["instruments"]) < 2:
        return ""
    rows = [(iid, f"{s['round_trips']:,}", figures.pct(s["win_rate"]), figures.ratio(s["profit_factor"]),
             figures.money(s["trips_pnl"], s["currency"], sign=True), figures.money(s["fees"], s["currency"]),
             f"{s['fills']:,}") for iid, s in rep["instruments"].items()]
    return "<h2>Per instrument</h2>" + _table(("instrument", "round trips", "win rate", "profit factor", "trips pnl",
                                               "fees", "fills"), rows, numeric=(1, 2, 3, 4, 5, 6))


def run_html(r: RunReport) -> str:
    """The report page of one run."""
    charts = run_charts(r)
    body = [_header(r), "<h2>Statistics</h2>", _table(("figure", "value", ""), figures.summary_rows(r.report),
                                                       numeric=(1,)), _instruments(r.report)]
    body += [_chart_html(c) for c in charts]
    body.append(_timeline_lists(r))
    body.append(f'<p class="note">{len(r.report["round_trips"]):,} round trips; events in '
                f'{r.report["events_in"]:,}, events written {r.report["events_out"]:,}. Made by tape report from the '
                "run's log; the same log gives the same page.</p>")
    return _page(f"tape report {r.run_id}", "".join(body))


def compare_html(reports: Sequence[RunReport]) -> str:
    """The runs' figures side by side and their equity curves overlaid."""
    header, rows = compare_rows(reports)
    body = [f"<h1>{len(reports)} runs compared</h1>", _table(header, rows, numeric=tuple(range(1, len(header)))),
            _chart_html(compare_chart(reports))]
    return _page("tape runs compare", "".join(body))


def sweep_html(source: str, strategy: str, points: Sequence[PointResult], metric: str, keys: Sequence[str],
               heatmap: Heatmap | None) -> str:
    """A sweep's points ranked by the metric, with the metric's heatmap over two of its parameters."""
    rows = []
    for p in points:
        s = p.statistics or {}
        rows.append([*(p.params[k] for k in keys), figures.metric_text(s.get(metric), metric),
                     figures.pct(s.get("total_return")), figures.pct(s.get("max_drawdown")),
                     f"{s['round_trips']:,}" if s else "-", p.run_id,
                     p.status if p.status != "failed" else f"failed: {p.why}"])
    header = [*keys, metric, "return", "max dd", "trips", "run", ""]
    body = [f"<h1>Sweep of {html.escape(strategy)} over {html.escape(source)}</h1>",
            f'<p class="meta">{len(points):,} points ranked by {html.escape(metric)}; every point is an ordinary run '
            "(tape report RUN shows it whole)</p>"]
    if heatmap is not None:
        body.append(_chart_html(heatmap))
    body.append(_table(header, rows, numeric=tuple(range(len(keys), len(keys) + 4))))
    return _page(f"tape sweep {strategy} {source}", "".join(body))
