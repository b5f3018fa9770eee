"""Cost: deployments' prices and their history, each usage record's cost, budgets.

- deployments gain their current prices (micro-dollars per million input/output tokens, per
  request); existing deployments are free (0) until priced.
- deployment_prices keeps every price a deployment had, from when (usage is costed with the one in
  force at its time).
- usage_records.cost_nanos: what a request cost (nano-dollars); existing records 0.
- budgets: spending limits per project or key, per UTC day or month.

Revision ID: 0011_cost
Revises: 0010_replicas
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0011_cost"
down_revision: str | Sequence[str] | None = "0010_replicas"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PRICES = ("input_micros_per_million", "output_micros_per_million", "request_micros")
# Written out here rather than imported from the models (see 0001).
TIME = sa.DateTime(timezone=True)
_BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Adds the price columns, the price history, the cost column and the budgets."""
    with op.batch_alter_table("deployments") as batch:
        for name in _PRICES:
            batch.add_column(sa.Column(name, sa.BigInteger(), nullable=False, server_default="0"))
    with op.batch_alter_table("usage_records") as batch:
        batch.add_column(sa.Column("cost_nanos", sa.BigInteger(), nullable=False, server_default="0"))
    op.create_table(
        "deployment_prices",
        sa.Column("id", _BIGINT_PK, primary_key=True, autoincrement=True),
        sa.Column("deployment_id", sa.String(64), nullable=False),
        sa.Column("effective_time", TIME, nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in _PRICES),
        sa.PrimaryKeyConstraint("id", name="pk_deployment_prices"),
    )
    op.create_index(
        "ix_deployment_prices_deployment_id_effective_time",
        "deployment_prices",
        ["deployment_id", "effective_time"],
    )
    op.create_table(
        "budgets",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("api_key_id", sa.String(64), nullable=False),
        sa.Column("period", sa.String(16), nullable=False),
        sa.Column("limit_micros", sa.BigInteger(), nullable=False),
        sa.Column("alert_thresholds", sa.JSON(), nullable=False),
        sa.Column("hard_stop", sa.Boolean(), nullable=False),
        sa.Column("webhook_url", sa.Text(), nullable=False),
        sa.Column("create_time", TIME, nullable=False),
        sa.Column("update_time", TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name="fk_budgets_project_id_projects", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_budgets"),
    )
    op.create_index("ix_budgets_project_id", "budgets", ["project_id"])
    # The deployments that exist were free until now: their history starts at their creation.
    op.execute(
        "INSERT INTO deployment_prices (deployment_id, effective_time, input_micros_per_million, "
        "output_micros_per_million, request_micros) SELECT id, create_time, 0, 0, 0 FROM deployments"
    )


def downgrade() -> None:
    """Drops them."""
    op.drop_index("ix_budgets_project_id", table_name="budgets")
    op.drop_table("budgets")
    op.drop_index("ix_deployment_prices_deployment_id_effective_time", table_name="deployment_prices")
    op.drop_table("deployment_prices")
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_column("cost_nanos")
    with op.batch_alter_table("deployments") as batch:
        for name in reversed(_PRICES):
            batch.drop_column(name)
