"""ProjectService over gRPC on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import field_mask_pb2
from sqlalchemy import func, select

from app.db import models
from app.server import RunningApp
from bud.app.v1 import deployment_pb2, project_pb2
from bud.auth.v1 import auth_pb2


async def test_create_get_update(stubs: Any, helpers: Any) -> None:
    created = (
        await stubs.projects.CreateProject(
            project_pb2.CreateProjectRequest(project=project_pb2.Project(name="alpha", description="first"))
        )
    ).project
    assert created.id.startswith("prj_") and created.name == "alpha" and created.description == "first"
    assert created.create_time.seconds > 0 and created.update_time == created.create_time

    got = (await stubs.projects.GetProject(project_pb2.GetProjectRequest(project_id=created.id))).project
    assert got == created

    updated = (
        await stubs.projects.UpdateProject(
            project_pb2.UpdateProjectRequest(
                project=project_pb2.Project(id=created.id, name="ignored-not-in-mask", description="second"),
                update_mask=field_mask_pb2.FieldMask(paths=["description"]),
            )
        )
    ).project
    assert updated.name == "alpha" and updated.description == "second"
    assert updated.update_time.ToDatetime() >= created.update_time.ToDatetime()

    renamed = (
        await stubs.projects.UpdateProject(
            project_pb2.UpdateProjectRequest(
                project=project_pb2.Project(id=created.id, name="beta", description="third"),
            )
        )
    ).project  # empty mask: every writable field
    assert (renamed.name, renamed.description) == ("beta", "third")


async def test_errors(stubs: Any, helpers: Any) -> None:
    await stubs.projects.CreateProject(
        project_pb2.CreateProjectRequest(project=project_pb2.Project(name="taken"))
    )
    err = await helpers.expect_error(
        stubs.projects.CreateProject(
            project_pb2.CreateProjectRequest(project=project_pb2.Project(name="taken"))
        ),
        grpc.StatusCode.ALREADY_EXISTS,
        "project.name",
    )
    assert err.reason == "ALREADY_EXISTS"
    await helpers.expect_error(
        stubs.projects.CreateProject(project_pb2.CreateProjectRequest(project=project_pb2.Project(name=""))),
        grpc.StatusCode.INVALID_ARGUMENT,
        "project.name",
    )
    await helpers.expect_error(
        stubs.projects.CreateProject(
            project_pb2.CreateProjectRequest(project=project_pb2.Project(name="bad name!"))
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "project.name",
    )
    await helpers.expect_error(
        stubs.projects.GetProject(project_pb2.GetProjectRequest(project_id="prj_missing")),
        grpc.StatusCode.NOT_FOUND,
        "project_id",
    )
    other = (
        await stubs.projects.CreateProject(
            project_pb2.CreateProjectRequest(project=project_pb2.Project(name="other"))
        )
    ).project
    await helpers.expect_error(
        stubs.projects.UpdateProject(
            project_pb2.UpdateProjectRequest(
                project=project_pb2.Project(id=other.id, name="taken"),
                update_mask=field_mask_pb2.FieldMask(paths=["name"]),
            )
        ),
        grpc.StatusCode.ALREADY_EXISTS,
        "project.name",
    )
    await helpers.expect_error(
        stubs.projects.UpdateProject(
            project_pb2.UpdateProjectRequest(
                project=project_pb2.Project(id=other.id),
                update_mask=field_mask_pb2.FieldMask(paths=["create_time"]),
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "update_mask",
    )
    await helpers.expect_error(
        stubs.projects.ListProjects(project_pb2.ListProjectsRequest(page_token="garbage")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "page_token",
    )


async def test_pagination(stubs: Any) -> None:
    names = [f"p{i:02d}" for i in range(7)]
    for name in names:
        await stubs.projects.CreateProject(
            project_pb2.CreateProjectRequest(project=project_pb2.Project(name=name))
        )
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = await stubs.projects.ListProjects(
            project_pb2.ListProjectsRequest(page_size=3, page_token=token)
        )
        assert len(page.projects) <= 3
        seen += [p.name for p in page.projects]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert seen == ["default", *names]  # creation order; the bootstrap's project first
    assert pages == 3
    everything = await stubs.projects.ListProjects(project_pb2.ListProjectsRequest())
    assert [p.name for p in everything.projects] == seen and everything.next_page_token == ""


async def test_delete_refused_then_forced(
    app: RunningApp, stubs: Any, helpers: Any, engine_host: Any
) -> None:
    project = (
        await stubs.projects.CreateProject(
            project_pb2.CreateProjectRequest(project=project_pb2.Project(name="doomed"))
        )
    ).project
    deployment = (
        await stubs.deployments.CreateDeployment(
            deployment_pb2.CreateDeploymentRequest(
                project_id=project.id,
                deployment=helpers.model_deployment("m1"),
            )
        )
    ).deployment
    key = (
        await stubs.api_keys.CreateApiKey(auth_pb2.CreateApiKeyRequest(project_id=project.id, name="k"))
    ).api_key

    err = await helpers.expect_error(
        stubs.projects.DeleteProject(project_pb2.DeleteProjectRequest(project_id=project.id)),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert err.reason == "PROJECT_HAS_DEPLOYMENTS"
    await stubs.projects.GetProject(project_pb2.GetProjectRequest(project_id=project.id))  # still there

    await stubs.projects.DeleteProject(project_pb2.DeleteProjectRequest(project_id=project.id, force=True))
    await helpers.expect_error(
        stubs.projects.GetProject(project_pb2.GetProjectRequest(project_id=project.id)),
        grpc.StatusCode.NOT_FOUND,
    )
    async with app.db.snapshot() as session:  # no orphans
        for model, column in (
            (models.Deployment, models.Deployment.project_id),
            (models.ApiKey, models.ApiKey.project_id),
        ):
            assert (
                await session.scalar(select(func.count()).select_from(model).where(column == project.id)) == 0
            )
        assert (
            await session.scalar(
                select(func.count())
                .select_from(models.DeploymentEndpoint)
                .where(models.DeploymentEndpoint.deployment_id == deployment.id)
            )
            == 0
        )
        assert await session.get(models.ApiKey, key.id) is None


async def test_delete_empty_project(stubs: Any, helpers: Any) -> None:
    project = (
        await stubs.projects.CreateProject(
            project_pb2.CreateProjectRequest(project=project_pb2.Project(name="empty"))
        )
    ).project
    await stubs.projects.DeleteProject(project_pb2.DeleteProjectRequest(project_id=project.id))
    await helpers.expect_error(
        stubs.projects.DeleteProject(project_pb2.DeleteProjectRequest(project_id=project.id)),
        grpc.StatusCode.NOT_FOUND,
        "project_id",
    )
    # The name is free again.
    await stubs.projects.CreateProject(
        project_pb2.CreateProjectRequest(project=project_pb2.Project(name="empty"))
    )
