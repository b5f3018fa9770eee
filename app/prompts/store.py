"""Prompts, versions and labels in the app's database, and their rows as messages.

A save is one transaction: the prompt's row is locked (``SELECT ... FOR UPDATE``; SQLite writers
queue on ``BEGIN IMMEDIATE`` anyway), the next number is the prompt's `latest_version` + 1, the
version row and the labels it moves are written, and `latest_version` is advanced — so two
concurrent saves get distinct numbers, and a save that names the version it edited
(`expected_version`) fails with ABORTED instead of overwriting a newer one.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

import orjson
from google.protobuf import json_format
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.control import prompt_status
from app.convert import runner_name, to_timestamp
from app.db import models
from app.db.models import utcnow
from app.images import is_image_row
from app.prompts import body
from app.prompts.cipher import KeyCipher, is_masked, mask
from bud.engine.v1 import engine_service_pb2
from bud.prompt.v1 import prompt_pb2
from budrt.errors import Reason, aborted, failed_precondition, invalid_argument, not_found

P = prompt_pb2
POOLING = runner_name(engine_service_pb2.RUNNER_POOLING)
# Fields of a version that are bookkeeping, not content (left out of diffs).
_NOT_CONTENT = ("prompt_id", "version", "create_time", "create_user_id", "labels", "note")


def _where(prompt_id: str, integration: str, key: str) -> str:
    """What an access key's ciphertext is bound to."""
    return f"{prompt_id}/{integration}/{key}"


async def get_prompt(
    session: AsyncSession, project_id: str, prompt_id: str, *, lock: bool = False, param: str = "prompt_id"
) -> models.Prompt:
    """The project's prompt (locked for the transaction with `lock`), or NOT_FOUND (also when it
    belongs to another project)."""
    stmt = select(models.Prompt).where(models.Prompt.id == prompt_id, models.Prompt.project_id == project_id)
    if lock:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    row = await session.scalar(stmt) if prompt_id else None
    if row is None:
        raise not_found(f"prompt {prompt_id!r} not found in project {project_id!r}", param=param)
    return row


async def labels_of(session: AsyncSession, prompt_ids: Sequence[str]) -> dict[str, list[models.PromptLabel]]:
    """Each prompt's stored labels, by name."""
    found: dict[str, list[models.PromptLabel]] = {p: [] for p in prompt_ids}
    if prompt_ids:
        rows = await session.scalars(
            select(models.PromptLabel)
            .where(models.PromptLabel.prompt_id.in_(prompt_ids))
            .order_by(models.PromptLabel.name)
        )
        for row in rows:
            found[row.prompt_id].append(row)
    return found


def label_to_proto(row: models.PromptLabel) -> P.PromptLabel:
    """The PromptLabel message of a row."""
    return P.PromptLabel(
        name=row.name,
        version=row.version,
        update_time=to_timestamp(row.update_time),
        update_user_id=row.update_user_id,
    )


def latest_label(prompt: models.Prompt) -> P.PromptLabel:
    """The computed "latest" label."""
    return P.PromptLabel(
        name=body.LATEST, version=prompt.latest_version, update_time=to_timestamp(prompt.update_time)
    )


def prompt_to_proto(row: models.Prompt, labels: Sequence[models.PromptLabel] = ()) -> P.Prompt:
    """The Prompt message of a row ("latest" first among its labels)."""
    return P.Prompt(
        id=row.id,
        project_id=row.project_id,
        name=row.name,
        description=row.description,
        latest_version=row.latest_version,
        create_time=to_timestamp(row.create_time),
        type=P.PromptType.Value(row.type),
        default_label=row.default_label,
        update_time=to_timestamp(row.update_time),
        labels=[latest_label(row), *(label_to_proto(label) for label in labels)],
    )


def version_to_proto(
    row: models.PromptVersion, cipher: KeyCipher, labels: Sequence[str] = (), *, reveal: bool = False
) -> P.PromptVersion:
    """The PromptVersion message of a row, access keys masked (never their plaintext), unless
    `reveal`: only for the prompt executor's watch (`WatchPrompts` with `include_access_keys`,
    which checks its caller's service identity)."""
    version = json_format.ParseDict(row.body, P.PromptVersion())
    for tool in version.integration_tools:
        for key, stored in list(tool.access_keys.items()):
            plain = cipher.decrypt(stored, _where(row.prompt_id, tool.integration, key))
            tool.access_keys[key] = plain if reveal else mask(plain)
    version.prompt_id = row.prompt_id
    version.version = row.version
    version.note = row.note
    version.deployment_id = row.deployment_id
    version.create_user_id = row.create_user_id
    version.create_time.CopyFrom(to_timestamp(row.create_time))
    version.labels.extend(labels)
    return version


