"""RoutingService.WatchRouting on SQLite and PostgreSQL: snapshot, then changes."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from google.protobuf import field_mask_pb2

from app.db.session import Database
from app.server import RunningApp
from app.services.projects import create_project
from auth.keys import hash_key
from bud.app.v1 import deployment_pb2, project_pb2
from bud.auth.v1 import auth_pb2, routing_pb2

HASH_SECRET = "test-key-hash-secret"


async def _next(call: Any, timeout: float = 5.0) -> routing_pb2.WatchRoutingResponse:
    message = await asyncio.wait_for(call.read(), timeout)
    assert message is not grpc.aio.EOF, "stream ended"
    return message


async def _next_matching(call: Any, check: Any, timeout: float = 10.0) -> routing_pb2.WatchRoutingResponse:
    """Reads until a message satisfies `check` (the reconciler's status changes come in between)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        message = await _next(call, max(0.1, deadline - asyncio.get_running_loop().time()))
        assert not message.reset
        if check(message):
            return message


async def test_snapshot_then_changes(
    capsys: Any, app: RunningApp, stubs: Any, helpers: Any, engine_host: Any
) -> None:
    bootstrap_secret = next(
        line.split("=", 1)[1]
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("OPENAI_API_KEY=")
    )
    call = stubs.routing.WatchRouting(routing_pb2.WatchRoutingRequest(gateway_id="gw-test"))
    snapshot = await _next(call)
    assert snapshot.reset and snapshot.revision > 0
    assert [p.name for p in snapshot.upsert_projects] == ["default"]
    assert sorted(d.name for d in snapshot.upsert_deployments) == ["all-minilm-l6-v2", "tiny-llama"]
    (key,) = snapshot.upsert_keys
    assert key.key_hash == hash_key(bootstrap_secret, HASH_SECRET)
    assert bootstrap_secret.startswith(f"bud-{key.prefix}-")
    project_id = snapshot.upsert_projects[0].id
    for deployment in snapshot.upsert_deployments:
        assert deployment.project_id == project_id and deployment.create_time.seconds > 0
        assert [e.address for e in deployment.endpoints] == [engine_host.address]
        assert deployment.endpoints[0].served_model_name == f"{deployment.id}-g1"
    revision = snapshot.revision

    # A new key, a change of its limits, then its revocation: upserts, then a delete.
    created = await stubs.api_keys.CreateApiKey(
        auth_pb2.CreateApiKeyRequest(project_id=project_id, name="gw", requests_per_minute=3)
    )
    message = await _next_matching(call, lambda m: len(m.upsert_keys) > 0)
    assert [k.id for k in message.upsert_keys] == [created.api_key.id] and message.revision > revision
    assert (message.upsert_keys[0].requests_per_minute, message.upsert_keys[0].tokens_per_minute) == (3, 0)
    await stubs.api_keys.UpdateApiKey(
        auth_pb2.UpdateApiKeyRequest(
            api_key=auth_pb2.ApiKey(id=created.api_key.id, project_id=project_id, tokens_per_minute=500),
            update_mask=field_mask_pb2.FieldMask(paths=["tokens_per_minute"]),
        )
    )
    message = await _next_matching(call, lambda m: len(m.upsert_keys) > 0)
    assert [(k.id, k.requests_per_minute, k.tokens_per_minute) for k in message.upsert_keys] == [
        (created.api_key.id, 3, 500)
    ]
    await stubs.api_keys.RevokeApiKey(
        auth_pb2.RevokeApiKeyRequest(project_id=project_id, api_key_id=created.api_key.id)
    )
    message = await _next_matching(call, lambda m: len(m.delete_key_ids) > 0)
    assert list(message.delete_key_ids) == [created.api_key.id] and not message.upsert_keys

    # A new deployment appears, not ready, then ready once the engine double has loaded it.
    deployment = (
        await stubs.deployments.CreateDeployment(
            deployment_pb2.CreateDeploymentRequest(
                project_id=project_id,
                deployment=helpers.model_deployment(
                    "fresh", rate_limits=deployment_pb2.RateLimits(requests_per_minute=7), caching=True
                ),
            )
        )
    ).deployment
    message = await _next_matching(call, lambda m: any(d.id == deployment.id for d in m.upsert_deployments))
    (route,) = [d for d in message.upsert_deployments if d.id == deployment.id]
    assert route.name == "fresh" and route.requests_per_minute == 7 and route.project_id == project_id
    assert route.caching  # the gateways' response cache follows the deployment's switch
    if not route.ready:
        message = await _next_matching(
            call, lambda m: any(d.id == deployment.id and d.ready for d in m.upsert_deployments)
        )
    # A changed max_concurrency reaches the gateways like a rate limit (they enforce it live).
    await stubs.deployments.UpdateDeployment(
        deployment_pb2.UpdateDeploymentRequest(
            deployment=deployment_pb2.Deployment(
                id=deployment.id,
                project_id=project_id,
                scaling=deployment_pb2.ScalingSettings(max_concurrency=4),
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["scaling.max_concurrency"]),
        )
    )
    message = await _next_matching(
        call, lambda m: any(d.id == deployment.id and d.max_concurrency == 4 for d in m.upsert_deployments)
    )
    # Deleting it is a delete.
    await stubs.deployments.DeleteDeployment(
        deployment_pb2.DeleteDeploymentRequest(project_id=project_id, deployment_id=deployment.id)
    )
    message = await _next_matching(call, lambda m: len(m.delete_deployment_ids) > 0)
    assert list(message.delete_deployment_ids) == [deployment.id]
    call.cancel()


async def test_resume(app: RunningApp, stubs: Any) -> None:
    first = stubs.routing.WatchRouting(routing_pb2.WatchRoutingRequest())
    snapshot = await _next(first)
    first.cancel()
    await _settle(app, stubs)
    current = await app.db.revision()

    # Resuming at the current revision: no snapshot, an empty acknowledgement, then the next change.
    resumed = stubs.routing.WatchRouting(routing_pb2.WatchRoutingRequest(since_revision=current))
    ack = await _next(resumed)
    assert ack == routing_pb2.WatchRoutingResponse(revision=current)
    project = (
        await stubs.projects.CreateProject(
            project_pb2.CreateProjectRequest(project=project_pb2.Project(name="later"))
        )
    ).project
    message = await _next(resumed)
    assert not message.reset and message.revision > current
    assert [p.id for p in message.upsert_projects] == [project.id]
    assert not message.upsert_keys and not message.upsert_deployments
    resumed.cancel()

    # Any other revision gets a snapshot (no history is kept).
    for since in (snapshot.revision - 1 if snapshot.revision > 1 else 1, current + 1000):
        stale = stubs.routing.WatchRouting(routing_pb2.WatchRoutingRequest(since_revision=since))
        message = await _next(stale)
        assert message.reset and {p.name for p in message.upsert_projects} == {"default", "later"}
        stale.cancel()


async def _settle(app: RunningApp, stubs: Any) -> None:
    """Waits until the bootstrap's deployments are READY, so the revision stops moving."""

    async def settled() -> bool:
        listed = await stubs.deployments.ListDeployments(
            deployment_pb2.ListDeploymentsRequest(project_id=app.bootstrapped.project_id)
        )
        return all(d.status == deployment_pb2.DEPLOYMENT_STATUS_READY for d in listed.deployments)

    deadline = asyncio.get_running_loop().time() + 10
    while not await settled():
        assert asyncio.get_running_loop().time() < deadline, "bootstrap deployments never READY"
        await asyncio.sleep(0.05)


async def test_changes_from_another_process_are_polled(app: RunningApp, stubs: Any) -> None:
    call = stubs.routing.WatchRouting(routing_pb2.WatchRoutingRequest())
    await _next(call)
    # A second Database is what another app replica would be: no in-process notification.
    other = Database(app.settings.resolved_database_url())
    try:
        async with other.mutation() as session:
            row = await create_project(session, "elsewhere")
    finally:
        await other.dispose()
    message = await _next_matching(call, lambda m: len(m.upsert_projects) > 0, timeout=3)
    assert [p.id for p in message.upsert_projects] == [row.id]
    call.cancel()


async def test_streams_end_when_the_app_stops(app: RunningApp, stubs: Any) -> None:
    call = stubs.routing.WatchRouting(routing_pb2.WatchRoutingRequest())
    await _next(call)
    started = asyncio.get_running_loop().time()
    await app.stop(grace=5)
    while True:  # status changes may still be queued; then the stream ends
        try:
            message = await asyncio.wait_for(call.read(), 5)
        except grpc.aio.AioRpcError as err:  # also acceptable: the server went away first
            assert err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
            break
        if message is grpc.aio.EOF:
            break
    assert asyncio.get_running_loop().time() - started < 3  # well within the grace period
