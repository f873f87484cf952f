"""Projector rate: events/s folded into the SQL read models, SQLite and PostgreSQL, for a generated trading log.

Usage: python bench/projector_rate.py [--orders N] [--batch-events K ...] [--pg URL] [--dir PATH]
The log has about 6 events per order (intent, risk verdict, submit, accept, 1–2 fills or a cancel): the default
20,000 orders make ~100k events. PostgreSQL: --pg, else TAPE_BENCH_PG_URL / TAPE_TEST_PG_URL, else
postgresql+psycopg://postgres@127.0.0.1:5432/test; the run uses a fresh schema and drops it. The "replay+decode"
line is the ceiling: reading and decoding the same events without folding or writing anything.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "projections" / "sql"))

import sqlalchemy as sa  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlkit import generate  # noqa: E402

from eventstore.store import Log  # noqa: E402
from migrations import upgrade  # noqa: E402
from projections.sql.db import make_engine  # noqa: E402
from projections.sql.projector import HANDLED, project  # noqa: E402

NS = "bench"


def pg_schema(url: str) -> tuple[str, str] | None:
    """(schema, url whose search_path is that fresh schema), or None when the server does not answer."""
    name = f"tape_bench_{uuid.uuid4().hex[:8]}"
    try:
        engine = sa.create_engine(url, connect_args={"connect_timeout": 3}, poolclass=sa.pool.NullPool)
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{name}"'))
        engine.dispose()
    except Exception as e:
        print(f"postgresql: skipped, {url} does not answer ({str(e).splitlines()[0]})")
        return None
    return name, make_url(url).update_query_dict({"options": f"-csearch_path={name}"}).render_as_string(False)


def drop_schema(url: str, name: str) -> None:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
    engine.dispose()


def run(label: str, log: Log, url: str, batches: list[int], events: int) -> None:
    engine = make_engine(url)
    try:
        upgrade(engine)
        for i, batch in enumerate(batches):
            r = project(log, engine, NS, rebuild=i > 0, batch_events=batch)
            assert r.events == events, (r.events, events)
            print(f"{label:<11} batch {batch:>6,}: {r.events:,} events in {r.elapsed:6.2f} s = "
                  f"{r.rate:>9,.0f} events/s ({r.batches} transactions)")
    finally:
        engine.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orders", type=int, default=20_000)
    ap.add_argument("--batch-events", type=int, nargs="+", default=[2000, 500, 10_000])
    ap.add_argument("--pg", default=os.environ.get("TAPE_BENCH_PG_URL") or os.environ.get("TAPE_TEST_PG_URL")
                    or "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    ap.add_argument("--dir", help="work directory (default: a temporary one, removed after)")
    args = ap.parse_args()

    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="tape-projector-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        log = Log.open(f"file:{work / 'store'}")
        t = time.perf_counter()
        last = generate(log, NS, args.orders, seed=1)
        print(f"log: {last:,} events ({args.orders:,} orders) written in {time.perf_counter() - t:.2f} s")
        t = time.perf_counter()
        events = sum(1 for e in log.replay(NS, types=HANDLED) if e.data)
        dt = time.perf_counter() - t
        print(f"replay+decode        : {events:,} events in {dt:6.2f} s = {events / dt:>9,.0f} events/s (ceiling)")

        run("sqlite", log, f"sqlite:///{work / 'bench.sqlite'}", args.batch_events, events)
        made = pg_schema(args.pg)
        if made is not None:
            name, url = made
            try:
                run("postgresql", log, url, args.batch_events, events)
            finally:
                drop_schema(args.pg, name)
        log.close()
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
