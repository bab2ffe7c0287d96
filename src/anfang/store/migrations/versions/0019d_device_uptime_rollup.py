"""per-device per-day uptime rollup (device_uptime_days, device_uptime_open), filled from the status history (issue 20)

Revision ID: 0019d
Revises: 0019c
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019d"
down_revision: str | Sequence[str] | None = "0019c"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "device_uptime_days",
        sa.Column("device_pk", sa.Integer(), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("online_s", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["device_pk"], ["devices.id"], name=op.f("fk_device_uptime_days_device_pk_devices"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("device_pk", "day", name=op.f("pk_device_uptime_days")),
    )
    op.create_index(op.f("ix_device_uptime_days_day"), "device_uptime_days", ["day"], unique=False)
    op.create_table(
        "device_uptime_open",
        sa.Column("device_pk", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["device_pk"], ["devices.id"], name=op.f("fk_device_uptime_open_device_pk_devices"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("device_pk", name=op.f("pk_device_uptime_open")),
    )
    from sqlalchemy.orm import Session

    from anfang.devices.uptime import rebuild

    rebuild(Session(bind=op.get_bind()))  # the rows already there (no commit: alembic's transaction)


def downgrade() -> None:
    op.drop_table("device_uptime_open")
    op.drop_index(op.f("ix_device_uptime_days_day"), table_name="device_uptime_days")
    op.drop_table("device_uptime_days")
