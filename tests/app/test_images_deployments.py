"""Image deployments in the app, on SQLite and PostgreSQL: their settings over DeploymentService
(refusals name the field; stored, read back, updated live through the routing feed), the routing
tables (`RouteDeployment.image` for image deployments only, `image_micros`), image usage stored
and costed at the per-image price, the first start deploying tiny-diffusion (loaded as
RUNNER_DIFFUSION), and revision 0012 up and down."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import grpc
from alembic import command
from google.protobuf import field_mask_pb2
from sqlalchemy import inspect, select
from sqlalchemy import text as sa_text

from app.db import models
from app.db.migrate import alembic_config, upgrade_database
from app.db.session import Database
from app.server import RunningApp
from bud.app.v1 import deployment_pb2 as D
from bud.app.v1 import project_pb2, usage_pb2
from bud.auth.v1 import routing_pb2
from bud.engine.v1 import engine_service_pb2 as E

TINY = D.ModelSource(builtin="tiny-diffusion")


async def _project(stubs: Any, name: str = "images") -> str:
    reply = await stubs.projects.CreateProject(
        project_pb2.CreateProjectRequest(project=project_pb2.Project(name=name))
    )
    return str(reply.project.id)


async def _create(stubs: Any, project_id: str, deployment: D.Deployment) -> D.Deployment:
    reply = await stubs.deployments.CreateDeployment(
        D.CreateDeploymentRequest(project_id=project_id, deployment=deployment)
    )
    return reply.deployment


async def _routes(app: RunningApp, stubs: Any) -> dict[str, routing_pb2.RouteDeployment]:
    """The deployments of a fresh WatchRouting snapshot (once the feed has caught up with the
    database), by name."""
    await app.feed.catch_up()
    call = stubs.routing.WatchRouting(routing_pb2.WatchRoutingRequest(gateway_id="gw-images"))
    try:
        snapshot = await asyncio.wait_for(call.read(), 5)
    finally:
        call.cancel()
    assert snapshot.reset
    return {d.name: d for d in snapshot.upsert_deployments}


async def test_image_settings_are_checked_stored_and_routed(
    app: RunningApp, stubs: Any, helpers: Any
) -> None:
    project_id = await _project(stubs)
    # Refusals name the field (CreateDeployment).
    for deployment, param in (
        (
            D.Deployment(name="a", model=TINY, image=D.ImageSettings(max_images=11)),
            "deployment.image.max_images",
        ),
        (
            D.Deployment(name="a", model=TINY, image=D.ImageSettings(sizes=["64x64", "60x60"])),
            "deployment.image.sizes[1]",
        ),
        (
            D.Deployment(
                name="a", model=TINY, image=D.ImageSettings(sizes=["64x64"], default_size="128x128")
            ),
            "deployment.image.default_size",
        ),
        (
            D.Deployment(name="a", model=TINY, image=D.ImageSettings(default_steps=40, max_steps=30)),
            "deployment.image.default_steps",
        ),
        (helpers.model_deployment("a", image=D.ImageSettings(max_images=2)), "deployment.image"),
        (D.Deployment(name="a", model=TINY, runner=E.RUNNER_GENERATE), "deployment.runner"),
        (
            D.Deployment(name="a", model=TINY, rate_limits=D.RateLimits(images_per_minute=-1)),
            "deployment.rate_limits.images_per_minute",
        ),
        (
            D.Deployment(name="a", model=TINY, pricing=D.Pricing(per_image_usd="-0.01")),
            "deployment.pricing.per_image_usd",
        ),
    ):
        await helpers.expect_error(
            _create(stubs, project_id, deployment), grpc.StatusCode.INVALID_ARGUMENT, param=param
        )

    settings = D.ImageSettings(max_images=2, sizes=["64x64", "128x128"], default_size="128x128", max_steps=30)
    created = await _create(
        stubs,
        project_id,
        D.Deployment(
            name="painter",
            model=TINY,
            image=settings,
            rate_limits=D.RateLimits(images_per_minute=7),
            pricing=D.Pricing(per_image_usd="0.04", per_request_usd="0.001"),
        ),
    )
    chat = await _create(stubs, project_id, helpers.model_deployment("talker"))
    assert created.image == settings and created.rate_limits.images_per_minute == 7
    assert created.pricing.per_image_usd == "0.04"
    got = (
        await stubs.deployments.GetDeployment(
            D.GetDeploymentRequest(project_id=project_id, deployment_id=created.id)
        )
    ).deployment
    assert got.image == settings and [p.per_image_usd for p in got.pricing_history] == ["0.04"]
    listed = await stubs.deployments.ListDeployments(D.ListDeploymentsRequest(project_id=project_id))
    by_name = {d.name: d for d in listed.deployments}
    assert by_name["painter"].image == settings and not by_name["talker"].HasField("image")

    # The routing tables: the image deployment's settings with the defaults filled in, its
    # limit and per-image price; the chat deployment has no `image` at all.
    routes = await _routes(app, stubs)
    assert routes["painter"].image == routing_pb2.RouteImageSettings(
        max_images=2,
        sizes=["64x64", "128x128"],
        default_size="128x128",
        default_steps=20,
        max_steps=30,
        images_per_minute=7,
    )
    assert (routes["painter"].pricing.image_micros, routes["painter"].pricing.request_micros) == (
        40_000,
        1000,
    )
    assert not routes["talker"].HasField("image") and routes["talker"].pricing.image_micros == 0
    assert chat.pricing.per_image_usd == "0"

    # A live update (mask "image.max_images", then the rate limit and price) reaches the feed
    # without a reload.
    call = stubs.routing.WatchRouting(routing_pb2.WatchRoutingRequest(gateway_id="gw-live"))
    try:
        assert (await asyncio.wait_for(call.read(), 5)).reset
        spec_before = await _spec_version(app, created.id)
        updated = await stubs.deployments.UpdateDeployment(
            D.UpdateDeploymentRequest(
                deployment=D.Deployment(
                    id=created.id,
                    project_id=project_id,
                    image=D.ImageSettings(max_images=5),
                    rate_limits=D.RateLimits(images_per_minute=9),
                    pricing=D.Pricing(per_image_usd="0.05"),
                ),
                update_mask=field_mask_pb2.FieldMask(
                    paths=["image.max_images", "rate_limits.images_per_minute", "pricing.per_image_usd"]
                ),
            )
        )
        assert updated.deployment.image.max_images == 5
        assert list(updated.deployment.image.sizes) == ["64x64", "128x128"]  # the rest kept
        route = await _next_upsert(call, created.id)
        assert (route.image.max_images, route.image.images_per_minute, route.pricing.image_micros) == (
            5,
            9,
            50_000,
        )
        assert await _spec_version(app, created.id) == spec_before  # no reload
    finally:
        call.cancel()
    # An update is checked too; clearing `image` leaves the platform's defaults.
    await helpers.expect_error(
        stubs.deployments.UpdateDeployment(
            D.UpdateDeploymentRequest(
                deployment=D.Deployment(
                    id=created.id, project_id=project_id, image=D.ImageSettings(max_steps=300)
                ),
                update_mask=field_mask_pb2.FieldMask(paths=["image.max_steps"]),
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        param="deployment.image.max_steps",
    )
    await helpers.expect_error(
        stubs.deployments.UpdateDeployment(
            D.UpdateDeploymentRequest(
                deployment=D.Deployment(
                    id=chat.id, project_id=project_id, image=D.ImageSettings(max_images=1)
                ),
                update_mask=field_mask_pb2.FieldMask(paths=["image"]),
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        param="deployment.image",
    )
    cleared = await stubs.deployments.UpdateDeployment(
        D.UpdateDeploymentRequest(
            deployment=D.Deployment(id=created.id, project_id=project_id),
            update_mask=field_mask_pb2.FieldMask(paths=["image"]),
        )
    )
    assert not cleared.deployment.HasField("image")
    route = (await _routes(app, stubs))["painter"]
    assert (route.image.max_images, list(route.image.sizes), route.image.max_steps) == (4, [], 50)


async def _spec_version(app: RunningApp, deployment_id: str) -> int:
    async with app.db.snapshot() as session:
        row = await session.get(models.Deployment, deployment_id)
        assert row is not None
        return row.spec_version


async def _next_upsert(call: Any, deployment_id: str) -> routing_pb2.RouteDeployment:
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        message = await asyncio.wait_for(call.read(), max(0.1, deadline - asyncio.get_running_loop().time()))
        for route in message.upsert_deployments:
            if route.id == deployment_id:
                return route


async def test_image_usage_is_stored_and_costed_per_image(app: RunningApp, stubs: Any) -> None:
    project_id = await _project(stubs)
    painter = await _create(
        stubs,
        project_id,
        D.Deployment(
            name="painter", model=TINY, pricing=D.Pricing(per_request_usd="0.001", per_image_usd="0.04")
        ),
    )
    now = datetime.now(UTC)
    record = {"project_id": project_id, "deployment_id": painter.id, "operation": "CreateImage"}
    reply = await stubs.usage.RecordUsage(
        usage_pb2.RecordUsageRequest(
            records=[
                usage_pb2.UsageRecord(
                    request_id="img-1",
                    images=3,
                    image_size="64x64",
                    image_steps=20,
                    status_code=200,
                    **record,
                ),
                usage_pb2.UsageRecord(request_id="img-2", images=0, status_code=400, **record),
                usage_pb2.UsageRecord(request_id="img-bad", images=-1, **record),
                usage_pb2.UsageRecord(request_id="img-long", image_size="x" * 33, **record),
            ]
        )
    )
    assert reply.stored == 2
    assert [(r.index, r.field) for r in reply.refused] == [
        (2, "records[2].images"),
        (3, "records[3].image_size"),
    ]
    async with app.db.snapshot() as session:
        rows = {
            r.request_id: r
            for r in await session.scalars(
                select(models.UsageRecord).where(models.UsageRecord.project_id == project_id)
            )
        }
    stored = rows["img-1"]
    assert (stored.images, stored.image_size, stored.image_steps) == (3, "64x64", 20)
    # 0.001 per request + 3 x 0.04 per image; the failed call costs nothing.
    assert (stored.cost_nanos, rows["img-2"].cost_nanos) == (121_000_000, 0)
    usage = await stubs.usage.QueryUsage(
        usage_pb2.QueryUsageRequest(project_id=project_id, start_date=now.date().isoformat())
    )
    assert usage.total_cost_usd == "0.121000000"
    assert [(b.requests, b.errors, b.images) for b in usage.buckets] == [(2, 1, 3)]


async def test_first_start_deploys_tiny_diffusion(
    start: Any, clients: Any, engine_host: Any, helpers: Any
) -> None:
    app = await start(default_image_model_name="tiny-diffusion", default_image_usd="0.01")
    stubs = await clients(app).login()
    assert app.bootstrapped is not None and len(app.bootstrapped.deployment_ids) == 3
    default_project = (await stubs.projects.ListProjects(project_pb2.ListProjectsRequest())).projects[0]
    listed = await stubs.deployments.ListDeployments(D.ListDeploymentsRequest(project_id=default_project.id))
    by_name = {d.name: d for d in listed.deployments}
    assert sorted(by_name) == ["all-minilm-l6-v2", "tiny-diffusion", "tiny-llama"]
    image = by_name["tiny-diffusion"]
    assert (image.model.builtin, image.runner, image.pricing.per_image_usd) == (
        "tiny-diffusion",
        E.RUNNER_DIFFUSION,
        "0.01",
    )

    async def loaded() -> bool:
        return any(call.name.startswith(image.id) for call in engine_host.engine.load_calls)

    await helpers.eventually(loaded, what="tiny-diffusion loaded")
    (load,) = [c for c in engine_host.engine.load_calls if c.name.startswith(image.id)]
    assert (load.source.builtin, load.runner) == ("tiny-diffusion", E.RUNNER_DIFFUSION)
    routes = await _routes(app, stubs)
    assert routes["tiny-diffusion"].HasField("image") and not routes["tiny-llama"].HasField("image")


async def test_an_unspecified_runner_loads_a_builtin_pipeline_as_diffusion(
    app: RunningApp, stubs: Any, engine_host: Any, helpers: Any
) -> None:
    project_id = await _project(stubs)
    created = await _create(stubs, project_id, D.Deployment(name="painter", model=TINY))
    assert created.runner == E.RUNNER_UNSPECIFIED  # stored as given: a read-modify-write keeps it

    async def loaded() -> bool:
        return any(c.name.startswith(created.id) for c in engine_host.engine.load_calls)

    await helpers.eventually(loaded, what="loaded")
    (load,) = [c for c in engine_host.engine.load_calls if c.name.startswith(created.id)]
    assert load.runner == E.RUNNER_DIFFUSION
    assert (await _routes(app, stubs))["painter"].HasField("image")


async def test_revision_0012_up_and_down(database_url: str) -> None:
    """Existing deployments, prices and usage get no image settings, a 0 per-image price and 0
    images; the downgrade drops the columns and the upgrade adds them again."""
    db = Database(database_url)
    now = datetime.now(UTC).replace(tzinfo=None)
    try:
        await upgrade_database(db, "0012_engine_lease")
        async with db.write_engine.begin() as conn:
            await conn.execute(
                sa_text("INSERT INTO projects VALUES ('prj_old', 'old', '', :now, :now)"), {"now": now}
            )
            await conn.execute(
                sa_text(
                    "INSERT INTO deployments (id, project_id, name, model_source_kind, model_source, runner, "
                    "engine_args, min_concurrency, max_concurrency, autoscale, caching, requests_per_minute, "
                    "tokens_per_minute, status, status_message, spec_version, generation, create_time, "
                    "update_time) VALUES ('dep_old', 'prj_old', 'old', 'builtin', 'tiny-llama', 'RUNNER_GENERATE', "
                    "'{}', 0, 0, false, false, 0, 0, 'DEPLOYMENT_STATUS_READY', '', 1, 1, :now, :now)"
                ),
                {"now": now},
            )
            await conn.execute(
                sa_text(
                    "INSERT INTO deployment_prices (deployment_id, effective_time, input_micros_per_million, "
                    "output_micros_per_million, request_micros) VALUES ('dep_old', :now, 1, 2, 3)"
                ),
                {"now": now},
            )
            await conn.execute(
                sa_text(
                    "INSERT INTO usage_records (request_id, client_request_id, project_id, api_key_id, "
                    "deployment_id, operation, prompt_tokens, completion_tokens, latency_ms, status_code, time, "
                    "day, prompt_id, prompt_version, prompt_deployment_id, cached, cost_nanos) VALUES ('r1', '', "
                    "'prj_old', '', 'dep_old', 'CreateChatCompletion', 1, 2, 1.0, 200, :now, '2026-11-30', '', 0, "
                    "'', false, 5)"
                ),
                {"now": now},
            )
        await upgrade_database(db)
        async with db.snapshot() as session:
            deployment = await session.get(models.Deployment, "dep_old")
            assert deployment is not None
            assert (deployment.image_settings, deployment.images_per_minute, deployment.image_micros) == (
                None,
                0,
                0,
            )
            (price,) = (await session.scalars(select(models.DeploymentPrice))).all()
            assert price.image_micros == 0
            (usage,) = (await session.scalars(select(models.UsageRecord))).all()
            assert (usage.images, usage.image_size, usage.image_steps, usage.cost_nanos) == (0, "", 0, 5)

        async with db.write_engine.begin() as conn:
            await conn.run_sync(lambda c: command.downgrade(alembic_config(c), "0012_engine_lease"))
        async with db.engine.connect() as conn:
            columns = await conn.run_sync(
                lambda c: {
                    t: {col["name"] for col in inspect(c).get_columns(t)}
                    for t in ("deployments", "usage_records", "deployment_prices")
                }
            )
        assert not columns["deployments"] & {"image_settings", "images_per_minute", "image_micros"}
        assert not columns["usage_records"] & {"images", "image_size", "image_steps"}
        assert "image_micros" not in columns["deployment_prices"]
        await upgrade_database(db)
        async with db.snapshot() as session:
            usage = (await session.scalars(select(models.UsageRecord))).one()
            assert (usage.request_id, usage.images) == ("r1", 0)
    finally:
        await db.dispose()
