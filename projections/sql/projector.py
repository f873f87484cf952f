"""Fold a namespace into the SQL read models, with exactly-once effect.

Each batch of events (default 2,000) is one database transaction that (1) moves the namespace's checkpoint from
the seq the projector last committed to the batch's last seq — a compare-and-set, so a second projector on the
same namespace and database fails instead of doubling rows — (2) upserts every row the batch changed. Rows and
checkpoint commit together or not at all: a projector killed at any point resumes from `last_seq + 1` and
ends with the rows a one-shot projection gives. `rebuild` deletes the namespace's rows and checkpoint in one
transaction, then folds from seq 1.

The fold keeps what it needs in memory: positions, balances, instruments, runs and incidents of the namespace
(loaded at start), orders on demand (loaded per batch, cached). Every decimal is quantized to 18 places the
moment it is computed, so the state in memory is exactly the state in the database and a resumed fold continues
exactly where a one-shot fold would be. Arithmetic runs in the folds' context (schemas/decimals.py: no silent
rounding of products of 18-place numbers before the final quantization).
"""
from __future__ import annotations

import decimal
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable, Iterable, Iterator

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from projections.accounting import Position, Terms, balance_moves, fill_position
from projections.orders import FINAL, UNKNOWN, lifecycle_status
from projections.sql import models as m
from projections.sql.db import connect_error, require_current_schema
from projections.sql.models import ZERO, q18
from schemas.decimals import ARITHMETIC, ONE, canonical_json
from schemas.errors import TapeError
from schemas.ids import split_symbol
from schemas.names import ORDER_CHAIN

PROJECTOR = "sql"
BATCH_EVENTS = 2000
ORDER_CACHE_MAX = 200_000

ORDER_EVENTS = tuple(n for n in ORDER_CHAIN if n != "CancelIntent")  # a cancel's events are not the order's row
HANDLED = ORDER_EVENTS + ("AccountState", "InstrumentDefined", "RunStarted", "RunStopped", "IncidentRaised",
                          "IncidentResolved")


class ProjectionConflict(TapeError):
    """Another projector moved the checkpoint of the namespace under this one."""


@dataclass
class Progress:
    events: int        # events folded by this run
    last_seq: int      # checkpoint now
    horizon: int       # last committed seq of the log seen (a lower bound while following)
    elapsed: float

    @property
    def rate(self) -> float:
        return self.events / self.elapsed if self.elapsed > 0 else 0.0


@dataclass
class Result:
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


def _dec(value: Any) -> Decimal | None:
    return None if value is None else q18(value)


