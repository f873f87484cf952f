"""The read-model tables. Every table carries `namespace` as the first primary-key column.

Money and quantities use `Dec`: NUMERIC(38,18) on PostgreSQL (exact) and TEXT on SQLite (SQLite's NUMERIC
affinity stores REAL and loses digits silently). Every value is quantized to 18 decimal places, half-even,
before it is stored, so both databases hold and return the same Decimal, digit for digit.

Table semantics (what the projector writes, see fold.py for the fold):

- runs: one row per run_id, from RunStarted (params as canonical JSON text) and RunStopped.
- orders: one row per client_order_id, created by OrderIntent (or OrderSubmitted when there was no intent) and
  moved through the lifecycle of projections/orders.py (the statuses `tape audit order` shows): PENDING_RISK →
  RISK_ACCEPTED | RISK_REJECTED → HELD → RELEASED → SUBMITTED → ACCEPTED → TRIGGERED → PARTIALLY_FILLED → FILLED,
  or REJECTED (venue), CANCELED, EXPIRED.
- fills: one row per OrderFilled (key: its seq).
- positions: one row per instrument, netting by the rule of projections/accounting.py (the engine's): signed
  quantity, average entry price (NULL when flat), realized PnL gross of fees, in the PnL currency; fees summed in
  the currency of the instrument's first fill (fees charged in another currency show in fills and balances only).
- balances: one row per currency. An AccountState (reported by the venue or computed by the runtime) sets total,
  free and locked of the currencies it lists; fills after it move the balance by the same rule. The contract
  (kind, currencies, multiplier) comes from InstrumentDefined in the namespace, else a spot pair from the symbol
  split at a known quote currency (BTCUSDT → BTC/USDT); when neither works, a fill moves the fee only.
- instruments: InstrumentDefined events of the namespace (used by balances).
- risk_decisions: one row per RiskAccepted/RiskRejected (key: its seq).
- incidents: one row per incident_id, OPEN from IncidentRaised, RESOLVED by IncidentResolved.
- projection_checkpoint: last seq folded per (namespace, projector), written in the same transaction as rows.
"""
from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any, Optional

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from schemas.decimals import EXACT as _CTX, PRECISION, Q18 as QUANTUM, SCALE

ZERO = Decimal(0).quantize(QUANTUM)
VERSION_TABLE = "tape_alembic_version"
NAME_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "pk": "pk_%(table_name)s",
}


class DecimalOutOfRange(ValueError):
    """A value does not fit NUMERIC(38,18)."""


def q18(value: Any) -> Decimal:
    """The value as the Decimal a Dec column stores: 18 places, half-even, no negative zero."""
    if isinstance(value, float):
        raise TypeError(f"float {value!r} given for an exact decimal column: pass a Decimal or a string")
    d = value if isinstance(value, Decimal) else Decimal(value)
    if not d.is_finite():
        raise DecimalOutOfRange(f"{value} is not a finite decimal")
    try:
        out = d.quantize(QUANTUM, context=_CTX)
    except InvalidOperation:
        raise DecimalOutOfRange(f"{value} is not a finite decimal that fits NUMERIC({PRECISION},{SCALE})") from None
    if out.adjusted() >= PRECISION - SCALE:
        raise DecimalOutOfRange(f"{value} does not fit NUMERIC({PRECISION},{SCALE}): at most "
                                f"{PRECISION - SCALE} integer digits")
    if not out:
        return ZERO
    return out


class Dec(sa.types.TypeDecorator):
    """Exact decimal: NUMERIC(38,18) on PostgreSQL, fixed-point TEXT on SQLite; always returns Decimal."""

    impl = sa.Numeric(PRECISION, SCALE)
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sa.Text())
        return dialect.type_descriptor(sa.Numeric(PRECISION, SCALE, asdecimal=True))

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        v = q18(value)
        return format(v, "f") if dialect.name == "sqlite" else v

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> Optional[Decimal]:
        if value is None:
            return None
        return q18(value if isinstance(value, Decimal) else Decimal(str(value)))


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAME_CONVENTION)


NS = sa.String(200)
ID = sa.String(200)
SHORT = sa.String(32)


