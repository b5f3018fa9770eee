"""Stored responses of the Responses API (`store`, `previous_response_id`): stored_responses.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Written out here rather than imported from the models (see 0001).
TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Creates the table and its retention index."""
    op.create_table(
        "stored_responses",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("api_key_id", sa.String(64), nullable=False),
        sa.Column("previous_response_id", sa.String(64), nullable=False),
        sa.Column("create_time", TIME, nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_stored_responses"),
    )
    op.create_index("ix_stored_responses_create_time", "stored_responses", ["create_time"])


def downgrade() -> None:
    """Drops it (the stored responses with it)."""
    op.drop_index("ix_stored_responses_create_time", table_name="stored_responses")
    op.drop_table("stored_responses")
