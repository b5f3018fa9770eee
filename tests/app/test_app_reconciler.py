"""The engine reconciler against the engine test double, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

from google.protobuf import field_mask_pb2

from app.server import RunningApp
from bud.app.v1 import deployment_pb2, project_pb2
from bud.engine.v1 import engine_service_pb2

D = deployment_pb2


async def _project(stubs: Any) -> str:
    reply = await stubs.projects.CreateProject(
        project_pb2.CreateProjectRequest(project=project_pb2.Project(name="rec"))
    )
    return str(reply.project.id)


async def _get(stubs: Any, project_id: str, deployment_id: str) -> D.Deployment:
    reply = await stubs.deployments.GetDeployment(
        D.GetDeploymentRequest(project_id=project_id, deployment_id=deployment_id)
    )
    return reply.deployment


def _status(stubs: Any, project_id: str, deployment_id: str, status: int) -> Any:
    async def check() -> bool:
        return bool((await _get(stubs, project_id, deployment_id)).status == status)

    return check


def _served(deployment: D.Deployment) -> str:
    """The model's name on its (first) engine, as the platform assigned it."""
    return str(deployment.endpoints[0].served_model_name)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_pending_loading_ready(stubs: Any, helpers: Any, engine_host: Any) -> None:
    project_id = await _project(stubs)
    engine_host.engine.load_delay = 1.0
    started = time.monotonic()
    created = (
        await stubs.deployments.CreateDeployment(
            D.CreateDeploymentRequest(
                project_id=project_id,
                deployment=helpers.model_deployment(
                    "slow",
                    runner=engine_service_pb2.RUNNER_GENERATE,
                    engine_args=engine_service_pb2.EngineArgs(max_model_len=128),
                ),
            )
        )
    ).deployment
    assert time.monotonic() - started < 0.9  # the RPC does not wait for the load
    assert created.status == D.DEPLOYMENT_STATUS_PENDING
    await helpers.eventually(
        _status(stubs, project_id, created.id, D.DEPLOYMENT_STATUS_LOADING), what="LOADING"
    )
    await helpers.eventually(_status(stubs, project_id, created.id, D.DEPLOYMENT_STATUS_READY), what="READY")
    (call,) = [c for c in engine_host.engine.load_calls if c.name == _served(created)]
    assert call.owner == engine_service_pb2.ModelOwner(deployment_id=created.id, generation=1)
    assert call.source == engine_service_pb2.ModelSource(builtin="tiny-llama")
    assert call.runner == engine_service_pb2.RUNNER_GENERATE
    assert call.args.max_model_len == 128
    assert (await _get(stubs, project_id, created.id)).status_message == ""


async def test_failed_load_reports_the_reason(stubs: Any, helpers: Any, engine_host: Any) -> None:
    project_id = await _project(stubs)
    engine_host.engine.failures["acme/broken"] = "config.json not found"
    created = (
        await stubs.deployments.CreateDeployment(
            D.CreateDeploymentRequest(
                project_id=project_id,
                deployment=helpers.model_deployment(
                    "broken", model=D.ModelSource(hugging_face_id="acme/broken")
                ),
            )
        )
    ).deployment
    await helpers.eventually(
        _status(stubs, project_id, created.id, D.DEPLOYMENT_STATUS_FAILED), what="FAILED"
    )
    message = (await _get(stubs, project_id, created.id)).status_message
    assert "config.json not found" in message and created.endpoints[0].engine_id in message
    assert engine_host.address not in message  # engines are named by id
    (call,) = [c for c in engine_host.engine.load_calls if c.name == _served(created)]
    assert call.source == engine_service_pb2.ModelSource(
        hugging_face=engine_service_pb2.HuggingFaceModel(id="acme/broken")
    )
    await asyncio.sleep(1.0)  # several passes: a failed load is not retried every pass
    assert engine_host.engine.loaded_names().count(_served(created)) == 1
    assert (await _get(stubs, project_id, created.id)).status == D.DEPLOYMENT_STATUS_FAILED

    # Fixing the deployment retries at once.
    await stubs.deployments.UpdateDeployment(
        D.UpdateDeploymentRequest(
            deployment=D.Deployment(
                id=created.id, project_id=project_id, model=D.ModelSource(builtin="tiny-llama")
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["model"]),
        )
    )
    await helpers.eventually(_status(stubs, project_id, created.id, D.DEPLOYMENT_STATUS_READY), what="READY")
    assert engine_host.engine.load_calls[-1].source == engine_service_pb2.ModelSource(builtin="tiny-llama")


