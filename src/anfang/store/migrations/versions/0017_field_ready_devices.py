"""Field-ready device access: GB/T 28181 per-device SIP trace; device placement (警务区, grid, state);
faces found per capture

Revision ID: 0017
Revises: 0015_doorplates_encryption
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import anfang.store.base

revision: str = "0017"
down_revision: str | None = "0015_doorplates_encryption"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table("gb28181_trace_requests",
                    sa.Column("device_id", sa.String(length=64), nullable=False),
                    sa.Column("until", anfang.store.base.UtcDateTime(), nullable=False),
                    sa.Column("keep", sa.Integer(), nullable=False),
                    sa.Column("requested_by", sa.String(length=64), nullable=False),
                    sa.Column("requested_at", anfang.store.base.UtcDateTime(), nullable=False),
                    sa.PrimaryKeyConstraint("device_id"))
    op.create_table("gb28181_trace",
                    sa.Column("id", sa.Integer(), nullable=False),
                    sa.Column("device_id", sa.String(length=64), nullable=False),
                    sa.Column("at", anfang.store.base.UtcDateTime(), nullable=False),
                    sa.Column("direction", sa.String(length=4), nullable=False),
                    sa.Column("transport", sa.String(length=8), nullable=False),
                    sa.Column("addr", sa.String(length=64), nullable=False),
                    sa.Column("summary", sa.String(length=128), nullable=False),
                    sa.Column("text", sa.Text(), nullable=False),
                    sa.PrimaryKeyConstraint("id"))
    op.create_index("ix_gb28181_trace_device_id", "gb28181_trace", ["device_id", "id"], unique=False)
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("police_area_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("grid_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("placement", sa.String(length=16), nullable=False, server_default="unplaced"))
        batch.create_foreign_key("fk_devices_police_area_id_police_areas", "police_areas", ["police_area_id"], ["id"])
        batch.create_foreign_key("fk_devices_grid_id_grids", "grids", ["grid_id"], ["id"])
        batch.create_index("ix_devices_police_area_id", ["police_area_id"])
        batch.create_index("ix_devices_grid_id", ["grid_id"])
        batch.create_index("ix_devices_placement", ["placement"])
    op.add_column("viid_objects", sa.Column("faces", sa.Integer(), nullable=True))
    # devices already given an address or a community are placed; their 警务区 and grid follow
    op.execute("""UPDATE devices SET placement = 'placed' WHERE community_code IS NOT NULL OR address_id IS NOT NULL""")
    op.execute("""UPDATE devices SET police_area_id = (SELECT a.police_area_id FROM addresses a
                                                       WHERE a.id = devices.address_id),
                                     grid_id = (SELECT a.grid_id FROM addresses a WHERE a.id = devices.address_id)
                  WHERE address_id IS NOT NULL""")
    op.execute("""UPDATE devices SET police_area_id = (
                      SELECT a.police_area_id FROM addresses a
                      WHERE a.community_code = devices.community_code AND a.police_area_id IS NOT NULL
                      GROUP BY a.police_area_id ORDER BY count(*) DESC, a.police_area_id LIMIT 1),
                  grid_id = (SELECT a.grid_id FROM addresses a
                             WHERE a.community_code = devices.community_code AND a.level = 'community' LIMIT 1)
                  WHERE address_id IS NULL AND community_code IS NOT NULL""")


def downgrade() -> None:
    with op.batch_alter_table("viid_objects") as batch:
        batch.drop_column("faces")
    with op.batch_alter_table("devices") as batch:
        batch.drop_index("ix_devices_placement")
        batch.drop_index("ix_devices_grid_id")
        batch.drop_index("ix_devices_police_area_id")
        batch.drop_constraint("fk_devices_grid_id_grids", type_="foreignkey")
        batch.drop_constraint("fk_devices_police_area_id_police_areas", type_="foreignkey")
        batch.drop_column("placement")
        batch.drop_column("grid_id")
        batch.drop_column("police_area_id")
    op.drop_index("ix_gb28181_trace_device_id", table_name="gb28181_trace")
    op.drop_table("gb28181_trace")
    op.drop_table("gb28181_trace_requests")