class Run(Base):
    __tablename__ = "runs"
    namespace: Mapped[str] = mapped_column(NS, primary_key=True)
    run_id: Mapped[str] = mapped_column(ID, primary_key=True)
    mode: Mapped[Optional[str]] = mapped_column(SHORT)
    strategy: Mapped[Optional[str]] = mapped_column(ID)
    params: Mapped[Optional[str]] = mapped_column(sa.Text, doc="Strategy parameters as canonical JSON text.")
    config: Mapped[Optional[str]] = mapped_column(sa.Text)
    code_version: Mapped[Optional[str]] = mapped_column(ID)
    source_namespace: Mapped[Optional[str]] = mapped_column(NS)
    source_from_ts: Mapped[Optional[int]] = mapped_column(sa.BigInteger)
    source_to_ts: Mapped[Optional[int]] = mapped_column(sa.BigInteger)
    seed: Mapped[Optional[int]] = mapped_column(sa.BigInteger)
    started_ts: Mapped[Optional[int]] = mapped_column(sa.BigInteger)
    started_seq: Mapped[Optional[int]] = mapped_column(sa.BigInteger)
    stopped_ts: Mapped[Optional[int]] = mapped_column(sa.BigInteger)
    stopped_seq: Mapped[Optional[int]] = mapped_column(sa.BigInteger)
    stop_reason: Mapped[Optional[str]] = mapped_column(sa.Text)
    events: Mapped[Optional[int]] = mapped_column(sa.BigInteger, doc="Events the run wrote (from RunStopped).")


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (sa.Index(None, "namespace", "status"), sa.Index(None, "namespace", "instrument_id"))
    namespace: Mapped[str] = mapped_column(NS, primary_key=True)
    client_order_id: Mapped[str] = mapped_column(ID, primary_key=True)
    instrument_id: Mapped[str] = mapped_column(ID)
    strategy_id: Mapped[Optional[str]] = mapped_column(ID)
    venue: Mapped[Optional[str]] = mapped_column(ID)
    side: Mapped[Optional[str]] = mapped_column(SHORT)
    order_type: Mapped[Optional[str]] = mapped_column(SHORT)
    quantity: Mapped[Optional[Any]] = mapped_column(Dec)
    price: Mapped[Optional[Any]] = mapped_column(Dec)
    trigger_price: Mapped[Optional[Any]] = mapped_column(Dec)
    time_in_force: Mapped[Optional[str]] = mapped_column(SHORT)
    expire_ts: Mapped[Optional[int]] = mapped_column(sa.BigInteger)
    post_only: Mapped[Optional[bool]] = mapped_column(sa.Boolean)
    reduce_only: Mapped[Optional[bool]] = mapped_column(sa.Boolean)
    status: Mapped[str] = mapped_column(SHORT)
    filled_quantity: Mapped[Any] = mapped_column(Dec)
    avg_fill_price: Mapped[Optional[Any]] = mapped_column(Dec)
    venue_order_id: Mapped[Optional[str]] = mapped_column(ID)
    intent_id: Mapped[Optional[str]] = mapped_column(ID, doc="event_id of the OrderIntent.")
    created_ts: Mapped[Optional[int]] = mapped_column(sa.BigInteger)
    submitted_ts: Mapped[Optional[int]] = mapped_column(sa.BigInteger)
    last_ts: Mapped[int] = mapped_column(sa.BigInteger)
    last_seq: Mapped[int] = mapped_column(sa.BigInteger)
    reject_code: Mapped[Optional[str]] = mapped_column(SHORT, doc="Venue RejectReason, or RISK for risk.")
    reject_reason: Mapped[Optional[str]] = mapped_column(sa.Text)
    cancel_reason: Mapped[Optional[str]] = mapped_column(sa.Text)


class Fill(Base):
    __tablename__ = "fills"
    __table_args__ = (sa.Index(None, "namespace", "client_order_id"),
                      sa.Index(None, "namespace", "instrument_id", "ts_event"))
    namespace: Mapped[str] = mapped_column(NS, primary_key=True)
    seq: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    trade_id: Mapped[str] = mapped_column(ID)
    client_order_id: Mapped[str] = mapped_column(ID)
    venue_order_id: Mapped[Optional[str]] = mapped_column(ID)
    instrument_id: Mapped[str] = mapped_column(ID)
    side: Mapped[str] = mapped_column(SHORT)
    price: Mapped[Any] = mapped_column(Dec)
    quantity: Mapped[Any] = mapped_column(Dec)
    fee: Mapped[Any] = mapped_column(Dec)
    fee_currency: Mapped[str] = mapped_column(SHORT)
    liquidity_side: Mapped[str] = mapped_column(SHORT)
    ts_event: Mapped[int] = mapped_column(sa.BigInteger)


class Position(Base):
    __tablename__ = "positions"
    namespace: Mapped[str] = mapped_column(NS, primary_key=True)
    instrument_id: Mapped[str] = mapped_column(ID, primary_key=True)
    quantity: Mapped[Any] = mapped_column(Dec, doc="Signed: positive long, negative short.")
    avg_price: Mapped[Optional[Any]] = mapped_column(Dec, doc="Average entry price; NULL when flat.")
    realized_pnl: Mapped[Any] = mapped_column(Dec, doc="Gross of fees, in quote currency.")
    fees: Mapped[Any] = mapped_column(Dec)
    fee_currency: Mapped[Optional[str]] = mapped_column(SHORT)
    fills: Mapped[int] = mapped_column(sa.BigInteger)
    last_ts: Mapped[int] = mapped_column(sa.BigInteger)
    last_seq: Mapped[int] = mapped_column(sa.BigInteger)


