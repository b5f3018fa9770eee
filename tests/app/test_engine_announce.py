"""Engines that register themselves (AnnounceEngine) with their own mutual-TLS certificate, on
SQLite and PostgreSQL: placement on an announced engine, who may announce (the engine identity
only; no certificate, no call), which address (only one its certificate names), idempotence by
address, the lease (an engine that stops announcing gets nothing new, and its replicas move to a
live engine), and the engine's announcer retrying while the app is not up yet."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sqlalchemy import select

from app.db import models
from app.server import RunningApp
from app.services.engine_announce import derived_name, host_in_certificate
from bud.app.v1 import deployment_pb2, engine_registry_pb2, engine_registry_pb2_grpc, project_pb2
from bud.engine.v1 import engine_service_pb2
from budrt.grpc_server import service_channel
from budrt.tls import OPERATOR, TlsMaterial, identity_uri
from engine import server as engine_server
from engine.announcer import Announcer
from engine.settings import EngineSettings
from tests.support import tls as tls_support
from tests.support.tls import identity_material

D = deployment_pb2
E = engine_registry_pb2
READY = engine_service_pb2.MODEL_STATE_READY


def _announcer_stub(app: RunningApp | str, identity: str = "engine", tls: TlsMaterial | None = None) -> Any:
    """An EngineRegistryService stub over mutual TLS with `identity`'s certificate (or `tls`)."""
    address = app if isinstance(app, str) else app.address
    channel = service_channel(address, tls=tls or identity_material(identity))
    return channel, engine_registry_pb2_grpc.EngineRegistryServiceStub(channel)


async def _announce(
    app: RunningApp, address: str, name: str = "", max_models: int = 0
) -> E.AnnounceEngineResponse:
    channel, stub = _announcer_stub(app)
    async with channel:
        reply: E.AnnounceEngineResponse = await stub.AnnounceEngine(
            E.AnnounceEngineRequest(engine=E.Engine(name=name, address=address, max_models=max_models)),
            timeout=10,
        )
        return reply


def _engine_certificate(tmp_path: Path, dns: Sequence[str], ips: Sequence[str]) -> TlsMaterial:
    """An engine-identity certificate from the session's CA naming exactly `dns` and `ips`."""
    ca = tls_support.SESSION_CA
    assert ca is not None
    ca_key = serialization.load_pem_private_key(ca.ca_key.read_bytes(), password=None)
    ca_cert = x509.load_pem_x509_certificate(ca.ca_cert.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "engine")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([*names, x509.UniformResourceIdentifier(identity_uri("engine"))]),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # The app's certificate names localhost: verify it against that.
    return TlsMaterial(
        ca.ca_cert.read_bytes(),
        cert.public_bytes(serialization.Encoding.PEM),
        key_pem,
        "engine",
        server_name="localhost",
    )


async def _fresh_app(start: Any, clients: Any, engine_host: Any, **settings: Any) -> tuple[RunningApp, Any]:
    """An app with no default deployments and no engine registered (the configured one removed),
    and an admin's stubs."""
    app = await start(
        default_model_name="", default_embedding_model_name="", default_image_model_name="", **settings
    )
    stubs = await clients(app).login()
    (default,) = (await stubs.engines.ListEngines(E.ListEnginesRequest())).engines
    await stubs.engines.DeleteEngine(E.DeleteEngineRequest(engine_id=default.id))
    return app, stubs


async def _project(stubs: Any, name: str) -> str:
    reply = await stubs.projects.CreateProject(
        project_pb2.CreateProjectRequest(project=project_pb2.Project(name=name))
    )
    return str(reply.project.id)


async def _deployment(stubs: Any, project_id: str, deployment_id: str) -> D.Deployment:
    reply = await stubs.deployments.GetDeployment(
        D.GetDeploymentRequest(project_id=project_id, deployment_id=deployment_id)
    )
    return reply.deployment


# ---- the certificate binding (no server) -------------------------------------------------------


