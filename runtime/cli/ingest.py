"""`tape ingest`: market history from files, or from an exchange through ccxt, into a namespace."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from runtime.cli import output
from runtime.cli.context import cli_context
from runtime.times import format_ns, parse_timeframe

if TYPE_CHECKING:
    from runtime.ingest.importer import ImportResult

ingest_app = typer.Typer(no_args_is_help=True, help="Import market history into a namespace.")

KINDS = ("bars", "trades", "quotes")
TIME_UNITS = ("auto", "s", "ms", "us", "ns")


@ingest_app.command("csv")
def ingest_csv(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(metavar="FILE")],
    namespace: str = typer.Option(..., "--namespace", metavar="NS"),
    instrument: str = typer.Option(..., "--instrument", metavar="ID", help="Instrument id, e.g. BTCUSDT.BINANCE."),
    kind: str = typer.Option(..., "--kind", metavar="bars|trades|quotes"),
    timeframe: str | None = typer.Option(None, "--timeframe",
                                            help="Bar length (1m, 5m, 1h, 1d, 1w, 1M = a calendar month); bars only."),
    no_header: bool = typer.Option(False, "--no-header", help="Line 1 is data: name the columns with --columns."),
    columns: str | None = typer.Option(None, "--columns", metavar="A,B,C…",
                                          help="Every column's name, in order (replaces the header row, if any)."),
    time_column: str | None = typer.Option(None, "--time-column", metavar="NAME",
                                              help="The column holding the times (default: found by name)."),
    time_format: str | None = typer.Option(None, "--time-format", metavar="FMT",
                                              help="strptime format of the times, e.g. '%d.%m.%Y %H:%M' (UTC)."),
    time_unit: str = typer.Option("auto", "--time-unit", metavar="auto|s|ms|us|ns",
                                  help="Unit of epoch-number times; auto picks it by magnitude."),
    skip_conflicts: bool = typer.Option(False, "--skip-conflicts",
                                        help="Rows that differ from the namespace's history are left out, "
                                             "not refused (the namespace keeps its values)."),
    venue: str | None = typer.Option(None, "--venue", help="Venue (default: the id's suffix after '.', or SIM)."),
    base: str | None = typer.Option(None, "--base", help="Base currency (default: from the symbol)."),
    quote: str | None = typer.Option(None, "--quote", help="Quote currency (default: from the symbol)."),
    price_increment: str | None = typer.Option(None, "--price-increment", metavar="X",
                                                  help="Tick size (default: inferred from the first batch)."),
    size_increment: str | None = typer.Option(None, "--size-increment", metavar="Y",
                                                 help="Lot step (default: inferred from the first batch)."),
    batch_rows: int = typer.Option(5000, "--batch-rows", min=1, help="Rows per committed step."),
) -> None:
    """Import a CSV file (plain, .gz or .zip) of bars, trades or quotes: all of it or nothing; resumable, idempotent.

    The layout is detected and printed: a header row, a pandas file with an unnamed index column, yfinance's
    header rows (Price / Ticker / Date), Binance kline, trade and aggTrade exports (no header row). Otherwise name
    the columns: --no-header --columns time,open,high,low,close,volume. Columns are matched case-insensitively:
    time/timestamp/ts/date/datetime/open_time, open/o, high/h, low/l, close/c, volume/vol/v, price/p,
    quantity/qty/size/amount, side/aggressor/is_buyer_maker, trade_id/id, bid/bid_price, bid_size/bid_qty,
    ask/ask_price, ask_size/ask_qty. Times are ISO-8601 (naive = UTC), MM/DD/YYYY or epoch numbers; with
    --time-unit auto the unit follows the magnitude: < 1e11 s, < 1e14 ms, < 1e17 us, else ns. A bar's time is
    its OPEN time; the event time is its close.

    Every row is checked before anything is written: a bad row, a --timeframe the rows' spacing does not match,
    or a row that differs from what the namespace already holds refuses the file. Exact duplicate rows are
    skipped and counted; gaps between bars are reported. Each batch is one atomic step closed by a
    HistoryImported event: re-running after a crash resumes, and rows the namespace already holds for the
    (instrument, kind, timeframe) series are skipped. Rows older than that series' history are refused: import
    older history into a new namespace. The first import of an instrument defines it; increments not given are
    10^-d, d = most decimals seen in the first batch.
    """
    from runtime.ingest.csvrows import CsvSpec, IngestError, InstrumentOptions, parse_increment
    from runtime.ingest.importer import import_csv
    from runtime.ingest.layouts import LayoutOptions

    if kind not in KINDS:
        raise IngestError(f"--kind {kind!r}: use one of {', '.join(KINDS)}")
    if time_unit not in TIME_UNITS:
        raise IngestError(f"--time-unit {time_unit!r}: use one of {', '.join(TIME_UNITS)}")
    if kind == "bars" and not timeframe:
        raise IngestError("--timeframe is required for --kind bars (e.g. --timeframe 1m)")
    if kind != "bars" and timeframe:
        raise IngestError(f"--timeframe applies to bars only, not to {kind}")
    names = tuple(c.strip() for c in columns.split(",")) if columns is not None else None
    if names is not None and not any(names):
        raise IngestError("--columns names no column: list every column's name, e.g. --columns time,price,qty")
    if time_format is not None and "%" not in time_format:
        raise IngestError(f"--time-format {time_format!r} has no % directive: use strptime codes, e.g. %m/%d/%Y")
    spec = CsvSpec(file.name, instrument, kind, timeframe, parse_timeframe(timeframe) if timeframe else None,
                   time_unit, time_format)
    opts = InstrumentOptions(venue, base, quote, parse_increment(price_increment, "--price-increment"),
                             parse_increment(size_increment, "--size-increment"))
    layout = LayoutOptions(no_header, names, time_column)
    log = cli_context(ctx).open()
    console = output.console(stderr=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                  console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task(f"checking {file.name}", total=None)

        def advance(phase: str, done: int, total: int) -> None:
            progress.update(task, description=f"{phase} {file.name}", completed=done, total=total)

        result = import_csv(log, file, namespace, spec, opts, layout=layout, skip_conflicts=skip_conflicts,
                            batch_rows=batch_rows, progress=advance)
    sys.stdout.write("".join(f"{line}\n" for line in report_lines(result, namespace)))


def report_lines(result: ImportResult, namespace: str) -> list[str]:
    """What an import says: the counts, the layout it read, then duplicates, conflicts left out and gaps."""
    counts = (f"{result.file} → {namespace}: {result.rows_read} rows read, {result.events_written} events written, "
              f"{result.skipped} skipped, {result.elapsed:.2f} s, {result.rate:,.0f} rows/s")
    lines = [counts]
    if result.layout is not None:
        lines.append(f"layout: {result.layout.description}")
    if result.duplicates and result.first_duplicate is not None:
        line, repeats = result.first_duplicate
        lines.append(f"duplicates: {result.duplicates} exact duplicate row(s) skipped (first: line {line}, "
                     f"the same as line {repeats})")
    if result.conflicts:
        lines.append(f"conflicts: {result.conflicts} row(s) differ from the namespace's history, left out "
                     f"(--skip-conflicts; first: {result.first_conflict})")
    if result.gaps:
        lines.append(result.gaps)
    return lines


@ingest_app.command("exchange")
def ingest_exchange_command(
    ctx: typer.Context,
    venue: Annotated[str, typer.Argument(metavar="VENUE", help="ccxt exchange id, e.g. binance.")],
    symbol: Annotated[str, typer.Argument(metavar="SYMBOL", help="The exchange's symbol, BASE/QUOTE: BTC/USDT.")],
    since: Annotated[str, typer.Option("--since", metavar="TIME", help="Where the history starts.")],
    namespace: Annotated[str, typer.Option("--namespace", metavar="NS", help="Namespace to write (resumed).")],
    timeframe: Annotated[str | None, typer.Option("--timeframe", metavar="TF",
                                                  help="Fetch bars of this timeframe: 1m, 5m, 1h, 1d…")] = None,
    trades: Annotated[bool, typer.Option("--trades", help="Fetch the public trades (fetch_trades) too.")] = False,
    until: Annotated[str | None, typer.Option("--until", metavar="TIME",
                                              help="Stop here (default: what is closed at the exchange now).")]
    = None,
    sandbox_url: Annotated[str | None, typer.Option("--sandbox-url", metavar="URL",
                                                    help="Talk to this server instead (tape sandbox serve).")] = None,
    page_size: Annotated[int, typer.Option("--page-size", min=1, max=5000, metavar="N",
                                           help="Bars or trades asked for per request (a page, one commit).")] = 1000,
) -> None:
    """Bar (--timeframe) and trade (--trades) history from an exchange through ccxt: paged, rate-limited, resumable
    (a re-run continues after what the namespace holds), gaps reported, the instrument defined from the exchange's
    market."""
    from runtime.ingest.exchange import Outcome, Request, ingest_exchange, ingest_trades
    from runtime.live.exchange import exchange_for

    since_ns = output.time_option(since, "--since")
    until_ns = output.time_option(until, "--until")
    assert since_ns is not None
    if until_ns is not None and until_ns <= since_ns:
        raise typer.BadParameter("must be after --since", param_hint="--until")
    if timeframe is None and not trades:
        raise typer.BadParameter("name what to fetch: --timeframe TF for bars, --trades for trades, or both",
                                 param_hint="--timeframe / --trades")
    if timeframe is not None:
        parse_timeframe(timeframe)
    exchange = exchange_for(venue, None, sandbox_url)
    req = Request(venue, symbol, timeframe or "", namespace, since_ns, until_ns, page_size)
    log = cli_context(ctx).open()
    console = output.console(stderr=True)
    lines: list[str] = []
    try:
        for what in ([timeframe] if timeframe else []) + (["trades"] if trades else []):
            with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[n]:,}"),
                          TimeRemainingColumn(), console=console, transient=True,
                          disable=not console.is_terminal) as bar:
                task = bar.add_task(f"{venue} {symbol} {what}", total=None, n=0)

                def advance(reached: int, n: int, task: Any = task, bar: Any = bar) -> None:
                    end = until_ns or time.time_ns()
                    bar.update(task, completed=max(0, reached - since_ns), total=max(1, end - since_ns), n=n)

                fetch = ingest_trades if what == "trades" else ingest_exchange
                got: Outcome = fetch(log, exchange, req, progress=advance)
            lines += _fetched(namespace, what, got)
    finally:
        close = getattr(exchange, "close", None)
        if callable(close):
            close()
    sys.stdout.write("".join(f"{line}\n" for line in lines))


def _fetched(namespace: str, what: str, got: Any) -> list[str]:
    """What one fetch wrote, for people."""
    from runtime.ingest.exchange import describe_gaps

    noun = "trades" if what == "trades" else f"{what} bars"
    lines = []
    if got.resumed_after is not None:
        held = "the trades at" if what == "trades" else "the bar opening"
        lines.append(f"resumed after {held} {format_ns(got.resumed_after)} (the namespace held it)")
    if got.count:
        lines.append(f"{namespace}: {got.count:,} {noun} of {got.instrument_id} from {format_ns(got.first or 0)} to "
                     f"{format_ns(got.last or 0)} in {got.pages:,} page{'s' if got.pages != 1 else ''}"
                     + ("; instrument defined from the exchange's market" if got.defined else ""))
    else:
        lines.append(f"{namespace}: no new {'trades' if what == 'trades' else 'closed ' + noun} of "
                     f"{got.instrument_id} in the range")
    return lines + describe_gaps(got.gaps)
