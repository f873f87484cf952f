"""A report as PNG files, one per chart (matplotlib, no screen needed): for a document, a chat or a page that
cannot run scripts."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")  # files only: never a window, never a display server
import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import PercentFormatter

from runtime import figures
from runtime.report.charts import Chart, Heatmap

BAND_COLOURS = {"halt": (0.84, 0.15, 0.16, 0.12), "incident": (1.0, 0.5, 0.05, 0.15)}
SIZE = (11, 3.6)  # inches at DPI: 1100 × 360 pixels
DPI = 100


def _dates(ts: Sequence[int]) -> Any:
    return np.array(ts, dtype="datetime64[ns]")


def _draw_chart(ax: Any, chart: Chart) -> None:
    for line in chart.lines:
        x, y = _dates(line.ts), np.array(line.values, dtype=float)
        if line.fill:
            ax.fill_between(x, y, 0, step="post" if line.step else None, alpha=0.35, label=line.name)
        else:
            ax.plot(x, y, lw=1.1, drawstyle="steps-post" if line.step else "default", label=line.name)
    for m in chart.markers:
        ax.scatter(_dates(m.ts), m.values, marker="^" if m.up else "v", s=24, c="#2ca02c" if m.up else "#d62728",
                   edgecolors="#333" if m.entry else "none", linewidths=0.6, label=m.name,
                   zorder=3)
    for b in chart.bands:
        ax.axvspan(_dates([b.from_ts])[0], _dates([max(b.to_ts, b.from_ts)])[0], color=BAND_COLOURS[b.kind], lw=0)
    if chart.percent:
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    else:
        ax.ticklabel_format(axis="y", style="plain", useOffset=False)
    locator = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.set_ylabel(chart.y_title)
    ax.grid(alpha=0.25)
    if len(chart.lines) + len(chart.markers) > 1:
        ax.legend(loc="best", fontsize=8, frameon=False)
    if not chart.lines:
        ax.text(0.5, 0.5, chart.note or "nothing to draw", ha="center", va="center", transform=ax.transAxes)


def _draw_heatmap(fig: Any, ax: Any, hm: Heatmap) -> None:
    z = np.array([[math.nan if v is None else v for v in row] for row in hm.values] or [[math.nan] * 12], dtype=float)
    finite = z[np.isfinite(z)]
    span = float(np.max(np.abs(finite))) if finite.size else 0.01
    img = ax.imshow(z, cmap="RdYlGn_r" if hm.low_is_good else "RdYlGn", vmin=-span, vmax=span, aspect="auto")
    ax.set_xticks(range(len(hm.columns)), hm.columns)
    ax.set_yticks(range(len(hm.rows)), hm.rows)
    for i, row in enumerate(hm.values):
        for j, v in enumerate(row):
            if v is not None:
                ax.text(j, i, figures.pct(v) if hm.percent else figures.ratio(v), ha="center", va="center", fontsize=7)
    fig.colorbar(img, ax=ax, format=PercentFormatter(1.0) if hm.percent else None)


def write_pngs(charts: Sequence[Chart | Heatmap], directory: Path) -> list[Path]:
    """Each chart as DIR/<chart id>.png; the files written, in the charts' order."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for chart in charts:
        rows = len(chart.rows) if isinstance(chart, Heatmap) else 0
        fig, ax = plt.subplots(figsize=(SIZE[0], max(SIZE[1], 1.2 + 0.35 * rows)), dpi=DPI)
        try:
            if isinstance(chart, Heatmap):
                _draw_heatmap(fig, ax, chart)
            else:
                _draw_chart(ax, chart)
            ax.set_title(chart.title, fontsize=11, loc="left")
            fig.tight_layout()
            path = directory / f"{_file_name(chart.id)}.png"
            fig.savefig(path, metadata={"Software": None})  # no version stamp: the same run, the same bytes
            written.append(path)
        finally:
            plt.close(fig)
    return written


def _file_name(chart_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in chart_id)
