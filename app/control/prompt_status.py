"""The status of prompt deployments: READY while the version they pin, or the label they follow,
exists; FAILED (with the reason) once it does not.

A prompt deployment loads nothing on an engine (it runs on its versions' chat deployment), so its
status follows its prompt, not the reconciler: it is written in the transaction that changes the
deployment (`app/prompts/deployments.py`) or the prompt's labels (`app/prompts/store.py`), and
the routing feed carries it to the gateways with that transaction's revision. Deleting a prompt
deletes its deployments (or is refused while there are some), so none outlives its prompt.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.convert import status_name
from app.db import models
from bud.app.v1 import deployment_pb2

READY = status_name(deployment_pb2.DEPLOYMENT_STATUS_READY)
FAILED = status_name(deployment_pb2.DEPLOYMENT_STATUS_FAILED)
# The label every prompt has (the highest version): never stored.
LATEST = "latest"


async def target_problem(session: AsyncSession, row: models.Deployment) -> str:
    """Why a prompt deployment's target does not resolve now; "" when it does."""
    prompt = await session.get(models.Prompt, row.prompt_id) if row.prompt_id else None
    if prompt is None:
        return f"prompt {row.prompt_id!r} no longer exists"
    if row.prompt_version:
        found = await session.get(models.PromptVersion, (prompt.id, row.prompt_version))
        return "" if found is not None else f"prompt {prompt.id!r} has no version {row.prompt_version}"
    label = row.prompt_label or prompt.default_label or LATEST
    if label == LATEST:
        return "" if prompt.latest_version > 0 else f"prompt {prompt.id!r} has no version"
    found_label = await session.get(models.PromptLabel, (prompt.id, label))
    return "" if found_label is not None else f"prompt {prompt.id!r} has no label {label!r}"


async def refresh(session: AsyncSession, row: models.Deployment) -> bool:
    """Writes one prompt deployment's status from its target (only when it changes, so that an
    unchanged deployment costs the gateways nothing); whether it changed."""
    problem = await target_problem(session, row)
    status, message = (FAILED, problem) if problem else (READY, "")
    if (row.status, row.status_message) == (status, message):
        return False
    row.status, row.status_message = status, message
    return True


async def refresh_all(session: AsyncSession) -> bool:
    """Refreshes every prompt deployment (at start: those stored before their status followed
    their target stayed PENDING); whether any changed."""
    rows = await session.scalars(select(models.Deployment).where(models.Deployment.prompt_id.is_not(None)))
    changed = [await refresh(session, row) for row in rows.all()]
    await session.flush()
    return any(changed)


async def refresh_prompt(session: AsyncSession, prompt_id: str) -> None:
    """Refreshes every deployment running the prompt (after its labels changed)."""
    rows = await session.scalars(select(models.Deployment).where(models.Deployment.prompt_id == prompt_id))
    for row in rows.all():
        await refresh(session, row)
    await session.flush()
