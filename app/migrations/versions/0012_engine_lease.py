"""Engines that announce themselves: engines.last_seen and engines.lease_expire_time.

Both NULL for the engines registered so far (by an admin or the configured engine): they hold no
lease and stay placeable, as before.

Revision ID: 0012_engine_lease
Revises: 0011_cost
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0012_engine_lease"
down_revision: str | Sequence[str] | None = "0011_cost"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Written out here rather than imported from the models (see 0001).
TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Adds the two columns."""
    with op.batch_alter_table("engines") as batch:
        batch.add_column(sa.Column("last_seen", TIME, nullable=True))
        batch.add_column(sa.Column("lease_expire_time", TIME, nullable=True))


def downgrade() -> None:
    """Drops them."""
    with op.batch_alter_table("engines") as batch:
        batch.drop_column("lease_expire_time")
        batch.drop_column("last_seen")
