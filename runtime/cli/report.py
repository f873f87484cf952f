"""`tape report` and `tape runs compare`: a run's figures and charts as an HTML page or PNG files, and several
runs side by side."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from runtime.cli import output
from runtime.cli.context import cli_context
from schemas.decimals import plain
from schemas.errors import TapeError


def report_command(ctx: typer.Context, run: str = typer.Argument(..., metavar="RUN"),
                   html: Optional[Path] = typer.Option(None, "--html", metavar="FILE",
                                                       help="Write the report as one self-contained HTML page "
                                                            "(default RUN.html when --png is not given)."),
                   png: Optional[Path] = typer.Option(None, "--png", metavar="DIR",
                                                      help="Write each chart as DIR/CHART.png.")) -> None:
    """A run's report: equity against buy-and-hold, drawdown, monthly returns, price with entries and exits, position,
    rolling Sharpe, halts and incidents shaded, and the statistics — for a backtest, or a live or paper namespace up
    to now."""
    from runtime.report.build import build_report
    from runtime.report.charts import run_charts

    if html is None and png is None:
        html = Path(f"{run}.html")
    if html is not None:
        output.writable(html)
    if png is not None and png.exists() and not png.is_dir():
        raise TapeError(f"--png {png}: is a file; give a directory for the charts")
    rep = build_report(cli_context(ctx).open(), run)
    if png is not None:
        from runtime.report.png import write_pngs

        for path in write_pngs(run_charts(rep), png):
            sys.stdout.write(f"wrote {path}\n")
    if html is not None:
        from runtime.report.html import run_html

        output.written(html, run_html(rep))
        sys.stdout.write(f"wrote {html}\n")


def compare_command(ctx: typer.Context, runs: List[str] = typer.Argument(..., metavar="RUN RUN..."),
                    html: Optional[Path] = typer.Option(None, "--html", metavar="FILE",
                                                        help="Also write the comparison with the equity curves "
                                                             "overlaid as an HTML page."),
                    as_json: bool = typer.Option(False, "--json", help="The runs' reports as one JSON object "
                                                                       "keyed by run.")) -> None:
    """Several runs' statistics side by side (and their equity curves overlaid, with --html)."""
    from runtime.report.build import build_report, compare_rows

    if len(runs) < 2:
        raise TapeError("tape runs compare needs two runs or more: `tape runs list` shows them")
    if len(set(runs)) != len(runs):
        raise TapeError("tape runs compare: a run is named twice; name each run once")
    if html is not None:
        output.writable(html)
    log = cli_context(ctx).open()
    reports = [build_report(log, r) for r in runs]
    if as_json:
        sys.stdout.write(json.dumps({r.run_id: plain(r.report) for r in reports}, indent=2, sort_keys=True) + "\n")
    else:
        header, rows = compare_rows(reports)
        table = output.table(*header, right=tuple(header[1:]))
        for row in rows:
            table.add_row(*row)
        output.console().print(table)
    if html is not None:
        from runtime.report.html import compare_html

        output.written(html, compare_html(reports))
        sys.stderr.write(f"wrote {html}\n")
