"""`tape log`: namespaces, topics, events and copies of the log."""
from __future__ import annotations

import sys
from typing import List, Optional

import typer
from rich.progress import BarColumn, Progress, TextColumn

from eventstore.store import Log
from runtime import render
from runtime.cli import output
from runtime.cli.context import cli_context
from schemas.errors import TapeError

log_app = typer.Typer(no_args_is_help=True, help="Inspect namespaces, topics and events of the log.")


@log_app.command("namespaces")
def log_namespaces(ctx: typer.Context) -> None:
    """Namespaces of the store: events, last seq, time of the first and last event."""
    from eventstore.overview import overview

    log = cli_context(ctx).open()
    names = log.namespaces()
    table = output.table("namespace", "events", "last seq", "first time", "last time", right=("events", "last seq"))
    for ns in names:
        o = overview(log, ns)
        table.add_row(ns, str(o.events), str(o.last_seq), output.time_cell(o.first_ts), output.time_cell(o.last_ts))
    output.console().print(table)
    if not names:
        sys.stderr.write(f"no namespaces in {log.url}\n")


@log_app.command("topics")
def log_topics(ctx: typer.Context, namespace: Optional[str] = typer.Argument(None, metavar="[NS]")) -> None:
    """Topic-partitions of one namespace (or all): records, bytes, segments."""
    log = cli_context(ctx).open()
    names = [namespace] if namespace else log.namespaces()
    table = output.table("namespace", "topic", "partition", "records", "bytes", "segments",
                   right=("partition", "records", "bytes", "segments"))
    for ns in names:
        for p in log.partitions(ns):
            table.add_row(ns, f"{ns}.{p.topic}", str(p.partition), str(p.records), str(p.bytes), str(p.segments))
    output.console().print(table)


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
    from_ts, to_ts = output.time_option(from_, "--from"), output.time_option(to, "--to")
    log = cli_context(ctx).open()
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
    console = output.console(stderr=True)
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
    s = cli_context(ctx).open().stats(namespace)
    console = output.console()
    head = output.table("namespace", "events", "bytes", "first seq", "last seq", "first time", "last time",
                  right=("events", "bytes", "first seq", "last seq"))
    head.add_row(namespace, str(s.events), str(s.bytes), str(s.first_seq or ""), str(s.last_seq or ""),
                 output.time_cell(s.first_ts), output.time_cell(s.last_ts))
    console.print(head)
    per_type = output.table("type", "events", "bytes", right=("events", "bytes"))
    for name in sorted(s.per_type):
        per_type.add_row(name, str(s.per_type[name]), str(s.per_type_bytes[name]))
    console.print(per_type)


@log_app.command("repair")
def log_repair(ctx: typer.Context, namespace: str = typer.Argument(..., metavar="NS"),
               truncate_after: Optional[int] = typer.Option(
                   None, "--truncate-after", metavar="SEQ", min=0,
                   help="Cut the namespace after the commit ending at SEQ (committed events past it were lost); "
                        "its next writer records the cut as LogTruncated.")) -> None:
    """Rebuild what is derived (indexes), rewrite registry files from today's schemas, cut a torn tail nothing
    committed; name what is lost and, with --truncate-after, cut after the last whole commit."""
    log = cli_context(ctx).open()
    if namespace not in log.namespaces():
        raise TapeError(f"no namespace {namespace!r} in {log.url}: `tape log namespaces` lists them")
    done = log.backend.repair(namespace, log.catalog, cut_after=truncate_after)
    if done.truncated is not None and not done.left:
        log.writer(namespace).close()  # records the cut (LogTruncated) now, as the namespace's next writer
        done.fixed.append(f"recorded LogTruncated at seq {done.truncated['after_seq'] + 1:,}")
    for line in done.fixed:
        sys.stdout.write(f"{line}\n")
    if not done.left:
        sys.stdout.write(f"{namespace}: every file checks clean{'' if done.fixed else ' (nothing to repair)'}\n")
        return
    for f in done.left:
        sys.stdout.write(f"{f.text()}\n")
    raise TapeError(f"{namespace}: {len(done.left)} finding(s) left that no repair can undo (listed above); writers "
                    f"stay refused. Restore the namespace from a copy, or cut it after the last whole commit: "
                    f"tape log repair {namespace} --truncate-after {done.whole}")