class Balance(Base):
    __tablename__ = "balances"
    namespace: Mapped[str] = mapped_column(NS, primary_key=True)
    currency: Mapped[str] = mapped_column(SHORT, primary_key=True)
    venue: Mapped[Optional[str]] = mapped_column(ID)
    total: Mapped[Any] = mapped_column(Dec)
    free: Mapped[Any] = mapped_column(Dec)
    locked: Mapped[Any] = mapped_column(Dec)
    source: Mapped[str] = mapped_column(SHORT, doc="Last AccountState: 'reported' or 'computed'; 'fills' if none.")
    as_of_seq: Mapped[Optional[int]] = mapped_column(sa.BigInteger, doc="Seq of the last AccountState.")
    last_ts: Mapped[int] = mapped_column(sa.BigInteger)
    last_seq: Mapped[int] = mapped_column(sa.BigInteger)


class Instrument(Base):
    __tablename__ = "instruments"
    namespace: Mapped[str] = mapped_column(NS, primary_key=True)
    instrument_id: Mapped[str] = mapped_column(ID, primary_key=True)
    venue: Mapped[str] = mapped_column(ID)
    kind: Mapped[str] = mapped_column(SHORT)
    base_currency: Mapped[str] = mapped_column(SHORT)
    quote_currency: Mapped[str] = mapped_column(SHORT)
    settlement_currency: Mapped[str] = mapped_column(SHORT)
    multiplier: Mapped[Any] = mapped_column(Dec, server_default="1", doc="Contract size: PnL per unit of price move.")
    last_seq: Mapped[int] = mapped_column(sa.BigInteger)


class RiskDecision(Base):
    __tablename__ = "risk_decisions"
    __table_args__ = (sa.Index(None, "namespace", "client_order_id"),)
    namespace: Mapped[str] = mapped_column(NS, primary_key=True)
    seq: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    client_order_id: Mapped[str] = mapped_column(ID)
    instrument_id: Mapped[str] = mapped_column(ID)
    intent_id: Mapped[str] = mapped_column(ID)
    decision: Mapped[str] = mapped_column(SHORT, doc="ACCEPTED or REJECTED.")
    rule: Mapped[Optional[str]] = mapped_column(ID)
    limit_value: Mapped[Optional[str]] = mapped_column(sa.Text, doc="The rule's limit as text (exact decimal or state).")
    value: Mapped[Optional[str]] = mapped_column(sa.Text, doc="The value that breached it, as text.")
    reason: Mapped[Optional[str]] = mapped_column(sa.Text)
    ts_event: Mapped[int] = mapped_column(sa.BigInteger)


class Incident(Base):
    __tablename__ = "incidents"
    namespace: Mapped[str] = mapped_column(NS, primary_key=True)
    incident_id: Mapped[str] = mapped_column(ID, primary_key=True)
    instrument_id: Mapped[Optional[str]] = mapped_column(ID)
    kind: Mapped[Optional[str]] = mapped_column(ID)
    severity: Mapped[Optional[str]] = mapped_column(SHORT)
    action: Mapped[Optional[str]] = mapped_column(SHORT)
    detail: Mapped[Optional[str]] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(SHORT, doc="OPEN or RESOLVED.")
    raised_ts: Mapped[Optional[int]] = mapped_column(sa.BigInteger)
    raised_seq: Mapped[Optional[int]] = mapped_column(sa.BigInteger)
    resolved_ts: Mapped[Optional[int]] = mapped_column(sa.BigInteger)
    resolved_seq: Mapped[Optional[int]] = mapped_column(sa.BigInteger)
    resolution: Mapped[Optional[str]] = mapped_column(sa.Text)


class ProjectionCheckpoint(Base):
    __tablename__ = "projection_checkpoint"
    namespace: Mapped[str] = mapped_column(NS, primary_key=True)
    projector: Mapped[str] = mapped_column(SHORT, primary_key=True)
    last_seq: Mapped[int] = mapped_column(sa.BigInteger)
    events: Mapped[int] = mapped_column(sa.BigInteger, doc="Events folded so far.")


metadata = Base.metadata
runs = Run.__table__
orders = Order.__table__
fills = Fill.__table__
positions = Position.__table__
balances = Balance.__table__
instruments = Instrument.__table__
risk_decisions = RiskDecision.__table__
incidents = Incident.__table__
checkpoint = ProjectionCheckpoint.__table__
# the tables a rebuild clears, children first
READ_MODEL_TABLES = (fills, risk_decisions, orders, positions, balances, instruments, runs, incidents)
