"""Field-ready device access: GB/T 28181 per-device SIP trace

Revision ID: 0017
Revises: 0015_doorplates_encryption
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import anfang.store.base

revision: str = "0017"
down_revision: str | None = "0015_doorplates_encryption"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table("gb28181_trace_requests",
                    sa.Column("device_id", sa.String(length=64), nullable=False),
                    sa.Column("until", anfang.store.base.UtcDateTime(), nullable=False),
                    sa.Column("keep", sa.Integer(), nullable=False),
                    sa.Column("requested_by", sa.String(length=64), nullable=False),
                    sa.Column("requested_at", anfang.store.base.UtcDateTime(), nullable=False),
                    sa.PrimaryKeyConstraint("device_id"))
    op.create_table("gb28181_trace",
                    sa.Column("id", sa.Integer(), nullable=False),
                    sa.Column("device_id", sa.String(length=64), nullable=False),
                    sa.Column("at", anfang.store.base.UtcDateTime(), nullable=False),
                    sa.Column("direction", sa.String(length=4), nullable=False),
                    sa.Column("transport", sa.String(length=8), nullable=False),
                    sa.Column("addr", sa.String(length=64), nullable=False),
                    sa.Column("summary", sa.String(length=128), nullable=False),
                    sa.Column("text", sa.Text(), nullable=False),
                    sa.PrimaryKeyConstraint("id"))
    op.create_index("ix_gb28181_trace_device_id", "gb28181_trace", ["device_id", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_gb28181_trace_device_id", table_name="gb28181_trace")
    op.drop_table("gb28181_trace")
    op.drop_table("gb28181_trace_requests")
