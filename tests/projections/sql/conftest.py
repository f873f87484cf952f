"""Databases for the read-model tests: a SQLite file and a fresh schema on the real PostgreSQL server.

PostgreSQL comes from TAPE_TEST_PG_URL; else the server at postgresql+psycopg://postgres@127.0.0.1:5432/test when
it answers; else testcontainers' PostgreSQL when a Docker engine answers. When none does, its tests skip with one
line, unless TAPE_REQUIRE_SERVICES=1 (CI), where they fail.
"""
from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

PG_URL = os.environ.get("TAPE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
DBS = ("sqlite", "postgresql")


def _probe(url: str) -> str | None:
    """None when the PostgreSQL server at url answers, else why not (one line)."""
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(url, connect_args={"connect_timeout": 3}, poolclass=sa.pool.NullPool)
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as e:  # any failure to reach it: driver missing, refused, auth, unknown database
        text = str(getattr(e, "orig", None) or e).strip().splitlines()
        return text[0] if text else type(e).__name__


def _docker_answers() -> bool:
    try:
        import docker

        return bool(docker.from_env(timeout=3).ping())
    except Exception:
        return False


@pytest.fixture(scope="session")
def pg_server():
    """(URL, None) of a PostgreSQL server that answers, or (URL, why not) when none does."""
    problem = _probe(PG_URL)
    if problem is None or os.environ.get("TAPE_TEST_PG_URL") or not _docker_answers():
        yield PG_URL, problem
        return
    from testcontainers.postgres import PostgresContainer

    with PostgresContainer("postgres:16-alpine", driver="psycopg") as pg:
        url = pg.get_connection_url()
        yield url, _probe(url)


def need_pg(problem: str | None, url: str = PG_URL) -> None:
    if problem is None:
        return
    message = f"PostgreSQL at {url} does not answer: {problem}"
    if os.environ.get("TAPE_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{message} (TAPE_REQUIRE_SERVICES=1)", pytrace=False)
    pytest.skip(message)


class PgSchemas:
    """Fresh schemas on the server, each reached through a URL whose search_path is that schema."""

    def __init__(self, url: str = PG_URL) -> None:
        self.url = url
        self.made: list[str] = []

    def new(self) -> str:
        import sqlalchemy as sa
        from sqlalchemy.engine import make_url

        name = f"tape_t_{uuid.uuid4().hex[:12]}"
        engine = sa.create_engine(self.url, poolclass=sa.pool.NullPool)
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{name}"'))
        engine.dispose()
        self.made.append(name)
        url = make_url(self.url).update_query_dict({"options": f"-csearch_path={name}"})
        return url.render_as_string(hide_password=False)

    def drop(self) -> None:
        import sqlalchemy as sa

        engine = sa.create_engine(self.url, poolclass=sa.pool.NullPool)
        with engine.begin() as conn:
            for name in self.made:
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        engine.dispose()


@pytest.fixture
def new_db_url(db_kind: str, tmp_path: Path, pg_server):
    """A factory of empty databases of the parametrized kind (`db_kind`): call it for each database needed."""
    kind = db_kind
    pg_url, pg_problem = pg_server
    schemas = PgSchemas(pg_url)
    count = [0]

    def make() -> str:
        count[0] += 1
        if kind == "sqlite":
            return f"sqlite:///{tmp_path / f'read{count[0]}.sqlite'}"
        need_pg(pg_problem, pg_url)
        return schemas.new()

    yield make
    if schemas.made:
        schemas.drop()


@pytest.fixture(params=DBS)
def db_kind(request) -> str:
    return request.param


@pytest.fixture
def db_url(new_db_url) -> str:
    """An empty database (no schema yet) of each kind."""
    return new_db_url()


@pytest.fixture
def engines(new_db_url):
    """Engines made during a test, disposed at its end (before new_db_url drops the schemas)."""
    made = []

    def make(url: str):
        from projections.sql.db import make_engine

        e = make_engine(url)
        made.append(e)
        return e

    yield make
    for e in made:
        e.dispose()


@pytest.fixture
def db(db_url, engines):
    """An engine on a database upgraded to head, of each kind."""
    from migrations import upgrade

    engine = engines(db_url)
    upgrade(engine)
    return engine


@pytest.fixture
def sql_log(tmp_path: Path):
    """A Log on a fresh file: store (tmp_path/store) for the read-model tests."""
    from eventstore.store import Log

    d = tmp_path / "store"
    d.mkdir()
    log = Log.open(f"file:{d}")
    yield log
    log.close()
