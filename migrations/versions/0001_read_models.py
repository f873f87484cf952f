"""Read models: runs, orders, fills, positions, balances, instruments, risk decisions, incidents, checkpoint.

Revision ID: 0001
Revises:
Create Date: 2026-11-27

Decimals are NUMERIC(38,18) on PostgreSQL and fixed-point TEXT on SQLite (exact on both; see models.Dec).
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: Union[str, Sequence[str], None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

DEC = sa.Numeric(38, 18).with_variant(sa.Text(), "sqlite")
NS = sa.String(200)
ID = sa.String(200)
SHORT = sa.String(32)


def _ns(*cols: sa.Column) -> list:
    return [sa.Column("namespace", NS, nullable=False), *cols]


def upgrade() -> None:
    op.create_table(
        "runs",
        *_ns(
            sa.Column("run_id", ID, nullable=False),
            sa.Column("mode", SHORT),
            sa.Column("strategy", ID),
            sa.Column("params", sa.Text()),
            sa.Column("config", sa.Text()),
            sa.Column("code_version", ID),
            sa.Column("source_namespace", NS),
            sa.Column("source_from_ts", sa.BigInteger()),
            sa.Column("source_to_ts", sa.BigInteger()),
            sa.Column("seed", sa.BigInteger()),
            sa.Column("started_ts", sa.BigInteger()),
            sa.Column("started_seq", sa.BigInteger()),
            sa.Column("stopped_ts", sa.BigInteger()),
            sa.Column("stopped_seq", sa.BigInteger()),
            sa.Column("stop_reason", sa.Text()),
            sa.Column("events", sa.BigInteger()),
        ),
        sa.PrimaryKeyConstraint("namespace", "run_id", name="pk_runs"),
    )
    op.create_table(
        "orders",
        *_ns(
            sa.Column("client_order_id", ID, nullable=False),
            sa.Column("instrument_id", ID, nullable=False),
            sa.Column("strategy_id", ID),
            sa.Column("venue", ID),
            sa.Column("side", SHORT),
            sa.Column("order_type", SHORT),
            sa.Column("quantity", DEC),
            sa.Column("price", DEC),
            sa.Column("trigger_price", DEC),
            sa.Column("time_in_force", SHORT),
            sa.Column("expire_ts", sa.BigInteger()),
            sa.Column("post_only", sa.Boolean()),
            sa.Column("reduce_only", sa.Boolean()),
            sa.Column("status", SHORT, nullable=False),
            sa.Column("filled_quantity", DEC, nullable=False),
            sa.Column("avg_fill_price", DEC),
            sa.Column("venue_order_id", ID),
            sa.Column("intent_id", ID),
            sa.Column("created_ts", sa.BigInteger()),
            sa.Column("submitted_ts", sa.BigInteger()),
            sa.Column("last_ts", sa.BigInteger(), nullable=False),
            sa.Column("last_seq", sa.BigInteger(), nullable=False),
            sa.Column("reject_code", SHORT),
            sa.Column("reject_reason", sa.Text()),
            sa.Column("cancel_reason", sa.Text()),
        ),
        sa.PrimaryKeyConstraint("namespace", "client_order_id", name="pk_orders"),
    )
    op.create_index("ix_orders_namespace_status", "orders", ["namespace", "status"])
    op.create_index("ix_orders_namespace_instrument_id", "orders", ["namespace", "instrument_id"])
    op.create_table(
        "fills",
        *_ns(
            sa.Column("seq", sa.BigInteger(), nullable=False, autoincrement=False),
            sa.Column("trade_id", ID, nullable=False),
            sa.Column("client_order_id", ID, nullable=False),
            sa.Column("venue_order_id", ID),
            sa.Column("instrument_id", ID, nullable=False),
            sa.Column("side", SHORT, nullable=False),
            sa.Column("price", DEC, nullable=False),
            sa.Column("quantity", DEC, nullable=False),
            sa.Column("fee", DEC, nullable=False),
            sa.Column("fee_currency", SHORT, nullable=False),
            sa.Column("liquidity_side", SHORT, nullable=False),
            sa.Column("ts_event", sa.BigInteger(), nullable=False),
        ),
        sa.PrimaryKeyConstraint("namespace", "seq", name="pk_fills"),
    )
    op.create_index("ix_fills_namespace_client_order_id", "fills", ["namespace", "client_order_id"])
    op.create_index("ix_fills_namespace_instrument_id_ts_event", "fills", ["namespace", "instrument_id", "ts_event"])
    op.create_table(
        "positions",
        *_ns(
            sa.Column("instrument_id", ID, nullable=False),
            sa.Column("quantity", DEC, nullable=False),
            sa.Column("avg_price", DEC),
            sa.Column("realized_pnl", DEC, nullable=False),
            sa.Column("fees", DEC, nullable=False),
            sa.Column("fee_currency", SHORT),
            sa.Column("fills", sa.BigInteger(), nullable=False),
            sa.Column("last_ts", sa.BigInteger(), nullable=False),
            sa.Column("last_seq", sa.BigInteger(), nullable=False),
        ),
        sa.PrimaryKeyConstraint("namespace", "instrument_id", name="pk_positions"),
    )
    op.create_table(
        "balances",
        *_ns(
            sa.Column("currency", SHORT, nullable=False),
            sa.Column("venue", ID),
            sa.Column("total", DEC, nullable=False),
            sa.Column("free", DEC, nullable=False),
            sa.Column("locked", DEC, nullable=False),
            sa.Column("source", SHORT, nullable=False),
            sa.Column("as_of_seq", sa.BigInteger()),
            sa.Column("last_ts", sa.BigInteger(), nullable=False),
            sa.Column("last_seq", sa.BigInteger(), nullable=False),
        ),
        sa.PrimaryKeyConstraint("namespace", "currency", name="pk_balances"),
    )
    op.create_table(
        "instruments",
        *_ns(
            sa.Column("instrument_id", ID, nullable=False),
            sa.Column("venue", ID, nullable=False),
            sa.Column("kind", SHORT, nullable=False),
            sa.Column("base_currency", SHORT, nullable=False),
            sa.Column("quote_currency", SHORT, nullable=False),
            sa.Column("settlement_currency", SHORT, nullable=False),
            sa.Column("last_seq", sa.BigInteger(), nullable=False),
        ),
        sa.PrimaryKeyConstraint("namespace", "instrument_id", name="pk_instruments"),
    )
    op.create_table(
        "risk_decisions",
        *_ns(
            sa.Column("seq", sa.BigInteger(), nullable=False, autoincrement=False),
            sa.Column("client_order_id", ID, nullable=False),
            sa.Column("instrument_id", ID, nullable=False),
            sa.Column("intent_id", ID, nullable=False),
            sa.Column("decision", SHORT, nullable=False),
            sa.Column("rule", ID),
            sa.Column("limit_value", sa.Text()),
            sa.Column("value", sa.Text()),
            sa.Column("reason", sa.Text()),
            sa.Column("ts_event", sa.BigInteger(), nullable=False),
        ),
        sa.PrimaryKeyConstraint("namespace", "seq", name="pk_risk_decisions"),
    )
    op.create_index("ix_risk_decisions_namespace_client_order_id", "risk_decisions",
                    ["namespace", "client_order_id"])
    op.create_table(
        "incidents",
        *_ns(
            sa.Column("incident_id", ID, nullable=False),
            sa.Column("instrument_id", ID),
            sa.Column("kind", ID),
            sa.Column("severity", SHORT),
            sa.Column("action", SHORT),
            sa.Column("detail", sa.Text()),
            sa.Column("status", SHORT, nullable=False),
            sa.Column("raised_ts", sa.BigInteger()),
            sa.Column("raised_seq", sa.BigInteger()),
            sa.Column("resolved_ts", sa.BigInteger()),
            sa.Column("resolved_seq", sa.BigInteger()),
            sa.Column("resolution", sa.Text()),
        ),
        sa.PrimaryKeyConstraint("namespace", "incident_id", name="pk_incidents"),
    )
    op.create_table(
        "projection_checkpoint",
        *_ns(
            sa.Column("projector", SHORT, nullable=False),
            sa.Column("last_seq", sa.BigInteger(), nullable=False),
            sa.Column("events", sa.BigInteger(), nullable=False),
        ),
        sa.PrimaryKeyConstraint("namespace", "projector", name="pk_projection_checkpoint"),
    )


def downgrade() -> None:
    for table in ("projection_checkpoint", "incidents", "risk_decisions", "instruments", "balances", "positions",
                  "fills", "orders", "runs"):
        op.drop_table(table)
