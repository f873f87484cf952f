"""Fold a namespace into the SQL read models, with exactly-once effect.

Each batch of events (default 2,000) is one database transaction that (1) moves the namespace's checkpoint from
the seq the projector last committed to the batch's last seq — a compare-and-set, so a second projector on the
same namespace and database fails instead of doubling rows — (2) upserts every row the batch changed. Rows and
checkpoint commit together or not at all: a projector killed at any point resumes from `last_seq + 1` and
ends with the rows a one-shot projection gives. `rebuild` deletes the namespace's rows and checkpoint in one
transaction, then folds from seq 1.

The fold (fold.py) keeps what it needs in memory: positions, balances, instruments, runs and incidents of the
namespace (loaded at start), orders on demand (loaded per batch, cached, dropped past ORDER_CACHE_MAX). Its state
is exactly the committed rows, so a fresh projector continues where the last one stopped. Arithmetic runs in the
folds' context (schemas/decimals.py: no silent rounding of products of 18-place numbers before the final
quantization). The rows are written by upsert.py.
"""
from __future__ import annotations

import decimal
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from projections.sql import models as m
from projections.sql.db import connect_error
from projections.sql.fold import HANDLERS, ORDER_EVENTS, ReadModelFold
from projections.sql.upsert import Transaction, dialect_insert, read_model_upserts
from schemas.decimals import ARITHMETIC
from schemas.errors import TapeError

PROJECTOR = "sql"
BATCH_EVENTS = 2000
ORDER_CACHE_MAX = 200_000

HANDLED = tuple(HANDLERS)  # the event types the projector asks the log for: those the fold has a handler for

Batch = list[tuple[str, dict[str, Any], int, int]]  # decoded events: (name, data, seq, ts_event)


class ProjectionConflict(TapeError):
    """Another projector moved the checkpoint of the namespace under this one."""


@dataclass
class Progress:
    """What a running projection reports after each batch, so a follower can show how far behind the log it is."""

    events: int        # events folded by this run
    last_seq: int      # checkpoint now
    horizon: int       # last committed seq of the log seen (a lower bound while following)
    elapsed: float

    @property
    def rate(self) -> float:
        return self.events / self.elapsed if self.elapsed > 0 else 0.0


@dataclass
class Result:
    """What one run of the projector folded, for the CLI's summary line and the benchmark."""

    namespace: str
    events: int
    first_seq: int     # checkpoint + 1 at start
    last_seq: int      # checkpoint at the end
    elapsed: float
    batches: int
    rebuilt: bool = False

    @property
    def rate(self) -> float:
        return self.events / self.elapsed if self.elapsed > 0 else 0.0


def _row(r: sa.Row) -> dict[str, Any]:
    return dict(r._mapping)  # Row._mapping is SQLAlchemy's public mapping view, despite the underscore