@dataclass
class Fold:
    """The read models of one namespace in memory, with the keys each batch changed."""

    namespace: str
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    positions: dict[str, dict[str, Any]] = field(default_factory=dict)
    balances: dict[str, dict[str, Any]] = field(default_factory=dict)
    instruments: dict[str, dict[str, Any]] = field(default_factory=dict)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    incidents: dict[str, dict[str, Any]] = field(default_factory=dict)
    fills: list[dict[str, Any]] = field(default_factory=list)
    risk: list[dict[str, Any]] = field(default_factory=list)
    dirty: dict[str, set[str]] = field(default_factory=lambda: {k: set() for k in (
        "orders", "positions", "balances", "instruments", "runs", "incidents")})

    # ---- dispatch ---------------------------------------------------------------------------------------------

    def apply(self, name: str, d: dict[str, Any], seq: int, ts: int) -> None:
        fn = getattr(self, "_on_" + name, None)
        if fn is not None:
            fn(d, seq, ts)

    # ---- orders -----------------------------------------------------------------------------------------------

    def _order(self, coid: str, instrument: str, seq: int, ts: int) -> dict[str, Any]:
        row = self.orders.get(coid)
        if row is None:
            row = self.orders[coid] = {
                "namespace": self.namespace, "client_order_id": coid, "instrument_id": instrument,
                "strategy_id": None, "venue": None, "side": None, "order_type": None, "quantity": None,
                "price": None, "trigger_price": None, "time_in_force": None, "expire_ts": None, "post_only": None,
                "reduce_only": None, "status": UNKNOWN, "filled_quantity": ZERO, "avg_fill_price": None,
                "venue_order_id": None, "intent_id": None, "created_ts": ts, "submitted_ts": None, "last_ts": ts,
                "last_seq": seq, "reject_code": None, "reject_reason": None, "cancel_reason": None,
            }
        row["last_ts"] = ts
        row["last_seq"] = seq
        self.dirty["orders"].add(coid)
        return row

    @staticmethod
    def _status(row: dict[str, Any], event: str, complete: bool = False) -> None:
        row["status"] = lifecycle_status(row["status"], event, complete=complete)

    @staticmethod
    def _order_fields(row: dict[str, Any], d: dict[str, Any]) -> None:
        row["instrument_id"] = d["instrument_id"]
        row["strategy_id"] = d.get("strategy_id", row["strategy_id"])
        row["side"] = d["side"]
        row["order_type"] = d["order_type"]
        row["quantity"] = q18(d["quantity"])
        row["price"] = _dec(d.get("price"))
        row["trigger_price"] = _dec(d.get("trigger_price"))
        row["time_in_force"] = d["time_in_force"]
        row["expire_ts"] = d.get("expire_ts")
        row["post_only"] = bool(d.get("post_only", False))
        row["reduce_only"] = bool(d.get("reduce_only", False))

    def _on_OrderIntent(self, d: dict[str, Any], seq: int, ts: int) -> None:
        row = self._order(d["client_order_id"], d["instrument_id"], seq, ts)
        self._order_fields(row, d)
        row["intent_id"] = d["envelope"]["event_id"]
        if row["status"] == UNKNOWN:
            row["created_ts"] = ts
        self._status(row, "OrderIntent")

    def _risk(self, d: dict[str, Any], seq: int, ts: int, decision: str) -> None:
        self.risk.append({
            "namespace": self.namespace, "seq": seq, "client_order_id": d["client_order_id"],
            "instrument_id": d["instrument_id"], "intent_id": d["intent_id"], "decision": decision,
            "rule": d.get("rule"), "limit_value": d.get("limit"), "value": d.get("value"), "reason": d.get("reason"),
            "ts_event": ts,
        })

    def _on_RiskAccepted(self, d: dict[str, Any], seq: int, ts: int) -> None:
        self._risk(d, seq, ts, "ACCEPTED")
        self._status(self._order(d["client_order_id"], d["instrument_id"], seq, ts), "RiskAccepted")

    def _on_RiskRejected(self, d: dict[str, Any], seq: int, ts: int) -> None:
        self._risk(d, seq, ts, "REJECTED")
        row = self._order(d["client_order_id"], d["instrument_id"], seq, ts)
        before = row["status"]
        self._status(row, "RiskRejected")
        if row["status"] != before:
            row["reject_code"] = "RISK"
            row["reject_reason"] = f"{d['rule']}: {d['reason']}"

    def _on_OrderHeld(self, d: dict[str, Any], seq: int, ts: int) -> None:
        self._status(self._order(d["client_order_id"], d["instrument_id"], seq, ts), "OrderHeld")

    def _on_OrderReleased(self, d: dict[str, Any], seq: int, ts: int) -> None:
        row = self._order(d["client_order_id"], d["instrument_id"], seq, ts)
        row["venue"] = d["venue"]
        self._status(row, "OrderReleased")

    def _on_OrderSubmitted(self, d: dict[str, Any], seq: int, ts: int) -> None:
        row = self._order(d["client_order_id"], d["instrument_id"], seq, ts)
        self._order_fields(row, d)
        row["venue"] = d["venue"]
        row["submitted_ts"] = ts
        self._status(row, "OrderSubmitted")

    def _venue_id(self, row: dict[str, Any], d: dict[str, Any]) -> None:
        if d.get("venue_order_id"):
            row["venue_order_id"] = d["venue_order_id"]

    def _on_OrderAccepted(self, d: dict[str, Any], seq: int, ts: int) -> None:
        row = self._order(d["client_order_id"], d["instrument_id"], seq, ts)
        self._venue_id(row, d)
        self._status(row, "OrderAccepted")

    def _on_OrderRejected(self, d: dict[str, Any], seq: int, ts: int) -> None:
        row = self._order(d["client_order_id"], d["instrument_id"], seq, ts)
        if row["status"] not in FINAL:
            row["reject_code"] = d.get("reason_code", "OTHER")
            row["reject_reason"] = d["reason"]
        self._status(row, "OrderRejected")

    def _on_OrderTriggered(self, d: dict[str, Any], seq: int, ts: int) -> None:
        row = self._order(d["client_order_id"], d["instrument_id"], seq, ts)
        self._venue_id(row, d)
        self._status(row, "OrderTriggered")

    def _on_OrderCanceled(self, d: dict[str, Any], seq: int, ts: int) -> None:
        row = self._order(d["client_order_id"], d["instrument_id"], seq, ts)
        self._venue_id(row, d)
        if row["status"] not in FINAL:
            row["cancel_reason"] = d["reason"]
        self._status(row, "OrderCanceled")

    def _on_OrderExpired(self, d: dict[str, Any], seq: int, ts: int) -> None:
        row = self._order(d["client_order_id"], d["instrument_id"], seq, ts)
        self._venue_id(row, d)
        self._status(row, "OrderExpired")

    def _on_OrderCancelRejected(self, d: dict[str, Any], seq: int, ts: int) -> None:
        self._venue_id(self._order(d["client_order_id"], d["instrument_id"], seq, ts), d)

    def _on_OrderFilled(self, d: dict[str, Any], seq: int, ts: int) -> None:
        inst = d["instrument_id"]
        px, qty, fee = q18(d["last_price"]), q18(d["last_quantity"]), q18(d["fee"])
        fee_ccy, side = d["fee_currency"], d["side"]
        self.fills.append({
            "namespace": self.namespace, "seq": seq, "trade_id": d["trade_id"], "client_order_id": d["client_order_id"],
            "venue_order_id": d.get("venue_order_id"), "instrument_id": inst, "side": side, "price": px,
            "quantity": qty, "fee": fee, "fee_currency": fee_ccy, "liquidity_side": d.get("liquidity_side", "NONE"),
            "ts_event": ts,
        })
        # the order
        row = self._order(d["client_order_id"], inst, seq, ts)
        self._venue_id(row, d)
        if row["side"] is None:
            row["side"] = side
        filled = row["filled_quantity"]
        new_filled = filled + qty
        if new_filled:
            row["avg_fill_price"] = q18(((row["avg_fill_price"] or ZERO) * filled + px * qty) / new_filled)
        row["filled_quantity"] = q18(new_filled)
        self._status(row, "OrderFilled", complete=row["quantity"] is not None and new_filled >= row["quantity"])
        # the position and the balances, by the engine's netting rule
        terms = self._terms(inst)
        row_pos = self._position_row(inst, fee_ccy, seq, ts)
        pos = Position(inst, "", terms.multiplier if terms is not None else ONE, row_pos["quantity"],
                       row_pos["avg_price"] or ZERO, row_pos["realized_pnl"])
        realized = fill_position(pos, side, qty, px, ts)
        row_pos["quantity"] = q18(pos.quantity)
        row_pos["avg_price"] = q18(pos.avg_price) if pos.quantity else None
        row_pos["realized_pnl"] = q18(pos.realized_pnl)
        if fee_ccy == row_pos["fee_currency"]:
            row_pos["fees"] = q18(row_pos["fees"] + fee)
        moves = (balance_moves(terms, side, qty, px, realized, fee, fee_ccy) if terms is not None
                 else [(fee_ccy, -fee)])
        for ccy, amount in moves:
            if amount:
                self._move(ccy, amount, seq, ts)

    def _terms(self, inst: str) -> Terms | None:
        """The instrument's contract: from its InstrumentDefined, else a spot pair split from its symbol."""
        spec = self.instruments.get(inst)
        if spec is not None:
            return Terms(spec["kind"], spec["base_currency"], spec["quote_currency"], spec["settlement_currency"],
                         spec["multiplier"])
        pair = split_symbol(inst)
        return Terms("SPOT", pair[0], pair[1], pair[1]) if pair is not None else None

    def _position_row(self, inst: str, fee_ccy: str, seq: int, ts: int) -> dict[str, Any]:
        pos = self.positions.get(inst)
        if pos is None:
            pos = self.positions[inst] = {
                "namespace": self.namespace, "instrument_id": inst, "quantity": ZERO, "avg_price": None,
                "realized_pnl": ZERO, "fees": ZERO, "fee_currency": fee_ccy, "fills": 0, "last_ts": ts,
                "last_seq": seq,
            }
        self.dirty["positions"].add(inst)
        pos["fills"] += 1
        pos["last_ts"], pos["last_seq"] = ts, seq
        return pos

    # ---- balances and instruments -------------------------------------------------------------------------------

    def _balance(self, ccy: str, seq: int, ts: int) -> dict[str, Any]:
        row = self.balances.get(ccy)
        if row is None:
            row = self.balances[ccy] = {
                "namespace": self.namespace, "currency": ccy, "venue": None, "total": ZERO, "free": ZERO,
                "locked": ZERO, "source": "fills", "as_of_seq": None, "last_ts": ts, "last_seq": seq,
            }
        row["last_ts"], row["last_seq"] = ts, seq
        self.dirty["balances"].add(ccy)
        return row

    def _move(self, ccy: str, amount: Decimal, seq: int, ts: int) -> None:
        row = self._balance(ccy, seq, ts)
        row["total"] = q18(row["total"] + amount)
        row["free"] = q18(row["free"] + amount)

    def _on_AccountState(self, d: dict[str, Any], seq: int, ts: int) -> None:
        for b in d["balances"]:
            row = self._balance(b["currency"], seq, ts)
            row["venue"] = d["venue"]
            row["total"], row["free"], row["locked"] = q18(b["total"]), q18(b["free"]), q18(b["locked"])
            row["source"] = "reported" if d["reported"] else "computed"
            row["as_of_seq"] = seq

    def _on_InstrumentDefined(self, d: dict[str, Any], seq: int, ts: int) -> None:
        inst = d["instrument_id"]
        self.instruments[inst] = {
            "namespace": self.namespace, "instrument_id": inst, "venue": d["venue"], "kind": d["kind"],
            "base_currency": d["base_currency"], "quote_currency": d["quote_currency"],
            "settlement_currency": d["settlement_currency"], "multiplier": q18(d["multiplier"]), "last_seq": seq,
        }
        self.dirty["instruments"].add(inst)

    # ---- runs and incidents -----------------------------------------------------------------------------------

    def _run(self, run_id: str) -> dict[str, Any]:
        row = self.runs.get(run_id)
        if row is None:
            row = self.runs[run_id] = {c.name: None for c in m.runs.c}
            row["namespace"], row["run_id"] = self.namespace, run_id
        self.dirty["runs"].add(run_id)
        return row

    def _on_RunStarted(self, d: dict[str, Any], seq: int, ts: int) -> None:
        row = self._run(d["run_id"])
        row.update(mode=d["mode"], strategy=d["strategy"], params=canonical_json(d["params"]), config=d["config"],
                   code_version=d["code_version"], source_namespace=d.get("source_namespace"),
                   source_from_ts=d.get("source_from_ts"), source_to_ts=d.get("source_to_ts"), seed=d.get("seed"),
                   started_ts=ts, started_seq=seq)

    def _on_RunStopped(self, d: dict[str, Any], seq: int, ts: int) -> None:
        self._run(d["run_id"]).update(stopped_ts=ts, stopped_seq=seq, stop_reason=d["reason"], events=d["events"])

    def _incident(self, incident_id: str) -> dict[str, Any]:
        row = self.incidents.get(incident_id)
        if row is None:
            row = self.incidents[incident_id] = {c.name: None for c in m.incidents.c}
            row["namespace"], row["incident_id"], row["status"] = self.namespace, incident_id, "OPEN"
        self.dirty["incidents"].add(incident_id)
        return row

    def _on_IncidentRaised(self, d: dict[str, Any], seq: int, ts: int) -> None:
        row = self._incident(d["incident_id"])
        row.update(instrument_id=d.get("instrument_id"), kind=d["kind"], severity=d.get("severity"),
                   action=d.get("action"), detail=d["detail"], raised_ts=ts, raised_seq=seq)

    def _on_IncidentResolved(self, d: dict[str, Any], seq: int, ts: int) -> None:
        self._incident(d["incident_id"]).update(status="RESOLVED", resolved_ts=ts, resolved_seq=seq,
                                                resolution=d["detail"])

    # ---- batches ----------------------------------------------------------------------------------------------

    def take_changes(self) -> dict[sa.Table, list[dict[str, Any]]]:
        """Rows changed since the last call, per table; clears the change sets."""
        out: dict[sa.Table, list[dict[str, Any]]] = {}
        for name, table in (("instruments", m.instruments), ("runs", m.runs), ("incidents", m.incidents),
                            ("orders", m.orders), ("positions", m.positions), ("balances", m.balances)):
            keys = self.dirty[name]
            if keys:
                rows = getattr(self, name)
                out[table] = [rows[k] for k in sorted(keys)]
                keys.clear()
        if self.fills:
            out[m.fills], self.fills = self.fills, []
        if self.risk:
            out[m.risk_decisions], self.risk = self.risk, []
        return out