def test_an_announced_host_must_be_named_by_the_certificate() -> None:
    dns = ["*.bud-engine-main", "*.bud-engine-main.ns.svc.cluster.local", "localhost"]
    ips = [ipaddress.ip_address("10.0.0.7")]
    for host in (
        "bud-engine-main-0.bud-engine-main",
        "B-1.bud-engine-main.",
        "x.bud-engine-main.ns.svc.cluster.local",
    ):
        assert host_in_certificate(host, dns, ips), host
    for host in (
        "bud-engine-main",  # the wildcard stands for one label, not none
        "a.b.bud-engine-main",  # nor two
        "bud-app.other",
        "evil.example",
        "10.0.0.8",
        "localhost.evil",
    ):
        assert not host_in_certificate(host, dns, ips), host
    assert host_in_certificate("10.0.0.7", dns, ips) and host_in_certificate("localhost", dns, ips)
    # A wildcard SAN never matches an IP, and a name never matches an IP SAN's text.
    assert not host_in_certificate("10.0.0.7", ["*.0.0.7"], [])
    assert not host_in_certificate("*.bud-engine-main", ["bud-engine-main"], [])
    assert derived_name("bud-engine-main-3.bud-engine-main:50071") == "bud-engine-main-3"
    assert derived_name("10.0.0.7:50071") == "10.0.0.7:50071"


# ---- announcing ---------------------------------------------------------------------------------


async def test_an_engine_announces_itself_and_gets_a_replica(
    start: Any, clients: Any, engine_host: Any, engine_factory: Any, helpers: Any
) -> None:
    app, stubs = await _fresh_app(start, clients, engine_host)
    other = engine_factory()
    await other.start()
    reply = await _announce(app, other.address, max_models=3)
    engine = reply.engine
    assert engine.id.startswith("eng_") and engine.address == other.address and engine.max_models == 3
    assert engine.name == other.address  # an IP host: named after its address
    assert engine.HasField("last_seen") and engine.HasField("lease_expire_time") and not engine.lease_expired
    assert reply.lease_seconds == 90
    assert (await stubs.engines.GetEngine(E.GetEngineRequest(engine_id=engine.id))).engine.id == engine.id

    # Placed by the control plane (it names no engine): on the only engine, the announced one.
    project_id = await _project(stubs, "announced")
    created = (
        await stubs.deployments.CreateDeployment(
            D.CreateDeploymentRequest(project_id=project_id, deployment=helpers.model_deployment("m"))
        )
    ).deployment
    assert [e.engine_id for e in created.endpoints] == [engine.id]

    async def ready() -> bool:
        return (await _deployment(stubs, project_id, created.id)).status == D.DEPLOYMENT_STATUS_READY

    await helpers.eventually(ready, what="the deployment READY on the announced engine")
    assert other.engine.loaded_names() == [f"{created.id}-g1"]


@pytest.mark.parametrize("identity", ["gateway", "prompt", OPERATOR, "app"])
async def test_only_the_engine_identity_may_announce(
    app: RunningApp, stubs: Any, helpers: Any, identity: str
) -> None:
    channel, stub = _announcer_stub(app, identity)
    async with channel:
        err = await helpers.expect_error(
            stub.AnnounceEngine(E.AnnounceEngineRequest(engine=E.Engine(address="127.0.0.1:7"))),
            grpc.StatusCode.PERMISSION_DENIED,
        )
    assert err.reason == "SERVICE_NOT_ALLOWED"
    # Nor does a platform admin's token make the gateway's identity an engine.
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stubs.engines.AnnounceEngine(E.AnnounceEngineRequest(engine=E.Engine(address="127.0.0.1:7")))
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    addresses = [e.address for e in (await stubs.engines.ListEngines(E.ListEnginesRequest())).engines]
    assert "127.0.0.1:7" not in addresses


async def test_no_certificate_no_announcement(app: RunningApp, stubs: Any) -> None:
    ca = tls_support.SESSION_CA
    assert ca is not None
    anonymous = grpc.ssl_channel_credentials(root_certificates=ca.ca_cert.read_bytes())
    async with grpc.aio.secure_channel(app.address, anonymous) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await engine_registry_pb2_grpc.EngineRegistryServiceStub(channel).AnnounceEngine(
                E.AnnounceEngineRequest(engine=E.Engine(address="127.0.0.1:7")), timeout=10
            )
    # The handshake itself fails: the server demands a certificate from the mesh's CA.
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    addresses = [e.address for e in (await stubs.engines.ListEngines(E.ListEnginesRequest())).engines]
    assert "127.0.0.1:7" not in addresses


