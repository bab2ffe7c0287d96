"""durable bus consumers (event_log.recorded_at, bus_cursors), warning idempotency by event id, webhook deliveries,
keyed audit chain (audit_log.key_id)

Revision ID: 0016
Revises: 0015_doorplates_encryption
Create Date: 2026-12-06 22:30:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import anfang.store.base

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015_doorplates_encryption"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_DT = anfang.store.base.UtcDateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("event_log") as b:
        b.add_column(sa.Column("recorded_at", UTC_DT, nullable=True))
    op.create_index("ix_event_log_recorded_at", "event_log", ["recorded_at"])
    op.create_table(
        "bus_cursors",
        sa.Column("consumer", sa.String(length=64), nullable=False),
        sa.Column("position", UTC_DT, nullable=False),
        sa.Column("updated_at", UTC_DT, nullable=False),
        sa.PrimaryKeyConstraint("consumer", name=op.f("pk_bus_cursors")),
    )
    op.create_index("ix_warnings_event_id", "warnings", ["event_id"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("warning_uid", sa.String(length=36), nullable=False),
        sa.Column("step", sa.String(length=16), nullable=False),
        sa.Column("url", sa.String(length=500), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_at", UTC_DT, nullable=False),
        sa.Column("last_error", sa.String(length=300), nullable=True),
        sa.Column("created_at", UTC_DT, nullable=False),
        sa.Column("sent_at", UTC_DT, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
        sa.UniqueConstraint("warning_uid", "step", "url", name=op.f("uq_webhook_deliveries_warning_uid")),
    )
    op.create_index("ix_webhook_deliveries_state_next", "webhook_deliveries", ["state", "next_at"])
    with op.batch_alter_table("audit_log") as b:
        b.add_column(sa.Column("key_id", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_log") as b:
        b.drop_column("key_id")
    op.drop_index("ix_webhook_deliveries_state_next", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_index("ix_warnings_event_id", table_name="warnings")
    op.drop_table("bus_cursors")
    op.drop_index("ix_event_log_recorded_at", table_name="event_log")
    with op.batch_alter_table("event_log") as b:
        b.drop_column("recorded_at")
