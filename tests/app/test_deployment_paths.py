"""Paths on an engine's machine are the platform's (issue 11, finding 9): a deployment's
`model.local_path` and a path-valued `engine_args.tokenizer` come only from platform admins; a
`chat_template` is template text for everyone, bounded in size. The engine holds every path to
its model roots on top of this (tests/engine/test_model_paths.py)."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2

from app.server import RunningApp
from app.validation import MAX_CHAT_TEMPLATE_BYTES, check_deployment, check_path_arguments
from bud.app.v1 import deployment_pb2, project_pb2
from bud.auth.v1 import user_pb2
from bud.engine.v1 import engine_service_pb2
from budrt.errors import ServiceError

D = deployment_pb2
OUTSIDE = "/etc/passwd"
TEMPLATE = "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"


async def _member(
    app: RunningApp, admin: Any, clients: Any, project_id: str, username: str, role: int
) -> Any:
    """A user holding `role` in the project (not a platform admin), logged in."""
    password = f"{username}-password"
    user = (
        await admin.users.CreateUser(user_pb2.CreateUserRequest(username=username, password=password))
    ).user
    await admin.users.SetProjectMember(
        user_pb2.SetProjectMemberRequest(project_id=project_id, user_id=user.id, role=role)
    )
    return await clients(app).login(username, password)


@pytest.fixture
async def project_id(stubs: Any) -> str:
    reply = await stubs.projects.CreateProject(
        project_pb2.CreateProjectRequest(project=project_pb2.Project(name="tenant"))
    )
    return str(reply.project.id)


@pytest.fixture
async def editor(app: RunningApp, stubs: Any, clients: Any, project_id: str) -> Any:
    return await _member(app, stubs, clients, project_id, "ed", user_pb2.PROJECT_ROLE_EDITOR)


@pytest.fixture
async def owner(app: RunningApp, stubs: Any, clients: Any, project_id: str) -> Any:
    return await _member(app, stubs, clients, project_id, "olga", user_pb2.PROJECT_ROLE_OWNER)


def _create(client: Any, project_id: str, deployment: D.Deployment) -> Any:
    return client.deployments.CreateDeployment(
        D.CreateDeploymentRequest(project_id=project_id, deployment=deployment)
    )


def _update(client: Any, project_id: str, deployment_id: str, paths: list[str], **fields: Any) -> Any:
    return client.deployments.UpdateDeployment(
        D.UpdateDeploymentRequest(
            deployment=D.Deployment(id=deployment_id, project_id=project_id, **fields),
            update_mask=field_mask_pb2.FieldMask(paths=paths),
        )
    )


async def test_tenants_cannot_point_an_engine_at_a_file(
    editor: Any, owner: Any, project_id: str, helpers: Any, engine_host: Any
) -> None:
    """The attack: an editor (or a project owner: neither is a platform admin) asks for
    /etc/passwd as the model, the tokenizer or the chat template."""
    denied = grpc.StatusCode.PERMISSION_DENIED
    for client in (editor, owner):
        local = helpers.model_deployment("a", model=D.ModelSource(local_path=OUTSIDE))
        err = await helpers.expect_error(
            _create(client, project_id, local), denied, "deployment.model.local_path"
        )
        assert "platform admins" in err.message
        tokenizer = helpers.model_deployment(
            "b", engine_args=engine_service_pb2.EngineArgs(tokenizer=OUTSIDE)
        )
        await helpers.expect_error(
            _create(client, project_id, tokenizer), denied, "deployment.engine_args.tokenizer"
        )
        template = helpers.model_deployment(
            "c", engine_args=engine_service_pb2.EngineArgs(chat_template=OUTSIDE)
        )
        await helpers.expect_error(
            _create(client, project_id, template),
            grpc.StatusCode.INVALID_ARGUMENT,
            "deployment.engine_args.chat_template",
        )


async def test_tenants_keep_hugging_face_tokenizers_and_inline_templates(
    editor: Any, project_id: str, helpers: Any, engine_host: Any
) -> None:
    args = engine_service_pb2.EngineArgs(tokenizer="acme/tokenizer", chat_template=TEMPLATE)
    created = (await _create(editor, project_id, helpers.model_deployment("m", engine_args=args))).deployment
    assert created.engine_args.tokenizer == "acme/tokenizer"
    assert created.engine_args.chat_template == TEMPLATE  # stored as the text it is


async def test_an_admins_path_is_accepted_and_editors_may_keep_it_but_not_change_it(
    stubs: Any, editor: Any, project_id: str, helpers: Any, engine_host: Any
) -> None:
    args = engine_service_pb2.EngineArgs(tokenizer="/models/tokenizers/llama")
    deployment = helpers.model_deployment(
        "llama", model=D.ModelSource(local_path="/models/llama"), engine_args=args
    )
    created = (await _create(stubs, project_id, deployment)).deployment
    assert created.model.local_path == "/models/llama"

    # Other fields of the admin's deployment stay the editor's to change; an empty mask rewrites
    # every field, the paths unchanged.
    await _update(
        editor, project_id, created.id, ["rate_limits"], rate_limits=D.RateLimits(requests_per_minute=5)
    )
    kept = D.Deployment()
    kept.CopyFrom(created)
    kept.rate_limits.requests_per_minute = 7
    await editor.deployments.UpdateDeployment(D.UpdateDeploymentRequest(deployment=kept))

    denied = grpc.StatusCode.PERMISSION_DENIED
    await helpers.expect_error(
        _update(editor, project_id, created.id, ["model"], model=D.ModelSource(local_path=OUTSIDE)),
        denied,
        "deployment.model.local_path",
    )
    await helpers.expect_error(
        _update(
            editor,
            project_id,
            created.id,
            ["engine_args"],
            engine_args=engine_service_pb2.EngineArgs(tokenizer=OUTSIDE),
        ),
        denied,
        "deployment.engine_args.tokenizer",
    )
    # ... and so is an editor's own deployment, once created without a path.
    mine = (await _create(editor, project_id, helpers.model_deployment("mine"))).deployment
    await helpers.expect_error(
        _update(editor, project_id, mine.id, ["model"], model=D.ModelSource(local_path="/models/llama")),
        denied,
        "deployment.model.local_path",
    )
    # The admin may change them.
    await _update(stubs, project_id, created.id, ["model"], model=D.ModelSource(local_path="/models/other"))


@pytest.mark.parametrize(
    ("mutate", "param"),
    [
        (lambda d: d.model.CopyFrom(D.ModelSource(local_path="/models/x\0y")), "deployment.model.local_path"),
        (
            lambda d: d.model.CopyFrom(D.ModelSource(local_path="/" + "a" * 5000)),
            "deployment.model.local_path",
        ),
        (
            lambda d: d.model.CopyFrom(D.ModelSource(hugging_face_id="acme/..")),
            "deployment.model.hugging_face_id",
        ),
        (lambda d: setattr(d.engine_args, "tokenizer", "../etc/passwd"), "deployment.engine_args.tokenizer"),
        (lambda d: setattr(d.engine_args, "tokenizer", "-x"), "deployment.engine_args.tokenizer"),
        (
            lambda d: setattr(d.engine_args, "chat_template", "chatml.jinja"),
            "deployment.engine_args.chat_template",
        ),
        (
            lambda d: setattr(d.engine_args, "chat_template", "{{ x }}\0"),
            "deployment.engine_args.chat_template",
        ),
        (
            lambda d: setattr(d.engine_args, "chat_template", "{{ x }}" + "a" * MAX_CHAT_TEMPLATE_BYTES),
            "deployment.engine_args.chat_template",
        ),
    ],
)
async def test_malformed_paths_and_templates_are_invalid_even_for_admins(
    stubs: Any, project_id: str, helpers: Any, engine_host: Any, mutate: Any, param: str
) -> None:
    deployment = helpers.model_deployment("m")
    mutate(deployment)
    await helpers.expect_error(
        _create(stubs, project_id, deployment), grpc.StatusCode.INVALID_ARGUMENT, param
    )


def test_the_rule_checks_only_path_valued_arguments() -> None:
    """Unit level: which values are paths, and that an unchanged path is no change."""
    hf = D.Deployment(
        model=D.ModelSource(hugging_face_id="acme/chat"),
        engine_args=engine_service_pb2.EngineArgs(tokenizer="acme/tok", chat_template=TEMPLATE),
    )
    check_path_arguments(hf, admin=False)
    local = D.Deployment(model=D.ModelSource(local_path="/models/a"))
    with pytest.raises(ServiceError) as caught:
        check_path_arguments(local, admin=False)
    assert caught.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert caught.value.param == "deployment.model.local_path"
    check_path_arguments(local, admin=True)
    check_path_arguments(local, admin=False, before=local)
    moved = D.Deployment(model=D.ModelSource(local_path="/models/b"))
    with pytest.raises(ServiceError):
        check_path_arguments(moved, admin=False, before=local)


def test_a_template_at_the_size_limit_is_accepted() -> None:
    text = "{{ x }}" + "a" * (MAX_CHAT_TEMPLATE_BYTES - len("{{ x }}"))
    deployment = D.Deployment(
        name="m",
        model=D.ModelSource(builtin="tiny-llama"),
        engine_args=engine_service_pb2.EngineArgs(chat_template=text),
    )
    check_deployment(deployment)
