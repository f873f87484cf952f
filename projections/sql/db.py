"""Databases of the read models: URLs, engines and the checkpoints they hold.

PostgreSQL URLs look like `postgresql+psycopg://user@host:5432/dbname`; SQLite ones `sqlite:///PATH`. Which
database a command uses (the store's default) is the CLI's decision (runtime/cli/context.py); the schema and its
migrations are the migrations package's.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url

from schemas.errors import TapeError

SQLITE_FILE = "tape.sqlite"


class DatabaseError(TapeError):
    """The read-model database cannot be reached or used."""


def display_url(url: str | sa.URL) -> str:
    """The URL without its password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return str(url)


def check_db_url(url: str) -> str:
    """`url` when it is a database URL SQLAlchemy can parse; a one-line error naming the accepted forms if not."""
    try:
        make_url(url)
    except sa.exc.ArgumentError:
        raise DatabaseError(f"database URL {url!r} is not valid: use sqlite:///PATH or "
                            "postgresql+psycopg://user@host:port/db") from None
    return url


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
