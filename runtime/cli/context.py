"""The store a command works on: the root's --store (or TAPE_STORE), resolved once, opened on demand."""
from __future__ import annotations

from dataclasses import dataclass

import typer

from eventstore.store import Log


@dataclass
class CliContext:
    """What the root callback parsed, handed to every command through typer's context."""

    store: str

    def open(self) -> Log:
        return Log.open(self.store)


def cli_context(ctx: typer.Context) -> CliContext:
    """The CliContext of the running command (set by the root callback)."""
    obj = ctx.find_root().obj
    assert isinstance(obj, CliContext), "the root callback sets a CliContext"
    return obj
