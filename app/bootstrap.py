"""First-start bootstrap: a default project, a chat, an embedding and an image deployment, one
API key, and the platform admin; and, on every start, the configured engine in the engine
registry.

Runs once per database, in one transaction: the `installation` row records that it ran, so
later starts create nothing and print nothing (even if the defaults were deleted since). The new
key's secret is printed once to stdout — with `print`, since logs redact keys — as a line
``OPENAI_API_KEY=bud-...`` that tools can parse.

The platform admin (`admin_username`) is created, in the same transaction, whenever the database
has no user at all: on the first start, and on the first start after an upgrade from a version
without users. Its password is `admin_password`, or, when that is empty, generated and printed
once beside the key as a line ``BUD_ADMIN_PASSWORD=...``.

The engine at `engine_address` is registered (named "default", no capacity limit) on every start
when no registered engine has that address: settings are platform-admin trust, and the embedded
mesh's deployments need an engine to be placed on. The default deployments name no endpoints:
the control plane places them.
"""

from __future__ import annotations

import secrets
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.control.engines import ensure_engine
from app.db import models
from app.db.models import SINGLETON_ID, utcnow
from app.db.session import Database, discard
from app.pricing import default_pricing
from app.services.api_keys import create_api_key
from app.services.deployments import insert_deployment
from app.services.projects import create_project
from app.services.users import create_user
from app.settings import AppSettings
from app.validation import check_address, check_password, check_project_name, check_username
from auth.passwords import hash_password
from bud.app.v1 import deployment_pb2
from bud.engine.v1 import engine_service_pb2
from budrt.builtin_models import ALL_MINILM_L6_V2, TINY_DIFFUSION, TINY_LLAMA
from budrt.errors import ServiceError

DEFAULT_KEY_NAME = "default"
ADMIN_DISPLAY_NAME = "Platform admin"
# A generated admin password: 32 URL-safe characters.
ADMIN_PASSWORD_BYTES = 24


class BootstrapError(RuntimeError):
    """The settings describe defaults that cannot be created."""


@dataclass(frozen=True)
class BootstrapResult:
    """What the first start created."""

    project_id: str
    deployment_ids: tuple[str, ...]
    api_key_id: str
    secret: str = field(repr=False)


@dataclass(frozen=True)
class AdminResult:
    """The platform admin a start created; `generated` when its password was (and must be shown)."""

    user_id: str
    username: str
    generated: bool
    password: str = field(repr=False)


def model_source(setting: str, builtin: str) -> deployment_pb2.ModelSource:
    """The source a `default_*_model_source` setting names: the builtin model when empty, an
    existing directory as an absolute local path, anything else as a Hugging Face id."""
    if not setting:
        return deployment_pb2.ModelSource(builtin=builtin)
    path = Path(setting).expanduser()
    if path.is_dir():
        return deployment_pb2.ModelSource(local_path=str(path.resolve()))
    return deployment_pb2.ModelSource(hugging_face_id=setting)


def default_deployments(settings: AppSettings) -> list[deployment_pb2.Deployment]:
    """The chat, embedding and image deployments the settings ask for (an empty name: none of
    that kind)."""
    chat = deployment_pb2.Deployment(
        name=settings.default_model_name,
        model=model_source(settings.default_model_source, TINY_LLAMA.name),
        runner=engine_service_pb2.RUNNER_GENERATE,
        engine_args=engine_service_pb2.EngineArgs(
            max_model_len=settings.max_model_len, kv_cache_space_gib=settings.kv_cache_space_gib
        ),
    )
    # No max_model_len here: the embedding model's own limit (512 for all-MiniLM-L6-v2) applies.
    embedding = deployment_pb2.Deployment(
        name=settings.default_embedding_model_name,
        model=model_source(settings.default_embedding_model_source, ALL_MINILM_L6_V2.name),
        runner=engine_service_pb2.RUNNER_POOLING,
        engine_args=engine_service_pb2.EngineArgs(kv_cache_space_gib=settings.kv_cache_space_gib),
    )
    # A diffusers pipeline, not vLLM: no engine args; its image settings are the platform's
    # defaults (`default_image_*`).
    image = deployment_pb2.Deployment(
        name=settings.default_image_model_name,
        model=model_source(settings.default_image_model_source, TINY_DIFFUSION.name),
        runner=engine_service_pb2.RUNNER_DIFFUSION,
    )
    return [d for d in (chat, embedding, image) if d.name]


