"""indexes for the console's reads at city scale: captures newest first and by community, address roots (issue 20)

Revision ID: 0019c
Revises: 0019b
"""
from collections.abc import Sequence

from alembic import op

from anfang.store import planner

revision: str = "0019c"
down_revision: str | Sequence[str] | None = "0019b"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # (shot_at, id), newest first, comes with 0019b (the per-day table); on PostgreSQL an index created on the
    # partitioned parent is created on every partition, present and future.
    op.create_index("ix_viid_objects_community_kind_shot", "viid_objects", ["community_code", "kind", "shot_at"],
                    unique=False)
    op.create_index("ix_addresses_level_code", "addresses", ["level", "code"], unique=False)
    # SQLite: without statistics of its own beside the others', (level, code) looked selective and the door-plate
    # coverage of a county read every building of the city through it (0.5 s instead of 5 ms at city scale)
    planner.analyze_sqlite_indexes(op.get_bind(), ["ix_viid_objects_community_kind_shot", "ix_addresses_level_code"])


def downgrade() -> None:
    op.drop_index("ix_addresses_level_code", table_name="addresses")
    op.drop_index("ix_viid_objects_community_kind_shot", table_name="viid_objects")
