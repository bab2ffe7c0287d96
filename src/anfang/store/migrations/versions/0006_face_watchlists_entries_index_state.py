"""face watchlists, entries, index state

Revision ID: 0006
Revises: 0002
Create Date: 2026-11-29 03:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import anfang.store.base

revision: str = '0006'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('face_watchlists',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('description', sa.String(length=512), nullable=False),
    sa.Column('threshold', sa.Float(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', anfang.store.base.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_face_watchlists')),
    sa.UniqueConstraint('name', name=op.f('uq_face_watchlists_name'))
    )
    op.create_table('face_entries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('watchlist_id', sa.Integer(), nullable=False),
    sa.Column('label', sa.String(length=128), nullable=False),
    sa.Column('person_id', sa.Integer(), nullable=True),
    sa.Column('photo_path', sa.String(length=256), nullable=False),
    sa.Column('photo_sha256', sa.String(length=64), nullable=False),
    sa.Column('embedding', sa.LargeBinary(), nullable=False),
    sa.Column('box', sa.String(length=64), nullable=False),
    sa.Column('detected', sa.Boolean(), nullable=False),
    sa.Column('created_at', anfang.store.base.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['person_id'], ['persons.id'], name=op.f('fk_face_entries_person_id_persons'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['watchlist_id'], ['face_watchlists.id'], name=op.f('fk_face_entries_watchlist_id_face_watchlists'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_face_entries')),
    sqlite_autoincrement=True
    )
    with op.batch_alter_table('face_entries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_face_entries_person_id'), ['person_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_face_entries_watchlist_id'), ['watchlist_id'], unique=False)

    state = op.create_table('face_index_state',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('generation', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_face_index_state'))
    )
    op.bulk_insert(state, [{'id': 1, 'generation': 0}])


def downgrade() -> None:
    op.drop_table('face_index_state')
    with op.batch_alter_table('face_entries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_face_entries_watchlist_id'))
        batch_op.drop_index(batch_op.f('ix_face_entries_person_id'))
    op.drop_table('face_entries')
    op.drop_table('face_watchlists')
