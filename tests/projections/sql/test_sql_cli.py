"""`db upgrade`, `db status` and `project` through a small Typer app, plus the schema refusal and migrations."""
from __future__ import annotations

import re
import subprocess

import pytest
import sqlalchemy as sa
from sqlkit import dump, hand_log
from typer.testing import CliRunner

import migrations
from migrations import upgrade
from projections.sql import db as dbmod, models as m
from runtime.cli.app import app


@pytest.fixture
def cli(monkeypatch):
    monkeypatch.delenv("TAPE_DB", raising=False)
    monkeypatch.delenv("TAPE_STORE", raising=False)
    runner = CliRunner()
    return lambda *args: runner.invoke(app, list(args))


def test_db_status_and_upgrade(cli, db_url, sql_log):
    store = f"--store={sql_log.url}"
    r = cli(store, "db", "status", "--db", db_url)
    assert r.exit_code == 1, r.output
    assert "current:  (empty)" in r.stdout and "head:     0002" in r.stdout
    assert "has no tape schema yet: run `tape db upgrade`" in r.stdout

    r = cli(store, "db", "upgrade", "--db", db_url)
    assert r.exit_code == 0, r.output
    assert r.stdout.strip().endswith("schema upgraded (empty) → 0002")
    r = cli(store, "db", "upgrade", "--db", db_url)
    assert r.exit_code == 0 and r.stdout.strip().endswith("schema already at 0002")

    hand_log(sql_log, "hand")
    assert cli(store, "project", "hand", "--db", db_url).exit_code == 0
    r = cli(store, "db", "status", "--db", db_url)
    assert r.exit_code == 0, r.output
    assert "current:  0002" in r.stdout and "status:   up to date" in r.stdout
    assert re.search(r"hand\s+sql\s+seq 39\s+\(36 events\)", r.stdout)


def test_project_refuses_an_out_of_date_schema(cli, db_url, engines, sql_log, python, py_env):
    hand_log(sql_log, "hand")
    store = f"--store={sql_log.url}"
    r = cli(store, "project", "hand", "--db", db_url)
    assert r.exit_code == 2 and r.stderr == (f"error: database {dbmod.display_url(db_url)} has no tape schema yet: "
                                             "run `tape db upgrade` (same --db / TAPE_DB) first\n")
    # through the entry point in a process of its own: one line on stderr, exit code 2, nothing written
    p = subprocess.run([python, "-m", "runtime.cli", store, "project", "hand", "--db", db_url],
                       env=py_env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("error: database ")
    assert "run `tape db upgrade`" in p.stderr

    engine = engines(db_url)
    upgrade(engine)
    with engine.begin() as conn:  # a revision this code does not know (a newer tape migrated it)
        conn.execute(sa.text(f"UPDATE {m.VERSION_TABLE} SET version_num = 'ffff99'"))
    r = cli(store, "project", "hand", "--db", db_url)
    assert r.exit_code == 2 and "revision ffff99, unknown to this version" in r.stderr
    assert cli(store, "db", "status", "--db", db_url).exit_code == 1
    with engine.begin() as conn:  # an older revision: behind this code
        conn.execute(sa.text(f"UPDATE {m.VERSION_TABLE} SET version_num = '0001'"))
    r = cli(store, "project", "hand", "--db", db_url)
    assert r.exit_code == 2 and "tape db upgrade" in r.stderr
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {m.VERSION_TABLE} SET version_num = '0002'"))
    r = cli(store, "project", "hand", "--db", db_url)
    assert r.exit_code == 0, r.output
    assert dump(engine, "hand")["projection_checkpoint"] == [("sql", 39, 36)]


def test_project_command_rate_and_rebuild(cli, db, sql_log):
    url = db.url.render_as_string(hide_password=False)
    store = f"--store={sql_log.url}"
    hand_log(sql_log, "hand")
    r = cli(store, "project", "hand", "--db", url)
    assert r.exit_code == 0, r.output
    line = r.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"hand → \S+: 36 events folded, checkpoint seq 39, 1 batches, [\d.]+ s, [\d,]+ events/s",
                        line), line
    first = dump(db, "hand")
    r = cli(store, "project", "hand", "--db", url, "--batch-events", "4")
    assert r.exit_code == 0 and ": 0 events folded, checkpoint seq 39," in r.stdout
    r = cli(store, "project", "hand", "--db", url, "--rebuild", "--batch-events", "4")
    assert r.exit_code == 0, r.output
    assert ": 36 events folded (rebuilt), checkpoint seq 39, 9 batches," in r.stdout
    assert dump(db, "hand") == first
    r = cli(store, "project", "nope", "--db", url)
    assert r.exit_code == 2 and "no namespace 'nope'" in r.stderr


@pytest.mark.parametrize("db_kind", ["sqlite"])
def test_default_database_is_inside_a_file_store(cli, sql_log, engines):
    store = f"--store={sql_log.url}"
    hand_log(sql_log, "hand")
    r = cli(store, "db", "upgrade")
    assert r.exit_code == 0, r.output
    path = sql_log.backend.root.resolve() / "tape.sqlite"
    assert f"sqlite:///{path}" in r.stdout and path.is_file()
    assert cli(store, "project", "hand").exit_code == 0
    assert dump(engines(f"sqlite:///{path}"), "hand")["projection_checkpoint"] == [("sql", 39, 36)]
    r = cli("--store=kafka://127.0.0.1:9092", "db", "status")
    assert r.exit_code == 2 and "has no default database: pass --db URL or set TAPE_DB" in r.stderr


def test_migrations_match_the_models(db):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with db.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "version_table": m.VERSION_TABLE})
        assert compare_metadata(ctx, m.metadata) == []
    migrations.downgrade(db, "base")
    assert migrations.schema_status(db).current is None
    assert set(sa.inspect(db).get_table_names()) <= {m.VERSION_TABLE}
    upgrade(db)
    assert migrations.schema_status(db).up_to_date
    assert set(sa.inspect(db).get_table_names()) == {t.name for t in m.metadata.sorted_tables} | {m.VERSION_TABLE}


@pytest.mark.parametrize("db_kind", ["sqlite"])
def test_follow_stops_cleanly_on_sigint(db, sql_log, python, py_env):
    import signal
    import time

    hand_log(sql_log, "hand")
    url = db.url.render_as_string(hide_password=False)
    p = subprocess.Popen([python, "-m", "runtime.cli", f"--store={sql_log.url}", "project", "hand", "--follow",
                          "--db", url], env=py_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and dump(db, "hand")["projection_checkpoint"] != [("sql", 39, 36)]:
            assert p.poll() is None, p.communicate()
            time.sleep(0.05)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err
    assert re.search(r"hand → \S+: 36 events folded, checkpoint seq 39, .* events/s\n$", out), out
