"""Alembic environment: runs on the connection or URL that migrations.alembic_config() passes."""
from __future__ import annotations

from alembic import context

from projections.sql.models import VERSION_TABLE, metadata

config = context.config


def _configure(**kw):
    context.configure(target_metadata=metadata, version_table=VERSION_TABLE, compare_type=True, **kw)


def run_offline() -> None:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    _configure(url=url, literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def _run(connection) -> None:
    _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from projections.sql.db import make_engine

    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
