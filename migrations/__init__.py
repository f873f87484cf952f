"""Alembic migrations of the SQL read models (projections/sql/models.py), and the schema check.

Used without alembic.ini: `alembic_config()` points script_location at this installed package. `tape db upgrade`
applies them; `tape db status` compares the database's revision with the head; `require_current_schema` refuses
to fold into a database whose schema is not at head. New revision (from the project root):
    python -c "from alembic import command; from migrations import alembic_config as c; \
command.revision(c('sqlite:///tmp-rev.sqlite'), 'message', autogenerate=True)"
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from projections.sql.db import connect_error, display_url
from projections.sql.models import VERSION_TABLE
from schemas.errors import TapeError


class SchemaOutOfDate(TapeError):
    """The database schema is not the one this code expects."""


def migrations_dir() -> Path:
    """The installed migrations/ directory (a package resource)."""
    return Path(__file__).resolve().parent


def alembic_config(url: str | None = None, connection: sa.Connection | None = None) -> Any:
    """A Config without alembic.ini: script_location is the installed migrations package."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.set_main_option("version_table", VERSION_TABLE)
    cfg.attributes["url"] = url
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    return {s.revision for s in ScriptDirectory.from_config(alembic_config()).walk_revisions()}


def current_revision(conn: sa.Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()


@dataclass
class SchemaStatus:
    url: str
    current: str | None
    head: str

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head

    @property
    def unknown(self) -> bool:
        return self.current is not None and self.current not in known_revisions()

    def problem(self) -> str | None:
        """One line saying what is wrong and which command fixes it, or None when up to date."""
        where = f"database {display_url(self.url)}"
        if self.up_to_date:
            return None
        if self.current is None:
            return f"{where} has no tape schema yet: run `tape db upgrade` (same --db / TAPE_DB) first"
        if self.unknown:
            return (f"{where} is at schema revision {self.current}, unknown to this version of tape (head "
                    f"{self.head}): upgrade tape, or point --db / TAPE_DB at another database")
        return (f"{where} is at schema revision {self.current}, out of date (head {self.head}): "
                "run `tape db upgrade` (same --db / TAPE_DB)")


def schema_status(engine: Engine) -> SchemaStatus:
    try:
        with engine.connect() as conn:
            current = current_revision(conn)
    except sa.exc.DBAPIError as e:
        raise connect_error(engine.url, e) from None
    return SchemaStatus(engine.url.render_as_string(hide_password=False), current, head_revision())


def require_current_schema(engine: Engine) -> None:
    """Refuse to run on a database whose schema is not at head."""
    problem = schema_status(engine).problem()
    if problem:
        raise SchemaOutOfDate(problem)


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """Apply migrations up to `revision`; returns (revision before, revision after)."""
    from alembic import command

    try:
        with engine.begin() as conn:
            before = current_revision(conn)
            cfg = alembic_config(connection=conn)
            command.upgrade(cfg, revision)
            after = current_revision(conn)
    except sa.exc.DBAPIError as e:
        raise connect_error(engine.url, e) from None
    return before, after


def downgrade(engine: Engine, revision: str) -> None:
    from alembic import command

    with engine.begin() as conn:
        command.downgrade(alembic_config(connection=conn), revision)
