"""PromptService over gRPC on SQLite and PostgreSQL: the lifecycle (create, save versions, labels,
history, diff, delete), concurrent saves, roles and isolation, and access keys encrypted at rest."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from sqlalchemy import select, text

from app.db import models
from app.db.migrate import upgrade_database
from app.db.session import Database
from app.server import RunningApp
from auth.service_identity import APP
from bud.app.v1 import deployment_pb2, project_pb2
from bud.auth.v1 import auth_pb2, user_pb2
from bud.engine.v1 import engine_service_pb2
from bud.openai.v1 import common_pb2
from bud.prompt.v1 import prompt_pb2, prompt_pb2_grpc
from budrt.grpc_server import service_channel
from budrt.tls import LocalCa

P = prompt_pb2
D = deployment_pb2
VIEWER, EDITOR, OWNER = (
    user_pb2.PROJECT_ROLE_VIEWER,
    user_pb2.PROJECT_ROLE_EDITOR,
    user_pb2.PROJECT_ROLE_OWNER,
)


def prompts(client: Any) -> prompt_pb2_grpc.PromptServiceStub:
    """A PromptService stub on a `Stubs`' channel (it sends the client's token)."""
    return prompt_pb2_grpc.PromptServiceStub(client.channel)


async def project_with_chat(client: Any, address: str, name: str = "team") -> tuple[str, str]:
    """A new project with a chat deployment "chat"; (project id, deployment id)."""
    project_id = (
        await client.projects.CreateProject(
            project_pb2.CreateProjectRequest(project=project_pb2.Project(name=name))
        )
    ).project.id
    deployment = D.Deployment(
        name="chat",
        model=D.ModelSource(builtin="tiny-llama"),  # placed on the registered engine
    )
    created = await client.deployments.CreateDeployment(
        D.CreateDeploymentRequest(project_id=project_id, deployment=deployment)
    )
    return project_id, created.deployment.id


def variable(name: str, kind: int = P.VARIABLE_TYPE_STRING, **fields: Any) -> P.Variable:
    return P.Variable(name=name, type=kind, **fields)


def body(deployment_id: str, **fields: Any) -> P.PromptVersion:
    """A structured-input version greeting `name` in `language`."""
    fields.setdefault("system_prompt", "You translate into {{ language }}.")
    fields.setdefault("messages", [P.PromptMessage(role="user", template="Greet {{ name }}.")])
    fields.setdefault(
        "input",
        P.PromptIo(
            mode=P.IO_MODE_STRUCTURED,
            variables=[
                variable("name", description="who"),
                variable("language", P.VARIABLE_TYPE_ENUM, options=["fr", "de"], default='"fr"'),
            ],
        ),
    )
    return P.PromptVersion(deployment_id=deployment_id, **fields)


async def test_lifecycle_versions_labels_history_diff(
    app: RunningApp, stubs: Any, helpers: Any, engine_host: Any
) -> None:
    project_id, deployment_id = await project_with_chat(stubs, engine_host.address)
    api = prompts(stubs)
    created = await api.CreatePrompt(
        P.CreatePromptRequest(
            project_id=project_id,
            name="greeter",
            description="says hello",
            version=body(
                deployment_id, note="first", parameters=P.ModelParameters(temperature=0.2, stop=["\n"])
            ),
        )
    )
    prompt = created.prompt
    assert (
        prompt.id.startswith("pmpt_") and prompt.latest_version == 1 and prompt.type == P.PROMPT_TYPE_SIMPLE
    )
    assert prompt.default_label == "latest" and [(x.name, x.version) for x in prompt.labels] == [
        ("latest", 1)
    ]
    v1 = created.version
    assert (v1.version, v1.note, v1.model, v1.labels) == (1, "first", "chat", ["latest"])
    assert v1.temperature == pytest.approx(0.2) and v1.parameters.temperature == pytest.approx(0.2)
    assert list(created.warnings) == []
    await helpers.expect_error(
        api.CreatePrompt(
            P.CreatePromptRequest(project_id=project_id, name="greeter", version=body(deployment_id))
        ),
        grpc.StatusCode.ALREADY_EXISTS,
        "name",
    )

    # Save v2 from v1, labelling it staging in the same transaction; a stale save is refused.
    ref = dict(project_id=project_id, prompt_id=prompt.id)
    saved = await api.CreatePromptVersion(
        P.CreatePromptVersionRequest(
            **ref,
            version=body(
                deployment_id, note="friendlier", system_prompt="Be warm; answer in {{ language }}."
            ),
            expected_version=1,
            labels=["staging"],
        )
    )
    assert (saved.version.version, sorted(saved.version.labels)) == (2, ["latest", "staging"])
    stale = await helpers.expect_error(
        api.CreatePromptVersion(
            P.CreatePromptVersionRequest(**ref, version=body(deployment_id), expected_version=1)
        ),
        grpc.StatusCode.ABORTED,
        "expected_version",
    )
    assert "no longer the newest" in stale.message

    # Labels: production at v1, moved to v2 atomically; "latest" is reserved.
    assert (
        await api.SetPromptLabel(P.SetPromptLabelRequest(**ref, label="production", version=1))
    ).label.version == 1
    await helpers.expect_error(
        api.SetPromptLabel(P.SetPromptLabelRequest(**ref, label="production", version=2, expected_version=2)),
        grpc.StatusCode.ABORTED,
    )
    await api.SetPromptLabel(
        P.SetPromptLabelRequest(**ref, label="production", version=2, expected_version=1)
    )
    await helpers.expect_error(
        api.SetPromptLabel(P.SetPromptLabelRequest(**ref, label="latest", version=1)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "label",
    )
    await helpers.expect_error(
        api.SetPromptLabel(P.SetPromptLabelRequest(**ref, label="production", version=9)),
        grpc.StatusCode.NOT_FOUND,
        "version",
    )
    got = await api.GetPromptLabel(P.GetPromptLabelRequest(**ref, label="production"))
    assert (got.label.version, got.version.note) == (2, "friendlier")
    labels = (await api.ListPromptLabels(P.ListPromptLabelsRequest(**ref))).labels
    assert [(x.name, x.version) for x in labels] == [("latest", 2), ("production", 2), ("staging", 2)]

    # The default label answers a read that names no version.
    await api.SetPromptLabel(P.SetPromptLabelRequest(**ref, label="production", version=1))
    await api.UpdatePrompt(
        P.UpdatePromptRequest(
            prompt=P.Prompt(id=prompt.id, project_id=project_id, default_label="production"),
            update_mask={"paths": ["default_label"]},
        )
    )
    assert (await api.GetPromptVersion(P.GetPromptVersionRequest(**ref))).version.version == 1
    assert (await api.GetPromptVersion(P.GetPromptVersionRequest(**ref, label="latest"))).version.version == 2
    await helpers.expect_error(
        api.DeletePromptLabel(P.DeletePromptLabelRequest(**ref, label="production")),
        grpc.StatusCode.FAILED_PRECONDITION,
        "label",
    )
    await api.DeletePromptLabel(P.DeletePromptLabelRequest(**ref, label="staging"))
    await helpers.expect_error(
        api.GetPromptLabel(P.GetPromptLabelRequest(**ref, label="staging")),
        grpc.StatusCode.NOT_FOUND,
        "label",
    )

    # Versions newest first, paginated; every move of a label recorded, newest first.
    page = await api.ListPromptVersions(P.ListPromptVersionsRequest(**ref, page_size=1))
    assert [v.version for v in page.versions] == [2] and page.next_page_token
    rest = await api.ListPromptVersions(P.ListPromptVersionsRequest(**ref, page_token=page.next_page_token))
    assert [(v.version, list(v.labels)) for v in rest.versions] == [(1, ["production"])]
    history = (await api.ListPromptLabelChanges(P.ListPromptLabelChangesRequest(**ref))).changes
    assert [(c.label, c.from_version, c.to_version) for c in history] == [
        ("staging", 2, 0),
        ("production", 2, 1),
        ("production", 1, 2),
        ("production", 0, 1),
        ("staging", 0, 2),
    ]
    me = (await stubs.users.GetUser(user_pb2.GetUserRequest(user_id="me"))).user.id
    assert {c.user_id for c in history} == {me}

    diff = await api.DiffPromptVersions(P.DiffPromptVersionsRequest(**ref, version=1, other=2))
    assert [c.field for c in diff.changes] == [
        "parameters.stop",
        "parameters.temperature",
        "system_prompt",
        "temperature",
    ]
    assert "-You translate into {{ language }}." in diff.template_diff
    assert "+Be warm; answer in {{ language }}." in diff.template_diff

    listed = (await api.ListPrompts(P.ListPromptsRequest(project_id=project_id))).prompts
    assert [(p.name, p.latest_version, p.default_label) for p in listed] == [("greeter", 2, "production")]
    await api.DeletePrompt(P.DeletePromptRequest(**ref))
    await helpers.expect_error(
        api.GetPrompt(P.GetPromptRequest(**ref)), grpc.StatusCode.NOT_FOUND, "prompt_id"
    )
    async with app.db.snapshot() as session:
        for table in (models.PromptVersion, models.PromptLabel, models.PromptLabelChange):
            assert (await session.scalars(select(table))).all() == []


async def test_concurrent_saves_get_distinct_numbers_or_abort(
    app: RunningApp, stubs: Any, engine_host: Any
) -> None:
    project_id, deployment_id = await project_with_chat(stubs, engine_host.address)
    api = prompts(stubs)
    prompt = (
        await api.CreatePrompt(
            P.CreatePromptRequest(project_id=project_id, name="p", version=body(deployment_id))
        )
    ).prompt
    ref = dict(project_id=project_id, prompt_id=prompt.id)

    # Blind saves: all succeed, each with its own number.
    saves = [
        api.CreatePromptVersion(P.CreatePromptVersionRequest(**ref, version=body(deployment_id, note=str(i))))
        for i in range(8)
    ]
    numbers = sorted(r.version.version for r in await asyncio.gather(*saves))
    assert numbers == list(range(2, 10))
    async with app.db.snapshot() as session:
        notes = {v.note for v in (await session.scalars(select(models.PromptVersion))).all()}
    assert notes >= {str(i) for i in range(8)}  # no save lost

    # Saves of the same edited version: exactly one wins, the others abort cleanly.
    edits = [
        api.CreatePromptVersion(
            P.CreatePromptVersionRequest(
                **ref, version=body(deployment_id, note=f"edit {i}"), expected_version=9
            )
        )
        for i in range(6)
    ]
    outcomes = await asyncio.gather(*edits, return_exceptions=True)
    won = [o for o in outcomes if isinstance(o, P.CreatePromptVersionResponse)]
    lost = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
    assert len(won) == 1 and won[0].version.version == 10
    assert len(lost) == 5 and {e.code() for e in lost} == {grpc.StatusCode.ABORTED}
    assert (await api.GetPrompt(P.GetPromptRequest(**ref))).prompt.latest_version == 10

    # Concurrent label moves: each recorded, the label ends at one of them.
    moves = [api.SetPromptLabel(P.SetPromptLabelRequest(**ref, label="prod", version=v)) for v in range(1, 6)]
    await asyncio.gather(*moves)
    history = (await api.ListPromptLabelChanges(P.ListPromptLabelChangesRequest(**ref, label="prod"))).changes
    final = (await api.GetPromptLabel(P.GetPromptLabelRequest(**ref, label="prod"))).label.version
    assert history[0].to_version == final and history[-1].from_version == 0
    assert all(a.from_version == b.to_version for a, b in zip(history, history[1:], strict=False))


async def _user(app: RunningApp, admin: Any, clients: Any, username: str) -> tuple[str, Any]:
    password = f"{username}-password"
    user = (
        await admin.users.CreateUser(user_pb2.CreateUserRequest(username=username, password=password))
    ).user
    return user.id, await clients(app).login(username, password)


async def test_roles_and_isolation(
    app: RunningApp, stubs: Any, clients: Any, helpers: Any, engine_host: Any
) -> None:
    _, owner = await _user(app, stubs, clients, "olga")
    editor_id, editor = await _user(app, stubs, clients, "ed")
    viewer_id, viewer = await _user(app, stubs, clients, "vic")
    _, outsider = await _user(app, stubs, clients, "oscar")
    project_id, deployment_id = await project_with_chat(owner, engine_host.address)
    for user_id, role in ((editor_id, EDITOR), (viewer_id, VIEWER)):
        await owner.users.SetProjectMember(
            user_pb2.SetProjectMemberRequest(project_id=project_id, user_id=user_id, role=role)
        )
    create = P.CreatePromptRequest(project_id=project_id, name="p", version=body(deployment_id))
    await helpers.expect_error(prompts(viewer).CreatePrompt(create), grpc.StatusCode.PERMISSION_DENIED)
    prompt = (await prompts(editor).CreatePrompt(create)).prompt
    ref = dict(project_id=project_id, prompt_id=prompt.id)
    save = P.CreatePromptVersionRequest(**ref, version=body(deployment_id))

    # Viewers read; editors save and label; owners delete.
    assert (await prompts(viewer).GetPrompt(P.GetPromptRequest(**ref))).prompt.name == "p"
    assert len((await prompts(viewer).ListPromptVersions(P.ListPromptVersionsRequest(**ref))).versions) == 1
    await helpers.expect_error(prompts(viewer).CreatePromptVersion(save), grpc.StatusCode.PERMISSION_DENIED)
    await helpers.expect_error(
        prompts(viewer).SetPromptLabel(P.SetPromptLabelRequest(**ref, label="prod", version=1)),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    await prompts(editor).CreatePromptVersion(save)
    await prompts(editor).SetPromptLabel(P.SetPromptLabelRequest(**ref, label="prod", version=2))
    await helpers.expect_error(
        prompts(editor).DeletePrompt(P.DeletePromptRequest(**ref)), grpc.StatusCode.PERMISSION_DENIED
    )

    # Someone with no role in the project gets the NOT_FOUND of a missing project, on every RPC.
    for call in (
        prompts(outsider).GetPrompt(P.GetPromptRequest(**ref)),
        prompts(outsider).ListPrompts(P.ListPromptsRequest(project_id=project_id)),
        prompts(outsider).CreatePromptVersion(save),
        prompts(outsider).DeletePrompt(P.DeletePromptRequest(**ref)),
    ):
        await helpers.expect_error(call, grpc.StatusCode.NOT_FOUND, "project_id")
    # ... and sees none of its prompts across projects; the members do.
    assert (await prompts(outsider).ListAllPrompts(P.ListAllPromptsRequest())).prompts == []
    assert [p.id for p in (await prompts(viewer).ListAllPrompts(P.ListAllPromptsRequest())).prompts] == [
        prompt.id
    ]

    # A prompt id of another project is NOT_FOUND there; a deployment of another project is refused.
    other_id, other_deployment = await project_with_chat(outsider, engine_host.address, "elsewhere")
    await helpers.expect_error(
        prompts(outsider).GetPrompt(P.GetPromptRequest(project_id=other_id, prompt_id=prompt.id)),
        grpc.StatusCode.NOT_FOUND,
        "prompt_id",
    )
    await helpers.expect_error(
        prompts(editor).CreatePromptVersion(
            P.CreatePromptVersionRequest(**ref, version=body(other_deployment))
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "version.deployment_id",
    )

    # An API key (an inference credential) cannot manage prompts.
    secret = (
        await owner.api_keys.CreateApiKey(auth_pb2.CreateApiKeyRequest(project_id=project_id, name="k"))
    ).secret
    keyed = prompts(clients(app, secret))
    await helpers.expect_error(keyed.GetPrompt(P.GetPromptRequest(**ref)), grpc.StatusCode.UNAUTHENTICATED)
    await helpers.expect_error(keyed.CreatePromptVersion(save), grpc.StatusCode.UNAUTHENTICATED)

    await prompts(owner).DeletePrompt(P.DeletePromptRequest(**ref))


async def test_access_keys_are_encrypted_at_rest_and_masked(
    app: RunningApp, stubs: Any, helpers: Any, engine_host: Any
) -> None:
    project_id, deployment_id = await project_with_chat(stubs, engine_host.address)
    api = prompts(stubs)
    token = "xoxb-very-secret-slack-token-7f3a"
    slack = P.IntegrationTool(integration="slack", active=True, access_keys={"bot_token": token})
    created = await api.CreatePrompt(
        P.CreatePromptRequest(
            project_id=project_id, name="p", version=body(deployment_id, integration_tools=[slack])
        )
    )
    (tool,) = created.version.integration_tools
    assert tool.access_keys["bot_token"] == "****7f3a" and tool.active
    ref = dict(project_id=project_id, prompt_id=created.prompt.id)

    async with app.db.snapshot() as session:
        raw = [str(row) for row in (await session.execute(text("SELECT * FROM prompt_versions"))).all()]
    assert raw and not any(token in row or token[:12] in row for row in raw)

    # A masked key sent back keeps the stored one; a new key replaces it.
    again = await api.CreatePromptVersion(
        P.CreatePromptVersionRequest(**ref, version=body(deployment_id, integration_tools=[tool]))
    )
    assert again.version.integration_tools[0].access_keys["bot_token"] == "****7f3a"
    async with app.db.snapshot() as session:
        rows = (
            await session.scalars(select(models.PromptVersion).order_by(models.PromptVersion.version))
        ).all()
    stored = [r.body["integration_tools"][0]["access_keys"]["bot_token"] for r in rows]
    assert stored[0] == stored[1] and stored[0].startswith("v1:")
    cipher = app.server.bindings[-1].servicer._cipher
    assert cipher.decrypt(stored[1], f"{created.prompt.id}/slack/bot_token") == token
    # Bound to its place: the same ciphertext does not decrypt as another prompt's key.
    with pytest.raises(ValueError):
        cipher.decrypt(stored[1], "pmpt_other/slack/bot_token")

    # Reads never return it: versions, lists, labels, diffs.
    replies = [
        await api.GetPromptVersion(P.GetPromptVersionRequest(**ref, version=1)),
        await api.ListPromptVersions(P.ListPromptVersionsRequest(**ref)),
        await api.GetPromptLabel(P.GetPromptLabelRequest(**ref, label="latest")),
        await api.DiffPromptVersions(P.DiffPromptVersionsRequest(**ref, version=1, other=2)),
    ]
    assert not any(token in str(r) for r in replies)
    # A masked value with nothing stored to keep is refused.
    notion = P.IntegrationTool(integration="notion", access_keys={"api_key": "****abcd"})
    await helpers.expect_error(
        api.CreatePromptVersion(
            P.CreatePromptVersionRequest(**ref, version=body(deployment_id, integration_tools=[notion]))
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "version.integration_tools[0].access_keys.api_key",
    )


async def test_the_deployment_must_be_a_chat_deployment_of_the_project(
    app: RunningApp, stubs: Any, helpers: Any, engine_host: Any
) -> None:
    project_id, deployment_id = await project_with_chat(stubs, engine_host.address)
    pooling = await stubs.deployments.CreateDeployment(
        D.CreateDeploymentRequest(
            project_id=project_id,
            deployment=D.Deployment(
                name="embed",
                model=D.ModelSource(builtin="all-minilm-l6-v2"),
                runner=engine_service_pb2.RUNNER_POOLING,
            ),
        )
    )
    image = await stubs.deployments.CreateDeployment(
        D.CreateDeploymentRequest(
            project_id=project_id,
            deployment=D.Deployment(name="painter", model=D.ModelSource(builtin="tiny-diffusion")),
        )
    )
    api = prompts(stubs)
    for version, param in (
        (body(pooling.deployment.id), "version.deployment_id"),
        (body(image.deployment.id), "version.deployment_id"),  # an image model: no chat either
        (body("dep_missing"), "version.deployment_id"),
        (body("", model="embed"), "version.model"),
        (body(deployment_id, model="embed"), "version.model"),
    ):
        await helpers.expect_error(
            api.CreatePrompt(P.CreatePromptRequest(project_id=project_id, name="p", version=version)),
            grpc.StatusCode.INVALID_ARGUMENT,
            param,
        )
    # By name works too, and the id is filled in.
    by_name = await api.CreatePrompt(
        P.CreatePromptRequest(project_id=project_id, name="p", version=body("", model="chat"))
    )
    assert by_name.version.deployment_id == deployment_id


async def test_deleting_a_prompt_a_deployment_uses_needs_force(
    app: RunningApp, stubs: Any, helpers: Any, engine_host: Any
) -> None:
    project_id, deployment_id = await project_with_chat(stubs, engine_host.address)
    api = prompts(stubs)
    prompt = (
        await api.CreatePrompt(
            P.CreatePromptRequest(project_id=project_id, name="p", version=body(deployment_id))
        )
    ).prompt
    async with app.db.transaction() as session:  # a prompt deployment, as flow 1 writes it
        session.add(
            models.Deployment(
                id="dep_prompt",
                project_id=project_id,
                name="greeter",
                prompt_id=prompt.id,
                prompt_version=1,
                runner="RUNNER_GENERATE",
                engine_args={},
                status="DEPLOYMENT_STATUS_READY",
                create_time=models.utcnow(),
                update_time=models.utcnow(),
            )
        )
    ref = dict(project_id=project_id, prompt_id=prompt.id)
    err = await helpers.expect_error(
        api.DeletePrompt(P.DeletePromptRequest(**ref)), grpc.StatusCode.FAILED_PRECONDITION, "force"
    )
    assert err.reason == "PROMPT_HAS_DEPLOYMENTS" and "greeter" in err.message
    deleted = await api.DeletePrompt(P.DeletePromptRequest(**ref, force=True))
    assert list(deleted.deleted_deployment_ids) == ["dep_prompt"]
    listed = await stubs.deployments.ListDeployments(D.ListDeploymentsRequest(project_id=project_id))
    assert [d.id for d in listed.deployments] == [deployment_id]


def test_function_tools_keep_their_schema() -> None:
    """The sketch's `tools` field holds OpenAI function tools."""
    tool = common_pb2.Tool(type="function", function=common_pb2.FunctionDefinition(name="f", parameters="{}"))
    assert P.PromptVersion(tools=[tool]).tools[0].function.name == "f"


