"""Helpers shared by the servicers: lookups that fail with NOT_FOUND."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import models
from budrt.errors import ServiceError, not_found


def project_not_found(project_id: str, param: str = "project_id") -> ServiceError:
    """NOT_FOUND for a project: also what a caller with no role in an existing project gets, so
    the two cannot be told apart."""
    return not_found(f"project {project_id!r} not found", param=param)


async def get_project(session: AsyncSession, project_id: str, param: str = "project_id") -> models.Project:
    """The project, or NOT_FOUND naming `param`."""
    row = await session.get(models.Project, project_id) if project_id else None
    if row is None:
        raise project_not_found(project_id, param)
    return row


async def get_deployment(
    session: AsyncSession, project_id: str, deployment_id: str, param: str = "deployment_id"
) -> models.Deployment:
    """The project's deployment, or NOT_FOUND (also when it belongs to another project)."""
    await get_project(session, project_id)
    row = await session.scalar(
        select(models.Deployment).where(
            models.Deployment.id == deployment_id, models.Deployment.project_id == project_id
        )
    )
    if row is None:
        raise not_found(f"deployment {deployment_id!r} not found in project {project_id!r}", param=param)
    return row


async def get_api_key(
    session: AsyncSession, project_id: str, api_key_id: str, param: str = "api_key_id"
) -> models.ApiKey:
    """The project's API key, or NOT_FOUND (also when it belongs to another project)."""
    await get_project(session, project_id)
    row = await session.scalar(
        select(models.ApiKey).where(models.ApiKey.id == api_key_id, models.ApiKey.project_id == project_id)
    )
    if row is None:
        raise not_found(f"API key {api_key_id!r} not found in project {project_id!r}", param=param)
    return row
