"""Usage records name the prompt run a model call belongs to: usage_records.prompt_id,
prompt_version and prompt_deployment_id.

A gateway fills them from the prompt executor's signed claim on the model calls of a prompt run
(each call, repairs included, is a record). Existing rows are direct calls: empty prompt and
prompt deployment, version 0.

Revision ID: 0008_prompt_usage
Revises: 0007
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0008_prompt_usage"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Adds the columns; existing records are direct calls."""
    with op.batch_alter_table("usage_records") as batch:
        batch.add_column(sa.Column("prompt_id", sa.String(length=64), nullable=False, server_default=""))
        batch.add_column(sa.Column("prompt_version", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("prompt_deployment_id", sa.String(length=64), nullable=False, server_default="")
        )


def downgrade() -> None:
    """Drops them."""
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_column("prompt_deployment_id")
        batch.drop_column("prompt_version")
        batch.drop_column("prompt_id")
