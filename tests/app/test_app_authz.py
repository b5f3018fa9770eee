"""Project roles over gRPC on SQLite and PostgreSQL: what viewers, editors, owners, outsiders and
platform admins may do, that nobody sees another project's resources, and that removing a member
revokes their tokens."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import field_mask_pb2

from app.server import RunningApp
from bud.app.v1 import deployment_pb2, project_pb2, usage_pb2
from bud.auth.v1 import auth_pb2, user_pb2

VIEWER, EDITOR, OWNER = (
    user_pb2.PROJECT_ROLE_VIEWER,
    user_pb2.PROJECT_ROLE_EDITOR,
    user_pb2.PROJECT_ROLE_OWNER,
)
D = deployment_pb2


async def _user(app: RunningApp, admin: Any, clients: Any, username: str) -> tuple[str, Any]:
    """Creates a user; returns its id and clients logged in as it."""
    password = f"{username}-password"
    user = (
        await admin.users.CreateUser(user_pb2.CreateUserRequest(username=username, password=password))
    ).user
    return user.id, await clients(app).login(username, password)


async def _create_project(client: Any, name: str) -> str:
    reply = await client.projects.CreateProject(
        project_pb2.CreateProjectRequest(project=project_pb2.Project(name=name))
    )
    return str(reply.project.id)


async def _set(client: Any, project_id: str, user_id: str, role: int) -> user_pb2.ProjectMember:
    reply = await client.users.SetProjectMember(
        user_pb2.SetProjectMemberRequest(project_id=project_id, user_id=user_id, role=role)
    )
    return reply.member


async def test_role_matrix(app: RunningApp, stubs: Any, clients: Any, helpers: Any, engine_host: Any) -> None:
    owner_id, owner = await _user(app, stubs, clients, "olga")
    editor_id, editor = await _user(app, stubs, clients, "ed")
    viewer_id, viewer = await _user(app, stubs, clients, "vic")
    outsider_id, outsider = await _user(app, stubs, clients, "oscar")

    project_id = await _create_project(owner, "team")  # the creator becomes its owner
    assert [
        (m.user_id, m.role)
        for m in (
            await owner.users.ListProjectMembers(user_pb2.ListProjectMembersRequest(project_id=project_id))
        ).members
    ] == [(owner_id, OWNER)]
    member = await _set(owner, project_id, editor_id, EDITOR)
    assert (member.project_id, member.user_id, member.role, member.username) == (
        project_id,
        editor_id,
        EDITOR,
        "ed",
    )
    # Owners add colleagues by the name they log in with.
    by_name = (
        await owner.users.SetProjectMember(
            user_pb2.SetProjectMemberRequest(project_id=project_id, username="vic", role=VIEWER)
        )
    ).member
    assert (by_name.user_id, by_name.role, by_name.username) == (viewer_id, VIEWER, "vic")
    assert [
        (m.username, m.role)
        for m in (
            await owner.users.ListProjectMembers(user_pb2.ListProjectMembersRequest(project_id=project_id))
        ).members
    ] == [("olga", OWNER), ("ed", EDITOR), ("vic", VIEWER)]

    # Viewer: reads everything, changes nothing.
    get_project = project_pb2.GetProjectRequest(project_id=project_id)
    assert (await viewer.projects.GetProject(get_project)).project.name == "team"
    await viewer.deployments.ListDeployments(D.ListDeploymentsRequest(project_id=project_id))
    await viewer.api_keys.ListApiKeys(auth_pb2.ListApiKeysRequest(project_id=project_id))
    await viewer.usage.QueryUsage(usage_pb2.QueryUsageRequest(project_id=project_id))
    denied = grpc.StatusCode.PERMISSION_DENIED
    err = await helpers.expect_error(
        viewer.api_keys.CreateApiKey(auth_pb2.CreateApiKeyRequest(project_id=project_id)), denied
    )
    assert err.reason == "PERMISSION_DENIED" and "editor" in err.message
    await helpers.expect_error(
        viewer.deployments.CreateDeployment(
            D.CreateDeploymentRequest(project_id=project_id, deployment=helpers.model_deployment("m"))
        ),
        denied,
    )
    await helpers.expect_error(
        viewer.projects.UpdateProject(
            project_pb2.UpdateProjectRequest(
                project=project_pb2.Project(id=project_id, description="x"),
                update_mask=field_mask_pb2.FieldMask(paths=["description"]),
            )
        ),
        denied,
    )
    await helpers.expect_error(
        viewer.users.ListProjectMembers(user_pb2.ListProjectMembersRequest(project_id=project_id)), denied
    )

    # Editor: deployments and keys, but not the project or its members.
    deployment = (
        await editor.deployments.CreateDeployment(
            D.CreateDeploymentRequest(project_id=project_id, deployment=helpers.model_deployment("m"))
        )
    ).deployment
    await editor.deployments.UpdateDeployment(
        D.UpdateDeploymentRequest(
            deployment=D.Deployment(
                id=deployment.id, project_id=project_id, rate_limits=D.RateLimits(requests_per_minute=5)
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["rate_limits"]),
        )
    )
    key = (
        await editor.api_keys.CreateApiKey(auth_pb2.CreateApiKeyRequest(project_id=project_id, name="ci"))
    ).api_key
    await editor.api_keys.RotateApiKey(auth_pb2.RotateApiKeyRequest(project_id=project_id, api_key_id=key.id))
    assert (
        await viewer.api_keys.GetApiKey(auth_pb2.GetApiKeyRequest(project_id=project_id, api_key_id=key.id))
    ).api_key.name == "ci"
    await helpers.expect_error(
        viewer.api_keys.RevokeApiKey(auth_pb2.RevokeApiKeyRequest(project_id=project_id, api_key_id=key.id)),
        denied,
    )
    await editor.api_keys.RevokeApiKey(auth_pb2.RevokeApiKeyRequest(project_id=project_id, api_key_id=key.id))
    await helpers.expect_error(
        editor.projects.DeleteProject(project_pb2.DeleteProjectRequest(project_id=project_id, force=True)),
        denied,
    )
    await helpers.expect_error(
        editor.users.SetProjectMember(
            user_pb2.SetProjectMemberRequest(project_id=project_id, user_id=outsider_id, role=VIEWER)
        ),
        denied,
    )
    await editor.deployments.DeleteDeployment(
        D.DeleteDeploymentRequest(project_id=project_id, deployment_id=deployment.id)
    )

    # Outsider: the project does not exist for them, exactly as a missing one does not.
    missing = await helpers.expect_error(
        outsider.projects.GetProject(project_pb2.GetProjectRequest(project_id="prj_missing")),
        grpc.StatusCode.NOT_FOUND,
        "project_id",
    )
    hidden = await helpers.expect_error(
        outsider.projects.GetProject(get_project), grpc.StatusCode.NOT_FOUND, "project_id"
    )
    assert (hidden.reason, hidden.message.replace(project_id, "prj_missing")) == (
        missing.reason,
        missing.message,
    )
    for call in (
        outsider.api_keys.CreateApiKey(auth_pb2.CreateApiKeyRequest(project_id=project_id)),
        outsider.api_keys.GetApiKey(auth_pb2.GetApiKeyRequest(project_id=project_id, api_key_id=key.id)),
        outsider.api_keys.ListApiKeys(auth_pb2.ListApiKeysRequest(project_id=project_id)),
        outsider.deployments.ListDeployments(D.ListDeploymentsRequest(project_id=project_id)),
        outsider.deployments.CreateDeployment(
            D.CreateDeploymentRequest(project_id=project_id, deployment=helpers.model_deployment("x"))
        ),
        outsider.usage.QueryUsage(usage_pb2.QueryUsageRequest(project_id=project_id)),
        outsider.users.ListProjectMembers(user_pb2.ListProjectMembersRequest(project_id=project_id)),
        outsider.users.SetProjectMember(
            user_pb2.SetProjectMemberRequest(project_id=project_id, user_id=outsider_id, role=OWNER)
        ),
        outsider.projects.DeleteProject(project_pb2.DeleteProjectRequest(project_id=project_id)),
    ):
        await helpers.expect_error(call, grpc.StatusCode.NOT_FOUND, "project_id")
    await helpers.expect_error(
        outsider.projects.UpdateProject(
            project_pb2.UpdateProjectRequest(
                project=project_pb2.Project(id=project_id, description="x"),
                update_mask=field_mask_pb2.FieldMask(paths=["description"]),
            )
        ),
        grpc.StatusCode.NOT_FOUND,
        "project.id",
    )

    # Role changes apply at once, to tokens already issued.
    await _set(owner, project_id, viewer_id, EDITOR)
    await viewer.api_keys.CreateApiKey(auth_pb2.CreateApiKeyRequest(project_id=project_id))
    await owner.users.RemoveProjectMember(
        user_pb2.RemoveProjectMemberRequest(project_id=project_id, user_id=viewer_id)
    )
    await helpers.expect_error(viewer.projects.GetProject(get_project), grpc.StatusCode.UNAUTHENTICATED)
    viewer = await clients(app).login("vic", "vic-password")  # removal revokes tokens; log in again
    await helpers.expect_error(viewer.projects.GetProject(get_project), grpc.StatusCode.NOT_FOUND)

    # Owner: updates and deletes the project; the platform admin may do anything, member or not.
    await owner.projects.UpdateProject(
        project_pb2.UpdateProjectRequest(
            project=project_pb2.Project(id=project_id, description="ours"),
            update_mask=field_mask_pb2.FieldMask(paths=["description"]),
        )
    )
    assert {
        m.user_id
        for m in (
            await stubs.users.ListProjectMembers(user_pb2.ListProjectMembersRequest(project_id=project_id))
        ).members
    } == {owner_id, editor_id}
    await stubs.api_keys.CreateApiKey(auth_pb2.CreateApiKeyRequest(project_id=project_id))
    await owner.projects.DeleteProject(project_pb2.DeleteProjectRequest(project_id=project_id, force=True))
    assert list((await owner.projects.ListProjects(project_pb2.ListProjectsRequest())).projects) == []


async def test_lists_show_only_the_callers_projects(
    app: RunningApp, stubs: Any, clients: Any, helpers: Any
) -> None:
    ann_id, ann = await _user(app, stubs, clients, "ann")
    _, ben = await _user(app, stubs, clients, "ben")
    a1 = await _create_project(ann, "a1")
    b1 = await _create_project(ben, "b1")
    a2 = await _create_project(ann, "a2")
    await _set(ben, b1, ann_id, VIEWER)

    async def names(client: Any, page_size: int = 0) -> list[str]:
        seen, token = [], ""
        while True:
            page = await client.projects.ListProjects(
                project_pb2.ListProjectsRequest(page_size=page_size, page_token=token)
            )
            seen += [p.name for p in page.projects]
            token = page.next_page_token
            if not token:
                return seen

    assert await names(ann) == ["a1", "b1", "a2"] == await names(ann, page_size=1)
    assert await names(ben) == ["b1"]
    assert await names(stubs) == ["default", "a1", "b1", "a2"]  # the platform admin sees all
    _, cat = await _user(app, stubs, clients, "cat")
    assert await names(cat) == []
    assert {a1, a2, b1} <= {
        p.id for p in (await stubs.projects.ListProjects(project_pb2.ListProjectsRequest())).projects
    }

    # Users see themselves and the members of their projects; nobody else.
    ben_id = (await ben.users.GetUser(user_pb2.GetUserRequest(user_id="me"))).user.id
    assert (await ann.users.GetUser(user_pb2.GetUserRequest(user_id=ben_id))).user.username == "ben"
    cat_id = (await cat.users.GetUser(user_pb2.GetUserRequest(user_id="me"))).user.id
    for client, other in ((ann, cat_id), (cat, ben_id)):
        await helpers.expect_error(
            client.users.GetUser(user_pb2.GetUserRequest(user_id=other)), grpc.StatusCode.NOT_FOUND, "user_id"
        )


async def test_members(app: RunningApp, stubs: Any, clients: Any, helpers: Any) -> None:
    owner_id, owner = await _user(app, stubs, clients, "olga")
    other_id, other = await _user(app, stubs, clients, "otto")
    project_id = await _create_project(owner, "p")

    # A project keeps an owner: its last owner can neither leave nor step down...
    for call in (
        owner.users.RemoveProjectMember(
            user_pb2.RemoveProjectMemberRequest(project_id=project_id, user_id=owner_id)
        ),
        owner.users.SetProjectMember(
            user_pb2.SetProjectMemberRequest(project_id=project_id, user_id=owner_id, role=EDITOR)
        ),
    ):
        err = await helpers.expect_error(call, grpc.StatusCode.FAILED_PRECONDITION, "user_id")
        assert err.reason == "LAST_OWNER"
    # ... until there is another owner.
    await _set(owner, project_id, other_id, OWNER)
    assert (await _set(owner, project_id, owner_id, VIEWER)).role == VIEWER
    await helpers.expect_error(
        owner.users.ListProjectMembers(user_pb2.ListProjectMembersRequest(project_id=project_id)),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    # A platform admin may remove the last owner; the removed member's tokens are revoked.
    await stubs.users.RemoveProjectMember(
        user_pb2.RemoveProjectMemberRequest(project_id=project_id, user_id=other_id)
    )
    err = await helpers.expect_error(
        other.projects.GetProject(project_pb2.GetProjectRequest(project_id=project_id)),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    assert err.reason == "INVALID_TOKEN"
    other = await clients(app).login("otto", "otto-password")
    await helpers.expect_error(
        other.projects.GetProject(project_pb2.GetProjectRequest(project_id=project_id)),
        grpc.StatusCode.NOT_FOUND,
    )
    members = (
        await stubs.users.ListProjectMembers(user_pb2.ListProjectMembersRequest(project_id=project_id))
    ).members
    assert [(m.user_id, m.role) for m in members] == [(owner_id, VIEWER)]

    for request, code, param in (
        (
            user_pb2.SetProjectMemberRequest(project_id=project_id, user_id=other_id),
            grpc.StatusCode.INVALID_ARGUMENT,
            "role",
        ),
        (
            user_pb2.SetProjectMemberRequest(project_id=project_id, user_id="usr_missing", role=VIEWER),
            grpc.StatusCode.NOT_FOUND,
            "user_id",
        ),
        (
            user_pb2.SetProjectMemberRequest(project_id=project_id, username="nobody", role=VIEWER),
            grpc.StatusCode.NOT_FOUND,
            "username",
        ),
        (
            user_pb2.SetProjectMemberRequest(project_id=project_id, role=VIEWER),
            grpc.StatusCode.INVALID_ARGUMENT,
            "user_id",
        ),
        (
            user_pb2.SetProjectMemberRequest(project_id="prj_missing", user_id=other_id, role=VIEWER),
            grpc.StatusCode.NOT_FOUND,
            "project_id",
        ),
    ):
        await helpers.expect_error(stubs.users.SetProjectMember(request), code, param)
    await helpers.expect_error(
        stubs.users.RemoveProjectMember(
            user_pb2.RemoveProjectMemberRequest(project_id=project_id, user_id=other_id)
        ),
        grpc.StatusCode.NOT_FOUND,
        "user_id",
    )


async def test_removing_a_member_revokes_their_tokens_at_once(
    app: RunningApp, stubs: Any, clients: Any, helpers: Any
) -> None:
    """A member removed from one project is logged out everywhere (a compromised colleague's
    session ends with the removal); lowering a role needs no revocation: roles are read on every
    call, so it applies at once on the same token."""
    _, owner = await _user(app, stubs, clients, "olga")
    member_id, member = await _user(app, stubs, clients, "mia")
    project_id = await _create_project(owner, "team")
    elsewhere = await _create_project(member, "own")  # a project of the member's own
    await _set(owner, project_id, member_id, EDITOR)
    key = auth_pb2.CreateApiKeyRequest(project_id=project_id, name="k")
    await member.api_keys.CreateApiKey(key)

    await _set(owner, project_id, member_id, VIEWER)  # lowered: refused at once, token kept
    await helpers.expect_error(member.api_keys.CreateApiKey(key), grpc.StatusCode.PERMISSION_DENIED)
    await member.projects.GetProject(project_pb2.GetProjectRequest(project_id=elsewhere))

    await owner.users.RemoveProjectMember(
        user_pb2.RemoveProjectMemberRequest(project_id=project_id, user_id=member_id)
    )
    for call in (
        member.projects.GetProject(project_pb2.GetProjectRequest(project_id=project_id)),
        member.projects.GetProject(project_pb2.GetProjectRequest(project_id=elsewhere)),
    ):
        err = await helpers.expect_error(call, grpc.StatusCode.UNAUTHENTICATED)
        assert err.reason == "INVALID_TOKEN"
    await owner.projects.GetProject(
        project_pb2.GetProjectRequest(project_id=project_id)
    )  # the remover's stands
    member = await clients(app).login("mia", "mia-password")  # a new login works, without the role
    await member.projects.GetProject(project_pb2.GetProjectRequest(project_id=elsewhere))
    await helpers.expect_error(
        member.projects.GetProject(project_pb2.GetProjectRequest(project_id=project_id)),
        grpc.StatusCode.NOT_FOUND,
    )
