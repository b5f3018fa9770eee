"""Usage records keep the client's request id beside the gateway's key:
usage_records.client_request_id.

Until now `request_id` held the client's X-Request-Id, so requests sharing one were stored as one.
Gateways now key each record with an id of their own and send the client's id separately. Existing
rows keep their `request_id` and get an empty `client_request_id`.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Adds the column; existing records get an empty client request id."""
    with op.batch_alter_table("usage_records") as batch:
        batch.add_column(
            sa.Column("client_request_id", sa.String(length=128), nullable=False, server_default="")
        )


def downgrade() -> None:
    """Drops it."""
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_column("client_request_id")