async def test_only_an_address_the_certificate_names(
    app: RunningApp, stubs: Any, helpers: Any, tmp_path: Path
) -> None:
    before = len((await stubs.engines.ListEngines(E.ListEnginesRequest())).engines)
    # The session's engine certificate names localhost, 127.0.0.1 and ::1 only.
    channel, stub = _announcer_stub(app)
    async with channel:
        for address in ("10.99.0.1:50071", "evil.example:50071", "bud-app.internal:50060", "[::2]:1"):
            await helpers.expect_error(
                stub.AnnounceEngine(E.AnnounceEngineRequest(engine=E.Engine(address=address))),
                grpc.StatusCode.PERMISSION_DENIED,
                "engine.address",
            )
        await helpers.expect_error(
            stub.AnnounceEngine(E.AnnounceEngineRequest(engine=E.Engine(address="no-port"))),
            grpc.StatusCode.INVALID_ARGUMENT,
            "engine.address",
        )
    # A certificate with the chart's wildcard: any one pod name under the headless service.
    wildcard = _engine_certificate(tmp_path, ["*.bud-engine-main"], ["10.1.2.3"])
    channel, stub = _announcer_stub(app, tls=wildcard)
    async with channel:
        reply = await stub.AnnounceEngine(
            E.AnnounceEngineRequest(engine=E.Engine(address="bud-engine-main-2.bud-engine-main:50071"))
        )
        assert reply.engine.name == "bud-engine-main-2"
        await stub.AnnounceEngine(E.AnnounceEngineRequest(engine=E.Engine(address="10.1.2.3:50071")))
        for address in ("a.b.bud-engine-main:50071", "bud-engine-main:50071", "127.0.0.1:50071"):
            await helpers.expect_error(
                stub.AnnounceEngine(E.AnnounceEngineRequest(engine=E.Engine(address=address))),
                grpc.StatusCode.PERMISSION_DENIED,
                "engine.address",
            )
    after = (await stubs.engines.ListEngines(E.ListEnginesRequest())).engines
    assert len(after) == before + 2


async def test_announcing_again_is_the_same_engine(
    app: RunningApp, stubs: Any, helpers: Any, engine_host: Any, engine_factory: Any
) -> None:
    other = engine_factory()
    await other.start()
    first = (await _announce(app, other.address, name="pod-1", max_models=2)).engine
    # The engine restarts (same stable address): same record, new capacity, lease renewed.
    await other.stop()
    await other.start(fresh=True)
    await asyncio.sleep(0.01)
    again = (await _announce(app, other.address, name="pod-1", max_models=4)).engine
    assert (again.id, again.name, again.max_models) == (first.id, "pod-1", 4)
    assert again.last_seen.ToDatetime() >= first.last_seen.ToDatetime()
    assert again.lease_expire_time.ToDatetime() >= first.lease_expire_time.ToDatetime()
    # Another address cannot take the name.
    await helpers.expect_error(
        _announce(app, "localhost:1", name="pod-1"), grpc.StatusCode.ALREADY_EXISTS, "engine.name"
    )
    # The configured engine (registered at start, no lease) announcing: the same record, which
    # keeps its name and now holds a lease.
    configured = (await _announce(app, engine_host.address, name="ignored")).engine
    assert configured.name == "default" and configured.HasField("lease_expire_time")
    engines = (await stubs.engines.ListEngines(E.ListEnginesRequest())).engines
    assert sorted(e.address for e in engines) == sorted([engine_host.address, other.address])


