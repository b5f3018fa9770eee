"""Management calls the integration tests make on a running mesh, as its bootstrapped admin."""

from __future__ import annotations

import grpc

from bud.app.v1 import deployment_pb2, deployment_pb2_grpc, project_pb2, project_pb2_grpc
from bud.auth.v1 import user_pb2, user_pb2_grpc
from tests.support.mesh import Mesh


def admin_metadata(mesh: Mesh, channel: grpc.Channel) -> tuple[tuple[str, str], ...]:
    """Management RPCs need a login: the platform admin the mesh bootstrapped."""
    assert mesh.admin_password, "the mesh printed no BUD_ADMIN_PASSWORD on first start"
    token = (
        user_pb2_grpc.UserServiceStub(channel)
        .Login(user_pb2.LoginRequest(username="admin", password=mesh.admin_password), timeout=30)
        .access_token
    )
    return (("authorization", f"Bearer {token}"),)


def default_project_id(channel: grpc.Channel, metadata: tuple[tuple[str, str], ...]) -> str:
    """The id of the project bootstrap created."""
    projects = (
        project_pb2_grpc.ProjectServiceStub(channel)
        .ListProjects(project_pb2.ListProjectsRequest(page_size=1000), timeout=30, metadata=metadata)
        .projects
    )
    (project,) = [p for p in projects if p.name == "default"]
    return project.id


def engine_model_name(mesh: Mesh, deployment_name: str) -> str:
    """The name the engine serves a default-project deployment under (the platform's
    `<deployment id>-g<generation>`)."""
    with mesh.channel(mesh.app_grpc, identity="operator") as channel:
        metadata = admin_metadata(mesh, channel)
        deployments = (
            deployment_pb2_grpc.DeploymentServiceStub(channel)
            .ListDeployments(
                deployment_pb2.ListDeploymentsRequest(
                    project_id=default_project_id(channel, metadata), page_size=1000
                ),
                timeout=30,
                metadata=metadata,
            )
            .deployments
        )
    (deployment,) = [d for d in deployments if d.name == deployment_name]
    return deployment.endpoints[0].served_model_name or deployment.id
