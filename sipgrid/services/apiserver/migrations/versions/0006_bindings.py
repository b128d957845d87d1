"""Location bindings kept across restarts of the all-in-one

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bindings",
        sa.Column("aor", sa.String(length=255), nullable=False),
        sa.Column("contact", sa.String(length=512), nullable=False),
        sa.Column("route", sa.LargeBinary(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("aor", "contact"),
    )
    op.create_index("ix_bindings_expires_at", "bindings", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_bindings_expires_at", table_name="bindings")
    op.drop_table("bindings")