def _stored_keys(row: models.PromptVersion | None) -> dict[tuple[str, str], str]:
    """(integration, key name) → ciphertext of a stored version."""
    if row is None:
        return {}
    version = json_format.ParseDict(row.body, P.PromptVersion())
    return {(t.integration, k): v for t in version.integration_tools for k, v in t.access_keys.items()}


def seal(
    version: P.PromptVersion, prompt_id: str, previous: models.PromptVersion | None, cipher: KeyCipher
) -> dict[str, Any]:
    """The stored body of a checked version: access keys encrypted (a masked key sent back keeps
    the previous version's key); bookkeeping fields left to the row's columns."""
    stored = _stored_keys(previous)
    sealed = P.PromptVersion()
    sealed.CopyFrom(version)
    for i, tool in enumerate(sealed.integration_tools):
        for key, value in list(tool.access_keys.items()):
            if is_masked(value):
                kept = stored.get((tool.integration, key))
                if kept is None:
                    param = f"version.integration_tools[{i}].access_keys.{key}"
                    raise invalid_argument(f"{param}: a masked key with no stored key to keep", param=param)
                tool.access_keys[key] = kept
            else:
                tool.access_keys[key] = cipher.encrypt(value, _where(prompt_id, tool.integration, key))
    for name in (*_NOT_CONTENT, "deployment_id"):
        sealed.ClearField(name)
    return json_format.MessageToDict(sealed, preserving_proto_field_name=True)


async def resolve_deployment(session: AsyncSession, project_id: str, version: P.PromptVersion) -> None:
    """Checks that the version names a chat deployment of the project (by `deployment_id`, or by
    name in `model`) and fills both fields."""
    table = models.Deployment
    if version.deployment_id:
        param = "version.deployment_id"
        stmt = select(table).where(table.id == version.deployment_id, table.project_id == project_id)
    else:
        param = "version.model"
        stmt = select(table).where(table.name == version.model, table.project_id == project_id)
    row = await session.scalar(stmt)
    if row is None:
        raise invalid_argument(f"{param}: no deployment of this project has this id or name", param=param)
    if (
        row.model_source_kind is None
        or row.runner == POOLING
        or is_image_row(row.model_source_kind, row.model_source, row.runner)
    ):
        raise invalid_argument(
            f"{param}: deployment {row.name!r} is not a chat model deployment", param=param
        )
    if version.deployment_id and version.model and version.model != row.name:
        raise invalid_argument(
            "version.model differs from the name of version.deployment_id", param="version.model"
        )
    version.deployment_id, version.model = row.id, row.name


async def latest_row(session: AsyncSession, prompt: models.Prompt) -> models.PromptVersion | None:
    """The prompt's highest version."""
    return await session.get(models.PromptVersion, (prompt.id, prompt.latest_version))


async def save_version(
    session: AsyncSession,
    prompt: models.Prompt,
    version: P.PromptVersion,
    user_id: str,
    cipher: KeyCipher,
    *,
    expected_version: int = 0,
    labels: Sequence[str] = (),
) -> models.PromptVersion:
    """Adds the next version of a locked prompt (checked body, resolved deployment) and points
    `labels` at it. ABORTED when `expected_version` is set and no longer the newest."""
    if expected_version and expected_version != prompt.latest_version:
        raise aborted(
            f"version {expected_version} is no longer the newest (it is {prompt.latest_version}); "
            "reload the prompt and save again",
            param="expected_version",
        )
    previous = await latest_row(session, prompt)
    now = utcnow()
    number = prompt.latest_version + 1
    row = models.PromptVersion(
        prompt_id=prompt.id,
        version=number,
        deployment_id=version.deployment_id,
        body=seal(version, prompt.id, previous, cipher),
        note=version.note,
        create_user_id=user_id,
        create_time=now,
    )
    session.add(row)
    prompt.latest_version = number
    prompt.update_time = now
    await session.flush()
    for label in labels:
        await move_label(session, prompt, label, number, user_id)
    return row


