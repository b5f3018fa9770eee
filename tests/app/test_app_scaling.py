"""Replicas, autoscaling, draining, scale to zero and wake (issue 15, the control plane's side), on
SQLite and PostgreSQL, with two instant engines. The test plays the gateways: it sends
ReportLoad and WakeDeployment over the app's gRPC with a gateway's service identity (the test
process's certificate), as `gateway/` does every few seconds."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import field_mask_pb2, timestamp_pb2
from sqlalchemy import select
from sqlalchemy import text as sa_text

from app.control.load import LoadBoard
from app.db import models
from app.db.migrate import upgrade_database
from app.db.session import Database
from bud.app.v1 import deployment_pb2 as D
from bud.app.v1 import engine_registry_pb2, project_pb2
from bud.auth.v1 import routing_pb2
from tests.app.test_edge_rest import rest  # noqa: F401  (fixture)

# Short windows so that every decision shows within a test.
FAST_SCALING: dict[str, Any] = {
    "default_model_name": "",  # no first-start deployments: only the test's
    "default_embedding_model_name": "",
    "default_image_model_name": "",
    "min_idle_timeout_seconds": 1,
    "scale_up_window_seconds": 0.3,
    "scale_down_window_seconds": 0.6,
    "drain_timeout_seconds": 30.0,
    "load_report_ttl_seconds": 3.0,
}
OUTSTANDING = "outstanding requests per ready replica"


@pytest.fixture
async def two_engines(start: Any, clients: Any, engine_host: Any, engine_factory: Any, helpers: Any) -> Any:
    """An app with fast scaling settings and two registered instant engines: the configured one
    (registered by the app as `default`) and a second."""
    app = await start(**FAST_SCALING)
    stubs = await clients(app).login()
    second = engine_factory()
    await second.start()
    second_id = await helpers.register_engine(stubs, second.address, "second")
    engines = (await stubs.engines.ListEngines(engine_registry_pb2.ListEnginesRequest())).engines
    first_id = next(e.id for e in engines if e.address == engine_host.address)
    project = await stubs.projects.CreateProject(
        project_pb2.CreateProjectRequest(project=project_pb2.Project(name="scaling"))
    )

    class Setup:
        pass

    setup = Setup()
    setup.app, setup.stubs, setup.project_id = app, stubs, project.project.id
    setup.first, setup.second = engine_host, second
    setup.first_id, setup.second_id = first_id, second_id
    return setup


async def _create(
    s: Any, helpers: Any, name: str, scaling: D.ScalingSettings, engine_id: str = ""
) -> D.Deployment:
    reply = await s.stubs.deployments.CreateDeployment(
        D.CreateDeploymentRequest(
            project_id=s.project_id,
            deployment=helpers.model_deployment(name, engine_id or s.first_id, scaling=scaling),
        )
    )
    return reply.deployment


async def _get(s: Any, deployment_id: str) -> D.Deployment:
    reply = await s.stubs.deployments.GetDeployment(
        D.GetDeploymentRequest(project_id=s.project_id, deployment_id=deployment_id)
    )
    return reply.deployment


async def _events(s: Any, deployment_id: str, **kwargs: Any) -> D.ListScalingEventsResponse:
    return await s.stubs.deployments.ListScalingEvents(
        D.ListScalingEventsRequest(project_id=s.project_id, deployment_id=deployment_id, **kwargs)
    )


def _until(s: Any, helpers: Any, deployment_id: str, check: Any, what: str, timeout: float = 15.0) -> Any:
    async def poll() -> bool:
        return bool(check(await _get(s, deployment_id)))

    return helpers.eventually(poll, timeout=timeout, what=what)


def _load(
    deployment: D.Deployment, in_flight: int, endpoints: dict[str, int] | None = None, queued: int = 0
) -> routing_pb2.DeploymentLoad:
    now = timestamp_pb2.Timestamp()
    now.GetCurrentTime()
    served = f"{deployment.id}-g1"
    return routing_pb2.DeploymentLoad(
        deployment_id=deployment.id,
        in_flight=in_flight,
        queued=queued,
        requests_total=in_flight,
        last_request_time=now,
        endpoints=[
            routing_pb2.EndpointLoad(address=a, served_model_name=served, in_flight=n)
            for a, n in (endpoints or {}).items()
        ],
    )


@contextlib.asynccontextmanager
async def _reporting(s: Any, loads: list[Any]) -> AsyncIterator[None]:
    """Reports `loads[0]` (a DeploymentLoad, replaceable while running) every 0.1 s, as a gateway
    whose last request has just arrived."""

    async def run() -> None:
        while True:
            load = routing_pb2.DeploymentLoad()
            load.CopyFrom(loads[0])
            load.last_request_time.GetCurrentTime()  # requests keep arriving
            await s.stubs.routing.ReportLoad(
                routing_pb2.ReportLoadRequest(gateway_id="gw-test", deployments=[load])
            )
            await asyncio.sleep(0.1)

    task = asyncio.create_task(run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_load_adds_a_replica_on_the_second_engine_and_idleness_drains_it(
    two_engines: Any, helpers: Any
) -> None:
    s = two_engines
    created = await _create(
        s, helpers, "auto", D.ScalingSettings(autoscale=True, min_replicas=1, max_replicas=2)
    )
    await _until(s, helpers, created.id, lambda d: d.status == D.DEPLOYMENT_STATUS_READY, "ready")
    served = f"{created.id}-g1"
    loads = [_load(created, 20, {s.first.address: 20})]
    async with _reporting(s, loads):
        await _until(
            s,
            helpers,
            created.id,
            lambda d: d.desired_replicas == 2 and d.ready_replicas == 2,
            "two replicas",
        )
        assert served in s.second.engine.models  # loaded on the second engine
        # The replica on the second engine is in flight now; the load falls.
        loads[0] = _load(created, 1, {s.second.address: 1})
        await _until(s, helpers, created.id, lambda d: d.desired_replicas == 1, "scale-down decision")
        # Draining: out of routing at once, still loaded while a request is in flight on it.
        deployment = await _get(s, created.id)
        assert deployment.ready_replicas == 1
        await asyncio.sleep(0.5)
        assert served in s.second.engine.models, "a replica with a request in flight was unloaded"
        loads[0] = _load(created, 0, {})
        await helpers.eventually(
            lambda: _true(served not in s.second.engine.models), what="drained replica unloaded"
        )
    assert served in s.first.engine.models  # the tenant's replica stays
    events = (await _events(s, created.id)).events
    actions = [e.action for e in events]
    assert actions[:2] == [D.SCALING_ACTION_SCALE_DOWN, D.SCALING_ACTION_SCALE_UP]
    up = events[1]
    assert (up.from_replicas, up.to_replicas, up.engine_id) == (1, 2, s.second_id)
    assert OUTSTANDING in up.reason and "> 8" in up.reason
    assert events[0].engine_id == s.second_id and "< 2" in events[0].reason


async def test_engine_stats_drive_scale_up(two_engines: Any, helpers: Any) -> None:
    s = two_engines
    created = await _create(s, helpers, "kv", D.ScalingSettings(autoscale=True, max_replicas=2))
    await _until(s, helpers, created.id, lambda d: d.status == D.DEPLOYMENT_STATUS_READY, "ready")
    # The engine's answer to GetStats, as a busy vLLM would give it (the instant engine's are zeros).
    client = s.app.reconciler.engines
    original = client.get_stats

    async def busy(address: str) -> Any:
        reply = await original(address)
        for model in reply.models:
            model.kv_cache_usage = 0.97
        return reply

    client.get_stats = busy
    await _until(s, helpers, created.id, lambda d: d.ready_replicas == 2, "scale-up on KV-cache usage")
    events = (await _events(s, created.id)).events
    assert events[0].action == D.SCALING_ACTION_SCALE_UP and "KV-cache usage 0.97 > 0.9" in events[0].reason


async def test_no_scale_down_while_the_added_replica_is_still_loading(two_engines: Any, helpers: Any) -> None:
    """A real engine loads for a minute or more, longer than the scale-down window: the replica a
    scale-up added must not be removed before it ever served (it would be added again, and so on,
    never serving: seen with two vLLM engines, tests/app/test_autoscale_two_engines.py)."""
    s = two_engines
    s.second.engine.load_delay = 3.0
    created = await _create(
        s, helpers, "slow", D.ScalingSettings(autoscale=True, min_replicas=1, max_replicas=2)
    )
    await _until(s, helpers, created.id, lambda d: d.status == D.DEPLOYMENT_STATUS_READY, "ready")
    served = f"{created.id}-g1"
    loads = [_load(created, 20, {s.first.address: 20})]
    async with _reporting(s, loads):
        await _until(s, helpers, created.id, lambda d: d.desired_replicas == 2, "a scale-up decision")
        loads[0] = _load(created, 0, {})  # the load is gone while the added replica loads
        await asyncio.sleep(2.0)  # more than three scale-down windows (0.6 s)
        deployment = await _get(s, created.id)
        assert (deployment.desired_replicas, deployment.ready_replicas) == (2, 1)
        assert served in s.second.engine.models and not s.second.engine.unload_calls
        # Loaded, and still quiet: now it goes.
        await _until(s, helpers, created.id, lambda d: d.desired_replicas == 1, "the scale-down", timeout=20)
        await helpers.eventually(lambda: _true(served not in s.second.engine.models), what="unloaded")
    actions = [e.action for e in (await _events(s, created.id)).events]
    assert actions == [D.SCALING_ACTION_SCALE_DOWN, D.SCALING_ACTION_SCALE_UP], actions
    assert len(s.second.engine.load_calls) == 1


async def test_no_report_is_no_signal_to_scale_down(two_engines: Any, helpers: Any) -> None:
    """A gateway too busy to report within the reports' TTL (or gone) is forgotten: the load is
    then unknown, not zero, and a replica added for it stays."""
    s = two_engines
    created = await _create(
        s, helpers, "blind", D.ScalingSettings(autoscale=True, min_replicas=1, max_replicas=2)
    )
    await _until(s, helpers, created.id, lambda d: d.status == D.DEPLOYMENT_STATUS_READY, "ready")
    async with _reporting(s, [_load(created, 20, {s.first.address: 20})]):
        await _until(s, helpers, created.id, lambda d: d.ready_replicas == 2, "two replicas")
    await asyncio.sleep(3.0 + 2.0)  # the reports' TTL (3 s), then more than three scale-down windows
    deployment = await _get(s, created.id)
    assert (deployment.desired_replicas, deployment.ready_replicas) == (2, 2)
    async with _reporting(s, [_load(created, 0, {})]):  # reports again, quiet: now it goes
        await _until(s, helpers, created.id, lambda d: d.desired_replicas == 1, "the scale-down")


async def test_scale_to_zero_after_idle_and_wake(two_engines: Any, helpers: Any) -> None:
    s = two_engines
    created = await _create(s, helpers, "sleepy", D.ScalingSettings(min_replicas=0, idle_timeout_seconds=1))
    served = f"{created.id}-g1"
    await _until(s, helpers, created.id, lambda d: d.status == D.DEPLOYMENT_STATUS_READY, "ready")
    await _until(
        s, helpers, created.id, lambda d: d.status == D.DEPLOYMENT_STATUS_SCALED_TO_ZERO, "scaled to zero"
    )
    deployment = await _get(s, created.id)
    assert (deployment.desired_replicas, deployment.ready_replicas) == (0, 0)
    assert "no request" in deployment.status_message
    await helpers.eventually(lambda: _true(served not in s.first.engine.models), what="unloaded")
    # The routing feed follows the database a moment later (on PostgreSQL, by LISTEN/NOTIFY).
    await _route_until(s, created.id, lambda r: r.cold_start and not r.ready and not r.endpoints)
    # Still listed: a request wakes it.
    woke = await s.stubs.routing.WakeDeployment(
        routing_pb2.WakeDeploymentRequest(deployment_id=created.id, gateway_id="gw-test")
    )
    again = await s.stubs.routing.WakeDeployment(routing_pb2.WakeDeploymentRequest(deployment_id=created.id))
    assert woke.woke and not again.woke  # idempotent
    await _until(s, helpers, created.id, lambda d: d.status == D.DEPLOYMENT_STATUS_READY, "ready again")
    assert served in s.first.engine.models
    await _route_until(s, created.id, lambda r: r.ready and not r.cold_start and len(r.endpoints) == 1)
    events = (await _events(s, created.id)).events
    assert [e.action for e in events[:2]] == [D.SCALING_ACTION_WAKE, D.SCALING_ACTION_SCALE_TO_ZERO]
    assert "gw-test" in events[0].reason and (events[0].from_replicas, events[0].to_replicas) == (0, 1)
    assert "idle timeout 1 s" in events[1].reason and events[1].to_replicas == 0


async def test_requests_keep_a_deployment_awake(two_engines: Any, helpers: Any) -> None:
    s = two_engines
    busy = await _create(s, helpers, "busy", D.ScalingSettings(min_replicas=0, idle_timeout_seconds=1))
    loads = [_load(busy, 0, {})]
    async with _reporting(s, loads):
        warm = await _create(
            s, helpers, "warm", D.ScalingSettings(min_replicas=0, idle_timeout_seconds=1, min_concurrency=1)
        )
        for d in (busy, warm):
            await _until(s, helpers, d.id, lambda x: x.status == D.DEPLOYMENT_STATUS_READY, "ready")
        await asyncio.sleep(2.4)  # twice the idle timeout, with requests arriving
        for d in (busy, warm):  # min_concurrency > 0 never scales to zero
            assert (await _get(s, d.id)).status == D.DEPLOYMENT_STATUS_READY, d.name
    await _until(
        s, helpers, busy.id, lambda x: x.status == D.DEPLOYMENT_STATUS_SCALED_TO_ZERO, "idle at last"
    )
    assert (await _get(s, warm.id)).status == D.DEPLOYMENT_STATUS_READY


async def test_a_live_settings_change_takes_effect(two_engines: Any, helpers: Any) -> None:
    s = two_engines
    created = await _create(s, helpers, "live", D.ScalingSettings())
    await _until(s, helpers, created.id, lambda d: d.status == D.DEPLOYMENT_STATUS_READY, "ready")
    assert (await _get(s, created.id)).desired_replicas == 1
    patch = D.Deployment(
        id=created.id, project_id=s.project_id, scaling=D.ScalingSettings(min_replicas=2, max_replicas=2)
    )
    updated = await s.stubs.deployments.UpdateDeployment(
        D.UpdateDeploymentRequest(
            deployment=patch,
            update_mask=field_mask_pb2.FieldMask(paths=["scaling.min_replicas", "scaling.max_replicas"]),
        )
    )
    assert updated.deployment.scaling.min_replicas == 2
    assert updated.deployment.status == D.DEPLOYMENT_STATUS_READY  # no reload, no restart
    await _until(s, helpers, created.id, lambda d: d.ready_replicas == 2, "second replica")
    assert f"{created.id}-g1" in s.second.engine.models
    events = (await _events(s, created.id)).events
    assert events[0].action == D.SCALING_ACTION_SCALE_UP and events[0].reason == "min_replicas 2"
    # Back to one: the control plane's replica is drained (no gateway reports: drained) and goes.
    await s.stubs.deployments.UpdateDeployment(
        D.UpdateDeploymentRequest(
            deployment=D.Deployment(id=created.id, project_id=s.project_id, scaling=D.ScalingSettings()),
            update_mask=field_mask_pb2.FieldMask(paths=["scaling"]),
        )
    )
    await helpers.eventually(
        lambda: _true(f"{created.id}-g1" not in s.second.engine.models), what="replica removed"
    )
    assert (await _get(s, created.id)).ready_replicas == 1
    # Raising min_replicas of a deployment scaled to zero wakes it.
    sleepy = await _create(s, helpers, "sleepy", D.ScalingSettings(min_replicas=0, idle_timeout_seconds=1))
    await _until(s, helpers, sleepy.id, lambda d: d.status == D.DEPLOYMENT_STATUS_SCALED_TO_ZERO, "zero")
    await s.stubs.deployments.UpdateDeployment(
        D.UpdateDeploymentRequest(
            deployment=D.Deployment(
                id=sleepy.id, project_id=s.project_id, scaling=D.ScalingSettings(min_replicas=1)
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["scaling.min_replicas"]),
        )
    )
    await _until(s, helpers, sleepy.id, lambda d: d.status == D.DEPLOYMENT_STATUS_READY, "woken by settings")
    assert (await _events(s, sleepy.id)).events[0].reason == "min_replicas 1"


@pytest.mark.parametrize(
    ("scaling", "endpoints", "param"),
    [
        (D.ScalingSettings(min_replicas=-1), 1, "deployment.scaling.min_replicas"),
        (D.ScalingSettings(max_replicas=-2), 1, "deployment.scaling.max_replicas"),
        (D.ScalingSettings(max_replicas=0), 1, "deployment.scaling.max_replicas"),
        (D.ScalingSettings(min_replicas=3, max_replicas=2), 1, "deployment.scaling.min_replicas"),
        (D.ScalingSettings(min_replicas=9), 1, "deployment.scaling.min_replicas"),  # above the default max 4
        (D.ScalingSettings(idle_timeout_seconds=-1), 1, "deployment.scaling.idle_timeout_seconds"),
        (D.ScalingSettings(idle_timeout_seconds=5), 1, "deployment.scaling.idle_timeout_seconds"),  # floor 10
        (D.ScalingSettings(min_concurrency=4, max_concurrency=2), 1, "deployment.scaling.max_concurrency"),
        (D.ScalingSettings(min_concurrency=-1), 1, "deployment.scaling.min_concurrency"),
        (D.ScalingSettings(min_concurrency=40, max_replicas=2), 1, "deployment.scaling.min_concurrency"),
        (D.ScalingSettings(max_replicas=1), 2, "deployment.endpoints"),
    ],
)
async def test_bad_scaling_settings_name_the_field(
    stubs: Any, helpers: Any, engine_host: Any, engine_factory: Any, scaling: Any, endpoints: int, param: str
) -> None:
    second = engine_factory()
    await second.start()
    other = await helpers.register_engine(stubs, second.address, "other")
    projects = await stubs.projects.ListProjects(project_pb2.ListProjectsRequest())
    project_id = projects.projects[0].id
    deployment = helpers.model_deployment("bad", scaling=scaling)
    listed = await stubs.deployments.ListDeployments(D.ListDeploymentsRequest(project_id=project_id))
    first = listed.deployments[0].endpoints[0].engine_id
    deployment.endpoints.extend(D.EngineEndpoint(engine_id=e) for e in [first, other][:endpoints])
    await helpers.expect_error(
        stubs.deployments.CreateDeployment(
            D.CreateDeploymentRequest(project_id=project_id, deployment=deployment)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        param,
    )
    # The same through UpdateDeployment, on a live deployment.
    live = listed.deployments[0]
    patch = D.Deployment(id=live.id, project_id=project_id, scaling=scaling)
    if endpoints == 1:
        await helpers.expect_error(
            stubs.deployments.UpdateDeployment(
                D.UpdateDeploymentRequest(
                    deployment=patch, update_mask=field_mask_pb2.FieldMask(paths=["scaling"])
                )
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            param,
        )


async def test_scaling_events_page_newest_first_and_need_a_role(
    two_engines: Any, helpers: Any, clients: Any
) -> None:
    s = two_engines
    created = await _create(s, helpers, "paged", D.ScalingSettings(min_replicas=0, idle_timeout_seconds=1))
    for _ in range(2):  # two sleeps and two wakes
        await _until(s, helpers, created.id, lambda d: d.status == D.DEPLOYMENT_STATUS_SCALED_TO_ZERO, "zero")
        await s.stubs.routing.WakeDeployment(routing_pb2.WakeDeploymentRequest(deployment_id=created.id))
        await _until(s, helpers, created.id, lambda d: d.status == D.DEPLOYMENT_STATUS_READY, "ready")
    seen, token = [], ""
    while True:
        page = await _events(s, created.id, page_size=1, page_token=token)
        seen.extend(page.events)
        token = page.next_page_token
        if not token:
            break
    assert [e.action for e in seen] == [
        D.SCALING_ACTION_WAKE,
        D.SCALING_ACTION_SCALE_TO_ZERO,
        D.SCALING_ACTION_WAKE,
        D.SCALING_ACTION_SCALE_TO_ZERO,
    ]
    assert [e.id for e in seen] == sorted((e.id for e in seen), reverse=True)
    assert all(e.deployment_id == created.id and e.HasField("create_time") for e in seen)
    await helpers.expect_error(_events(s, "dep_000000000000000000000000"), grpc.StatusCode.NOT_FOUND)
    await helpers.expect_error(
        clients(s.app).deployments.ListScalingEvents(
            D.ListScalingEventsRequest(project_id=s.project_id, deployment_id=created.id)
        ),
        grpc.StatusCode.UNAUTHENTICATED,
    )


async def test_report_and_wake_check_their_input(two_engines: Any, helpers: Any) -> None:
    s = two_engines
    await helpers.expect_error(
        s.stubs.routing.ReportLoad(routing_pb2.ReportLoadRequest()),
        grpc.StatusCode.INVALID_ARGUMENT,
        "gateway_id",
    )
    await helpers.expect_error(
        s.stubs.routing.WakeDeployment(routing_pb2.WakeDeploymentRequest(deployment_id="dep_nope")),
        grpc.StatusCode.NOT_FOUND,
    )
    created = await _create(s, helpers, "awake", D.ScalingSettings())
    reply = await s.stubs.routing.WakeDeployment(routing_pb2.WakeDeploymentRequest(deployment_id=created.id))
    assert not reply.woke  # not scaled to zero: left as it is


def test_the_load_board_sums_live_gateways_and_forgets_silent_ones() -> None:
    clock = [100.0]
    board = LoadBoard(ttl=5.0, clock=lambda: clock[0])
    now = datetime.now(UTC)
    load = routing_pb2.DeploymentLoad(
        deployment_id="d",
        in_flight=2,
        queued=1,
        endpoints=[routing_pb2.EndpointLoad(address="a:1", served_model_name="d-g1", in_flight=2)],
    )
    board.report(routing_pb2.ReportLoadRequest(gateway_id="g1", deployments=[load]), now)
    clock[0] = 103.0
    board.report(routing_pb2.ReportLoadRequest(gateway_id="g2", deployments=[load]), now)
    total = board.load("d")
    assert (total.in_flight, total.queued, total.endpoints) == (4, 2, {("a:1", "d-g1"): 4})
    assert not board.drained("a:1", "d-g1", since=0.0)
    clock[0] = 106.0  # g1 silent for 6 s: forgotten
    assert board.load("d").in_flight == 2 and board.gateways == 1
    # A drain counts only reports received after it began.
    assert not board.drained("a:1", "d-g1", since=105.0)
    board.report(routing_pb2.ReportLoadRequest(gateway_id="g2"), now)
    assert board.drained("a:1", "d-g1", since=105.0)


async def _route(s: Any, deployment_id: str) -> routing_pb2.RouteDeployment:
    call = s.stubs.routing.WatchRouting(routing_pb2.WatchRoutingRequest(gateway_id="gw-test"))
    try:
        first = await asyncio.wait_for(call.read(), 5)
    finally:
        call.cancel()
    return next(d for d in first.upsert_deployments if d.id == deployment_id)


async def _route_until(s: Any, deployment_id: str, check: Any, timeout: float = 15.0) -> None:
    """Waits until the routing feed's snapshot of the deployment passes `check`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        route = await _route(s, deployment_id)
        if check(route):
            return
        assert asyncio.get_running_loop().time() < deadline, f"the routing feed never showed it: {route}"
        await asyncio.sleep(0.1)