class Projector:
    """Folds one namespace into one database; see the module docstring for the guarantees."""

    def __init__(self, engine: Engine, namespace: str, *, batch_events: int = BATCH_EVENTS, name: str = PROJECTOR):
        if batch_events < 1:
            raise ValueError("batch_events must be at least 1")
        self.engine = engine
        self.namespace = namespace
        self.batch_events = batch_events
        self.name = name
        self._insert = dialect_insert(engine.dialect)
        self._upserts = read_model_upserts(engine.dialect)
        self.fold: ReadModelFold | None = None
        self.last_seq = 0
        self.events = 0
        self._orders_complete = False  # every order of the namespace is in fold.orders (no lookups needed)

    def _where(self, table: sa.Table) -> Any:
        return table.c.namespace == self.namespace

    # ---- lifecycle --------------------------------------------------------------------------------------------

    def rebuild(self) -> None:
        """Delete the namespace's rows and checkpoint, in one transaction."""
        with self._tx() as conn:
            for table in m.READ_MODEL_TABLES:
                conn.execute(sa.delete(table).where(self._where(table)))
            conn.execute(sa.delete(m.checkpoint).where(self._where(m.checkpoint), m.checkpoint.c.projector == self.name))
        self.fold = None

    def load(self) -> None:
        """The checkpoint and the in-memory state of the namespace, as committed."""
        cp = m.checkpoint
        fold = ReadModelFold(self.namespace)
        with self._tx() as conn:
            conn.execute(self._insert_checkpoint())
            row = conn.execute(sa.select(cp.c.last_seq, cp.c.events).where(
                self._where(cp), cp.c.projector == self.name)).one()
            self.last_seq, self.events = row.last_seq, row.events
            for table, attr, key in ((m.positions, "positions", "instrument_id"), (m.balances, "balances", "currency"),
                                     (m.instruments, "instruments", "instrument_id"), (m.runs, "runs", "run_id"),
                                     (m.incidents, "incidents", "incident_id")):
                target = getattr(fold, attr)
                for r in conn.execute(sa.select(table).where(self._where(table))):
                    target[getattr(r, key)] = _row(r)
            self._orders_complete = not conn.execute(
                sa.select(sa.literal(1)).where(self._where(m.orders)).limit(1)).first()
        self.fold = fold

    def _insert_checkpoint(self) -> Any:
        return self._insert(m.checkpoint).values(namespace=self.namespace, projector=self.name, last_seq=0,
                                                 events=0).on_conflict_do_nothing()

    def _tx(self) -> Transaction:
        return Transaction(self.engine)

    # ---- one batch --------------------------------------------------------------------------------------------

    def _load_orders(self, conn: sa.Connection, fold: ReadModelFold, batch: Batch) -> None:
        """Orders the batch touches that are not in memory, from the database."""
        if self._orders_complete:
            return
        want = {d["client_order_id"] for name, d, _, _ in batch if name in ORDER_EVENTS} - fold.orders.keys()
        if not want:
            return
        o = m.orders
        ids = sorted(want)
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            for r in conn.execute(sa.select(o).where(self._where(o), o.c.client_order_id.in_(chunk))):
                fold.orders[r.client_order_id] = _row(r)

    def commit_batch(self, batch: Batch, upto: int) -> None:
        """Fold decoded events (name, data, seq, ts) and move the checkpoint to `upto`, in one transaction."""
        fold = self.fold
        if fold is None:
            raise RuntimeError("the projector's state is not loaded (or a batch failed): call load() first")
        self.fold = None  # until the transaction commits, memory may be ahead of the database
        cp = m.checkpoint
        with self._tx() as conn:
            moved = conn.execute(
                sa.update(cp)
                .where(self._where(cp), cp.c.projector == self.name, cp.c.last_seq == self.last_seq)
                .values(last_seq=upto, events=cp.c.events + len(batch))
            ).rowcount
            if moved != 1:
                raise ProjectionConflict(
                    f"the checkpoint of {self.namespace} moved under this projector (expected seq {self.last_seq}): "
                    "another projector is folding it into the same database; run one at a time")
            self._load_orders(conn, fold, batch)
            with decimal.localcontext(ARITHMETIC):
                for name, data, seq, ts in batch:
                    fold.apply(name, data, seq, ts)
            for table, rows in fold.take_changes().items():
                self._upserts[table].execute(conn, rows)
        self.fold = fold
        self.last_seq = upto
        self.events += len(batch)
        if len(fold.orders) > ORDER_CACHE_MAX:
            fold.orders.clear()
            self._orders_complete = False

    # ---- the loop ---------------------------------------------------------------------------------------------

    def run(self, log: Any, *, follow: bool = False, to_seq: int | None = None, poll_interval: float = 0.2,
            stop: Callable[[], bool] | None = None, on_progress: Callable[[Progress], None] | None = None,
            rebuild: bool = False) -> Result:
        """Fold committed events after the checkpoint (up to `to_seq`); with follow, keep folding until stop()."""
        stop = stop or (lambda: False)
        t0 = time.perf_counter()
        try:
            if rebuild:
                self.rebuild()
            self.load()
        except sa.exc.DBAPIError as e:
            raise connect_error(self.engine.url, e) from None
        first = self.last_seq + 1
        events0 = self.events
        batches = 0
        horizon = self.last_seq

        def report() -> None:
            if on_progress is not None:
                on_progress(Progress(self.events - events0, self.last_seq, max(horizon, self.last_seq),
                                     time.perf_counter() - t0))

        while True:
            if to_seq is not None and self.last_seq >= to_seq:
                break
            replay = log.replay(self.namespace, types=HANDLED, from_seq=self.last_seq + 1, to_seq=to_seq)
            seen = _horizon(replay)
            if seen is not None:
                horizon = seen if to_seq is None else min(seen, to_seq)
            report()
            for batch, upto in self._batches(replay, stop):
                self.commit_batch(batch, upto)
                batches += 1
                report()
            if horizon > self.last_seq and not stop():
                self.commit_batch([], horizon)  # trailing events of other types: the checkpoint reaches the horizon
                report()
            if not follow or stop():
                break
            deadline = time.monotonic() + poll_interval
            while time.monotonic() < deadline and not stop():
                time.sleep(min(0.05, poll_interval))
            if stop():
                break
        return Result(self.namespace, self.events - events0, first, self.last_seq, time.perf_counter() - t0, batches,
                      rebuild)

    def _batches(self, replay: Iterable[Any], stop: Callable[[], bool]) -> Iterator[tuple[Batch, int]]:
        batch: Batch = []
        size = self.batch_events
        for e in replay:
            batch.append((e.name, e.data, e.seq, e.ts_event))
            if len(batch) >= size:
                yield batch, batch[-1][2]
                batch = []
                if stop():
                    return
        if batch:
            yield batch, batch[-1][2]


def _horizon(replay: Any) -> int | None:
    """The log's last committed seq as the replay sees it before reading (every handled event ≤ it is delivered)."""
    reader = getattr(replay, "reader", None)
    horizon = getattr(reader, "horizon", None)
    try:
        return int(horizon()) if horizon is not None else None
    except Exception:
        return None


def project(log: Any, engine: Engine, namespace: str, **options: Any) -> Result:
    """Fold `namespace` of `log` into `engine`'s read models; options as Projector(...) and Projector.run(...)."""
    init = {k: options.pop(k) for k in ("batch_events", "name") if k in options}
    return Projector(engine, namespace, **init).run(log, **options)