async def move_label(
    session: AsyncSession,
    prompt: models.Prompt,
    label: str,
    version: int,
    user_id: str,
    *,
    expected_version: int = 0,
) -> models.PromptLabel:
    """Points a label of a locked prompt at one of its versions (creating it), recording the move.
    `expected_version`: the version it must point at now (-1: it must not exist), ABORTED else."""
    if not 1 <= version <= prompt.latest_version:
        raise not_found(f"prompt {prompt.id!r} has no version {version}", param="version")
    row = await session.get(models.PromptLabel, (prompt.id, label))
    current = row.version if row is not None else -1
    if expected_version and expected_version != current:
        raise aborted(
            f"label {label!r} points at {current if current > 0 else 'nothing'}, not {expected_version}",
            param="expected_version",
        )
    now = utcnow()
    if row is None:
        row = models.PromptLabel(
            prompt_id=prompt.id, name=label, version=version, update_user_id=user_id, update_time=now
        )
        session.add(row)
    elif row.version == version:
        return row
    else:
        row.version, row.update_user_id, row.update_time = version, user_id, now
    session.add(
        models.PromptLabelChange(
            prompt_id=prompt.id,
            label=label,
            from_version=None if current < 0 else current,
            to_version=version,
            user_id=user_id,
            time=now,
        )
    )
    prompt.update_time = now
    await session.flush()
    await prompt_status.refresh_prompt(session, prompt.id)  # a deployment may follow it
    return row


async def remove_label(session: AsyncSession, prompt: models.Prompt, label: str, user_id: str) -> None:
    """Deletes a label of a locked prompt (recorded), NOT_FOUND when it has none of that name;
    the default label cannot go."""
    row = await session.get(models.PromptLabel, (prompt.id, label))
    if row is None:
        raise not_found(f"prompt {prompt.id!r} has no label {label!r}", param="label")
    if label == prompt.default_label:
        raise failed_precondition(
            f"{label!r} is the prompt's default label; change default_label first", param="label"
        )
    now = utcnow()
    session.add(
        models.PromptLabelChange(
            prompt_id=prompt.id,
            label=label,
            from_version=row.version,
            to_version=None,
            user_id=user_id,
            time=now,
        )
    )
    await session.delete(row)
    prompt.update_time = now
    await session.flush()
    await prompt_status.refresh_prompt(session, prompt.id)  # its followers are no longer runnable


async def resolve_label(
    session: AsyncSession, prompt: models.Prompt, label: str, param: str = "label"
) -> int:
    """The version a label points at ("latest": the highest), or NOT_FOUND."""
    if label == body.LATEST:
        return prompt.latest_version
    row = await session.get(models.PromptLabel, (prompt.id, label))
    if row is None:
        raise not_found(f"prompt {prompt.id!r} has no label {label!r}", param=param)
    return row.version


async def get_version(
    session: AsyncSession, prompt: models.Prompt, number: int, param: str = "version"
) -> models.PromptVersion:
    """One version of the prompt, or NOT_FOUND."""
    row = await session.get(models.PromptVersion, (prompt.id, number)) if number > 0 else None
    if row is None:
        raise not_found(f"prompt {prompt.id!r} has no version {number}", param=param)
    return row


async def labels_at(
    session: AsyncSession, prompt: models.Prompt, numbers: Sequence[int]
) -> dict[int, list[str]]:
    """The labels ("latest" included) pointing at each of the given versions."""
    found: dict[int, list[str]] = {n: [] for n in numbers}
    if prompt.latest_version in found:
        found[prompt.latest_version].append(body.LATEST)
    rows = await session.scalars(
        select(models.PromptLabel)
        .where(models.PromptLabel.prompt_id == prompt.id, models.PromptLabel.version.in_(numbers))
        .order_by(models.PromptLabel.name)
    )
    for row in rows:
        found[row.version].append(row.name)
    return found


async def deployments_using(session: AsyncSession, prompt_id: str) -> list[models.Deployment]:
    """The deployments whose target is the prompt."""
    return list(
        (
            await session.scalars(select(models.Deployment).where(models.Deployment.prompt_id == prompt_id))
        ).all()
    )


