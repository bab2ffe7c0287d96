"""captures kept per day: viid_objects partitioned by day of shot_at (PostgreSQL), per-day blob index

PostgreSQL: the plain viid_objects table is converted: a partitioned table is made beside it (primary key
(id, shot_at), unique (kind, object_id, shot_at), the id sequence kept), a partition per day of the rows present
plus today and the days ahead, a default partition; the rows are moved, the old table dropped.
SQLite: the table is rebuilt with the new unique key and the (shot_at, id) index; the reception-time index goes.
Both: viid_blobs.day (the day whose segment files hold the bytes; NULL for segments written before).

Revision ID: 0019b
Revises: 0018
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import anfang.store.base
from anfang.store import planner

revision: str = "0019b"
down_revision: str | Sequence[str] | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLS = ("id, kind, object_id, source_id, device_id, shot_at, received_at, plate_no, plate_color, gender, id_number, "
         "community_code, origin, body, faces")


def _columns(pg_id: sa.Column) -> list[sa.Column]:
    dt = anfang.store.base.UtcDateTime(timezone=True)
    return [
        pg_id,
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("object_id", sa.String(length=64), nullable=False),
        sa.Column("source_id", sa.String(length=64), nullable=True),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("shot_at", dt, nullable=False),
        sa.Column("received_at", dt, nullable=False),
        sa.Column("plate_no", sa.String(length=16), nullable=True),
        sa.Column("plate_color", sa.String(length=4), nullable=True),
        sa.Column("gender", sa.String(length=2), nullable=True),
        sa.Column("id_number", sa.String(length=32), nullable=True),
        sa.Column("community_code", sa.String(length=12), nullable=True),
        sa.Column("origin", sa.String(length=64), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("faces", sa.Integer(), nullable=True),
    ]


def _indexes() -> None:
    op.create_index("ix_viid_objects_device_shot", "viid_objects", ["device_id", "shot_at"])
    op.create_index("ix_viid_objects_kind_shot", "viid_objects", ["kind", "shot_at"])
    op.create_index("ix_viid_objects_plate", "viid_objects", ["plate_no"])


def _pg_upgrade() -> None:
    from anfang.viid import days

    conn = op.get_bind()
    op.execute("ALTER SEQUENCE viid_objects_id_seq OWNED BY NONE")
    op.execute("ALTER TABLE viid_objects RENAME TO viid_objects_unpartitioned")
    for ix in ("ix_viid_objects_device_shot", "ix_viid_objects_kind_shot", "ix_viid_objects_plate",
               "ix_viid_objects_received_at"):
        op.execute(f"DROP INDEX IF EXISTS {ix}")
    op.execute("ALTER TABLE viid_objects_unpartitioned DROP CONSTRAINT pk_viid_objects")
    op.execute("ALTER TABLE viid_objects_unpartitioned DROP CONSTRAINT uq_viid_objects_kind")
    op.create_table(
        "viid_objects",
        *_columns(sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False,
                            server_default=sa.text("nextval('viid_objects_id_seq'::regclass)"))),
        sa.PrimaryKeyConstraint("id", "shot_at", name="pk_viid_objects"),
        sa.UniqueConstraint("kind", "object_id", "shot_at", name="uq_viid_objects_kind"),
        postgresql_partition_by="RANGE (shot_at)",
    )
    _indexes()
    op.create_index("ix_viid_objects_shot_id", "viid_objects", ["shot_at", "id"])
    op.execute(f"CREATE TABLE {days.DEFAULT_PARTITION} PARTITION OF viid_objects DEFAULT")
    present = [r[0] for r in conn.exec_driver_sql(
        "SELECT DISTINCT (shot_at AT TIME ZONE 'Asia/Shanghai')::date FROM viid_objects_unpartitioned")]
    days.ensure_days(conn, present)
    days.ensure_ahead(conn)
    op.execute(f"INSERT INTO viid_objects ({_COLS}) SELECT {_COLS} FROM viid_objects_unpartitioned")
    op.execute("DROP TABLE viid_objects_unpartitioned")
    op.execute("ALTER SEQUENCE viid_objects_id_seq OWNED BY viid_objects.id")
    planner.analyze_table(conn, "viid_objects")  # the moved rows' partitions: never analysed otherwise


def _pg_downgrade() -> None:
    op.execute("ALTER SEQUENCE viid_objects_id_seq OWNED BY NONE")
    op.execute("ALTER TABLE viid_objects RENAME TO viid_objects_partitioned")
    for ix in ("ix_viid_objects_device_shot", "ix_viid_objects_kind_shot", "ix_viid_objects_plate",
               "ix_viid_objects_shot_id"):
        op.execute(f"DROP INDEX IF EXISTS {ix}")
    op.execute("ALTER TABLE viid_objects_partitioned DROP CONSTRAINT pk_viid_objects")
    op.execute("ALTER TABLE viid_objects_partitioned DROP CONSTRAINT uq_viid_objects_kind")
    op.create_table(
        "viid_objects",
        *_columns(sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False,
                            server_default=sa.text("nextval('viid_objects_id_seq'::regclass)"))),
        sa.PrimaryKeyConstraint("id", name="pk_viid_objects"),
        sa.UniqueConstraint("kind", "object_id", name="uq_viid_objects_kind"),
    )
    _indexes()
    op.create_index("ix_viid_objects_received_at", "viid_objects", ["received_at"])
    # a re-sent object stored on two days (possible only with different capture times) keeps its first row
    op.execute(f"INSERT INTO viid_objects ({_COLS}) SELECT DISTINCT ON (kind, object_id) {_COLS} "
               "FROM viid_objects_partitioned ORDER BY kind, object_id, id")
    op.execute("DROP TABLE viid_objects_partitioned CASCADE")
    op.execute("ALTER SEQUENCE viid_objects_id_seq OWNED BY viid_objects.id")


def upgrade() -> None:
    with op.batch_alter_table("viid_blobs") as batch:
        batch.add_column(sa.Column("day", sa.Integer(), nullable=True))
        batch.create_index("ix_viid_blobs_day", ["day"])
    if op.get_bind().dialect.name == "postgresql":
        _pg_upgrade()
        return
    with op.batch_alter_table("viid_objects", recreate="always") as batch:
        batch.drop_index("ix_viid_objects_received_at")
        batch.drop_constraint("uq_viid_objects_kind", type_="unique")
        batch.create_unique_constraint("uq_viid_objects_kind", ["kind", "object_id", "shot_at"])
        batch.create_index("ix_viid_objects_shot_id", ["shot_at", "id"])
    planner.analyze_table(op.get_bind(), "viid_objects")  # the re-made table lost its statistics


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _pg_downgrade()
    else:
        with op.batch_alter_table("viid_objects", recreate="always") as batch:
            batch.drop_index("ix_viid_objects_shot_id")
            batch.drop_constraint("uq_viid_objects_kind", type_="unique")
            batch.create_unique_constraint("uq_viid_objects_kind", ["kind", "object_id"])
            batch.create_index("ix_viid_objects_received_at", ["received_at"])
    with op.batch_alter_table("viid_blobs") as batch:
        batch.drop_index("ix_viid_blobs_day")
        batch.drop_column("day")
