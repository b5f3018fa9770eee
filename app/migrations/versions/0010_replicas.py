"""Replicas, autoscaling and scale to zero: the scaling bounds of a deployment, the control
plane's replica count and cold-start flag, each replica's state, and the scaling events.

- `deployments.min_replicas`, `max_replicas`, `idle_timeout_seconds`: NULL when unset (the
  platform's defaults apply, app settings `default_min_replicas`, ...);
- `deployments.desired_replicas`: what the control plane wants now (0: scaled to zero); existing
  deployments keep what they run: one replica per endpoint;
- `deployments.cold_start`: scaled to zero, or loading after a wake (the gateways queue requests
  behind a wake instead of failing them);
- `deployment_endpoints.placed_by` (`tenant`: named by the deployment or its first placement;
  `scaler`: added by the control plane), `ready` (loaded and serving: set for the endpoints of
  deployments READY now), `draining_since` (leaving: out of routing, unloaded once drained);
- `scaling_events`: every scaling decision with its reason.

Revision ID: 0010_replicas
Revises: 0009_cached_usage
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0010_replicas"
down_revision: str | Sequence[str] | None = "0009_cached_usage"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Written out here rather than imported from the models (see 0001).
TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Adds the columns and the events table; existing replicas of READY deployments are ready."""
    # Plain ADD COLUMN (no batch: SQLite would copy `deployments`, and dropping the old copy
    # cascades to the endpoints).
    op.add_column("deployments", sa.Column("min_replicas", sa.Integer(), nullable=True))
    op.add_column("deployments", sa.Column("max_replicas", sa.Integer(), nullable=True))
    op.add_column("deployments", sa.Column("idle_timeout_seconds", sa.Integer(), nullable=True))
    op.add_column(
        "deployments", sa.Column("desired_replicas", sa.Integer(), nullable=False, server_default="1")
    )
    op.add_column(
        "deployments", sa.Column("cold_start", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    op.add_column(
        "deployment_endpoints",
        sa.Column("placed_by", sa.String(16), nullable=False, server_default="tenant"),
    )
    op.add_column(
        "deployment_endpoints", sa.Column("ready", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    op.add_column("deployment_endpoints", sa.Column("draining_since", TIME, nullable=True))
    deployments = sa.table(
        "deployments",
        sa.column("id", sa.String),
        sa.column("status", sa.String),
        sa.column("desired_replicas", sa.Integer),
    )
    endpoints = sa.table(
        "deployment_endpoints", sa.column("deployment_id", sa.String), sa.column("ready", sa.Boolean)
    )
    bind = op.get_bind()
    ready_ids = sa.select(deployments.c.id).where(deployments.c.status == "DEPLOYMENT_STATUS_READY")
    bind.execute(sa.update(endpoints).where(endpoints.c.deployment_id.in_(ready_ids)).values(ready=True))
    counts = (
        sa.select(sa.func.count())
        .select_from(endpoints)
        .where(endpoints.c.deployment_id == deployments.c.id)
        .scalar_subquery()
    )
    bind.execute(sa.update(deployments).values(desired_replicas=counts))
    op.create_table(
        "scaling_events",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("deployment_id", sa.String(64), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("from_replicas", sa.Integer(), nullable=False),
        sa.Column("to_replicas", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("engine_id", sa.String(64), nullable=False),
        sa.Column("create_time", TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["deployments.id"],
            name="fk_scaling_events_deployment_id_deployments",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_scaling_events"),
    )
    op.create_index("ix_scaling_events_deployment_id", "scaling_events", ["deployment_id"])


def downgrade() -> None:
    """Drops them."""
    op.drop_index("ix_scaling_events_deployment_id", table_name="scaling_events")
    op.drop_table("scaling_events")
    with op.batch_alter_table("deployment_endpoints") as batch:
        batch.drop_column("draining_since")
        batch.drop_column("ready")
        batch.drop_column("placed_by")
    with op.batch_alter_table("deployments") as batch:
        batch.drop_column("cold_start")
        batch.drop_column("desired_replicas")
        batch.drop_column("idle_timeout_seconds")
        batch.drop_column("max_replicas")
        batch.drop_column("min_replicas")
