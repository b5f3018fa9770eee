"""Helpers shared by the servicers: error shorthands and lookups that fail with NOT_FOUND."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import models
from budrt.errors import ServiceError, not_found


@contextmanager
def conflicts_as(error: Callable[[IntegrityError], Exception]) -> Iterator[None]:
    """Raises `error(err)` for a unique violation `err` met inside: one that a concurrent
    transaction caused after this one's own checks saw no clash (wrap the whole transaction, so
    that its commit is inside)."""
    try:
        yield
    except IntegrityError as err:
        raise error(err) from err


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


# The resources that live in one project.
_InProject = TypeVar("_InProject", models.Deployment, models.ApiKey)


async def _get_in_project(
    session: AsyncSession, table: type[_InProject], what: str, project_id: str, row_id: str, param: str
) -> _InProject:
    """The project's row `row_id` of `table`, or NOT_FOUND naming `param` (also when the row
    belongs to another project); NOT_FOUND for the project first when it does not exist."""
    await get_project(session, project_id)
    row = await session.scalar(select(table).where(table.id == row_id, table.project_id == project_id))
    if row is None:
        raise not_found(f"{what} {row_id!r} not found in project {project_id!r}", param=param)
    return row


async def get_deployment(
    session: AsyncSession, project_id: str, deployment_id: str, param: str = "deployment_id"
) -> models.Deployment:
    """The project's deployment, or NOT_FOUND (also when it belongs to another project)."""
    return await _get_in_project(session, models.Deployment, "deployment", project_id, deployment_id, param)


async def get_api_key(
    session: AsyncSession, project_id: str, api_key_id: str, param: str = "api_key_id"
) -> models.ApiKey:
    """The project's API key, or NOT_FOUND (also when it belongs to another project)."""
    return await _get_in_project(session, models.ApiKey, "API key", project_id, api_key_id, param)
