"""GB/T 28181 alarms

Revision ID: 0003
Revises: 0002
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import anfang.store.base

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('gb28181_alarms',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('device_id', sa.String(length=64), nullable=False),
    sa.Column('source_id', sa.String(length=64), nullable=False),
    sa.Column('at', anfang.store.base.UtcDateTime(), nullable=False),
    sa.Column('priority', sa.String(length=4), nullable=True),
    sa.Column('method', sa.String(length=4), nullable=True),
    sa.Column('alarm_type', sa.String(length=8), nullable=True),
    sa.Column('description', sa.String(length=256), nullable=False),
    sa.Column('longitude', sa.Float(), nullable=True),
    sa.Column('latitude', sa.Float(), nullable=True),
    sa.Column('event_id', sa.String(length=40), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_gb28181_alarms_device_at', 'gb28181_alarms', ['device_id', 'at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_gb28181_alarms_device_at', table_name='gb28181_alarms')
    op.drop_table('gb28181_alarms')