async def test_unreachable_engine_is_retried_not_failed(
    stubs: Any, helpers: Any, engine_factory: Any
) -> None:
    project_id = await _project(stubs)
    late = engine_factory(_free_port())  # nothing listens there yet
    late_id = await helpers.register_engine(stubs, late.address, "late")
    created = (
        await stubs.deployments.CreateDeployment(
            D.CreateDeploymentRequest(
                project_id=project_id, deployment=helpers.model_deployment("m", late_id)
            )
        )
    ).deployment
    await asyncio.sleep(1.0)  # several passes and retries
    pending = await _get(stubs, project_id, created.id)
    assert pending.status == D.DEPLOYMENT_STATUS_PENDING
    assert pending.status_message == f"engine {late_id}: engine unavailable; retrying"
    await late.start()
    await helpers.eventually(_status(stubs, project_id, created.id, D.DEPLOYMENT_STATUS_READY), what="READY")
    assert late.engine.loaded_names() == [_served(created)]


async def test_engine_restart_is_healed(stubs: Any, helpers: Any, engine_host: Any) -> None:
    project_id = await _project(stubs)
    created = (
        await stubs.deployments.CreateDeployment(
            D.CreateDeploymentRequest(project_id=project_id, deployment=helpers.model_deployment("m"))
        )
    ).deployment
    await helpers.eventually(_status(stubs, project_id, created.id, D.DEPLOYMENT_STATUS_READY), what="READY")
    await engine_host.stop()
    await helpers.eventually(
        _status(stubs, project_id, created.id, D.DEPLOYMENT_STATUS_PENDING),
        what="PENDING while the engine is down",
    )
    assert "engine unavailable" in (await _get(stubs, project_id, created.id)).status_message
    await engine_host.start(fresh=True)  # same port, no models: a restarted engine
    await helpers.eventually(
        _status(stubs, project_id, created.id, D.DEPLOYMENT_STATUS_READY), what="READY again"
    )
    assert _served(created) in engine_host.engine.loaded_names()


async def test_app_restart_adopts_loaded_models(
    start: Any, helpers: Any, engine_host: Any, clients: Any
) -> None:
    first = await start()
    client = await clients(first).login()
    project_id = await _project(client)
    created = (
        await client.deployments.CreateDeployment(
            D.CreateDeploymentRequest(project_id=project_id, deployment=helpers.model_deployment("m"))
        )
    ).deployment
    await helpers.eventually(_status(client, project_id, created.id, D.DEPLOYMENT_STATUS_READY), what="READY")
    await first.stop()
    second: RunningApp = await start()
    client = await clients(second).login()
    await asyncio.sleep(0.8)  # several passes
    assert (await _get(client, project_id, created.id)).status == D.DEPLOYMENT_STATUS_READY
    assert engine_host.engine.loaded_names().count(_served(created)) == 1  # not loaded again
    assert engine_host.engine.unload_calls == []


async def test_force_deleting_a_project_unloads_its_models(
    stubs: Any, helpers: Any, engine_host: Any
) -> None:
    project_id = await _project(stubs)
    created = (
        await stubs.deployments.CreateDeployment(
            D.CreateDeploymentRequest(project_id=project_id, deployment=helpers.model_deployment("m"))
        )
    ).deployment
    await helpers.eventually(_status(stubs, project_id, created.id, D.DEPLOYMENT_STATUS_READY), what="READY")
    await stubs.projects.DeleteProject(project_pb2.DeleteProjectRequest(project_id=project_id, force=True))

    async def unloaded() -> bool:
        return _served(created) not in engine_host.engine.models

    await helpers.eventually(unloaded, what="UnloadModel")
    assert _served(created) in engine_host.engine.unload_calls


async def test_retry_state_of_deleted_deployments_is_dropped(
    app: RunningApp, stubs: Any, helpers: Any, engine_factory: Any
) -> None:
    """A dead engine nobody uses any more must not keep the loop spinning on its backoff."""
    project_id = await _project(stubs)
    dead = engine_factory(_free_port())
    dead_id = await helpers.register_engine(stubs, dead.address, "dead")
    created = (
        await stubs.deployments.CreateDeployment(
            D.CreateDeploymentRequest(
                project_id=project_id, deployment=helpers.model_deployment("m", dead_id)
            )
        )
    ).deployment
    await asyncio.sleep(0.6)
    assert "engine unavailable" in (await _get(stubs, project_id, created.id)).status_message
    await stubs.deployments.DeleteDeployment(
        D.DeleteDeploymentRequest(project_id=project_id, deployment_id=created.id)
    )
    await asyncio.sleep(1.0)  # the backoff (at most 0.4 s here) has long fallen due
    assert app.reconciler._next_wait() > 0.1  # i.e. not the 50 ms floor of a due retry