async def delete_prompt(session: AsyncSession, prompt: models.Prompt, force: bool) -> list[str]:
    """Deletes a prompt with its versions and labels; refused (FAILED_PRECONDITION) while a
    deployment uses it, unless `force`, which deletes those deployments too. Their ids."""
    using = await deployments_using(session, prompt.id)
    if using and not force:
        raise failed_precondition(
            f"prompt {prompt.id!r} is used by {len(using)} deployment(s) "
            f"({', '.join(d.name for d in using[:5])}); delete them first or use force",
            reason=Reason.PROMPT_HAS_DEPLOYMENTS,
            param="force",
        )
    ids = [d.id for d in using]
    if ids:
        await session.execute(
            delete(models.DeploymentEndpoint).where(models.DeploymentEndpoint.deployment_id.in_(ids))
        )
        await session.execute(delete(models.Deployment).where(models.Deployment.id.in_(ids)))
    for table in (models.PromptLabelChange, models.PromptLabel, models.PromptVersion):
        await session.execute(delete(table).where(table.prompt_id == prompt.id))
    await session.execute(delete(models.Prompt).where(models.Prompt.id == prompt.id))
    return ids


async def name_taken(session: AsyncSession, project_id: str, name: str) -> bool:
    """Whether the project has a prompt of this name."""
    found = await session.scalar(
        select(func.count())
        .select_from(models.Prompt)
        .where(models.Prompt.project_id == project_id, models.Prompt.name == name)
    )
    return bool(found)


def _flatten(value: Any, path: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(item, f"{path}.{key}" if path else key, out)
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for i, item in enumerate(value):
            _flatten(item, f"{path}[{i}]", out)
    else:
        out[path] = value


def diff(a: P.PromptVersion, b: P.PromptVersion) -> P.DiffPromptVersionsResponse:
    """The content fields that differ between two (masked) versions, and a unified diff of their
    templates."""
    flat_a: dict[str, Any] = {}
    flat_b: dict[str, Any] = {}
    for message, flat in ((a, flat_a), (b, flat_b)):
        content = P.PromptVersion()
        content.CopyFrom(message)
        for name in _NOT_CONTENT:
            content.ClearField(name)
        _flatten(json_format.MessageToDict(content, preserving_proto_field_name=True), "", flat)
    changes = []
    for field in sorted(set(flat_a) | set(flat_b)):
        before, after = flat_a.get(field), flat_b.get(field)
        if before != after:
            change = P.PromptFieldChange(field=field)
            if field in flat_a:
                change.before = orjson.dumps(before).decode()
            if field in flat_b:
                change.after = orjson.dumps(after).decode()
            changes.append(change)

    def text(version: P.PromptVersion) -> list[str]:
        lines = []
        for path, template in body.templates(version, ""):
            lines.append(f"# {path.lstrip('.')}\n")
            lines.extend(line if line.endswith("\n") else line + "\n" for line in template.splitlines())
        return lines

    unified = difflib.unified_diff(text(a), text(b), f"version {a.version}", f"version {b.version}")
    return P.DiffPromptVersionsResponse(changes=changes, template_diff="".join(unified))


async def delete_project_prompts(session: AsyncSession, project_id: str, force: bool) -> None:
    """Deletes a project's prompts (children first). Deployments of *other* projects that run one of
    them (flow 2) refuse it (FAILED_PRECONDITION) unless `force`, which deletes them too: no
    deployment is left pointing at a prompt that is gone. ProjectService.DeleteProject calls this."""
    prompt_ids = select(models.Prompt.id).where(models.Prompt.project_id == project_id)
    elsewhere = (
        await session.scalars(
            select(models.Deployment).where(
                models.Deployment.prompt_id.in_(prompt_ids), models.Deployment.project_id != project_id
            )
        )
    ).all()
    if elsewhere and not force:
        raise failed_precondition(
            f"{len(elsewhere)} deployment(s) of other projects run prompts of project {project_id!r}; "
            "delete them first or use force",
            reason=Reason.PROMPT_HAS_DEPLOYMENTS,
            param="force",
        )
    if elsewhere:
        await session.execute(
            delete(models.Deployment).where(models.Deployment.id.in_([d.id for d in elsewhere]))
        )
    for table in (models.PromptLabelChange, models.PromptLabel, models.PromptVersion):
        await session.execute(delete(table).where(table.prompt_id.in_(prompt_ids)))
    await session.execute(delete(models.Prompt).where(models.Prompt.project_id == project_id))
