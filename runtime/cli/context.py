"""The store a command works on: the root's --store (or TAPE_STORE), resolved once, opened on demand.

Also the edge's policy for the read models: the default database of a file: store is `<store>/tape.sqlite`; any
other store needs `--db URL` or `TAPE_DB`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import typer

from eventstore.store import Log, file_store_path
from projections.sql.db import DatabaseError, check_db_url

SQLITE_FILE = "tape.sqlite"


@dataclass
class CliContext:
    """What the root callback parsed, handed to every command through typer's context."""

    store: str

    def open(self) -> Log:
        return Log.open(self.store)

    def db_url(self, db: str | None) -> str:
        """--db (or TAPE_DB), else the store's default SQLite file."""
        if db:
            return check_db_url(db)
        path = file_store_path(self.store)
        if path is None:
            raise DatabaseError(f"store {self.store} has no default database: pass --db URL or set TAPE_DB "
                                "(e.g. sqlite:///tape.sqlite or postgresql+psycopg://user@host/db)")
        root = Path(path).resolve()
        if not root.is_dir():
            raise DatabaseError(f"store {root} does not exist: check --store / TAPE_STORE, or pass --db URL")
        return f"sqlite:///{root / SQLITE_FILE}"


def cli_context(ctx: typer.Context) -> CliContext:
    """The CliContext of the running command (set by the root callback)."""
    obj = ctx.find_root().obj
    assert isinstance(obj, CliContext), "the root callback sets a CliContext"
    return obj
