"""Prompts: prompts, their immutable versions, labels and the history of label moves; the label a
prompt deployment follows (deployments.prompt_label).

One source of truth for prompt authoring: a save is one transaction over these tables (no
separate document store that could disagree after a crash).

Revision ID: 0006
Revises: 0004
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Written out here rather than imported from the models (see 0001).
TIME = sa.DateTime(timezone=True)
BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _prompt_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["prompt_id"], ["prompts.id"], name=f"fk_{table}_prompt_id_prompts", ondelete="CASCADE"
    )


def upgrade() -> None:
    """Creates the four prompt tables."""
    op.create_table(
        "prompts",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("default_label", sa.String(64), nullable=False),
        sa.Column("latest_version", sa.Integer(), nullable=False),
        sa.Column("create_user_id", sa.String(64), nullable=False),
        sa.Column("create_time", TIME, nullable=False),
        sa.Column("update_time", TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name="fk_prompts_project_id_projects", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_prompts"),
        sa.UniqueConstraint("project_id", "name", name="uq_prompts_project_id_name"),
    )
    op.create_index("ix_prompts_project_id", "prompts", ["project_id"])
    op.create_table(
        "prompt_versions",
        sa.Column("prompt_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("deployment_id", sa.String(64), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("create_user_id", sa.String(64), nullable=False),
        sa.Column("create_time", TIME, nullable=False),
        _prompt_fk("prompt_versions"),
        sa.PrimaryKeyConstraint("prompt_id", "version", name="pk_prompt_versions"),
    )
    op.create_index("ix_prompt_versions_deployment_id", "prompt_versions", ["deployment_id"])
    op.create_table(
        "prompt_labels",
        sa.Column("prompt_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("update_user_id", sa.String(64), nullable=False),
        sa.Column("update_time", TIME, nullable=False),
        _prompt_fk("prompt_labels"),
        sa.PrimaryKeyConstraint("prompt_id", "name", name="pk_prompt_labels"),
    )
    op.create_table(
        "prompt_label_changes",
        sa.Column("id", BIGINT_PK, autoincrement=True, nullable=False),
        sa.Column("prompt_id", sa.String(64), nullable=False),
        sa.Column("label", sa.String(64), nullable=False),
        sa.Column("from_version", sa.Integer(), nullable=True),
        sa.Column("to_version", sa.Integer(), nullable=True),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("time", TIME, nullable=False),
        _prompt_fk("prompt_label_changes"),
        sa.PrimaryKeyConstraint("id", name="pk_prompt_label_changes"),
    )
    op.create_index("ix_prompt_label_changes_prompt_id", "prompt_label_changes", ["prompt_id"])
    with op.batch_alter_table("deployments") as batch:
        batch.add_column(sa.Column("prompt_label", sa.String(64), nullable=True))


def downgrade() -> None:
    """Drops them."""
    with op.batch_alter_table("deployments") as batch:
        batch.drop_column("prompt_label")
    for table in ("prompt_label_changes", "prompt_labels", "prompt_versions", "prompts"):
        op.drop_table(table)
