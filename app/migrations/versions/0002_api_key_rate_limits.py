"""Per-key rate limits: api_keys.requests_per_minute and tokens_per_minute (0: no limit).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Adds the two columns; existing keys get 0 (no limit), as before."""
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("requests_per_minute", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("tokens_per_minute", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    """Drops them."""
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("tokens_per_minute")
        batch.drop_column("requests_per_minute")
