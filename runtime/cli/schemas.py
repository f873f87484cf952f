"""`tape schemas`: the shipped event schemas and their compatibility with what a store has registered."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from eventstore.catalog import Catalog
from runtime.cli import output
from runtime.cli.context import cli_context

schemas_app = typer.Typer(no_args_is_help=True, help="The Avro event schemas and their compatibility.")


@schemas_app.command("list")
def schemas_list() -> None:
    """Event types of the shipped schemas: name, topic, CRC-64-AVRO fingerprint."""
    table = output.table("name", "topic", "fingerprint")
    for t in sorted(Catalog.load().types, key=lambda t: (t.topic, t.full_name)):
        table.add_row(t.full_name, t.topic, f"{t.fingerprint:016x}")
    output.console().print(table)


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
    from eventstore.schemacheck import check
    from schemas import SCHEMA_DIR

    result = check(cli_context(ctx).open(), directory or SCHEMA_DIR)
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
