"""Engines as platform resources (issue 11, finding 1), on SQLite and PostgreSQL: the admin-only
engine registry, placement on registered engines, a tenant's attempts at another project's model
(naming an engine address or another deployment's model name, unloading or replacing its model),
a stray model on an engine never adopted, generic status messages, and the upgrade from 0004."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf import field_mask_pb2
from sqlalchemy import select
from sqlalchemy import text as sa_text

from app.db import models
from app.db.migrate import upgrade_database
from app.db.session import Database
from app.server import RunningApp
from bud.app.v1 import deployment_pb2, engine_registry_pb2, project_pb2
from bud.auth.v1 import user_pb2
from bud.engine.v1 import engine_service_pb2
from tests.support.instant_engine import InstantEngine

D = deployment_pb2
E = engine_registry_pb2
READY = engine_service_pb2.MODEL_STATE_READY


async def _user(app: RunningApp, admin: Any, clients: Any, username: str) -> Any:
    """A new user (no platform role), logged in."""
    password = f"{username}-password"
    await admin.users.CreateUser(user_pb2.CreateUserRequest(username=username, password=password))
    return await clients(app).login(username, password)


async def _project(client: Any, name: str) -> str:
    reply = await client.projects.CreateProject(
        project_pb2.CreateProjectRequest(project=project_pb2.Project(name=name))
    )
    return str(reply.project.id)


async def _create(client: Any, project_id: str, deployment: D.Deployment) -> D.Deployment:
    reply = await client.deployments.CreateDeployment(
        D.CreateDeploymentRequest(project_id=project_id, deployment=deployment)
    )
    return reply.deployment


async def _get(client: Any, project_id: str, deployment_id: str) -> D.Deployment:
    reply = await client.deployments.GetDeployment(
        D.GetDeploymentRequest(project_id=project_id, deployment_id=deployment_id)
    )
    return reply.deployment


def _status(client: Any, project_id: str, deployment_id: str, status: int) -> Any:
    async def check() -> bool:
        return bool((await _get(client, project_id, deployment_id)).status == status)

    return check


async def _true(value: bool) -> bool:
    return value


async def _default_engine_id(stubs: Any, address: str) -> str:
    engines = (await stubs.engines.ListEngines(E.ListEnginesRequest())).engines
    (engine,) = [e for e in engines if e.address == address]
    return str(engine.id)


# ---- the registry ---------------------------------------------------------------------------


async def test_the_registry_is_for_platform_admins(
    app: RunningApp, stubs: Any, clients: Any, helpers: Any, engine_host: Any
) -> None:
    # The configured engine was registered at start, with the default deployments on it.
    (default,) = (await stubs.engines.ListEngines(E.ListEnginesRequest())).engines
    assert (default.name, default.address, default.max_models, default.model_count) == (
        "default",
        engine_host.address,
        0,
        2,
    )
    registered = (
        await stubs.engines.RegisterEngine(
            E.RegisterEngineRequest(engine=E.Engine(name="gpu-1", address="10.0.0.7:50071", max_models=4))
        )
    ).engine
    assert registered.id.startswith("eng_") and registered.model_count == 0
    got = (await stubs.engines.GetEngine(E.GetEngineRequest(engine_id=registered.id))).engine
    assert got == registered
    listed = (await stubs.engines.ListEngines(E.ListEnginesRequest(page_size=1))).engines
    assert [e.id for e in listed] == [default.id]

    # A project owner (editor, viewer alike) is no platform admin: every registry RPC is refused.
    bob = await _user(app, stubs, clients, "bob")
    await _project(bob, "team-b")
    for call in (
        bob.engines.RegisterEngine(
            E.RegisterEngineRequest(engine=E.Engine(name="mine", address="127.0.0.1:1"))
        ),
        bob.engines.GetEngine(E.GetEngineRequest(engine_id=default.id)),
        bob.engines.ListEngines(E.ListEnginesRequest()),
        bob.engines.DeleteEngine(E.DeleteEngineRequest(engine_id=registered.id)),
    ):
        err = await helpers.expect_error(call, grpc.StatusCode.PERMISSION_DENIED)
        assert engine_host.address not in err.message
    assert len((await stubs.engines.ListEngines(E.ListEnginesRequest())).engines) == 2

    # Names and addresses are unique; addresses are host:port; capacity is not negative.
    for engine, param in (
        (E.Engine(name="gpu-1", address="10.0.0.8:50071"), "engine.name"),
        (E.Engine(name="gpu-2", address="10.0.0.7:50071"), "engine.address"),
    ):
        await helpers.expect_error(
            stubs.engines.RegisterEngine(E.RegisterEngineRequest(engine=engine)),
            grpc.StatusCode.ALREADY_EXISTS,
            param,
        )
    for engine, param in (
        (E.Engine(name="", address="10.0.0.8:1"), "engine.name"),
        (E.Engine(name="x", address="no-port"), "engine.address"),
        (E.Engine(name="x", address="10.0.0.8:1", max_models=-1), "engine.max_models"),
    ):
        await helpers.expect_error(
            stubs.engines.RegisterEngine(E.RegisterEngineRequest(engine=engine)),
            grpc.StatusCode.INVALID_ARGUMENT,
            param,
        )

    # An engine with deployments on it stays; an unused one goes.
    err = await helpers.expect_error(
        stubs.engines.DeleteEngine(E.DeleteEngineRequest(engine_id=default.id)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "engine_id",
    )
    assert err.reason == "ENGINE_IN_USE"
    await stubs.engines.DeleteEngine(E.DeleteEngineRequest(engine_id=registered.id))
    await helpers.expect_error(
        stubs.engines.GetEngine(E.GetEngineRequest(engine_id=registered.id)),
        grpc.StatusCode.NOT_FOUND,
        "engine_id",
    )


async def test_the_configured_engine_is_registered_once(start: Any, clients: Any) -> None:
    first = await start()
    await first.stop()
    second = await start()
    async with second.db.snapshot() as session:
        engines = (await session.scalars(select(models.Engine))).all()
    assert [e.name for e in engines] == ["default"]


# ---- placement ------------------------------------------------------------------------------


async def test_placement_by_capacity(
    start: Any, clients: Any, helpers: Any, engine_host: Any, engine_factory: Any
) -> None:
    app = await start(default_model_name="", default_embedding_model_name="", default_image_model_name="")
    stubs = await clients(app).login()
    default_id = await _default_engine_id(stubs, engine_host.address)
    await stubs.engines.DeleteEngine(E.DeleteEngineRequest(engine_id=default_id))
    other = engine_factory()
    await other.start()
    first_id = await helpers.register_engine(stubs, engine_host.address, "one", max_models=1)
    second_id = await helpers.register_engine(stubs, other.address, "two", max_models=1)
    project_id = await _project(stubs, "placed")

    a = await _create(stubs, project_id, helpers.model_deployment("a"))
    b = await _create(stubs, project_id, helpers.model_deployment("b"))
    assert [a.endpoints[0].engine_id, b.endpoints[0].engine_id] == [first_id, second_id]
    assert b.endpoints[0].address == other.address
    err = await helpers.expect_error(
        stubs.deployments.CreateDeployment(
            D.CreateDeploymentRequest(project_id=project_id, deployment=helpers.model_deployment("c"))
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "deployment.endpoints",
    )
    assert err.reason == "NO_ENGINE_CAPACITY" and engine_host.address not in err.message
    err = await helpers.expect_error(
        stubs.deployments.CreateDeployment(
            D.CreateDeploymentRequest(
                project_id=project_id, deployment=helpers.model_deployment("c", first_id)
            )
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "deployment.endpoints[0].engine_id",
    )
    # A full engine keeps the deployments it has: a new generation of one stays there.
    updated = (
        await stubs.deployments.UpdateDeployment(
            D.UpdateDeploymentRequest(
                deployment=D.Deployment(
                    id=a.id,
                    project_id=project_id,
                    engine_args=engine_service_pb2.EngineArgs(max_model_len=64),
                ),
                update_mask=field_mask_pb2.FieldMask(paths=["engine_args"]),
            )
        )
    ).deployment
    assert [(e.engine_id, e.served_model_name) for e in updated.endpoints] == [(first_id, f"{a.id}-g2")]
    await helpers.eventually(_status(stubs, project_id, a.id, D.DEPLOYMENT_STATUS_READY), what="a READY")
    await helpers.eventually(_status(stubs, project_id, b.id, D.DEPLOYMENT_STATUS_READY), what="b READY")
    assert set(engine_host.engine.models) == {f"{a.id}-g2"} and set(other.engine.models) == {f"{b.id}-g1"}
    # Room again once a deployment goes.
    await stubs.deployments.DeleteDeployment(
        D.DeleteDeploymentRequest(project_id=project_id, deployment_id=b.id)
    )
    c = await _create(stubs, project_id, helpers.model_deployment("c"))
    assert c.endpoints[0].engine_id == second_id


async def test_tenants_see_engine_ids_not_addresses(
    app: RunningApp, stubs: Any, clients: Any, helpers: Any, engine_host: Any
) -> None:
    """Where an engine listens is the platform's to know: a tenant's replies name the engine by id
    only (create, get, list, update), a platform admin's carry the address; a tenant's
    read-modify-write of the reply it got still works."""
    alice = await _user(app, stubs, clients, "alice")
    project_id = await _project(alice, "team-a")
    created = await _create(alice, project_id, helpers.model_deployment("chat"))
    listed = (
        await alice.deployments.ListDeployments(D.ListDeploymentsRequest(project_id=project_id))
    ).deployments
    got = await _get(alice, project_id, created.id)
    for seen in (created, got, *listed):
        ((endpoint,),) = [seen.endpoints]
        assert endpoint.engine_id and endpoint.served_model_name and endpoint.address == ""
    assert (await _get(stubs, project_id, created.id)).endpoints[0].address == engine_host.address
    got.rate_limits.requests_per_minute = 7
    updated = (await alice.deployments.UpdateDeployment(D.UpdateDeploymentRequest(deployment=got))).deployment
    assert updated.rate_limits.requests_per_minute == 7 and updated.endpoints[0].address == ""
    assert updated.endpoints[0].engine_id == got.endpoints[0].engine_id


# ---- the attack of the issue ----------------------------------------------------------------


async def test_another_project_cannot_take_over_replace_or_unload_a_model(
    app: RunningApp, stubs: Any, clients: Any, helpers: Any, engine_host: Any
) -> None:
    alice = await _user(app, stubs, clients, "alice")
    bob = await _user(app, stubs, clients, "bob")
    project_a, project_b = await _project(alice, "team-a"), await _project(bob, "team-b")
    a = await _create(alice, project_a, helpers.model_deployment("a-chat"))
    await helpers.eventually(_status(alice, project_a, a.id, D.DEPLOYMENT_STATUS_READY), what="A READY")
    a_name, engine_id = a.endpoints[0].served_model_name, a.endpoints[0].engine_id
    port = engine_host.address.rsplit(":", 1)[1]
    loads_before = len(engine_host.engine.load_calls)

    # B names the engine by another spelling of its address, with A's model name: refused, naming
    # the field, without a word about A.
    for endpoint, param in (
        (D.EngineEndpoint(address=f"localhost:{port}", served_model_name=a_name), "address"),
        (D.EngineEndpoint(address=f"localhost:{port}"), "address"),
        (D.EngineEndpoint(engine_id=engine_id, served_model_name=a_name), "served_model_name"),
        (D.EngineEndpoint(engine_id=engine_id, address=engine_host.address), "address"),
    ):
        err = await helpers.expect_error(
            bob.deployments.CreateDeployment(
                D.CreateDeploymentRequest(
                    project_id=project_b, deployment=helpers.model_deployment("b-chat", endpoints=[endpoint])
                )
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            f"deployment.endpoints[0].{param}",
        )
        assert a.id not in err.message and a_name not in err.message

    # B's own deployment on the same engine gets a model of its own ...
    b = await _create(bob, project_b, helpers.model_deployment("b-chat", engine_id))
    b_name = b.endpoints[0].served_model_name
    assert b_name == f"{b.id}-g1" != a_name
    await helpers.eventually(_status(bob, project_b, b.id, D.DEPLOYMENT_STATUS_READY), what="B READY")
    # ... and B cannot point an update at A's model either.
    await helpers.expect_error(
        bob.deployments.UpdateDeployment(
            D.UpdateDeploymentRequest(
                deployment=D.Deployment(
                    id=b.id,
                    project_id=project_b,
                    endpoints=[D.EngineEndpoint(engine_id=engine_id, served_model_name=a_name)],
                ),
                update_mask=field_mask_pb2.FieldMask(paths=["endpoints"]),
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "deployment.endpoints[0].served_model_name",
    )
    # Changing B's model (a new generation) and deleting B never touch A's model.
    await bob.deployments.UpdateDeployment(
        D.UpdateDeploymentRequest(
            deployment=D.Deployment(
                id=b.id, project_id=project_b, model=D.ModelSource(builtin="all-minilm-l6-v2")
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["model"]),
        )
    )
    await helpers.eventually(
        lambda: _true(f"{b.id}-g2" in engine_host.engine.models and b_name not in engine_host.engine.models),
        what="B's new generation in place of its old one",
    )
    await bob.deployments.DeleteDeployment(
        D.DeleteDeploymentRequest(project_id=project_b, deployment_id=b.id)
    )
    await helpers.eventually(
        lambda: _true(f"{b.id}-g2" not in engine_host.engine.models), what="B's model unloaded"
    )
    await asyncio.sleep(0.5)  # passes after the delete
    assert a_name in engine_host.engine.models and engine_host.engine.models[a_name].state == READY
    assert a_name not in engine_host.engine.unload_calls
    assert [c.name for c in engine_host.engine.load_calls[loads_before:] if c.name == a_name] == []
    assert engine_host.engine.refused_calls == 0  # nothing even tried
    assert (await _get(alice, project_a, a.id)).status == D.DEPLOYMENT_STATUS_READY


async def test_a_stray_model_is_never_adopted_nor_unloaded(
    stubs: Any, helpers: Any, engine_host: Any
) -> None:
    """A model the engine serves under a deployment's name but for another owner (an operator's,
    loaded by hand while the engine restarted) is left alone, and the deployment says so."""
    project_id = await _project(stubs, "strays")
    created = await _create(stubs, project_id, helpers.model_deployment("m"))
    await helpers.eventually(_status(stubs, project_id, created.id, D.DEPLOYMENT_STATUS_READY), what="READY")
    name = created.endpoints[0].served_model_name
    for owner in (
        engine_service_pb2.ModelOwner(),
        engine_service_pb2.ModelOwner(deployment_id="dep_x", generation=1),
    ):
        await engine_host.stop()
        engine_host.engine = InstantEngine()  # restarted, with the stray loaded before anyone looks
        engine_host.engine.models[name] = engine_service_pb2.ServedModel(name=name, state=READY, owner=owner)
        await engine_host.start()
        await helpers.eventually(
            _status(stubs, project_id, created.id, D.DEPLOYMENT_STATUS_FAILED), what="FAILED, not adopted"
        )
        message = (await _get(stubs, project_id, created.id)).status_message
        assert "another model under this deployment's name" in message and "dep_x" not in message
        await asyncio.sleep(0.5)  # several passes
        # (The default deployments are loaded again on the restarted engine; this one is not.)
        assert name not in engine_host.engine.loaded_names() and name not in engine_host.engine.unload_calls
        assert engine_host.engine.models[name].owner == owner
    # Once an admin unloads the stray, the deployment's own model comes back.
    del engine_host.engine.models[name]
    await helpers.eventually(
        _status(stubs, project_id, created.id, D.DEPLOYMENT_STATUS_READY), what="READY again"
    )
    assert engine_host.engine.models[name].owner == engine_service_pb2.ModelOwner(
        deployment_id=created.id, generation=1
    )


async def test_status_messages_do_not_map_the_network(
    stubs: Any, helpers: Any, engine_host: Any, engine_factory: Any
) -> None:
    """An unreachable engine, whatever answers at its address, reads the same to a tenant."""
    project_id = await _project(stubs, "scan")
    http = await asyncio.start_server(_http_answer, "127.0.0.1", 0)
    http_port = http.sockets[0].getsockname()[1]
    closed = engine_factory(_free_port())
    messages = []
    async with http:
        for name, address in (("http", f"127.0.0.1:{http_port}"), ("closed", closed.address)):
            engine_id = await helpers.register_engine(stubs, address, name)
            created = await _create(stubs, project_id, helpers.model_deployment(name, engine_id))
            await helpers.eventually(
                lambda c=created: _message_set(stubs, project_id, c.id), what=f"{name} status message"
            )
            deployment = await _get(stubs, project_id, created.id)
            assert deployment.status == D.DEPLOYMENT_STATUS_PENDING
            messages.append(deployment.status_message.replace(engine_id, "<id>"))
    assert messages == ["engine <id>: engine unavailable; retrying"] * 2


async def _message_set(stubs: Any, project_id: str, deployment_id: str) -> bool:
    return bool((await _get(stubs, project_id, deployment_id)).status_message)


async def _http_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """An HTTP/1 server: what a gRPC client calls "not a gRPC server"."""
    await reader.read(1024)
    writer.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
    await writer.drain()
    writer.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---- the upgrade ----------------------------------------------------------------------------


async def test_upgrade_from_0004_registers_the_engines_in_use(
    database_url: str, start: Any, clients: Any, helpers: Any, engine_host: Any
) -> None:
    """A database at 0004 with deployments on two engine addresses: each address becomes a
    registered engine, the endpoints point at them, models get the platform's names; the app
    then loads each under its new, owned name and leaves the engine's old copy alone."""
    db = Database(database_url)
    now = datetime.now(UTC).replace(tzinfo=None)
    try:
        await upgrade_database(db, "0004")
        async with db.write_engine.begin() as conn:
            await conn.execute(
                sa_text("UPDATE installation SET bootstrap_time = :now"), {"now": now}
            )  # no first-start defaults
            await conn.execute(
                sa_text(
                    "INSERT INTO projects (id, name, description, create_time, update_time) "
                    "VALUES ('prj_old', 'old', '', :now, :now)"
                ),
                {"now": now},
            )
            for deployment_id, name in (("dep_one", "one"), ("dep_two", "two")):
                await conn.execute(
                    sa_text(
                        "INSERT INTO deployments (id, project_id, name, model_source_kind, model_source, runner, "
                        "engine_args, min_concurrency, max_concurrency, autoscale, caching, requests_per_minute, "
                        "tokens_per_minute, status, status_message, spec_version, create_time, update_time) "
                        "VALUES (:id, 'prj_old', :name, 'builtin', 'tiny-llama', 'RUNNER_GENERATE', '{}', 0, 0, "
                        "false, false, 0, 0, 'DEPLOYMENT_STATUS_READY', '', 3, :now, :now)"
                    ),
                    {"id": deployment_id, "name": name, "now": now},
                )
            for deployment_id, position, address, served in (
                ("dep_one", 0, engine_host.address, "custom-name"),
                ("dep_one", 1, "10.0.0.9:50071", "dep_one"),
                ("dep_two", 0, engine_host.address, "dep_two"),
            ):
                await conn.execute(
                    sa_text(
                        "INSERT INTO deployment_endpoints (deployment_id, position, address, served_model_name) "
                        "VALUES (:d, :p, :a, :s)"
                    ),
                    {"d": deployment_id, "p": position, "a": address, "s": served},
                )
    finally:
        await db.dispose()
    engine_host.engine.models["custom-name"] = engine_service_pb2.ServedModel(name="custom-name", state=READY)

    app = await start()
    async with app.db.snapshot() as session:
        engines = {e.address: e for e in (await session.scalars(select(models.Engine))).all()}
        endpoints = (
            await session.scalars(
                select(models.DeploymentEndpoint).order_by(
                    models.DeploymentEndpoint.deployment_id, models.DeploymentEndpoint.position
                )
            )
        ).all()
        generations = dict(
            (await session.execute(select(models.Deployment.id, models.Deployment.generation))).all()
        )
    # Named after their addresses; the configured engine is one of them, not registered again.
    assert {a: (e.name, e.max_models) for a, e in engines.items()} == {
        engine_host.address: (engine_host.address, 0),
        "10.0.0.9:50071": ("10.0.0.9:50071", 0),
    }
    assert [(e.deployment_id, e.engine_id, e.served_model_name) for e in endpoints] == [
        ("dep_one", engines[engine_host.address].id, "dep_one-g1"),
        ("dep_one", engines["10.0.0.9:50071"].id, "dep_one-g1"),
        ("dep_two", engines[engine_host.address].id, "dep_two-g1"),
    ]
    assert generations == {"dep_one": 1, "dep_two": 1}

    stubs = await clients(app).login()
    await helpers.eventually(
        _status(stubs, "prj_old", "dep_two", D.DEPLOYMENT_STATUS_READY), what="dep_two READY"
    )
    assert engine_host.engine.models["dep_two-g1"].owner == engine_service_pb2.ModelOwner(
        deployment_id="dep_two", generation=1
    )
    await helpers.eventually(lambda: _true("dep_one-g1" in engine_host.engine.models), what="dep_one loaded")
    assert "custom-name" in engine_host.engine.models and engine_host.engine.unload_calls == []
