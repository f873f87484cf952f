"""`tape db upgrade|status` and `tape project NS [--follow] [--rebuild]`: the SQL read models from the command line.

They raise TapeError subclasses for everything a user can fix (one line, no traceback, under the root's policy).
"""
from __future__ import annotations

import signal
import sys
import threading
import time
from typing import Any, Callable, Optional

import typer

from runtime.cli.context import cli_context

DB_HELP = ("Read-model database URL: sqlite:///PATH or postgresql+psycopg://user@host:port/db "
           "(default: tape.sqlite inside a file: store).")

db_app = typer.Typer(no_args_is_help=True, help="The SQL read-model database: schema migrations and status.")


def _engine(ctx: typer.Context, db: Optional[str]) -> tuple[str, Any]:
    from projections.sql.db import make_engine

    url = cli_context(ctx).db_url(db)
    return url, make_engine(url)


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


@db_app.command("upgrade")
def db_upgrade(
    ctx: typer.Context,
    db: Optional[str] = typer.Option(None, "--db", envvar="TAPE_DB", metavar="URL", help=DB_HELP),
    revision: str = typer.Option("head", "--revision", metavar="REV", help="Target revision (default: head)."),
) -> None:
    """Create or migrate the read-model tables to the schema this version of tape needs."""
    from migrations import upgrade
    from projections.sql.db import display_url

    url, engine = _engine(ctx, db)
    try:
        before, after = upgrade(engine, revision)
    finally:
        engine.dispose()
    if before == after:
        _out(f"{display_url(url)}: schema already at {after}")
    else:
        _out(f"{display_url(url)}: schema upgraded {before or '(empty)'} → {after}")


@db_app.command("status")
def db_status(
    ctx: typer.Context,
    db: Optional[str] = typer.Option(None, "--db", envvar="TAPE_DB", metavar="URL", help=DB_HELP),
) -> None:
    """The database's schema revision against the head this code needs, and the projection checkpoints.

    Exit code 0 when the schema is at head, 1 otherwise.
    """
    from migrations import schema_status
    from projections.sql.db import checkpoints, display_url

    url, engine = _engine(ctx, db)
    try:
        status = schema_status(engine)
        rows = list(checkpoints(engine)) if status.up_to_date else []
    finally:
        engine.dispose()
    _out(f"database: {display_url(url)}")
    _out(f"current:  {status.current or '(empty)'}")
    _out(f"head:     {status.head}")
    problem = status.problem()
    _out("status:   up to date" if problem is None else f"status:   {problem}")
    if rows:
        _out("checkpoints:")
        width = max(len(r[0]) for r in rows)
        for ns, projector, last_seq, events in rows:
            _out(f"  {ns:<{width}}  {projector}  seq {last_seq:,}  ({events:,} events)")
    if problem is not None:
        raise typer.Exit(1)


class _StopFlag:
    """Set by SIGINT/SIGTERM while a projection runs: the current batch commits, then the projector stops."""

    def __init__(self) -> None:
        self.set = False
        self._old: dict[int, Any] = {}

    def __call__(self) -> bool:
        return self.set

    def _handler(self, signum: int, frame: Any) -> None:
        if self.set:  # second signal: give up now (the open transaction rolls back)
            raise KeyboardInterrupt
        self.set = True

    def __enter__(self) -> "_StopFlag":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def project(
    ctx: typer.Context,
    namespace: str = typer.Argument(..., metavar="NS", help="Namespace to fold into the read models."),
    follow: bool = typer.Option(False, "--follow", help="Keep folding new events as they are committed (Ctrl-C stops)."),
    rebuild: bool = typer.Option(False, "--rebuild",
                                 help="Delete the namespace's rows and checkpoint first, then fold from seq 1."),
    db: Optional[str] = typer.Option(None, "--db", envvar="TAPE_DB", metavar="URL", help=DB_HELP),
    batch_events: int = typer.Option(2000, "--batch-events", min=1, metavar="N",
                                     help="Events per database transaction."),
) -> None:
    """Fold a namespace into the SQL read models (orders, fills, positions, balances, runs, risk, incidents).

    Resumes from the namespace's checkpoint; the checkpoint commits with the rows, so a killed projector loses
    or doubles nothing. Refuses to run on an out-of-date schema (run `tape db upgrade`).
    """
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from migrations import require_current_schema
    from projections.sql.db import display_url
    from projections.sql.projector import Projector

    url, engine = _engine(ctx, db)
    try:
        require_current_schema(engine)
        projector = Projector(engine, namespace, batch_events=batch_events)
        log = cli_context(ctx).open()
        try:
            log.partitions(namespace)  # fails with a one-line error when the namespace does not exist
            console = Console(file=sys.stderr, highlight=False)
            live = console.is_terminal
            columns = (TextColumn("{task.description}"), BarColumn(),
                       TextColumn("seq {task.completed:,.0f}/{task.total:,.0f}"),
                       TextColumn("{task.fields[rate]}"), TimeElapsedColumn())
            with _StopFlag() as stop, Progress(*columns, console=console, transient=True,
                                               disable=not live) as progress:
                task = progress.add_task(f"projecting {namespace}", total=1, rate="")
                on_progress = _reporter(progress, task, namespace, live, follow)
                result = projector.run(log, follow=follow, rebuild=rebuild, stop=stop, on_progress=on_progress)
        finally:
            log.close()
    finally:
        engine.dispose()
    _out(f"{namespace} → {display_url(url)}: {result.events:,} events folded{' (rebuilt)' if rebuild else ''}, "
         f"checkpoint seq {result.last_seq:,}, {result.batches:,} batches, {result.elapsed:.2f} s, "
         f"{result.rate:,.0f} events/s")


def _reporter(progress: Any, task: Any, namespace: str, live: bool, follow: bool) -> Callable[[Any], None]:
    last_line = [time.monotonic()]

    def on_progress(p: Any) -> None:
        progress.update(task, completed=p.last_seq, total=max(p.horizon, p.last_seq, 1),
                        rate=f"{p.rate:,.0f} events/s")
        if follow and not live and time.monotonic() - last_line[0] >= 30:
            last_line[0] = time.monotonic()
            sys.stderr.write(f"{namespace}: checkpoint seq {p.last_seq:,}, {p.events:,} events, "
                             f"{p.rate:,.0f} events/s\n")
            sys.stderr.flush()

    return on_progress