async def test_upgrade_from_0004_keeps_the_data_and_adds_prompts(
    database_url: str, start: Any, clients: Any, engine_host: Any
) -> None:
    """A database at revision 0004 with a project and a chat deployment in it: upgraded at start,
    both are intact and a prompt runs on the old deployment."""
    db = Database(database_url)
    now = datetime.now(UTC).replace(tzinfo=None)
    try:
        await upgrade_database(db, "0004")
        async with db.write_engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO projects (id, name, description, create_time, update_time) "
                    "VALUES ('prj_old', 'legacy', 'from 0004', :now, :now)"
                ),
                {"now": now},
            )
            await conn.execute(
                text(
                    "INSERT INTO deployments (id, project_id, name, model_source_kind, model_source, runner, "
                    "engine_args, min_concurrency, max_concurrency, autoscale, caching, requests_per_minute, "
                    "tokens_per_minute, status, status_message, spec_version, create_time, update_time) VALUES "
                    "('dep_old', 'prj_old', 'old-chat', 'builtin', 'tiny-llama', 'RUNNER_GENERATE', '{}', 0, 0, "
                    "false, false, 0, 0, 'DEPLOYMENT_STATUS_PENDING', '', 1, :now, :now)"
                ),
                {"now": now},
            )
    finally:
        await db.dispose()
    app = await start()
    admin = await clients(app).login()
    deployment = (
        await admin.deployments.GetDeployment(
            D.GetDeploymentRequest(project_id="prj_old", deployment_id="dep_old")
        )
    ).deployment
    assert (deployment.name, deployment.model.builtin) == ("old-chat", "tiny-llama")
    created = await prompts(admin).CreatePrompt(
        P.CreatePromptRequest(project_id="prj_old", name="p", version=body("", model="old-chat"))
    )
    assert created.version.deployment_id == "dep_old" and created.prompt.latest_version == 1


