"""Writing the fold's rows: one upsert per read-model table, run the fastest way each database offers, inside a
transaction whose driver errors come out as one-line DatabaseErrors.

SQLAlchemy's per-row processing is the bottleneck of a projection, so the upserts skip it: the statement is compiled
once and run as a plain DBAPI executemany (ExecutemanyUpsert); on PostgreSQL, batches of many rows go through COPY
into a temporary table and one INSERT … SELECT … ON CONFLICT DO UPDATE (CopyUpsert), about three times faster. Rows
come from the fold, whose decimals are already quantized to 18 places, so the Dec column type's work is done.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any, Callable, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from projections.sql import models as m
from projections.sql.db import connect_error
from schemas.errors import TapeError

Row = dict[str, Any]


class Upsert(Protocol):
    """Inserts rows, updating the ones whose primary key is already there."""

    def execute(self, conn: sa.Connection, rows: list[Row]) -> None: ...


def dialect_insert(dialect: sa.Dialect) -> Callable[[sa.Table], Any]:
    """The dialect's INSERT construct with ON CONFLICT: the read models live in SQLite or PostgreSQL only."""
    if dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        raise TapeError(f"database dialect {dialect.name!r} is not supported: use SQLite or PostgreSQL")
    return insert


def upsert_statement(insert: Callable[[sa.Table], Any], table: sa.Table) -> Any:
    """INSERT … ON CONFLICT (primary key) DO UPDATE every other column: a row folded again replaces its old self."""
    ins = insert(table)
    pk = [c.name for c in table.primary_key.columns]
    return ins.on_conflict_do_update(index_elements=pk,
                                     set_={c.name: ins.excluded[c.name] for c in table.c if c.name not in pk})


def read_model_upserts(dialect: sa.Dialect) -> dict[sa.Table, Upsert]:
    """One upsert per read-model table, COPY-backed on PostgreSQL: a batch writes without SQLAlchemy's row cost."""
    insert = dialect_insert(dialect)
    upserts: dict[sa.Table, Upsert] = {}
    for table in m.READ_MODEL_TABLES:
        rows = ExecutemanyUpsert(upsert_statement(insert, table), dialect)
        upserts[table] = CopyUpsert(table, rows) if dialect.name == "postgresql" else rows
    return upserts


def _fixed_point_text(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


class ExecutemanyUpsert:
    """An upsert compiled once and run as a plain DBAPI executemany (SQLAlchemy's per-row processing is the
    bottleneck otherwise). Rows come from the fold, whose decimals are already quantized by q18: PostgreSQL gets
    them as Decimal, SQLite as the same fixed-point text the Dec type writes."""

    def __init__(self, stmt: Any, dialect: sa.Dialect):
        compiled = stmt.compile(dialect=dialect)
        self.sql = str(compiled)
        self.positional = bool(compiled.positional)
        self.names = list(compiled.positiontup or ()) if self.positional else []
        table = stmt.table
        self.text_decimals = dialect.name == "sqlite"
        self.dec = {c.name for c in table.c if isinstance(c.type, m.Dec)}

    def params(self, rows: list[Row]) -> list[Any]:
        """The rows as the driver's parameters: tuples in the compiled order when the paramstyle is positional."""
        if not self.positional:
            return rows
        names, dec, text = self.names, self.dec, self.text_decimals
        fmt = _fixed_point_text
        if text:
            return [tuple(fmt(r[n]) if n in dec else r[n] for n in names) for r in rows]
        return [tuple(r[n] for n in names) for r in rows]

    def execute(self, conn: sa.Connection, rows: list[Row]) -> None:
        conn.exec_driver_sql(self.sql, self.params(rows))


class CopyUpsert:
    """PostgreSQL, many rows: COPY into a temporary table, then one INSERT … SELECT … ON CONFLICT DO UPDATE.

    Same effect as the row-by-row upsert (keys are unique within a batch: the fold writes each key once), about
    three times faster. The temporary table lives as long as the connection and empties at every commit."""

    MIN_ROWS = 64

    def __init__(self, table: sa.Table, fallback: ExecutemanyUpsert):
        self.fallback = fallback
        self.cols = [c.name for c in table.c]
        pk = [c.name for c in table.primary_key.columns]
        tmp = f"tape_tmp_{table.name}"
        q = ", ".join(f'"{c}"' for c in self.cols)
        updates = ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in self.cols if c not in pk)
        self.create = (f'CREATE TEMPORARY TABLE IF NOT EXISTS "{tmp}" '
                       f'(LIKE "{table.name}" INCLUDING DEFAULTS) ON COMMIT DELETE ROWS')
        self.copy = f'COPY "{tmp}" ({q}) FROM STDIN'
        self.merge = (f'INSERT INTO "{table.name}" ({q}) SELECT {q} FROM "{tmp}" '
                      f'ON CONFLICT ({", ".join(pk)}) DO UPDATE SET {updates}')

    def execute(self, conn: sa.Connection, rows: list[Row]) -> None:
        if len(rows) < self.MIN_ROWS:
            self.fallback.execute(conn, rows)
            return
        raw = conn.connection.driver_connection
        cols = self.cols
        with raw.cursor() as cur:
            cur.execute(self.create)
            with cur.copy(self.copy) as cp:
                for r in rows:
                    cp.write_row([r[c] for c in cols])
            cur.execute(self.merge)


class Transaction:
    """engine.begin() that turns driver errors into one-line DatabaseErrors (the fold is then abandoned)."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.cm: Any = None

    def __enter__(self) -> sa.Connection:
        try:
            self.cm = self.engine.begin()
            return self.cm.__enter__()
        except sa.exc.DBAPIError as e:
            raise connect_error(self.engine.url, e) from None

    def __exit__(self, *exc: Any) -> Any:
        try:
            return self.cm.__exit__(*exc)
        except sa.exc.DBAPIError as e:
            raise connect_error(self.engine.url, e) from None
