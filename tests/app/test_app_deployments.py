"""DeploymentService over gRPC on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2

from app.server import RunningApp
from bud.app.v1 import deployment_pb2, project_pb2
from bud.engine.v1 import engine_service_pb2

D = deployment_pb2


async def _project(stubs: Any, name: str = "proj") -> str:
    reply = await stubs.projects.CreateProject(
        project_pb2.CreateProjectRequest(project=project_pb2.Project(name=name))
    )
    return str(reply.project.id)


async def test_crud(stubs: Any, helpers: Any, engine_host: Any) -> None:
    project_id = await _project(stubs)
    request = helpers.model_deployment(
        "chat",
        runner=engine_service_pb2.RUNNER_GENERATE,
        engine_args=engine_service_pb2.EngineArgs(max_model_len=1024, dtype="float32"),
        scaling=D.ScalingSettings(min_concurrency=1, max_concurrency=8),
        caching=True,
        rate_limits=D.RateLimits(requests_per_minute=60, tokens_per_minute=6000),
    )
    created = (
        await stubs.deployments.CreateDeployment(
            D.CreateDeploymentRequest(project_id=project_id, deployment=request)
        )
    ).deployment
    assert created.id.startswith("dep_") and created.project_id == project_id and created.name == "chat"
    assert created.model.builtin == "tiny-llama"
    # Placed on the app's configured engine, under the platform's name for generation 1.
    assert [(e.address, e.served_model_name) for e in created.endpoints] == [
        (engine_host.address, f"{created.id}-g1")
    ]
    assert created.endpoints[0].engine_id.startswith("eng_")
    assert created.engine_args.max_model_len == 1024 and created.engine_args.dtype == "float32"
    assert not created.engine_args.HasField("kv_cache_space_gib")  # unset stays unset
    assert created.runner == engine_service_pb2.RUNNER_GENERATE
    assert created.scaling.max_concurrency == 8 and created.caching
    assert created.rate_limits.tokens_per_minute == 6000
    assert created.status in (
        D.DEPLOYMENT_STATUS_PENDING,
        D.DEPLOYMENT_STATUS_LOADING,
        D.DEPLOYMENT_STATUS_READY,
    )

    got = (
        await stubs.deployments.GetDeployment(
            D.GetDeploymentRequest(project_id=project_id, deployment_id=created.id)
        )
    ).deployment
    assert (
        got.id == created.id and got.engine_args == created.engine_args and got.endpoints == created.endpoints
    )

    # A nested path changes one field; rate limits do not reload the model.
    await helpers.eventually(
        lambda: _status_is(stubs, project_id, created.id, D.DEPLOYMENT_STATUS_READY), what="READY"
    )
    assert engine_host.engine.loaded_names().count(f"{created.id}-g1") == 1
    updated = (
        await stubs.deployments.UpdateDeployment(
            D.UpdateDeploymentRequest(
                deployment=D.Deployment(
                    id=created.id,
                    project_id=project_id,
                    rate_limits=D.RateLimits(requests_per_minute=5, tokens_per_minute=1),
                ),
                update_mask=field_mask_pb2.FieldMask(paths=["rate_limits.requests_per_minute"]),
            )
        )
    ).deployment
    assert updated.rate_limits.requests_per_minute == 5 and updated.rate_limits.tokens_per_minute == 6000
    assert updated.status == D.DEPLOYMENT_STATUS_READY
    assert updated.model == created.model and updated.engine_args == created.engine_args

    # Changing the engine args is a new spec: PENDING again, and the engine reloads it.
    updated = (
        await stubs.deployments.UpdateDeployment(
            D.UpdateDeploymentRequest(
                deployment=D.Deployment(
                    id=created.id,
                    project_id=project_id,
                    engine_args=engine_service_pb2.EngineArgs(max_model_len=512),
                ),
                update_mask=field_mask_pb2.FieldMask(paths=["engine_args"]),
            )
        )
    ).deployment
    assert updated.engine_args.max_model_len == 512 and not updated.engine_args.HasField("dtype")
    assert updated.status == D.DEPLOYMENT_STATUS_PENDING
    await helpers.eventually(
        lambda: _status_is(stubs, project_id, created.id, D.DEPLOYMENT_STATUS_READY),
        what="READY after update",
    )
    # A new generation: a new model name and owner on the engine; the old one is unloaded.
    assert [e.served_model_name for e in updated.endpoints] == [f"{created.id}-g2"]
    assert engine_host.engine.loaded_names().count(f"{created.id}-g1") == 1
    last_load = [c for c in engine_host.engine.load_calls if c.name == f"{created.id}-g2"][-1]
    assert last_load.owner.deployment_id == created.id and last_load.owner.generation == 2
    assert last_load.args.max_model_len == 512
    assert last_load.args.enable_prefix_caching  # from caching=True
    assert f"{created.id}-g1" not in engine_host.engine.models

    # Rename.
    renamed = (
        await stubs.deployments.UpdateDeployment(
            D.UpdateDeploymentRequest(
                deployment=D.Deployment(id=created.id, project_id=project_id, name="chat-v2"),
                update_mask=field_mask_pb2.FieldMask(paths=["name"]),
            )
        )
    ).deployment
    assert renamed.name == "chat-v2" and renamed.status == D.DEPLOYMENT_STATUS_READY

    await stubs.deployments.DeleteDeployment(
        D.DeleteDeploymentRequest(project_id=project_id, deployment_id=created.id)
    )
    await helpers.expect_error(
        stubs.deployments.GetDeployment(
            D.GetDeploymentRequest(project_id=project_id, deployment_id=created.id)
        ),
        grpc.StatusCode.NOT_FOUND,
        "deployment_id",
    )
    await helpers.eventually(
        lambda: _true(f"{created.id}-g2" not in engine_host.engine.models), what="UnloadModel"
    )
    await helpers.expect_error(
        stubs.deployments.DeleteDeployment(
            D.DeleteDeploymentRequest(project_id=project_id, deployment_id=created.id)
        ),
        grpc.StatusCode.NOT_FOUND,
        "deployment_id",
    )


async def _true(value: bool) -> bool:
    return value


async def _status_is(stubs: Any, project_id: str, deployment_id: str, status: int) -> bool:
    got = await stubs.deployments.GetDeployment(
        D.GetDeploymentRequest(project_id=project_id, deployment_id=deployment_id)
    )
    return bool(got.deployment.status == status)


async def test_list_pagination(stubs: Any, helpers: Any, engine_host: Any) -> None:
    project_id = await _project(stubs)
    other_id = await _project(stubs, "other")
    for i in range(5):
        await stubs.deployments.CreateDeployment(
            D.CreateDeploymentRequest(project_id=project_id, deployment=helpers.model_deployment(f"m{i}"))
        )
    await stubs.deployments.CreateDeployment(
        D.CreateDeploymentRequest(project_id=other_id, deployment=helpers.model_deployment("m0"))
    )  # same name, other project: fine
    first = await stubs.deployments.ListDeployments(
        D.ListDeploymentsRequest(project_id=project_id, page_size=2)
    )
    second = await stubs.deployments.ListDeployments(
        D.ListDeploymentsRequest(project_id=project_id, page_size=2, page_token=first.next_page_token)
    )
    third = await stubs.deployments.ListDeployments(
        D.ListDeploymentsRequest(project_id=project_id, page_size=2, page_token=second.next_page_token)
    )
    names = [d.name for page in (first, second, third) for d in page.deployments]
    assert names == ["m0", "m1", "m2", "m3", "m4"] and third.next_page_token == ""
    # A token of one project's listing is refused by another's.
    await helpers.expect_error(
        stubs.deployments.ListDeployments(
            D.ListDeploymentsRequest(project_id=other_id, page_token=first.next_page_token)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "page_token",
    )
    await helpers.expect_error(
        stubs.deployments.ListDeployments(D.ListDeploymentsRequest(project_id="prj_nope")),
        grpc.StatusCode.NOT_FOUND,
        "project_id",
    )


async def test_name_conflicts(stubs: Any, helpers: Any, engine_host: Any) -> None:
    project_id = await _project(stubs)
    first = (
        await stubs.deployments.CreateDeployment(
            D.CreateDeploymentRequest(project_id=project_id, deployment=helpers.model_deployment("dup"))
        )
    ).deployment
    err = await helpers.expect_error(
        stubs.deployments.CreateDeployment(
            D.CreateDeploymentRequest(project_id=project_id, deployment=helpers.model_deployment("dup"))
        ),
        grpc.StatusCode.ALREADY_EXISTS,
        "deployment.name",
    )
    assert err.reason == "ALREADY_EXISTS"
    second = (
        await stubs.deployments.CreateDeployment(
            D.CreateDeploymentRequest(project_id=project_id, deployment=helpers.model_deployment("dup2"))
        )
    ).deployment
    await helpers.expect_error(
        stubs.deployments.UpdateDeployment(
            D.UpdateDeploymentRequest(
                deployment=D.Deployment(id=second.id, project_id=project_id, name="dup"),
                update_mask=field_mask_pb2.FieldMask(paths=["name"]),
            )
        ),
        grpc.StatusCode.ALREADY_EXISTS,
        "deployment.name",
    )
    # Another deployment's model name on an engine cannot be named at all (it is the platform's),
    # and the refusal does not echo the other deployment's id.
    err = await helpers.expect_error(
        stubs.deployments.CreateDeployment(
            D.CreateDeploymentRequest(
                project_id=project_id,
                deployment=helpers.model_deployment(
                    "clash",
                    endpoints=[
                        D.EngineEndpoint(
                            engine_id=first.endpoints[0].engine_id,
                            served_model_name=first.endpoints[0].served_model_name,
                        )
                    ],
                ),
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "deployment.endpoints[0].served_model_name",
    )
    assert first.id not in err.message


async def test_concurrent_creates_one_wins(stubs: Any, engine_host: Any, helpers: Any) -> None:
    project_id = await _project(stubs)

    async def create() -> str:
        try:
            await stubs.deployments.CreateDeployment(
                D.CreateDeploymentRequest(project_id=project_id, deployment=helpers.model_deployment("race"))
            )
            return "ok"
        except grpc.aio.AioRpcError as err:
            return err.code().name

    results = await asyncio.gather(*(create() for _ in range(8)))
    assert sorted(results) == ["ALREADY_EXISTS"] * 7 + ["ok"]
    listed = await stubs.deployments.ListDeployments(D.ListDeploymentsRequest(project_id=project_id))
    assert [d.name for d in listed.deployments] == ["race"]


@pytest.mark.parametrize(
    ("mutate", "code", "param"),
    [
        (lambda d: d.ClearField("model"), grpc.StatusCode.INVALID_ARGUMENT, "deployment.model"),
        (lambda d: setattr(d, "name", ""), grpc.StatusCode.INVALID_ARGUMENT, "deployment.name"),
        (lambda d: setattr(d, "name", "has space"), grpc.StatusCode.INVALID_ARGUMENT, "deployment.name"),
        (
            lambda d: d.model.CopyFrom(D.ModelSource(builtin="gpt-9")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "deployment.model.builtin",
        ),
        (
            lambda d: d.model.CopyFrom(D.ModelSource(local_path="relative/dir")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "deployment.model.local_path",
        ),
        (
            lambda d: d.model.CopyFrom(D.ModelSource(hugging_face_id="not a repo")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "deployment.model.hugging_face_id",
        ),
        (
            lambda d: d.model.CopyFrom(D.ModelSource(registry_model_id="m1")),  # not an id's shape
            grpc.StatusCode.INVALID_ARGUMENT,
            "deployment.model.registry_model_id",
        ),
        (
            lambda d: (d.prompt.CopyFrom(D.PromptTarget(prompt_id="p1")), d.endpoints.add(engine_id="eng_1")),
            grpc.StatusCode.INVALID_ARGUMENT,  # a prompt deployment has no endpoints of its own
            "deployment.endpoints",
        ),
        (lambda d: d.endpoints.add(), grpc.StatusCode.INVALID_ARGUMENT, "deployment.endpoints[0].engine_id"),
        (
            lambda d: d.endpoints.add(address="127.0.0.1:1"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "deployment.endpoints[0].address",
        ),
        (
            lambda d: d.endpoints.add(engine_id="eng_x", address="127.0.0.1:1"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "deployment.endpoints[0].address",
        ),
        (
            lambda d: d.endpoints.add(engine_id="eng_x", served_model_name="m"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "deployment.endpoints[0].served_model_name",
        ),
        (
            lambda d: d.endpoints.extend([D.EngineEndpoint(engine_id="eng_x")] * 2),
            grpc.StatusCode.INVALID_ARGUMENT,
            "deployment.endpoints[1].engine_id",
        ),
        (
            lambda d: d.endpoints.add(engine_id="eng_unknown"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "deployment.endpoints[0].engine_id",
        ),
        (
            lambda d: d.endpoints.add(engine_id="not an id"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "deployment.endpoints[0].engine_id",
        ),
        (
            lambda d: d.engine_args.__setattr__("max_model_len", 0),
            grpc.StatusCode.INVALID_ARGUMENT,
            "deployment.engine_args.max_model_len",
        ),
        (
            lambda d: d.engine_args.__setattr__("dtype", "int3"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "deployment.engine_args.dtype",
        ),
        (
            lambda d: d.engine_args.__setattr__("gpu_memory_utilization", 1.5),
            grpc.StatusCode.INVALID_ARGUMENT,
            "deployment.engine_args.gpu_memory_utilization",
        ),
        (
            lambda d: d.engine_args.__setattr__("pipeline_parallel_size", 0),
            grpc.StatusCode.INVALID_ARGUMENT,
            "deployment.engine_args.pipeline_parallel_size",
        ),
        (
            lambda d: d.engine_args.__setattr__("distributed_executor_backend", "--config=/etc/x"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "deployment.engine_args.distributed_executor_backend",
        ),
        (
            lambda d: d.rate_limits.__setattr__("requests_per_minute", -1),
            grpc.StatusCode.INVALID_ARGUMENT,
            "deployment.rate_limits.requests_per_minute",
        ),
        (
            lambda d: d.scaling.CopyFrom(D.ScalingSettings(min_concurrency=4, max_concurrency=2)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "deployment.scaling.max_concurrency",
        ),
        (lambda d: setattr(d, "runner", 99), grpc.StatusCode.INVALID_ARGUMENT, "deployment.runner"),
        (
            lambda d: setattr(d, "project_id", "prj_other"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "deployment.project_id",
        ),
    ],
)
async def test_validation(
    stubs: Any, helpers: Any, engine_host: Any, mutate: Any, code: grpc.StatusCode, param: str
) -> None:
    project_id = await _project(stubs)
    deployment = helpers.model_deployment("valid-name")
    mutate(deployment)
    await helpers.expect_error(
        stubs.deployments.CreateDeployment(
            D.CreateDeploymentRequest(project_id=project_id, deployment=deployment)
        ),
        code,
        param,
    )
    listed = await stubs.deployments.ListDeployments(D.ListDeploymentsRequest(project_id=project_id))
    assert list(listed.deployments) == []  # nothing half-created


async def test_not_found_and_bad_masks(stubs: Any, helpers: Any, engine_host: Any) -> None:
    project_id = await _project(stubs)
    other_id = await _project(stubs, "other")
    created = (
        await stubs.deployments.CreateDeployment(
            D.CreateDeploymentRequest(project_id=project_id, deployment=helpers.model_deployment("m"))
        )
    ).deployment
    await helpers.expect_error(
        stubs.deployments.CreateDeployment(
            D.CreateDeploymentRequest(project_id="prj_missing", deployment=helpers.model_deployment("m"))
        ),
        grpc.StatusCode.NOT_FOUND,
        "project_id",
    )
    # Another project's id does not reach it.
    await helpers.expect_error(
        stubs.deployments.GetDeployment(
            D.GetDeploymentRequest(project_id=other_id, deployment_id=created.id)
        ),
        grpc.StatusCode.NOT_FOUND,
        "deployment_id",
    )
    await helpers.expect_error(
        stubs.deployments.UpdateDeployment(
            D.UpdateDeploymentRequest(
                deployment=D.Deployment(id=created.id, project_id=project_id),
                update_mask=field_mask_pb2.FieldMask(paths=["status"]),
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "update_mask",
    )
    await helpers.expect_error(
        stubs.deployments.UpdateDeployment(
            D.UpdateDeploymentRequest(
                deployment=D.Deployment(id=created.id, project_id=project_id),
                update_mask=field_mask_pb2.FieldMask(paths=["no_such_field"]),
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "update_mask",
    )
    # Clearing the model through the mask is refused by validation.
    await helpers.expect_error(
        stubs.deployments.UpdateDeployment(
            D.UpdateDeploymentRequest(
                deployment=D.Deployment(id=created.id, project_id=project_id),
                update_mask=field_mask_pb2.FieldMask(paths=["model"]),
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "deployment.model",
    )


async def test_moving_to_another_engine_unloads_the_old_one(
    app: RunningApp, stubs: Any, helpers: Any, engine_host: Any, engine_factory: Any
) -> None:
    project_id = await _project(stubs)
    created = (
        await stubs.deployments.CreateDeployment(
            D.CreateDeploymentRequest(project_id=project_id, deployment=helpers.model_deployment("m"))
        )
    ).deployment
    await helpers.eventually(
        lambda: _status_is(stubs, project_id, created.id, D.DEPLOYMENT_STATUS_READY), what="READY"
    )
    other = engine_factory()
    await other.start()
    other_id = await helpers.register_engine(stubs, other.address, "other")
    updated = (
        await stubs.deployments.UpdateDeployment(
            D.UpdateDeploymentRequest(
                deployment=D.Deployment(
                    id=created.id, project_id=project_id, endpoints=[D.EngineEndpoint(engine_id=other_id)]
                ),
                update_mask=field_mask_pb2.FieldMask(paths=["endpoints"]),
            )
        )
    ).deployment
    # The same model (generation 1) on another engine.
    name = f"{created.id}-g1"
    assert [(e.engine_id, e.address, e.served_model_name) for e in updated.endpoints] == [
        (other_id, other.address, name)
    ]
    await helpers.eventually(
        lambda: _status_is(stubs, project_id, created.id, D.DEPLOYMENT_STATUS_READY),
        what="READY on the other engine",
    )
    await helpers.eventually(lambda: _true(name in engine_host.engine.unload_calls), what="old one unloaded")
    assert name in other.engine.models and name not in engine_host.engine.models


async def test_a_read_modify_write_keeps_the_platforms_values(stubs: Any, helpers: Any) -> None:
    """The output-only endpoint fields may come back unchanged (a GET then a full PATCH)."""
    project_id = await _project(stubs)
    created = (
        await stubs.deployments.CreateDeployment(
            D.CreateDeploymentRequest(project_id=project_id, deployment=helpers.model_deployment("m"))
        )
    ).deployment
    patch = D.Deployment()
    patch.CopyFrom(created)
    patch.rate_limits.requests_per_minute = 9
    updated = (
        await stubs.deployments.UpdateDeployment(D.UpdateDeploymentRequest(deployment=patch))
    ).deployment
    assert updated.rate_limits.requests_per_minute == 9 and updated.endpoints == created.endpoints
    patch.endpoints[0].address = "localhost:1"
    await helpers.expect_error(
        stubs.deployments.UpdateDeployment(D.UpdateDeploymentRequest(deployment=patch)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "deployment.endpoints[0].address",
    )
