"""Prompt deployments: a deployment whose target is a prompt, pinned to a version or following a
label, with the settings a model deployment has (scaling, caching, rate limits) and no engine
endpoints of its own (it runs on its versions' chat deployment).

Flow 1 deploys a prompt of the deployment's own project. Flow 2 deploys a prompt of another
project (`PromptTarget.project_id`): the caller must be able to read that project (viewer) and
edit this one (editor), and the deployment pins a version (a label is resolved when deploying).
DeploymentService calls :func:`insert` and :func:`update` for deployments with a prompt target.
Its status follows its target (`app/control/prompt_status.py`): READY while the version it pins or
the label it follows exists (the prompt executor runs it by name), FAILED otherwise.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app import ids
from app.authz import require_role
from app.control import prompt_status
from app.convert import apply_deployment_settings, status_name
from app.db import models
from app.db.models import utcnow
from app.prompts import body, store
from app.validation import check_deployment_name, check_scaling_and_limits
from auth.roles import VIEWER
from auth.tokens import Caller
from bud.app.v1 import deployment_pb2
from budrt.errors import already_exists, invalid_argument

D = deployment_pb2
PENDING = status_name(D.DEPLOYMENT_STATUS_PENDING)


def _check_settings(deployment: D.Deployment, param: str) -> None:
    """A prompt deployment's own fields: name, no engine fields, sane scaling and rate limits."""
    check_deployment_name(deployment.name, f"{param}.name")
    for field in ("endpoints", "engine_args", "runner"):
        value = getattr(deployment, field)
        if value.ByteSize() if field == "engine_args" else value:
            raise invalid_argument(
                f"{param}.{field}: a prompt deployment runs on its prompt's chat deployment; leave it unset",
                param=f"{param}.{field}",
            )
    check_scaling_and_limits(deployment, param)


async def _target(
    session: AsyncSession, caller: Caller, project_id: str, target: D.PromptTarget, param: str
) -> tuple[str, int | None, str | None]:
    """(prompt id, pinned version or None, followed label or None) of a checked target."""
    at = f"{param}.prompt"
    if not target.prompt_id:
        raise invalid_argument(f"{at}.prompt_id is required", param=f"{at}.prompt_id")
    if target.version < 0:
        raise invalid_argument(f"{at}.version must not be negative", param=f"{at}.version")
    if target.label:
        body.check_label(target.label, f"{at}.label", allow_latest=True)
        if target.version:
            raise invalid_argument(f"{at}: set a version or a label, not both", param=f"{at}.label")
    source = target.project_id or project_id
    if source != project_id:
        # Flow 2: reading the other project is needed (NOT_FOUND, as for a missing one, if not).
        await require_role(session, caller, source, VIEWER, f"{at}.project_id")
    prompt = await store.get_prompt(session, source, target.prompt_id, param=f"{at}.prompt_id")
    if target.version:
        await store.get_version(session, prompt, target.version, f"{at}.version")
        return prompt.id, target.version, None
    label = target.label or prompt.default_label
    version = await store.resolve_label(session, prompt, label, f"{at}.label")
    if source != project_id:
        return prompt.id, version, None  # another project's prompt: pinned to what it is now
    return prompt.id, None, target.label


async def _name_taken(session: AsyncSession, project_id: str, name: str, deployment_id: str = "") -> bool:
    found = await session.scalar(
        select(models.Deployment.id).where(
            models.Deployment.project_id == project_id, models.Deployment.name == name
        )
    )
    return found is not None and found != deployment_id


def _apply(
    row: models.Deployment, deployment: D.Deployment, target: tuple[str, int | None, str | None]
) -> None:
    row.name = deployment.name
    row.model_source_kind = row.model_source = None
    row.prompt_id, row.prompt_version, row.prompt_label = target
    row.runner = "RUNNER_UNSPECIFIED"
    row.engine_args = {}
    apply_deployment_settings(row, deployment)


async def insert(
    session: AsyncSession,
    caller: Caller,
    project_id: str,
    deployment: D.Deployment,
    param: str = "deployment",
) -> models.Deployment:
    """Validates and inserts a prompt deployment (the caller is an editor of `project_id`)."""
    _check_settings(deployment, param)
    target = await _target(session, caller, project_id, deployment.prompt, param)
    if await _name_taken(session, project_id, deployment.name):
        raise already_exists(
            f"a deployment named {deployment.name!r} already exists in the project", param=f"{param}.name"
        )
    now = utcnow()
    row = models.Deployment(
        id=ids.new_id(ids.DEPLOYMENT),
        project_id=project_id,
        status=PENDING,
        status_message="",
        spec_version=1,
        create_time=now,
        update_time=now,
    )
    _apply(row, deployment, target)
    await prompt_status.refresh(session, row)
    session.add(row)
    await session.flush()
    await session.refresh(row, ["endpoints"])
    return row


async def update(
    session: AsyncSession,
    caller: Caller,
    row: models.Deployment,
    merged: D.Deployment,
    param: str = "deployment",
) -> models.Deployment:
    """Applies a merged update to a prompt deployment; a deployment cannot change between a model
    and a prompt target (delete and create instead)."""
    if not merged.HasField("prompt") or row.prompt_id is None:
        raise invalid_argument(
            f"{param}: a deployment cannot switch between a model and a prompt; create a new one",
            param=f"{param}.prompt",
        )
    _check_settings(merged, param)
    target = await _target(session, caller, row.project_id, merged.prompt, param)
    if merged.name != row.name and await _name_taken(session, row.project_id, merged.name, row.id):
        raise already_exists(
            f"a deployment named {merged.name!r} already exists in the project", param=f"{param}.name"
        )
    _apply(row, merged, target)
    await prompt_status.refresh(session, row)
    row.update_time = utcnow()
    await session.flush()
    await session.refresh(row, ["endpoints"])
    return row
