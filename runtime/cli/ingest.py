"""`tape ingest`: market history from files into a namespace."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from runtime.cli import output
from runtime.cli.context import cli_context
from runtime.times import parse_timeframe

ingest_app = typer.Typer(no_args_is_help=True, help="Import market history into a namespace.")

KINDS = ("bars", "trades", "quotes")
TIME_UNITS = ("auto", "s", "ms", "us", "ns")


@ingest_app.command("csv")
def ingest_csv(
    ctx: typer.Context,
    file: Path = typer.Argument(..., metavar="FILE"),
    namespace: str = typer.Option(..., "--namespace", metavar="NS"),
    instrument: str = typer.Option(..., "--instrument", metavar="ID", help="Instrument id, e.g. BTCUSDT.BINANCE."),
    kind: str = typer.Option(..., "--kind", metavar="bars|trades|quotes"),
    timeframe: Optional[str] = typer.Option(None, "--timeframe", help="Bar length (1m, 5m, 1h, 1d…); bars only."),
    time_unit: str = typer.Option("auto", "--time-unit", metavar="auto|s|ms|us|ns",
                                  help="Unit of epoch-number times; auto picks it by magnitude."),
    venue: Optional[str] = typer.Option(None, "--venue", help="Venue (default: the id's suffix after '.', or SIM)."),
    base: Optional[str] = typer.Option(None, "--base", help="Base currency (default: from the symbol)."),
    quote: Optional[str] = typer.Option(None, "--quote", help="Quote currency (default: from the symbol)."),
    price_increment: Optional[str] = typer.Option(None, "--price-increment", metavar="X",
                                                  help="Tick size (default: inferred from the first batch)."),
    size_increment: Optional[str] = typer.Option(None, "--size-increment", metavar="Y",
                                                 help="Lot step (default: inferred from the first batch)."),
    batch_rows: int = typer.Option(5000, "--batch-rows", min=1, help="Rows per committed step."),
) -> None:
    """Import a CSV file (header row required) of bars, trades or quotes; resumable and idempotent.

    Columns are matched case-insensitively: time/timestamp/ts/date/datetime/open_time, open/o, high/h, low/l,
    close/c, volume/vol/v, price/p, quantity/qty/size/amount, side/aggressor/is_buyer_maker, trade_id/id,
    bid/bid_price, bid_size/bid_qty, ask/ask_price, ask_size/ask_qty. Times are ISO-8601 (naive = UTC) or epoch
    numbers; with --time-unit auto the unit follows the magnitude: < 1e11 s, < 1e14 ms, < 1e17 us, else ns.
    A bar's time is its OPEN time; the event time is open + timeframe.

    Each batch is one atomic step closed by a HistoryImported event: re-running after a crash resumes, and
    rows the namespace already holds for the (instrument, kind, timeframe) series are skipped. Rows older than
    that series' history are refused: import older history into a new namespace. The first import of an
    instrument defines it; increments not given are 10^-d, d = most decimals seen in the first batch.
    """
    from runtime.ingest.csvrows import CsvSpec, IngestError, InstrumentOptions, parse_increment
    from runtime.ingest.importer import import_csv

    if kind not in KINDS:
        raise IngestError(f"--kind {kind!r}: use one of {', '.join(KINDS)}")
    if time_unit not in TIME_UNITS:
        raise IngestError(f"--time-unit {time_unit!r}: use one of {', '.join(TIME_UNITS)}")
    if kind == "bars" and not timeframe:
        raise IngestError("--timeframe is required for --kind bars (e.g. --timeframe 1m)")
    if kind != "bars" and timeframe:
        raise IngestError(f"--timeframe applies to bars only, not to {kind}")
    spec = CsvSpec(file.name, instrument, kind, timeframe, parse_timeframe(timeframe) if timeframe else None,
                   time_unit)
    opts = InstrumentOptions(venue, base, quote, parse_increment(price_increment, "--price-increment"),
                             parse_increment(size_increment, "--size-increment"))
    log = cli_context(ctx).open()
    console = output.console(stderr=True)
    total = file.stat().st_size if file.is_file() else None
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                  console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task(f"importing {file.name}", total=total)
        result = import_csv(log, file, namespace, spec, opts, batch_rows=batch_rows,
                            progress=lambda done: progress.update(task, completed=done))
    sys.stdout.write(
        f"{result.file} → {namespace}: {result.rows_read} rows read, {result.events_written} events written, "
        f"{result.skipped} skipped, {result.elapsed:.2f} s, {result.rate:,.0f} rows/s\n"
    )
