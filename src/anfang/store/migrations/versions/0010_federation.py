"""federation: outbox, received records and blobs, child nodes

Revision ID: 0010_federation
Revises: 0009
Create Date: 2026-11-29 05:30:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import anfang.store.base

revision: str = "0010_federation"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table('fed_outbox',
    sa.Column('id', BigId, autoincrement=True, nullable=False),
    sa.Column('parent', sa.String(length=32), nullable=False),
    sa.Column('gid', sa.String(length=64), nullable=False),
    sa.Column('entity', sa.String(length=24), nullable=False),
    sa.Column('created_at', anfang.store.base.UtcDateTime(timezone=True), nullable=False),
    sa.Column('envelope', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_fed_outbox'))
    )
    op.create_index('ix_fed_outbox_parent_id', 'fed_outbox', ['parent', 'id'], unique=False)
    op.create_table('fed_records',
    sa.Column('origin', sa.String(length=32), nullable=False),
    sa.Column('entity', sa.String(length=24), nullable=False),
    sa.Column('key', sa.String(length=128), nullable=False),
    sa.Column('version', sa.BigInteger(), nullable=False),
    sa.Column('gid', sa.String(length=64), nullable=False),
    sa.Column('op', sa.String(length=8), nullable=False),
    sa.Column('via', sa.String(length=32), nullable=False),
    sa.Column('received_at', anfang.store.base.UtcDateTime(timezone=True), nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('origin', 'entity', 'key', name=op.f('pk_fed_records'))
    )
    op.create_table('fed_blobs',
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('sha256', name=op.f('pk_fed_blobs'))
    )
    op.create_table('fed_nodes',
    sa.Column('node_id', sa.String(length=32), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=True),
    sa.Column('parent', sa.String(length=32), nullable=True),
    sa.Column('schema_version', sa.Integer(), nullable=True),
    sa.Column('last_seen', anfang.store.base.UtcDateTime(timezone=True), nullable=True),
    sa.Column('received', sa.BigInteger(), nullable=False),
    sa.Column('last_error', sa.String(length=400), nullable=True),
    sa.Column('uplink', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('node_id', name=op.f('pk_fed_nodes'))
    )


def downgrade() -> None:
    op.drop_table('fed_nodes')
    op.drop_table('fed_blobs')
    op.drop_table('fed_records')
    op.drop_index('ix_fed_outbox_parent_id', table_name='fed_outbox')
    op.drop_table('fed_outbox')
