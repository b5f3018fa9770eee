"""Usage records say whether the gateways' response cache answered: usage_records.cached.

A cache hit runs no engine: its record has zero tokens and `cached` true (QueryUsage counts them
in `cached_requests`). Existing rows were all answered by an engine: false.

Revision ID: 0009_cached_usage
Revises: 0008_prompt_usage
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0009_cached_usage"
down_revision: str | Sequence[str] | None = "0008_prompt_usage"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Adds the column; existing records were answered by an engine."""
    with op.batch_alter_table("usage_records") as batch:
        batch.add_column(sa.Column("cached", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    """Drops it."""
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_column("cached")