async def test_prompt_deployment_status_follows_its_target_also_after_a_restart(
    start: Any, clients: Any, engine_host: Any
) -> None:
    """READY once created (its version exists), FAILED when the label it follows is deleted,
    READY again when it is back; a deployment left PENDING by an older app (before statuses
    followed the target) is READY after the next start."""
    app = await start()
    admin = await clients(app).login()
    project_id, deployment_id = await project_with_chat(admin, engine_host.address)
    api = prompts(admin)
    prompt = (
        await api.CreatePrompt(
            P.CreatePromptRequest(
                project_id=project_id, name="s", version=body(deployment_id), labels=["production"]
            )
        )
    ).prompt

    async def status(dep_id: str) -> tuple[int, str]:
        got = (
            await admin.deployments.GetDeployment(
                D.GetDeploymentRequest(project_id=project_id, deployment_id=dep_id)
            )
        ).deployment
        return got.status, got.status_message

    follows = (
        await admin.deployments.CreateDeployment(
            D.CreateDeploymentRequest(
                project_id=project_id,
                deployment=D.Deployment(
                    name="f", prompt=D.PromptTarget(prompt_id=prompt.id, label="production")
                ),
            )
        )
    ).deployment
    assert follows.status == D.DEPLOYMENT_STATUS_READY
    ref = dict(project_id=project_id, prompt_id=prompt.id)
    await api.DeletePromptLabel(P.DeletePromptLabelRequest(**ref, label="production"))
    assert await status(follows.id) == (
        D.DEPLOYMENT_STATUS_FAILED,
        f"prompt {prompt.id!r} has no label 'production'",
    )
    await api.SetPromptLabel(P.SetPromptLabelRequest(**ref, label="production", version=1))
    assert await status(follows.id) == (D.DEPLOYMENT_STATUS_READY, "")

    async with app.db.transaction() as session:  # as an older app left it
        row = await session.get(models.Deployment, follows.id)
        assert row is not None
        row.status, row.status_message = "DEPLOYMENT_STATUS_PENDING", "prompt execution is not available yet"
    await app.stop(grace=0)
    again = await start()
    admin = await clients(again).login()
    assert await status(follows.id) == (D.DEPLOYMENT_STATUS_READY, "")


