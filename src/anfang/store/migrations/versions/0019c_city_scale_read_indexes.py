"""indexes for the console's reads at city scale: captures newest first and by community, address roots (issue 20)

Revision ID: 0019c
Revises: 0018
"""
from collections.abc import Sequence

from alembic import op

revision: str = "0019c"
down_revision: str | Sequence[str] | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_viid_objects_shot_id", "viid_objects", ["shot_at", "id"], unique=False)
    op.create_index("ix_viid_objects_community_kind_shot", "viid_objects", ["community_code", "kind", "shot_at"],
                    unique=False)
    op.create_index("ix_addresses_level_code", "addresses", ["level", "code"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_addresses_level_code", table_name="addresses")
    op.drop_index("ix_viid_objects_community_kind_shot", table_name="viid_objects")
    op.drop_index("ix_viid_objects_shot_id", table_name="viid_objects")