def _row(r: sa.Row) -> dict[str, Any]:
    return dict(r._mapping)


class Projector:
    """Folds one namespace into one database; see the module docstring for the guarantees."""

    def __init__(self, engine: Engine, namespace: str, *, batch_events: int = BATCH_EVENTS, name: str = PROJECTOR,
                 check_schema: bool = True):
        if batch_events < 1:
            raise ValueError("batch_events must be at least 1")
        self.engine = engine
        self.namespace = namespace
        self.batch_events = batch_events
        self.name = name
        if check_schema:
            require_current_schema(engine)
        dialect = engine.dialect.name
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        elif dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            raise TapeError(f"database dialect {dialect!r} is not supported: use SQLite or PostgreSQL")
        self._insert = insert
        self._upserts = {t: self._upsert(insert, t) for t in m.READ_MODEL_TABLES}
        self._raw: dict[sa.Table, Any] = {t: _RawUpsert(stmt, engine.dialect) for t, stmt in self._upserts.items()}
        if dialect == "postgresql":
            self._raw = {t: _CopyUpsert(t, raw) for t, raw in self._raw.items()}
        self.fold: Fold | None = None
        self.last_seq = 0
        self.events = 0
        self._orders_complete = False  # every order of the namespace is in fold.orders (no lookups needed)

    @staticmethod
    def _upsert(insert: Any, table: sa.Table) -> Any:
        ins = insert(table)
        pk = [c.name for c in table.primary_key.columns]
        return ins.on_conflict_do_update(index_elements=pk,
                                         set_={c.name: ins.excluded[c.name] for c in table.c if c.name not in pk})

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
        fold = Fold(self.namespace)
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

    def _tx(self) -> Any:
        return _Tx(self.engine)

    # ---- one batch --------------------------------------------------------------------------------------------

    def _load_orders(self, conn: sa.Connection, fold: Fold, batch: list[tuple[str, dict[str, Any], int, int]]
                     ) -> None:
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

    def commit_batch(self, batch: list[tuple[str, dict[str, Any], int, int]], upto: int) -> None:
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
                self._raw[table].execute(conn, rows)
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

    def _batches(self, replay: Iterable[Any], stop: Callable[[], bool]
                 ) -> Iterator[tuple[list[tuple[str, dict[str, Any], int, int]], int]]:
        batch: list[tuple[str, dict[str, Any], int, int]] = []
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


