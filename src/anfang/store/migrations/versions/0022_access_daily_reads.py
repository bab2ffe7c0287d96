"""access_daily_reads: the access monitor's persons-read-per-day count, shared by every server process
(reader processes, docs/architecture.md), kept in the audit batch's transaction

Revision ID: 0022
Revises: 0021
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | Sequence[str] | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table("access_daily_reads",
                    sa.Column("user_id", sa.Integer(), nullable=False, autoincrement=False),
                    sa.Column("day", sa.String(length=10), nullable=False),
                    sa.Column("reads", sa.Integer(), nullable=False),
                    sa.PrimaryKeyConstraint("user_id", "day"))


def downgrade() -> None:
    op.drop_table("access_daily_reads")