async def _true(value: bool) -> bool:
    return value


async def test_bad_scaling_settings_answer_400_over_rest(rest: httpx.AsyncClient, app: Any) -> None:  # noqa: F811
    projects = (await rest.get("/v1/projects")).json()["projects"]
    project_id = projects[0]["id"]
    r = await rest.post(
        f"/v1/projects/{project_id}/deployments",
        json={
            "name": "bad",
            "model": {"builtin": "tiny-llama"},
            "scaling": {"min_replicas": 3, "max_replicas": 2},
        },
    )
    assert r.status_code == 400, r.text
    fields = [v["field"] for d in r.json()["details"] if "fieldViolations" in d for v in d["fieldViolations"]]
    assert fields == ["deployment.scaling.min_replicas"]
    deployments = (await rest.get(f"/v1/projects/{project_id}/deployments")).json()["deployments"]
    r = await rest.get(f"/v1/projects/{project_id}/deployments/{deployments[0]['id']}/scaling_events")
    assert r.status_code == 200 and r.json().get("events", []) == [], r.text


async def test_min_concurrency_keeps_enough_replicas_warm(two_engines: Any, helpers: Any) -> None:
    s = two_engines
    created = await _create(s, helpers, "warm", D.ScalingSettings(min_concurrency=9, max_replicas=2))
    await _until(s, helpers, created.id, lambda d: d.ready_replicas == 2, "two replicas for 9 requests of 8")
    deployment = await _get(s, created.id)
    assert deployment.desired_replicas == 2 and len(deployment.endpoints) == 1  # the tenant's only
    events = (await _events(s, created.id)).events
    assert events[0].reason == "min_concurrency 9 needs 2 replicas" and events[0].engine_id == s.second_id


