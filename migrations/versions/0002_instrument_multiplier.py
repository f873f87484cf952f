"""Instruments carry their contract multiplier; order statuses use the one lifecycle vocabulary.

The netting rule books realized PnL × multiplier. Order statuses are those of projections/orders.py (and of
`tape audit order`): INTENT is now PENDING_RISK, DENIED is now RISK_REJECTED.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02

Rows folded before this revision booked derivatives as if every multiplier were 1; rebuild a namespace that trades
a contract with another multiplier (`tape project NS --rebuild`).
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: Union[str, Sequence[str], None] = "0001"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

DEC = sa.Numeric(38, 18).with_variant(sa.Text(), "sqlite")
RENAMED = (("INTENT", "PENDING_RISK"), ("DENIED", "RISK_REJECTED"))


def upgrade() -> None:
    with op.batch_alter_table("instruments") as batch:
        batch.add_column(sa.Column("multiplier", DEC, nullable=False, server_default="1"))
    for old, new in RENAMED:
        op.execute(sa.text("UPDATE orders SET status = :new WHERE status = :old").bindparams(old=old, new=new))


def downgrade() -> None:
    for old, new in RENAMED:
        op.execute(sa.text("UPDATE orders SET status = :old WHERE status = :new").bindparams(old=old, new=new))
    with op.batch_alter_table("instruments") as batch:
        batch.drop_column("multiplier")
