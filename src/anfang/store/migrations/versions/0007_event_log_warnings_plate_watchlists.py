"""event log, warnings with steps, plate watchlists

Revision ID: 0007
Revises: 0002
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import anfang.store.base

revision: str = "0007"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "event_log",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("at", anfang.store.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("node_id", sa.String(length=32), nullable=True),
        sa.Column("community_code", sa.String(length=12), nullable=True),
        sa.Column("address_id", sa.Integer(), nullable=True),
        sa.Column("longitude", sa.Float(), nullable=True),
        sa.Column("latitude", sa.Float(), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_log")),
    )
    op.create_index("ix_event_log_kind_at", "event_log", ["kind", "at"])
    op.create_index("ix_event_log_source_at", "event_log", ["source", "at"])
    op.create_table(
        "warnings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uid", sa.String(length=36), nullable=False),
        sa.Column("rule", sa.String(length=64), nullable=False),
        sa.Column("category", sa.String(length=16), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("severity", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=True),
        sa.Column("dedup_key", sa.String(length=160), nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.Column("county_code", sa.String(length=6), nullable=True),
        sa.Column("community_code", sa.String(length=12), nullable=True),
        sa.Column("address_id", sa.Integer(), nullable=True),
        sa.Column("police_area_id", sa.Integer(), nullable=True),
        sa.Column("station_id", sa.Integer(), nullable=True),
        sa.Column("grid_id", sa.Integer(), nullable=True),
        sa.Column("place", sa.String(length=300), nullable=True),
        sa.Column("longitude", sa.Float(), nullable=True),
        sa.Column("latitude", sa.Float(), nullable=True),
        sa.Column("notify_roles", sa.String(length=64), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", anfang.store.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("last_hit_at", anfang.store.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("acknowledged_at", anfang.store.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("handled_at", anfang.store.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("escalated_at", anfang.store.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("feedback", sa.String(length=16), nullable=True),
        sa.Column("recovered_at", anfang.store.base.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_warnings")),
        sa.UniqueConstraint("uid", name=op.f("uq_warnings_uid")),
    )
    op.create_index("ix_warnings_dedup_state", "warnings", ["dedup_key", "state"])
    op.create_index("ix_warnings_area_created", "warnings", ["police_area_id", "created_at"])
    op.create_index(op.f("ix_warnings_state"), "warnings", ["state"])
    op.create_index(op.f("ix_warnings_county_code"), "warnings", ["county_code"])
    op.create_index(op.f("ix_warnings_community_code"), "warnings", ["community_code"])
    op.create_table(
        "warning_steps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("warning_id", sa.Integer(), nullable=False),
        sa.Column("at", anfang.store.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["warning_id"], ["warnings.id"], name=op.f("fk_warning_steps_warning_id_warnings"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_warning_steps")),
    )
    op.create_index(op.f("ix_warning_steps_warning_id"), "warning_steps", ["warning_id"])
    op.create_table(
        "plate_watchlists",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("tolerant", sa.Boolean(), nullable=False),
        sa.Column("severity", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", anfang.store.base.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plate_watchlists")),
        sa.UniqueConstraint("name", name=op.f("uq_plate_watchlists_name")),
    )
    op.create_table(
        "plate_watchlist_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("watchlist_id", sa.Integer(), nullable=False),
        sa.Column("plate", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(["watchlist_id"], ["plate_watchlists.id"],
                                name=op.f("fk_plate_watchlist_entries_watchlist_id_plate_watchlists"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plate_watchlist_entries")),
        sa.UniqueConstraint("watchlist_id", "plate", name=op.f("uq_plate_watchlist_entries_watchlist_id")),
    )
    op.create_index(op.f("ix_plate_watchlist_entries_watchlist_id"), "plate_watchlist_entries", ["watchlist_id"])


def downgrade() -> None:
    op.drop_table("plate_watchlist_entries")
    op.drop_table("plate_watchlists")
    op.drop_table("warning_steps")
    op.drop_table("warnings")
    op.drop_table("event_log")