async def _create_admin(session: AsyncSession, settings: AppSettings) -> AdminResult:
    password = settings.admin_password or secrets.token_urlsafe(ADMIN_PASSWORD_BYTES)
    password_hash = await hash_password(password)
    user = await create_user(
        session, settings.admin_username, password_hash, ADMIN_DISPLAY_NAME, platform_admin=True
    )
    return AdminResult(user.id, user.username, not settings.admin_password, password)


async def bootstrap(
    db: Database, settings: AppSettings, hash_secret: str
) -> tuple[BootstrapResult | None, AdminResult | None]:
    """Creates the defaults on the first start (None on every later start) and the platform admin
    when there is no user (None when there is one).

    Raises BootstrapError when the settings' defaults are invalid (nothing is created then).
    """
    try:
        check_project_name(settings.default_project, "default_project")
        check_username(settings.admin_username, "admin_username")
        check_address(settings.engine_address, "engine_address")
        if settings.admin_password:
            check_password(settings.admin_password, "admin_password")
        async with db.mutation() as session:
            installation = await session.scalar(
                select(models.Installation).where(models.Installation.id == SINGLETON_ID).with_for_update()
            )
            if installation is None:
                raise RuntimeError("installation row missing: run the migrations first")
            has_users = await session.scalar(select(models.User.id).limit(1)) is not None
            admin = None if has_users else await _create_admin(session, settings)
            engine = await ensure_engine(session, settings.engine_address)
            if installation.bootstrap_time is not None:
                if admin is None and engine is None:
                    discard(session)
                return None, admin
            project = await session.scalar(
                select(models.Project).where(models.Project.name == settings.default_project)
            ) or await create_project(session, settings.default_project, "Created on first start")
            deployment_ids = []
            for deployment in default_deployments(settings):
                deployment.pricing.CopyFrom(default_pricing(settings))
                row = await session.scalar(
                    select(models.Deployment).where(
                        models.Deployment.project_id == project.id, models.Deployment.name == deployment.name
                    )
                ) or await insert_deployment(session, project.id, deployment)
                deployment_ids.append(row.id)
            key, secret = await create_api_key(session, hash_secret, project.id, name=DEFAULT_KEY_NAME)
            installation.bootstrap_time = utcnow()
            result = BootstrapResult(project.id, tuple(deployment_ids), key.id, secret)
    except ServiceError as err:
        raise BootstrapError(
            f"cannot create the first-start defaults from the settings: {err.message}"
        ) from err
    return result, admin


def announce_key(result: BootstrapResult, project_name: str, out: TextIO | None = None) -> None:
    """Prints the new key once, for people and for tools (``OPENAI_API_KEY=...``)."""
    _announce_secret(
        f"Created an API key for project {project_name!r}. It is",
        "OPENAI_API_KEY",
        result.secret,
        out,
    )


def announce_admin(admin: AdminResult, out: TextIO | None = None) -> None:
    """Prints a generated admin password once, for people and for tools (``BUD_ADMIN_PASSWORD=...``).
    A password from the settings is not printed."""
    if admin.generated:
        _announce_secret(
            f"Created the platform admin {admin.username!r} (log in with UserService.Login). Its password is",
            "BUD_ADMIN_PASSWORD",
            admin.password,
            out,
        )


def _announce_secret(created: str, variable: str, secret: str, out: TextIO | None) -> None:
    """Prints a secret that is shown this once: a line for people (`created`, then the warning),
    then ``VARIABLE=secret`` for tools."""
    out = out or sys.stdout
    print(f"{created} shown this once only and cannot be recovered; store it now:", file=out)
    print(f"{variable}={secret}", file=out, flush=True)