async def test_upgrade_to_0010_keeps_serving_replicas_ready(database_url: str) -> None:
    """A READY deployment from before replicas: its endpoints are ready replicas, its desired
    count is its endpoints', its bounds unset (the defaults apply)."""
    db = Database(database_url)
    now = datetime.now(UTC).replace(tzinfo=None)
    try:
        await upgrade_database(db, "0009_cached_usage")
        async with db.write_engine.begin() as conn:
            await conn.execute(
                sa_text("INSERT INTO projects VALUES ('prj_old', 'old', '', :now, :now)"), {"now": now}
            )
            await conn.execute(
                sa_text(
                    "INSERT INTO engines (id, name, address, max_models, create_time) VALUES ('e1', 'e1', 'h:1', 0, :now)"
                ),
                {"now": now},
            )
            for i, status in enumerate(("DEPLOYMENT_STATUS_READY", "DEPLOYMENT_STATUS_PENDING")):
                await conn.execute(
                    sa_text(
                        "INSERT INTO deployments (id, project_id, name, model_source_kind, model_source, runner, "
                        "engine_args, min_concurrency, max_concurrency, autoscale, caching, requests_per_minute, "
                        "tokens_per_minute, status, status_message, spec_version, generation, create_time, "
                        "update_time) VALUES (:id, 'prj_old', :id, 'builtin', 'tiny-llama', 'RUNNER_GENERATE', "
                        "'{}', 0, 0, false, false, 0, 0, :status, '', 1, 1, :now, :now)"
                    ),
                    {"id": f"dep_{i}", "status": status, "now": now},
                )
                await conn.execute(
                    sa_text(
                        "INSERT INTO deployment_endpoints (deployment_id, position, engine_id, address, "
                        "served_model_name) VALUES (:id, 0, 'e1', 'h:1', :name)"
                    ),
                    {"id": f"dep_{i}", "name": f"dep_{i}-g1"},
                )
        await upgrade_database(db)
        async with db.snapshot() as session:
            rows = {r.id: r for r in (await session.scalars(select(models.Deployment))).all()}
            assert {i: (r.desired_replicas, r.min_replicas, r.cold_start) for i, r in rows.items()} == {
                "dep_0": (1, None, False),
                "dep_1": (1, None, False),
            }
            assert [(e.placed_by, e.ready, e.draining_since) for e in rows["dep_0"].endpoints] == [
                ("tenant", True, None)
            ]
            assert [e.ready for e in rows["dep_1"].endpoints] == [False]
    finally:
        await db.dispose()