async def test_prompt_deployments_flow_1_and_flow_2(
    app: RunningApp, stubs: Any, clients: Any, helpers: Any, engine_host: Any
) -> None:
    """Flow 1: a prompt deployed in its own project, pinned or following a label. Flow 2: from the
    list of every visible prompt, deployed into another project by someone who reads the first
    and edits the second; pinned to the version it copied. Deleting a used prompt needs force."""
    _, alice = await _user(app, stubs, clients, "alice")  # owns A and B
    bob_id, bob = await _user(app, stubs, clients, "bob")  # edits B, nothing in A
    project_a, deployment_a = await project_with_chat(alice, engine_host.address, "a")
    project_b = (
        await alice.projects.CreateProject(
            project_pb2.CreateProjectRequest(project=project_pb2.Project(name="b"))
        )
    ).project.id
    await alice.users.SetProjectMember(
        user_pb2.SetProjectMemberRequest(project_id=project_b, user_id=bob_id, role=EDITOR)
    )
    api = prompts(alice)
    prompt = (
        await api.CreatePrompt(
            P.CreatePromptRequest(
                project_id=project_a, name="p", version=body(deployment_a), labels=["production"]
            )
        )
    ).prompt
    await api.CreatePromptVersion(
        P.CreatePromptVersionRequest(project_id=project_a, prompt_id=prompt.id, version=body(deployment_a))
    )

    def deploy(into: str, name: str, **target: Any) -> D.CreateDeploymentRequest:
        return D.CreateDeploymentRequest(
            project_id=into,
            deployment=D.Deployment(
                name=name,
                prompt=D.PromptTarget(prompt_id=prompt.id, **target),
                scaling=D.ScalingSettings(min_concurrency=1, max_concurrency=4, autoscale=True),
                caching=True,
                rate_limits=D.RateLimits(requests_per_minute=60, tokens_per_minute=1000),
            ),
        )

    # Flow 1.
    pinned = (await alice.deployments.CreateDeployment(deploy(project_a, "pinned", version=1))).deployment
    assert (pinned.prompt.version, pinned.prompt.label, pinned.status) == (1, "", D.DEPLOYMENT_STATUS_READY)
    assert (pinned.scaling.max_concurrency, pinned.caching, pinned.rate_limits.requests_per_minute) == (
        4,
        True,
        60,
    )
    following = (
        await alice.deployments.CreateDeployment(deploy(project_a, "follows", label="production"))
    ).deployment
    assert (following.prompt.version, following.prompt.label) == (0, "production")
    await helpers.expect_error(
        alice.deployments.CreateDeployment(deploy(project_a, "x", version=7)),
        grpc.StatusCode.NOT_FOUND,
        "deployment.prompt.version",
    )
    await helpers.expect_error(
        alice.deployments.CreateDeployment(deploy(project_a, "x", label="nope")),
        grpc.StatusCode.NOT_FOUND,
        "deployment.prompt.label",
    )
    moved = await alice.deployments.UpdateDeployment(
        D.UpdateDeploymentRequest(
            deployment=D.Deployment(
                id=following.id, project_id=project_a, prompt=D.PromptTarget(prompt_id=prompt.id, version=2)
            ),
            update_mask={"paths": ["prompt"]},
        )
    )
    assert (moved.deployment.prompt.version, moved.deployment.prompt.label) == (2, "")
    await helpers.expect_error(
        alice.deployments.UpdateDeployment(
            D.UpdateDeploymentRequest(
                deployment=D.Deployment(
                    id=following.id, project_id=project_a, model=D.ModelSource(builtin="tiny-llama")
                ),
                update_mask={"paths": ["model"]},
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "deployment.prompt",
    )

    # Flow 2: bob sees no prompt of A, so cannot deploy it into B; alice can, and it is pinned.
    assert (await prompts(bob).ListAllPrompts(P.ListAllPromptsRequest())).prompts == []
    await helpers.expect_error(
        bob.deployments.CreateDeployment(deploy(project_b, "copy", project_id=project_a)),
        grpc.StatusCode.NOT_FOUND,
        "deployment.prompt.project_id",
    )
    visible = (await api.ListAllPrompts(P.ListAllPromptsRequest())).prompts
    assert [(p.id, p.project_id) for p in visible] == [(prompt.id, project_a)]
    copied = (
        await alice.deployments.CreateDeployment(
            deploy(project_b, "copy", project_id=project_a, label="production")
        )
    ).deployment
    assert (copied.project_id, copied.prompt.version, copied.prompt.label) == (project_b, 1, "")
    # Without project_id the prompt is looked for in B itself.
    await helpers.expect_error(
        alice.deployments.CreateDeployment(deploy(project_b, "copy2")),
        grpc.StatusCode.NOT_FOUND,
        "deployment.prompt.prompt_id",
    )

    # A used prompt is deleted only with force, which takes its deployments (both projects) along.
    ref = dict(project_id=project_a, prompt_id=prompt.id)
    await helpers.expect_error(
        api.DeletePrompt(P.DeletePromptRequest(**ref)), grpc.StatusCode.FAILED_PRECONDITION, "force"
    )
    deleted = await api.DeletePrompt(P.DeletePromptRequest(**ref, force=True))
    assert sorted(deleted.deleted_deployment_ids) == sorted([pinned.id, following.id, copied.id])
    for project_id in (project_a, project_b):
        listed = await alice.deployments.ListDeployments(D.ListDeploymentsRequest(project_id=project_id))
        assert all(not d.HasField("prompt") for d in listed.deployments)

    # Deleting a project (forced) takes the deployments of other projects that run its prompts.
    again = await api.CreatePrompt(
        P.CreatePromptRequest(project_id=project_a, name="q", version=body(deployment_a))
    )
    await alice.deployments.CreateDeployment(
        D.CreateDeploymentRequest(
            project_id=project_b,
            deployment=D.Deployment(
                name="q-copy",
                prompt=D.PromptTarget(prompt_id=again.prompt.id, project_id=project_a, version=1),
            ),
        )
    )
    # Without deployments of its own, A still cannot go while B runs one of its prompts.
    await alice.deployments.DeleteDeployment(
        D.DeleteDeploymentRequest(project_id=project_a, deployment_id=deployment_a)
    )
    refused = await helpers.expect_error(
        alice.projects.DeleteProject(project_pb2.DeleteProjectRequest(project_id=project_a)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "force",
    )
    assert refused.reason == "PROMPT_HAS_DEPLOYMENTS"
    await alice.projects.DeleteProject(project_pb2.DeleteProjectRequest(project_id=project_a, force=True))
    listed = await alice.deployments.ListDeployments(D.ListDeploymentsRequest(project_id=project_b))
    assert listed.deployments == []


async def test_watch_prompts_snapshot_changes_and_resume(
    app: RunningApp, stubs: Any, clients: Any, helpers: Any, engine_host: Any
) -> None:
    """The executing side's feed: a snapshot, then each change (a save, a label move, a delete)
    as it commits, with the versions labels point at; resuming at the current revision sends no
    snapshot. Internal, like WatchRouting: no token."""
    project_id, deployment_id = await project_with_chat(stubs, engine_host.address)

    async def ready() -> bool:  # then the reconciler moves the revision no more
        get = D.GetDeploymentRequest(project_id=project_id, deployment_id=deployment_id)
        return (await stubs.deployments.GetDeployment(get)).deployment.status == D.DEPLOYMENT_STATUS_READY

    await helpers.eventually(ready, what="the chat deployment to be ready")
    api = prompts(stubs)
    prompt = (
        await api.CreatePrompt(
            P.CreatePromptRequest(project_id=project_id, name="p", version=body(deployment_id))
        )
    ).prompt
    ref = dict(project_id=project_id, prompt_id=prompt.id)
    watch = prompts(clients(app)).WatchPrompts(P.WatchPromptsRequest(watcher_id="test"))
    first = await asyncio.wait_for(watch.read(), 10)
    assert first.reset and [s.prompt.id for s in first.upsert_prompts] == [prompt.id]
    assert [v.version for v in first.upsert_prompts[0].versions] == [1]

    await api.CreatePromptVersion(P.CreatePromptVersionRequest(**ref, version=body(deployment_id, note="v2")))
    await api.SetPromptLabel(P.SetPromptLabelRequest(**ref, label="production", version=1))
    seen: dict[int, list[str]] = {}
    while seen != {2: ["latest"], 1: ["production"]}:
        change = await asyncio.wait_for(watch.read(), 10)
        assert not change.reset and change.revision > first.revision
        (snapshot,) = change.upsert_prompts
        seen = {v.version: list(v.labels) for v in snapshot.versions}
    revision = change.revision

    await api.DeletePrompt(P.DeletePromptRequest(**ref))
    gone = await asyncio.wait_for(watch.read(), 10)
    assert list(gone.delete_prompt_ids) == [prompt.id]
    watch.cancel()

    assert gone.revision > revision
    current = await app.db.revision()
    resumed = prompts(clients(app)).WatchPrompts(P.WatchPromptsRequest(since_revision=current))
    ack = await asyncio.wait_for(resumed.read(), 10)
    assert ack == P.WatchPromptsResponse(revision=current)
    resumed.cancel()


async def test_the_executors_watch_gets_access_keys_and_no_one_else(
    app: RunningApp, stubs: Any, clients: Any, engine_host: Any, process_tls: LocalCa
) -> None:
    """WatchPrompts masks access keys unless asked for them; asked, it sends them in plaintext to
    the prompt executor's hosts only (a verified gateway or prompt identity, over mutual TLS):
    another service identity allowed to watch (the app's) is PERMISSION_DENIED."""
    project_id, deployment_id = await project_with_chat(stubs, engine_host.address)
    token = "xoxb-watch-secret-token-9c1d"
    slack = P.IntegrationTool(integration="slack", active=True, access_keys={"bot_token": token})
    await prompts(stubs).CreatePrompt(
        P.CreatePromptRequest(
            project_id=project_id, name="p", version=body(deployment_id, integration_tools=[slack])
        )
    )

    async def first(stub: prompt_pb2_grpc.PromptServiceStub, reveal: bool) -> str:
        watch = stub.WatchPrompts(P.WatchPromptsRequest(watcher_id="t", include_access_keys=reveal))
        try:
            snapshot = await asyncio.wait_for(watch.read(), 10)
        finally:
            watch.cancel()
        (prompt,) = [s for s in snapshot.upsert_prompts if s.prompt.project_id == project_id]
        return prompt.versions[0].integration_tools[0].access_keys["bot_token"]

    gateway = prompts(clients(app))  # the test process holds a gateway's certificate
    assert await first(gateway, False) == "****9c1d"
    assert await first(gateway, True) == token
    async with service_channel(app.address, tls=process_tls.material(APP)) as channel:
        other = prompt_pb2_grpc.PromptServiceStub(channel)
        assert await first(other, False) == "****9c1d"
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await first(other, True)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_fetch_prompt_version_for_the_executing_side(
    app: RunningApp, stubs: Any, clients: Any, engine_host: Any
) -> None:
    """Any version, labelled or not, with no token (internal, as WatchPrompts); NOT_FOUND for a
    version or a prompt that does not exist."""
    project_id, deployment_id = await project_with_chat(stubs, engine_host.address)
    api = prompts(stubs)
    prompt = (
        await api.CreatePrompt(
            P.CreatePromptRequest(
                project_id=project_id, name="fetched", version=body(deployment_id, note="one")
            )
        )
    ).prompt
    ref = dict(project_id=project_id, prompt_id=prompt.id)
    await api.CreatePromptVersion(
        P.CreatePromptVersionRequest(**ref, version=body(deployment_id, note="two"))
    )
    internal = prompts(clients(app))
    one = (
        await internal.FetchPromptVersion(P.FetchPromptVersionRequest(prompt_id=prompt.id, version=1))
    ).version
    assert (one.prompt_id, one.version, one.note, list(one.labels)) == (prompt.id, 1, "one", [])
    two = (
        await internal.FetchPromptVersion(P.FetchPromptVersionRequest(prompt_id=prompt.id, version=2))
    ).version
    assert list(two.labels) == ["latest"]
    for prompt_id, number in ((prompt.id, 3), ("pmpt_missing", 1)):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await internal.FetchPromptVersion(
                P.FetchPromptVersionRequest(prompt_id=prompt_id, version=number)
            )
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_deleting_a_project_deletes_its_prompts(app: RunningApp, stubs: Any, engine_host: Any) -> None:
    project_id, deployment_id = await project_with_chat(stubs, engine_host.address)
    api = prompts(stubs)
    prompt = (
        await api.CreatePrompt(
            P.CreatePromptRequest(
                project_id=project_id, name="p", version=body(deployment_id), labels=["prod"]
            )
        )
    ).prompt
    await stubs.deployments.CreateDeployment(
        D.CreateDeploymentRequest(
            project_id=project_id,
            deployment=D.Deployment(name="pd", prompt=D.PromptTarget(prompt_id=prompt.id)),
        )
    )
    await stubs.projects.DeleteProject(project_pb2.DeleteProjectRequest(project_id=project_id, force=True))
    async with app.db.snapshot() as session:
        for table in (models.Prompt, models.PromptVersion, models.PromptLabel, models.PromptLabelChange):
            assert (await session.scalars(select(table))).all() == [], table
        assert (
            await session.scalars(select(models.Deployment).where(models.Deployment.prompt_id.is_not(None)))
        ).all() == []