class _RawUpsert:
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

    def params(self, rows: list[dict[str, Any]]) -> list[Any]:
        if not self.positional:
            return rows
        names, dec, text = self.names, self.dec, self.text_decimals
        fmt = _fixed
        if text:
            return [tuple(fmt(r[n]) if n in dec else r[n] for n in names) for r in rows]
        return [tuple(r[n] for n in names) for r in rows]

    def execute(self, conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
        conn.exec_driver_sql(self.sql, self.params(rows))


class _CopyUpsert:
    """PostgreSQL, many rows: COPY into a temporary table, then one INSERT … SELECT … ON CONFLICT DO UPDATE.

    Same effect as the row-by-row upsert (keys are unique within a batch: the fold writes each key once), about
    three times faster. The temporary table lives as long as the connection and empties at every commit."""

    MIN_ROWS = 64

    def __init__(self, table: sa.Table, fallback: _RawUpsert):
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

    def execute(self, conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
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


def _fixed(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def _horizon(replay: Any) -> int | None:
    """The log's last committed seq as the replay sees it before reading (every handled event ≤ it is delivered)."""
    reader = getattr(replay, "reader", None)
    horizon = getattr(reader, "horizon", None)
    try:
        return int(horizon()) if horizon is not None else None
    except Exception:
        return None


class _Tx:
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


def project(log: Any, engine: Engine, namespace: str, **options: Any) -> Result:
    """Fold `namespace` of `log` into `engine`'s read models; options as Projector(...) and Projector.run(...)."""
    init = {k: options.pop(k) for k in ("batch_events", "name", "check_schema") if k in options}
    return Projector(engine, namespace, **init).run(log, **options)
