"""Images: image deployments' settings, limit and price; image usage.

- deployments gain `image_settings` (the ImageSettings as protobuf JSON; NULL: unset, the
  platform's defaults apply), `images_per_minute` (0: no limit) and `image_micros` (the price per
  generated image); existing deployments have none of them (NULL / 0).
- deployment_prices.image_micros: the per-image price in the price history (0 before).
- usage_records gain `images`, `image_size` and `image_steps` (0 / "" for existing records).

Revision ID: 0012_images
Revises: 0012_engine_lease
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0012_images"
down_revision: str | Sequence[str] | None = "0012_engine_lease"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Adds the columns."""
    with op.batch_alter_table("deployments") as batch:
        batch.add_column(sa.Column("image_micros", sa.BigInteger(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("images_per_minute", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("image_settings", sa.JSON(), nullable=True))
    with op.batch_alter_table("deployment_prices") as batch:
        batch.add_column(sa.Column("image_micros", sa.BigInteger(), nullable=False, server_default="0"))
    with op.batch_alter_table("usage_records") as batch:
        batch.add_column(sa.Column("images", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("image_size", sa.String(32), nullable=False, server_default=""))
        batch.add_column(sa.Column("image_steps", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    """Drops them."""
    with op.batch_alter_table("usage_records") as batch:
        for name in ("image_steps", "image_size", "images"):
            batch.drop_column(name)
    with op.batch_alter_table("deployment_prices") as batch:
        batch.drop_column("image_micros")
    with op.batch_alter_table("deployments") as batch:
        for name in ("image_settings", "images_per_minute", "image_micros"):
            batch.drop_column(name)
