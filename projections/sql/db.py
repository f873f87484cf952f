"""Databases of the read models: URLs, engines, Alembic migrations and the schema check.

The default database of a file: store is `<store>/tape.sqlite`; any other store needs `--db URL` or `TAPE_DB`.
PostgreSQL URLs look like `postgresql+psycopg://user@host:5432/dbname`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url

from projections.sql.models import VERSION_TABLE
from schemas.errors import TapeError

SQLITE_FILE = "tape.sqlite"


class DatabaseError(TapeError):
    """The read-model database cannot be reached or used."""


class SchemaOutOfDate(TapeError):
    """The database schema is not the one this code expects."""


def display_url(url: str | sa.URL) -> str:
    """The URL without its password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return str(url)


def default_db_url(store_url: str | None) -> str:
    """`sqlite:///<store>/tape.sqlite` for a file: store; other stores have no default database."""
    from eventstore.filelog import FileLog
    from eventstore.store import DEFAULT_STORE, backend_for

    store_url = store_url or os.environ.get("TAPE_STORE") or DEFAULT_STORE
    if store_url.startswith("kafka://"):
        raise DatabaseError(f"store {store_url} has no default database: pass --db URL or set TAPE_DB "
                            "(e.g. sqlite:///tape.sqlite or postgresql+psycopg://user@host/db)")
    backend = backend_for(store_url)
    if not isinstance(backend, FileLog):
        raise DatabaseError(f"store {store_url} has no default database: pass --db URL or set TAPE_DB")
    root = Path(backend.root).expanduser().resolve()
    if not root.is_dir():
        raise DatabaseError(f"store {root} does not exist: check --store / TAPE_STORE, or pass --db URL")
    return f"sqlite:///{root / SQLITE_FILE}"


def resolve_db_url(db: str | None, store_url: str | None = None) -> str:
    """--db, else TAPE_DB, else the store's default SQLite file."""
    url = db or os.environ.get("TAPE_DB")
    if url:
        try:
            make_url(url)
        except sa.exc.ArgumentError:
            raise DatabaseError(f"database URL {url!r} is not valid: use sqlite:///PATH or "
                                "postgresql+psycopg://user@host:port/db") from None
        return url
    return default_db_url(store_url)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # transactions are begun by the "begin" hook below, not by pysqlite
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _sqlite_begin(conn: sa.Connection) -> None:
    conn.exec_driver_sql("BEGIN")


def make_engine(url: str) -> Engine:
    """An engine for a read-model database (SQLite: WAL, real transactions; PostgreSQL through psycopg 3)."""
    try:
        u = make_url(url)
        if u.get_backend_name() == "sqlite":
            if u.database and u.database != ":memory:" and not u.database.startswith("file:"):
                parent = Path(u.database).expanduser().resolve().parent
                if not parent.is_dir():
                    raise DatabaseError(f"database {url}: directory {parent} does not exist")
            engine = sa.create_engine(u)
            event.listen(engine, "connect", _sqlite_pragmas)
            event.listen(engine, "begin", _sqlite_begin)
            return engine
        if u.get_backend_name() == "postgresql" and u.get_driver_name() in ("psycopg2", "postgresql"):
            u = u.set(drivername="postgresql+psycopg")
        return sa.create_engine(u, pool_pre_ping=True)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as e:
        raise DatabaseError(f"database URL {display_url(url)}: {_first_line(e)}") from None


def _first_line(e: BaseException) -> str:
    text = str(getattr(e, "orig", None) or e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def connect_error(url: str | sa.URL, e: BaseException) -> DatabaseError:
    return DatabaseError(f"database {display_url(url)}: {_first_line(e)}")


# ---- Alembic -------------------------------------------------------------------------------------------------


def migrations_dir() -> Path:
    """The installed migrations/ directory (a package resource)."""
    import migrations

    return Path(migrations.__file__).resolve().parent


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


def checkpoints(engine: Engine) -> Iterator[tuple[str, str, int, int]]:
    """(namespace, projector, last_seq, events) of every checkpoint, if the table exists."""
    from projections.sql.models import checkpoint

    with engine.connect() as conn:
        if not sa.inspect(conn).has_table(checkpoint.name):
            return
        rows = conn.execute(sa.select(checkpoint.c.namespace, checkpoint.c.projector, checkpoint.c.last_seq,
                                      checkpoint.c.events).order_by(checkpoint.c.namespace)).all()
    for r in rows:
        yield r[0], r[1], r[2], r[3]