async def test_an_engine_whose_lease_ends_loses_its_replicas(
    start: Any, clients: Any, engine_host: Any, engine_factory: Any, helpers: Any
) -> None:
    app, stubs = await _fresh_app(start, clients, engine_host, engine_lease_seconds=1.0)
    lost_host, live_host = engine_factory(), engine_factory()
    await lost_host.start()
    # The live engine answers ListModels slowly: a window in which the moved replica is not
    # loaded yet, and the deployment must not say READY.
    list_models = live_host.engine.ListModels

    async def slow_list(request: Any, context: Any) -> Any:
        await asyncio.sleep(0.5)
        return await list_models(request, context)

    live_host.engine.ListModels = slow_list  # type: ignore[method-assign]
    await live_host.start()
    lost = (await _announce(app, lost_host.address, name="lost")).engine
    live = (await _announce(app, live_host.address, name="live")).engine

    async def keep_live() -> None:
        while True:
            await _announce(app, live_host.address, name="live")
            await asyncio.sleep(0.2)

    keeper = asyncio.create_task(keep_live())
    try:
        project_id = await _project(stubs, "leases")
        created = (
            await stubs.deployments.CreateDeployment(
                D.CreateDeploymentRequest(
                    project_id=project_id, deployment=helpers.model_deployment("m", lost.id)
                )
            )
        ).deployment

        async def on(engine_id: str) -> bool:
            got = await _deployment(stubs, project_id, created.id)
            return [e.engine_id for e in got.endpoints] == [
                engine_id
            ] and got.status == D.DEPLOYMENT_STATUS_READY

        await helpers.eventually(lambda: on(lost.id), what="READY on the first engine")

        # "lost" stops announcing: within its lease plus a pass, the replica is on "live", and
        # the deployment is not READY again before the model is loaded there.

        async def moved() -> bool:
            got = await _deployment(stubs, project_id, created.id)
            moved_ = [e.engine_id for e in got.endpoints] == [live.id]
            model = live_host.engine.models.get(f"{created.id}-g1")
            loaded = model is not None and model.state == READY
            assert not (moved_ and got.status == D.DEPLOYMENT_STATUS_READY and not loaded), (
                "READY before loaded"
            )
            return moved_ and loaded and got.status == D.DEPLOYMENT_STATUS_READY

        await helpers.eventually(moved, timeout=15, what="the replica moved to the live engine")
        got = (await stubs.engines.GetEngine(E.GetEngineRequest(engine_id=lost.id))).engine
        assert got.lease_expired and got.model_count == 0
        assert not (await stubs.engines.GetEngine(E.GetEngineRequest(engine_id=live.id))).engine.lease_expired
        # Nothing new goes on it, named or placed.
        err = await helpers.expect_error(
            stubs.deployments.CreateDeployment(
                D.CreateDeploymentRequest(
                    project_id=project_id, deployment=helpers.model_deployment("n", lost.id)
                )
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
            "deployment.endpoints[0].engine_id",
        )
        assert err.reason == "ENGINE_LEASE_EXPIRED"
        placed = (
            await stubs.deployments.CreateDeployment(
                D.CreateDeploymentRequest(project_id=project_id, deployment=helpers.model_deployment("p"))
            )
        ).deployment
        assert [e.engine_id for e in placed.endpoints] == [live.id]
        # It announces again: live again, same record.
        back = (await _announce(app, lost_host.address, name="lost")).engine
        assert back.id == lost.id and not back.lease_expired
    finally:
        keeper.cancel()
        await asyncio.gather(keeper, return_exceptions=True)


# ---- the engine's announcer ---------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_the_announcer_retries_until_the_app_is_up(
    start: Any, clients: Any, engine_host: Any, engine_factory: Any, helpers: Any, tmp_path: Path
) -> None:
    port = _free_port()
    other = engine_factory()
    await other.start()
    settings = EngineSettings(
        data_dir=tmp_path / "engine",
        app_address=f"127.0.0.1:{port}",
        announce_address=other.address,
        announce_name="late",
        announce_max_models=2,
        announce_interval_seconds=0.5,
    )
    announcer = Announcer(
        settings,
        channel_factory=lambda a: service_channel(a, tls=identity_material("engine")),
        first_retry=0.05,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(announcer.run(stop))
    try:

        async def failing() -> bool:
            return announcer.failures >= 2 and not task.done()

        await helpers.eventually(failing, what="announcements failing while the app is down")
        assert announcer.last is None
        app = await start(app_address=f"127.0.0.1:{port}")
        stubs = await clients(app).login()

        async def registered() -> bool:
            engines = (await stubs.engines.ListEngines(E.ListEnginesRequest())).engines
            return any(e.name == "late" and e.address == other.address and e.max_models == 2 for e in engines)

        await helpers.eventually(registered, timeout=15, what="the engine registered once the app is up")
        assert announcer.failures == 0 and announcer.last is not None
        assert announcer.next_wait() == 0.5  # the interval (the 90 s lease's third is longer)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
    assert announcer._channel is None  # closed on the way out


async def test_the_control_planes_replica_on_a_lost_engine_is_placed_again(
    start: Any, clients: Any, engine_host: Any, engine_factory: Any, helpers: Any
) -> None:
    """A replica the scaler added (min_replicas 2) on an engine whose lease ends is removed and
    placed again on a live engine; the tenant's replica stays where it is."""
    app, stubs = await _fresh_app(start, clients, engine_host, engine_lease_seconds=1.0)
    hosts = {name: engine_factory() for name in ("lost", "tenant", "spare")}
    for host in hosts.values():
        await host.start()
    ids = {}
    for name in ("lost", "tenant"):  # "lost" first: the oldest, where the scaler adds a replica
        ids[name] = (await _announce(app, hosts[name].address, name=name)).engine.id

    async def keep_live(names: Sequence[str]) -> None:
        while True:
            for name in names:
                await _announce(app, hosts[name].address, name=name)
            await asyncio.sleep(0.2)

    keeper = asyncio.create_task(keep_live(["lost", "tenant"]))
    try:
        project_id = await _project(stubs, "floor")
        created = (
            await stubs.deployments.CreateDeployment(
                D.CreateDeploymentRequest(
                    project_id=project_id,
                    deployment=helpers.model_deployment(
                        "m", ids["tenant"], scaling=D.ScalingSettings(min_replicas=2, max_replicas=2)
                    ),
                )
            )
        ).deployment

        async def replicas_on(expected: set[str]) -> bool:
            got = await _deployment(stubs, project_id, created.id)
            return got.ready_replicas == 2 and await _replica_engines(app, created.id) == expected

        await helpers.eventually(
            lambda: replicas_on({ids["lost"], ids["tenant"]}), what="two replicas, one on 'lost'"
        )
        ids["spare"] = (await _announce(app, hosts["spare"].address, name="spare")).engine.id
        keeper.cancel()
        await asyncio.gather(keeper, return_exceptions=True)
        keeper = asyncio.create_task(keep_live(["tenant", "spare"]))
        await helpers.eventually(
            lambda: replicas_on({ids["tenant"], ids["spare"]}), timeout=15, what="the replica placed again"
        )
        got = await _deployment(stubs, project_id, created.id)
        assert [e.engine_id for e in got.endpoints] == [ids["tenant"]]  # the tenant's, unmoved
        assert hosts["spare"].engine.loaded_names() == [f"{created.id}-g1"]
    finally:
        keeper.cancel()
        await asyncio.gather(keeper, return_exceptions=True)


async def _replica_engines(app: RunningApp, deployment_id: str) -> set[str]:
    """The engines of every replica of a deployment (the tenant's and the control plane's)."""
    endpoint = models.DeploymentEndpoint
    async with app.db.snapshot() as session:
        rows = await session.scalars(
            select(endpoint.engine_id).where(
                endpoint.deployment_id == deployment_id, endpoint.draining_since.is_(None)
            )
        )
        return set(rows)


async def test_a_started_engine_announces_itself_and_stops_with_it(
    app: RunningApp, stubs: Any, helpers: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`engine.server.serve` with `announce_address` runs the announcer (here with the engine's
    certificate: the test process holds a gateway's) until the engine stops."""
    runs: list[Announcer] = []

    class EngineCertificateAnnouncer(Announcer):
        def __init__(self, settings: EngineSettings) -> None:
            super().__init__(
                settings, channel_factory=lambda a: service_channel(a, tls=identity_material("engine"))
            )
            runs.append(self)

    monkeypatch.setattr(engine_server, "Announcer", EngineCertificateAnnouncer)
    settings = EngineSettings(
        data_dir=tmp_path / "engine",
        engine_address="127.0.0.1:0",
        app_address=app.address,
        announce_address="localhost:50999",
        announce_interval_seconds=0.2,
    )
    stop = asyncio.Event()
    serving = asyncio.create_task(engine_server.serve(settings, stop))
    try:

        async def announced() -> bool:
            return bool(runs) and runs[0].last is not None

        await helpers.eventually(announced, what="the engine's announcement")
        engines = (await stubs.engines.ListEngines(E.ListEnginesRequest())).engines
        assert any(e.address == "localhost:50999" and e.name == "localhost" for e in engines)
    finally:
        stop.set()
        await asyncio.wait_for(serving, 30)
    (announcer,) = runs
    assert announcer._channel is None
