"""SQLite: the camera-major capture indexes lead with the capture's day (issue 20 item 4)

The unique key (kind, object_id, shot_at) and the camera index (device_id, shot_at) become
(substr(shot_at, 1, 10), kind, object_id, shot_at) and (substr(shot_at, 1, 10), device_id, shot_at): a commit of
captures from many cameras writes into today's part of each index only, as into today's partition on PostgreSQL
(anfang.viid.days explains; queries by camera or object id name their days with days.day_filter).
PostgreSQL: nothing (its partitions give the same per day).
NOTE for later migrations: SQLAlchemy does not reflect indexes on expressions, so a batch_alter_table of
viid_objects on SQLite would silently lose these two indexes (and the unique key with them): re-create them with
create_sqlite_indexes() below, and the rollup triggers with anfang.rollups.ddl.install().

Revision ID: 0021
Revises: 0020
"""
from collections.abc import Sequence

from alembic import op

from anfang.rollups import ddl
from anfang.store import planner

revision: str = "0021"
down_revision: str | Sequence[str] | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DAY = "substr(shot_at, 1, 10)"  # the same text as anfang.viid.days.SQLITE_DAY (frozen here, as migrations are)


def create_sqlite_indexes() -> None:
    op.execute(f"CREATE UNIQUE INDEX uq_viid_objects_day_kind ON viid_objects ({DAY}, kind, object_id, shot_at)")
    op.execute(f"CREATE INDEX ix_viid_objects_day_device_shot ON viid_objects ({DAY}, device_id, shot_at)")


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    with op.batch_alter_table("viid_objects", recreate="always") as batch:
        batch.drop_index("ix_viid_objects_device_shot")
        batch.drop_constraint("uq_viid_objects_kind", type_="unique")
    create_sqlite_indexes()
    ddl.install(bind)  # the re-made table lost its triggers
    planner.analyze_table(bind, "viid_objects")  # and its statistics


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    op.execute("DROP INDEX uq_viid_objects_day_kind")
    op.execute("DROP INDEX ix_viid_objects_day_device_shot")
    with op.batch_alter_table("viid_objects", recreate="always") as batch:
        batch.create_unique_constraint("uq_viid_objects_kind", ["kind", "object_id", "shot_at"])
        batch.create_index("ix_viid_objects_device_shot", ["device_id", "shot_at"])
    ddl.install(bind)
    planner.analyze_table(bind, "viid_objects")
