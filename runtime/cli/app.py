"""The root of `tape`: the error policy, the --store option, and every command group attached.

Every error the user can fix (a TapeError or bad usage) is printed as one line `error: ...` on stderr with exit
code 2, never a traceback. Each group lives in its own module with its own typer app; this module only attaches
them, so imports run root → groups → shared helpers and never back.
"""
from __future__ import annotations

import os
import sys
from typing import Any

import typer

# typer >= 0.20 vendors click and exports only TyperException, the base of click's errors; telling "no arguments:
# show the help" apart from a usage error needs click's own class, reached here and nowhere else
from typer._click.exceptions import NoArgsIsHelpError
from typer.core import TyperGroup

from eventstore.store import DEFAULT_STORE
from runtime.cli import (
    audit,
    backtest,
    db,
    incidents,
    ingest,
    live,
    log,
    replay,
    report,
    sandbox,
    schemas,
    status,
    sweep,
)
from runtime.cli.context import CliContext
from schemas.errors import TapeError

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
        except NoArgsIsHelpError as e:
            e.show()
            code = EXIT_ERROR
        except typer.TyperException as e:  # click's usage and parameter errors
            _fail(e.format_message())  # type: ignore[attr-defined]
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


@app.callback()
def root(
    ctx: typer.Context,
    store: str = typer.Option(DEFAULT_STORE, "--store", envvar="TAPE_STORE", metavar="URL",
                              help="Store URL: file:PATH or kafka://HOST:PORT."),
) -> None:
    ctx.obj = CliContext(store)


app.add_typer(log.log_app, name="log")
app.add_typer(schemas.schemas_app, name="schemas")
app.add_typer(ingest.ingest_app, name="ingest")
app.command("backtest")(backtest.backtest)
app.command("sweep")(sweep.sweep_command)
backtest.runs_app.command("compare")(report.compare_command)
app.add_typer(backtest.runs_app, name="runs")
app.command("report")(report.report_command)
app.command("replay")(replay.replay)
app.add_typer(audit.audit_app, name="audit")
app.add_typer(db.db_app, name="db")
app.command("project")(db.project)
app.add_typer(live.live_app, name="live")
app.add_typer(incidents.incidents_app, name="incidents")
app.command("status")(status.status_command)
app.command("top")(status.top_command)
app.add_typer(sandbox.sandbox_app, name="sandbox")


def main() -> None:
    """Console script entry point `tape`."""
    try:
        app(prog_name="tape")
    except BrokenPipeError:
        _silence_stdout()
        sys.exit(0)
