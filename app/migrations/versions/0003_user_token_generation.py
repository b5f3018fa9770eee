"""Users can be disabled, and their access tokens revoked: users.disabled and
users.token_generation.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Adds the two columns; existing users stay enabled, at generation 0 (tokens issued before
    this revision carry no generation and are refused: their users log in again)."""
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("token_generation", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    """Drops them."""
    with op.batch_alter_table("users") as batch:
        batch.drop_column("token_generation")
        batch.drop_column("disabled")
