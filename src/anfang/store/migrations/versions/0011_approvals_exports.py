"""security: query approvals (数据查询授权) and the export log (导出登记)

Revision ID: 0011_approvals_exports
Revises: 0009
Create Date: 2026-11-29 05:30:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import anfang.store.base

revision: str = "0011_approvals_exports"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "query_approvals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("query_kind", sa.String(length=24), nullable=False),
        sa.Column("target", sa.String(length=48), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("params_hash", sa.String(length=64), nullable=False),
        sa.Column("summary", sa.String(length=300), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("requester_id", sa.Integer(), nullable=True),
        sa.Column("requester", sa.String(length=64), nullable=False),
        sa.Column("requester_role", sa.String(length=24), nullable=False),
        sa.Column("approver_rule", sa.String(length=200), nullable=False),
        sa.Column("approver_label", sa.String(length=200), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("created_at", anfang.store.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", anfang.store.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("decided_at", anfang.store.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=64), nullable=True),
        sa.Column("decided_by_id", sa.Integer(), nullable=True),
        sa.Column("decision_note", sa.String(length=300), nullable=True),
        sa.Column("used_at", anfang.store.base.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_query_approvals")),
    )
    with op.batch_alter_table("query_approvals", schema=None) as batch_op:
        batch_op.create_index("ix_query_approvals_requester_hash", ["requester_id", "params_hash"], unique=False)
        batch_op.create_index("ix_query_approvals_state", ["state", "created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_query_approvals_requester_id"), ["requester_id"], unique=False)

    op.create_table(
        "export_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.String(length=32), nullable=False),
        sa.Column("fingerprint", sa.String(length=16), nullable=False),
        sa.Column("at", anfang.store.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=24), nullable=False),
        sa.Column("client", sa.String(length=64), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("file_format", sa.String(length=8), nullable=False),
        sa.Column("filename", sa.String(length=200), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("row_keys", sa.JSON(), nullable=False),
        sa.Column("filters", sa.JSON(), nullable=False),
        sa.Column("approval_id", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_export_log")),
        sa.UniqueConstraint("request_id", name=op.f("uq_export_log_request_id")),
        sa.UniqueConstraint("fingerprint", name=op.f("uq_export_log_fingerprint")),
    )
    with op.batch_alter_table("export_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_export_log_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_export_log_user_id"), ["user_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("export_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_export_log_user_id"))
        batch_op.drop_index(batch_op.f("ix_export_log_at"))
    op.drop_table("export_log")
    with op.batch_alter_table("query_approvals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_query_approvals_requester_id"))
        batch_op.drop_index("ix_query_approvals_state")
        batch_op.drop_index("ix_query_approvals_requester_hash")
    op.drop_table("query_approvals")
