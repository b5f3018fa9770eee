"""Engines become platform resources: the `engines` registry, deployment_endpoints.engine_id and
deployments.generation.

Each distinct address the endpoints named becomes a registered engine (named after its address
when that fits, no capacity limit), and every endpoint points at its engine. Models' names on the
engines are the platform's from now on, ``<deployment id>-g<generation>``: existing endpoints are
renamed (generation 1), so the control plane loads each deployment under its new, owned name; a
copy an engine still serves under the old name is not the platform's and is left alone (it goes
with the engine's restart, which the upgrade needs anyway for the owner-aware engine).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

import secrets
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIME = sa.DateTime(timezone=True)
NAME_LENGTH = 100


def _engine_id() -> str:
    """An engine id as `app.ids.new_id("eng")` makes them (copied: a revision stands alone)."""
    return f"eng_{time.time_ns() // 1_000_000:012x}{secrets.token_hex(6)}"


def upgrade() -> None:
    """Creates the registry, registers the addresses in use and links the endpoints to them."""
    engines = op.create_table(
        "engines",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(NAME_LENGTH), nullable=False),
        sa.Column("address", sa.String(255), nullable=False),
        sa.Column("max_models", sa.Integer(), nullable=False),
        sa.Column("create_time", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_engines"),
        sa.UniqueConstraint("name", name="uq_engines_name"),
        sa.UniqueConstraint("address", name="uq_engines_address"),
    )
    with op.batch_alter_table("deployments") as batch:
        batch.add_column(sa.Column("generation", sa.Integer(), nullable=False, server_default="1"))
    with op.batch_alter_table("deployment_endpoints") as batch:
        batch.add_column(sa.Column("engine_id", sa.String(64), nullable=True))

    bind = op.get_bind()
    endpoints = sa.table(
        "deployment_endpoints",
        sa.column("deployment_id", sa.String),
        sa.column("position", sa.Integer),
        sa.column("address", sa.String),
        sa.column("served_model_name", sa.String),
        sa.column("engine_id", sa.String),
    )
    addresses = sorted(bind.execute(sa.select(endpoints.c.address).distinct()).scalars())
    now = datetime.now(UTC)
    for i, address in enumerate(addresses, start=1):
        engine_id = _engine_id()
        name = address if len(address) <= NAME_LENGTH else f"engine-{i}"
        # SQLite stores times without an offset (as app.db.models.UTCDateTime does).
        created = now.replace(tzinfo=None) if bind.dialect.name == "sqlite" else now
        op.bulk_insert(
            engines,
            [{"id": engine_id, "name": name, "address": address, "max_models": 0, "create_time": created}],
        )
        bind.execute(sa.update(endpoints).where(endpoints.c.address == address).values(engine_id=engine_id))
    for row in bind.execute(sa.select(endpoints.c.deployment_id, endpoints.c.position)).all():
        bind.execute(
            sa.update(endpoints)
            .where(endpoints.c.deployment_id == row.deployment_id, endpoints.c.position == row.position)
            .values(served_model_name=f"{row.deployment_id}-g1")
        )

    with op.batch_alter_table("deployment_endpoints") as batch:
        batch.alter_column("engine_id", existing_type=sa.String(64), nullable=False)
        batch.create_foreign_key(
            "fk_deployment_endpoints_engine_id_engines", "engines", ["engine_id"], ["id"]
        )
        batch.create_index("ix_deployment_endpoints_engine_id", ["engine_id"])


def downgrade() -> None:
    """Drops the registry and the new columns (served model names keep their platform form)."""
    with op.batch_alter_table("deployment_endpoints") as batch:
        batch.drop_index("ix_deployment_endpoints_engine_id")
        batch.drop_constraint("fk_deployment_endpoints_engine_id_engines", type_="foreignkey")
        batch.drop_column("engine_id")
    with op.batch_alter_table("deployments") as batch:
        batch.drop_column("generation")
    op.drop_table("engines")
