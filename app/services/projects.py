"""ProjectService: projects, which group deployments and API keys.

Any user may create a project and becomes its owner; ListProjects shows the caller the projects
they have a role in (all of them to a platform admin). See `auth.roles` for the roles.
"""

from __future__ import annotations

import grpc
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app import ids
from app.authz import Access, visible_projects
from app.control import Reconciler
from app.control.engines import engine_models_of
from app.convert import project_to_proto, role_name
from app.db import models
from app.db.models import utcnow
from app.db.session import Database, discard
from app.prompts import store as prompt_store
from app.services.common import conflicts_as, get_project
from app.services.pagination import fetch_page
from app.validation import check_description, check_project_name, check_update_mask
from auth.roles import OWNER, VIEWER
from auth.tokens import Authenticator
from bud.app.v1 import project_pb2, project_pb2_grpc
from budrt.errors import Reason, already_exists, failed_precondition
from budrt.grpc_server import ServiceBinding

WRITABLE_FIELDS = ("name", "description")


async def create_project(
    session: AsyncSession, name: str, description: str = "", owner_id: str | None = None
) -> models.Project:
    """Inserts a project (validated by the caller), owned by user `owner_id` when given;
    ALREADY_EXISTS when the name is taken."""
    if await session.scalar(select(models.Project.id).where(models.Project.name == name)) is not None:
        raise _name_taken(name)
    now = utcnow()
    row = models.Project(
        id=ids.new_id(ids.PROJECT), name=name, description=description, create_time=now, update_time=now
    )
    session.add(row)
    await session.flush()
    if owner_id is not None:
        session.add(
            models.ProjectMember(project_id=row.id, user_id=owner_id, role=role_name(OWNER), create_time=now)
        )
        await session.flush()
    return row


def _name_taken(name: str) -> Exception:
    return already_exists(f"a project named {name!r} already exists", param="project.name")


class ProjectServicer(project_pb2_grpc.ProjectServiceServicer):
    """Implements bud.app.v1.ProjectService."""

    def __init__(self, db: Database, reconciler: Reconciler, auth: Authenticator) -> None:
        self._db = db
        self._reconciler = reconciler
        self._access = Access(db, auth)

    async def CreateProject(
        self, request: project_pb2.CreateProjectRequest, context: grpc.aio.ServicerContext
    ) -> project_pb2.CreateProjectResponse:
        """Creates a project with a unique name; the caller becomes its owner."""
        caller = await self._access.caller(context)
        project = request.project
        check_project_name(project.name, "project.name")
        check_description(project.description, "project.description")
        with conflicts_as(lambda _: _name_taken(project.name)):
            async with self._db.mutation() as session:
                row = await create_project(session, project.name, project.description, caller.user_id)
        return project_pb2.CreateProjectResponse(project=project_to_proto(row))

    async def GetProject(
        self, request: project_pb2.GetProjectRequest, context: grpc.aio.ServicerContext
    ) -> project_pb2.GetProjectResponse:
        """One project (viewer)."""
        caller = await self._access.caller(context, request, "project_id")
        async with self._access.project(caller, request.project_id, VIEWER) as session:
            row = await get_project(session, request.project_id)
        return project_pb2.GetProjectResponse(project=project_to_proto(row))

    async def ListProjects(
        self, request: project_pb2.ListProjectsRequest, context: grpc.aio.ServicerContext
    ) -> project_pb2.ListProjectsResponse:
        """The caller's projects (all for a platform admin) in creation order, paginated."""
        caller = await self._access.caller(context)
        async with self._db.snapshot() as session:
            projects = visible_projects(caller)
            rows, token = await fetch_page(session, projects, models.Project.id, "projects", request)
        return project_pb2.ListProjectsResponse(
            projects=[project_to_proto(r) for r in rows], next_page_token=token
        )

    async def UpdateProject(
        self, request: project_pb2.UpdateProjectRequest, context: grpc.aio.ServicerContext
    ) -> project_pb2.UpdateProjectResponse:
        """Changes the fields named in update_mask (name, description; both when empty). Owner."""
        caller = await self._access.caller(context, request, "project.id")
        project = request.project
        paths = check_update_mask(request.update_mask, project_pb2.Project.DESCRIPTOR, WRITABLE_FIELDS)
        if "name" in paths:
            check_project_name(project.name, "project.name")
        if "description" in paths:
            check_description(project.description, "project.description")
        with conflicts_as(lambda _: _name_taken(project.name)):
            async with self._access.project(
                caller, project.id, OWNER, kind="mutation", param="project.id"
            ) as session:
                row = await get_project(session, project.id, param="project.id")
                changed = False
                if "name" in paths and project.name != row.name:
                    taken = await session.scalar(
                        select(models.Project.id).where(models.Project.name == project.name)
                    )
                    if taken is not None:
                        raise _name_taken(project.name)
                    row.name, changed = project.name, True
                if "description" in paths and project.description != row.description:
                    row.description, changed = project.description, True
                if changed:
                    row.update_time = utcnow()
                    await session.flush()
                else:
                    discard(session)
                reply = project_pb2.UpdateProjectResponse(project=project_to_proto(row))
        return reply

    async def DeleteProject(
        self, request: project_pb2.DeleteProjectRequest, context: grpc.aio.ServicerContext
    ) -> project_pb2.DeleteProjectResponse:
        """Deletes a project with its API keys, memberships and prompts. Refused
        (FAILED_PRECONDITION) while it has deployments, or other projects deploy its prompts,
        unless `force`, which deletes them too (and unloads their models). Usage records are
        kept. Owner."""
        caller = await self._access.caller(context, request, "project_id")
        async with self._access.project(caller, request.project_id, OWNER, kind="mutation") as session:
            project_id = request.project_id
            deployment_ids = select(models.Deployment.id).where(models.Deployment.project_id == project_id)
            count = await session.scalar(select(func.count()).select_from(deployment_ids.subquery()))
            if count and not request.force:
                raise failed_precondition(
                    f"project {project_id!r} has {count} deployment(s); delete them first or use force",
                    reason=Reason.PROJECT_HAS_DEPLOYMENTS,
                    param="force",
                )
            await prompt_store.delete_project_prompts(session, project_id, request.force)
            endpoint = models.DeploymentEndpoint
            replicas = await engine_models_of(session, deployment_ids)
            # Explicit deletes, children first: no orphans whether or not the database enforces
            # the foreign keys' ON DELETE CASCADE.
            await session.execute(delete(endpoint).where(endpoint.deployment_id.in_(deployment_ids)))
            await session.execute(delete(models.Deployment).where(models.Deployment.project_id == project_id))
            await session.execute(delete(models.ApiKey).where(models.ApiKey.project_id == project_id))
            await session.execute(
                delete(models.ProjectMember).where(models.ProjectMember.project_id == project_id)
            )
            await session.execute(delete(models.Project).where(models.Project.id == project_id))
        self._reconciler.unload(replicas)
        return project_pb2.DeleteProjectResponse()


def binding(db: Database, reconciler: Reconciler, auth: Authenticator) -> ServiceBinding:
    """ProjectService, ready for `GrpcServer`."""
    return ServiceBinding(
        servicer=ProjectServicer(db, reconciler, auth),
        add_to_server=project_pb2_grpc.add_ProjectServiceServicer_to_server,
        descriptor=project_pb2.DESCRIPTOR.services_by_name["ProjectService"],
    )
