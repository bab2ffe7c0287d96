"""construction: projects (同步设计、同步施工、同步验收), their steps and funding; 六无 incidents

Revision ID: 0013_construction_projects
Revises: 0009
Create Date: 2026-11-29 05:05:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import anfang.store.base

revision: str = "0013_construction_projects"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('construction_projects',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('community_code', sa.String(length=12), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('target_tier', sa.String(length=16), nullable=False),
    sa.Column('rules_version', sa.String(length=8), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('design_items', sa.JSON(), nullable=False),
    sa.Column('not_applicable', sa.JSON(), nullable=False),
    sa.Column('design_round', sa.Integer(), nullable=False),
    sa.Column('budget', sa.Numeric(precision=14, scale=2), nullable=True),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('created_at', anfang.store.base.UtcDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', anfang.store.base.UtcDateTime(timezone=True), nullable=False),
    sa.Column('running_since', anfang.store.base.UtcDateTime(timezone=True), nullable=True),
    sa.Column('accepted_at', anfang.store.base.UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_construction_projects'))
    )
    with op.batch_alter_table('construction_projects', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_construction_projects_community_code'), ['community_code'], unique=False)

    op.create_table('construction_project_steps',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('at', anfang.store.base.UtcDateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('role', sa.String(length=24), nullable=False),
    sa.Column('action', sa.String(length=24), nullable=False),
    sa.Column('from_state', sa.String(length=16), nullable=False),
    sa.Column('to_state', sa.String(length=16), nullable=False),
    sa.Column('comment', sa.Text(), nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['construction_projects.id'], name=op.f('fk_construction_project_steps_project_id_construction_projects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_construction_project_steps'))
    )
    with op.batch_alter_table('construction_project_steps', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_construction_project_steps_project_id'), ['project_id'], unique=False)

    op.create_table('construction_funding',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('source', sa.String(length=24), nullable=True),
    sa.Column('amount', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('on', sa.Date(), nullable=False),
    sa.Column('note', sa.String(length=256), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('created_at', anfang.store.base.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['construction_projects.id'], name=op.f('fk_construction_funding_project_id_construction_projects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_construction_funding'))
    )
    with op.batch_alter_table('construction_funding', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_construction_funding_project_id'), ['project_id'], unique=False)

    op.create_table('liuwu_incidents',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('community_code', sa.String(length=12), nullable=False),
    sa.Column('category', sa.String(length=16), nullable=False),
    sa.Column('occurred_on', sa.Date(), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('note', sa.String(length=256), nullable=False),
    sa.Column('origin', sa.String(length=16), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('created_at', anfang.store.base.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_liuwu_incidents'))
    )
    with op.batch_alter_table('liuwu_incidents', schema=None) as batch_op:
        batch_op.create_index('ix_liuwu_community_day', ['community_code', 'occurred_on'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('liuwu_incidents', schema=None) as batch_op:
        batch_op.drop_index('ix_liuwu_community_day')
    op.drop_table('liuwu_incidents')
    with op.batch_alter_table('construction_funding', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_construction_funding_project_id'))
    op.drop_table('construction_funding')
    with op.batch_alter_table('construction_project_steps', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_construction_project_steps_project_id'))
    op.drop_table('construction_project_steps')
    with op.batch_alter_table('construction_projects', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_construction_projects_community_code'))
    op.drop_table('construction_projects')
