"""The `tape` command line: inspect logs, manage schemas, ingest history.

Every error the user can fix (a TapeError or bad usage) is printed as one line `error: ...` on stderr with exit
code 2, never a traceback.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional

import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from typer.core import TyperGroup

try:  # typer >= 0.20 vendors click
    from typer import _click
except ImportError:  # pragma: no cover
    import click as _click  # type: ignore[no-redef]

from eventstore.catalog import Catalog
from schemas.errors import TapeError
from eventstore.store import DEFAULT_STORE, Log

from . import render
from .timeparse import TIME_FORMATS, format_ns, parse_time, parse_timeframe

EXIT_ERROR = 2


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _fail(message: str) -> None:
    sys.stderr.write(f"error: {_one_line(message)}\n")
    sys.stderr.flush()


class TapeGroup(TyperGroup):
    """Root group: turns user errors into one line on stderr and exit code 2."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:  # the reader of a pipe went away (`| head`): stop quietly
            _silence_stdout()
            raise typer.Exit(0) from None

    def main(self, args: Any = None, prog_name: Any = None, complete_var: Any = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        try:
            rv = super().main(args, prog_name or "tape", complete_var, standalone_mode=False, **extra)
            code = rv if isinstance(rv, int) and not isinstance(rv, bool) else 0
        except _click.exceptions.NoArgsIsHelpError as e:
            e.show()
            code = EXIT_ERROR
        except _click.exceptions.ClickException as e:
            _fail(e.format_message())
            code = EXIT_ERROR
        except typer.Abort:
            _fail("aborted")
            code = 1
        except TapeError as e:
            _fail(str(e))
            code = EXIT_ERROR
        except OSError as e:
            _fail(f"{str(e.filename) + ': ' if e.filename else ''}{e.strerror or e}")
            code = EXIT_ERROR
        if standalone_mode:
            sys.exit(code)
        return code


def _silence_stdout() -> None:
    """After the reader of a pipe went away (`| head`): no more writes, no 'Exception ignored' at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


app = typer.Typer(cls=TapeGroup, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="tape: an event-sourced trading runtime on an append-only log.")
log_app = typer.Typer(no_args_is_help=True, help="Inspect namespaces, topics and events of the log.")
schemas_app = typer.Typer(no_args_is_help=True, help="The Avro event schemas and their compatibility.")
ingest_app = typer.Typer(no_args_is_help=True, help="Import market history into a namespace.")
app.add_typer(log_app, name="log")
app.add_typer(schemas_app, name="schemas")
app.add_typer(ingest_app, name="ingest")


@dataclass
class State:
    store: str

    def open(self) -> Log:
        return Log.open(self.store)


@app.callback()
def root(
    ctx: typer.Context,
    store: str = typer.Option(DEFAULT_STORE, "--store", envvar="TAPE_STORE", metavar="URL",
                              help="Store URL: file:PATH or kafka://HOST:PORT."),
) -> None:
    ctx.obj = State(store)


def _state(ctx: typer.Context) -> State:
    obj = ctx.find_root().obj
    assert isinstance(obj, State)
    return obj


def _console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    tty = stream.isatty()
    return Console(file=stream, highlight=False, width=None if tty else 200, soft_wrap=False)


def _table(*columns: str, right: tuple[str, ...] = ()) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for c in columns:
        table.add_column(c, justify="right" if c in right else "left", no_wrap=True)
    return table


def _time(ns: Optional[int]) -> str:
    return "" if ns is None else format_ns(ns)


def _parse_time_opt(value: Optional[str], option: str) -> Optional[int]:
    if value is None:
        return None
    try:
        return parse_time(value)
    except TapeError:
        raise TapeError(f"{option}: bad time {value!r}; use {TIME_FORMATS}") from None


# ---- tape log ----------------------------------------------------------------------------------------------


@log_app.command("namespaces")
def log_namespaces(ctx: typer.Context) -> None:
    """Namespaces of the store: events, last seq, time of the first and last event."""
    from .overview import overview

    log = _state(ctx).open()
    names = log.namespaces()
    table = _table("namespace", "events", "last seq", "first time", "last time", right=("events", "last seq"))
    for ns in names:
        o = overview(log, ns)
        table.add_row(ns, str(o.events), str(o.last_seq), _time(o.first_ts), _time(o.last_ts))
    _console().print(table)
    if not names:
        sys.stderr.write(f"no namespaces in {log.url}\n")


@log_app.command("topics")
def log_topics(ctx: typer.Context, namespace: Optional[str] = typer.Argument(None, metavar="[NS]")) -> None:
    """Topic-partitions of one namespace (or all): records, bytes, segments."""
    log = _state(ctx).open()
    names = [namespace] if namespace else log.namespaces()
    table = _table("namespace", "topic", "partition", "records", "bytes", "segments",
                   right=("partition", "records", "bytes", "segments"))
    for ns in names:
        for p in log.partitions(ns):
            table.add_row(ns, f"{ns}.{p.topic}", str(p.partition), str(p.records), str(p.bytes), str(p.segments))
    _console().print(table)


@log_app.command("dump")
def log_dump(
    ctx: typer.Context,
    namespace: str = typer.Argument(..., metavar="NS"),
    from_: Optional[str] = typer.Option(None, "--from", metavar="TIME", help="First event time (inclusive)."),
    to: Optional[str] = typer.Option(None, "--to", metavar="TIME", help="End event time (exclusive)."),
    types: Optional[List[str]] = typer.Option(None, "--type", metavar="TYPE", help="Only this event type (repeatable)."),
    seq_from: Optional[int] = typer.Option(None, "--seq-from", min=1, metavar="N", help="First seq (inclusive)."),
    seq_to: Optional[int] = typer.Option(None, "--seq-to", min=1, metavar="N", help="Last seq (inclusive)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line: Decimals as exact strings, "
                                 "bytes as hex, times as integer ns."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep waiting for new events."),
    limit: Optional[int] = typer.Option(None, "--limit", "-n", min=0, metavar="N", help="Stop after N events."),
) -> None:
    """Events of a namespace in seq order. TIME is ISO-8601 (naive = UTC) or integer epoch nanoseconds."""
    from_ts, to_ts = _parse_time_opt(from_, "--from"), _parse_time_opt(to, "--to")
    log = _state(ctx).open()
    replay = log.replay(namespace, types=types or None, from_ts=from_ts, to_ts=to_ts,
                        from_seq=seq_from, to_seq=seq_to, follow=follow)
    out = sys.stdout
    fmt = render.event_json if as_json else render.event_line
    if not as_json:
        out.write(render.DUMP_HEADER + "\n")
    if limit == 0:
        return
    n = 0
    try:
        for ev in replay:
            out.write(fmt(ev) + "\n")
            n += 1
            if follow:
                out.flush()
            if limit is not None and n >= limit:
                break
    except KeyboardInterrupt:
        pass
    out.flush()


@log_app.command("copy")
def log_copy(
    src: str = typer.Argument(..., metavar="SRC_URL", help="Store to copy from (file:PATH or kafka://HOST:PORT)."),
    dst: str = typer.Argument(..., metavar="DST_URL", help="Store to copy to."),
    namespace: str = typer.Option(..., "--namespace", metavar="NS", help="Namespace to copy."),
) -> None:
    """Copy a namespace between stores: same seqs, same record bytes, same commits; resumes where it stopped."""
    from eventstore.copy import copy_namespace

    source, target = Log.open(src), Log.open(dst)
    console = _console(stderr=True)
    try:
        with Progress(TextColumn("[bold]copy"), BarColumn(), TextColumn("seq {task.completed:,}/{task.total:,}"),
                      console=console, transient=True, disable=not console.is_terminal) as bar:
            task = bar.add_task("copy", total=None)
            n = copy_namespace(source, target, namespace,
                               progress=lambda done, total: bar.update(task, completed=done, total=total))
    finally:
        source.close()
        target.close()
    sys.stdout.write(f"{namespace}: {n} events copied from {src} to {dst}\n")


@log_app.command("stats")
def log_stats(ctx: typer.Context, namespace: str = typer.Argument(..., metavar="NS")) -> None:
    """Events, bytes, time and seq range of a namespace, with count and bytes per event type."""
    s = _state(ctx).open().stats(namespace)
    console = _console()
    head = _table("namespace", "events", "bytes", "first seq", "last seq", "first time", "last time",
                  right=("events", "bytes", "first seq", "last seq"))
    head.add_row(namespace, str(s.events), str(s.bytes), str(s.first_seq or ""), str(s.last_seq or ""),
                 _time(s.first_ts), _time(s.last_ts))
    console.print(head)
    per_type = _table("type", "events", "bytes", right=("events", "bytes"))
    for name in sorted(s.per_type):
        per_type.add_row(name, str(s.per_type[name]), str(s.per_type_bytes[name]))
    console.print(per_type)


# ---- tape schemas ------------------------------------------------------------------------------------------


@schemas_app.command("list")
def schemas_list() -> None:
    """Event types of the shipped schemas: name, topic, CRC-64-AVRO fingerprint."""
    table = _table("name", "topic", "fingerprint")
    for t in sorted(Catalog.load().types, key=lambda t: (t.topic, t.full_name)):
        table.add_row(t.full_name, t.topic, f"{t.fingerprint:016x}")
    _console().print(table)


@schemas_app.command("show")
def schemas_show(name: str = typer.Argument(..., metavar="NAME", help="Short (Bar) or full (tape.market.Bar).")) -> None:
    """The expanded, self-contained JSON schema of an event type."""
    sys.stdout.write(json.dumps(Catalog.load().get(name).schema, indent=2) + "\n")


@schemas_app.command("check")
def schemas_check(
    ctx: typer.Context,
    directory: Optional[Path] = typer.Argument(None, metavar="[DIR]", help="Schema directory (default: shipped)."),
) -> None:
    """Check schemas against every version registered in the store (backward transitive); exit 1 if incompatible."""
    from schemas import SCHEMA_DIR

    from .schemacheck import check

    result = check(_state(ctx).open(), directory or SCHEMA_DIR)
    for problem in result.problems:
        sys.stdout.write(problem + "\n")
    for name in result.missing:
        sys.stderr.write(f"note: {name} is registered in the store but not defined in the directory\n")
    if result.problems:
        sys.stderr.write(f"{len(result.problems)} incompatibilit{'y' if len(result.problems) == 1 else 'ies'}\n")
        raise typer.Exit(1)
    sys.stdout.write(
        f"ok: {result.schemas} schemas; {result.checked} checked against {result.versions} registered "
        f"version(s) in {result.namespaces} namespace(s)\n"
    )


# ---- tape ingest -------------------------------------------------------------------------------------------

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
    from .importer import import_csv
    from .ingest import CsvSpec, IngestError, InstrumentOptions, parse_increment

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
    log = _state(ctx).open()
    console = _console(stderr=True)
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


def _register_commands() -> None:
    """Commands that live in their own modules (they import this one for `app` and the helpers)."""
    from . import cli_backtest  # noqa: F401  (tape backtest, tape runs)
    from . import cli_replay  # noqa: F401  (tape replay)
    from .cli_db import db_app, project_command

    app.add_typer(db_app, name="db")
    app.command("project")(project_command)
    from . import cli_audit  # noqa: F401  (tape audit order|trades|verify)


_register_commands()


def main() -> None:
    """Console script entry point `tape`."""
    try:
        app(prog_name="tape")
    except BrokenPipeError:
        _silence_stdout()
        sys.exit(0)
