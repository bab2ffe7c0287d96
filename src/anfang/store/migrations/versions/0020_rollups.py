"""rollups kept by triggers in the write's transaction: registry counts per jurisdiction cell, devices per
community/protocol/status, captures per day/camera/community, warnings per state and per day (issue 20)

The triggers come from anfang.rollups.ddl; the rollups are filled from the rows already there.
NOTE for later migrations: SQLite's batch_alter_table re-creates a table and drops its triggers; a migration that
batch-alters addresses, persons, houses, work_units, devices, viid_objects or warnings must call
anfang.rollups.ddl.install(op.get_bind()) again (tests/test_rollups.py fails otherwise).

Revision ID: 0020
Revises: 0019d
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from anfang.rollups import ddl

revision: str = "0020"
down_revision: str | Sequence[str] | None = "0019d"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _counts(*names: str) -> list[sa.Column]:
    return [sa.Column(n, sa.Integer(), nullable=False) for n in names]


def upgrade() -> None:
    op.create_table("rollup_registry",
                    sa.Column("county_code", sa.String(length=6), nullable=False),
                    sa.Column("community_code", sa.String(length=12), nullable=False),
                    sa.Column("police_area_id", sa.Integer(), nullable=False),
                    sa.Column("grid_id", sa.Integer(), nullable=False),
                    *_counts("addresses", "plate_installed", "plate_accurate", "plate_labelled", "persons",
                             "persons_verified", "houses", "houses_verified", "units", "units_verified"),
                    sa.PrimaryKeyConstraint("county_code", "community_code", "police_area_id", "grid_id"))
    op.create_table("rollup_devices",
                    sa.Column("county_code", sa.String(length=6), nullable=False),
                    sa.Column("community_code", sa.String(length=12), nullable=False),
                    sa.Column("protocol", sa.String(length=16), nullable=False),
                    sa.Column("status", sa.String(length=16), nullable=False),
                    *_counts("n"),
                    sa.PrimaryKeyConstraint("county_code", "community_code", "protocol", "status"))
    op.create_table("rollup_captures",
                    sa.Column("day", sa.String(length=10), nullable=False),
                    sa.Column("device_id", sa.String(length=64), nullable=False),
                    sa.Column("community_code", sa.String(length=12), nullable=False),
                    *_counts("n"),
                    sa.PrimaryKeyConstraint("day", "device_id", "community_code"))
    op.create_table("rollup_warnings",
                    sa.Column("county_code", sa.String(length=6), nullable=False),
                    sa.Column("community_code", sa.String(length=12), nullable=False),
                    sa.Column("police_area_id", sa.Integer(), nullable=False),
                    sa.Column("grid_id", sa.Integer(), nullable=False),
                    sa.Column("state", sa.String(length=16), nullable=False),
                    sa.Column("category", sa.String(length=16), nullable=False),
                    *_counts("n"),
                    sa.PrimaryKeyConstraint("county_code", "community_code", "police_area_id", "grid_id", "state",
                                            "category"))
    op.create_table("rollup_warnings_daily",
                    sa.Column("day", sa.String(length=10), nullable=False),
                    sa.Column("county_code", sa.String(length=6), nullable=False),
                    sa.Column("community_code", sa.String(length=12), nullable=False),
                    *_counts("n"),
                    sa.PrimaryKeyConstraint("day", "county_code", "community_code"))
    bind = op.get_bind()
    ddl.install(bind)
    ddl.refill(bind)


def downgrade() -> None:
    bind = op.get_bind()
    for stmt in ddl.drop_statements(bind.dialect.name):
        bind.exec_driver_sql(stmt)
    for table in reversed(ddl.TABLES):
        op.drop_table(table)
