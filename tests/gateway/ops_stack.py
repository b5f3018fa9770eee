"""One gateway wired as `gateway/server.py` wires it for operations — the routing watch, the
control-plane client (load reports, wakes), the cold starts and the load reporter — against a
RoutingService double (`routing_double.py`) and an instant engine, with its REST face (the
transcoder on uvicorn) and its gRPC face."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

from auth import keys
from bud.auth.v1 import routing_pb2
from bud.openai.v1 import openai_service_pb2_grpc
from budrt.grpc_server import service_channel
from gateway import transcoder
from gateway.cold_start import ColdStarts
from gateway.control import ControlPlane
from gateway.engines import EnginePool
from gateway.load import report_load
from gateway.openai_service import OpenAiServicer
from gateway.request_limits import RequestLimits
from gateway.server import build_transcoder, grpc_face
from gateway.tables import RoutingTables, RoutingWatcher
from tests.gateway.conftest import http_server
from tests.gateway.routing_double import RoutingDouble, routing_double

SECRET = "test-hash-secret"
GATEWAY_ID = "gw-test"


def snapshot(
    key: keys.NewKey, *, cold: bool, address: str = "", **deployment: Any
) -> routing_pb2.WatchRoutingResponse:
    """Project p1 ("team"), key k1, and chat deployment d1 named "chat": scaled to zero (`cold`:
    no replicas, cold_start) or ready on `address` (served name m1)."""
    out = routing_pb2.WatchRoutingResponse(revision=1, reset=True)
    out.upsert_projects.add(id="p1", name="team")
    out.upsert_keys.add(id="k1", prefix=key.prefix, key_hash=key.key_hash, project_id="p1")
    dep = out.upsert_deployments.add(
        id="d1", project_id="p1", name="chat", ready=not cold, cold_start=cold, **deployment
    )
    if not cold:
        dep.endpoints.add(address=address, served_model_name="m1")
    return out


@dataclass
class OpsStack:
    """The gateway's parts and its clients."""

    double: RoutingDouble
    tables: RoutingTables
    servicer: OpenAiServicer
    cold_starts: ColdStarts
    control: ControlPlane
    http: httpx.AsyncClient
    grpc: openai_service_pb2_grpc.OpenAiServiceStub
    key: keys.NewKey

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.key.secret}"),)


@contextlib.asynccontextmanager
async def ops_stack(
    first: routing_pb2.WatchRoutingResponse,
    key: keys.NewKey,
    *,
    cold_start_timeout: float = 30.0,
    cold_start_queue_length: int = 100,
    load_report_interval: float = 0.0,
    ready_endpoint: routing_pb2.RouteEndpoint | None = None,
    implemented: bool = True,
    **servicer_args: Any,
) -> AsyncIterator[OpsStack]:
    async with routing_double(first) as (double, app_address):
        double.implemented = implemented
        if ready_endpoint is not None:
            double.ready_endpoint.CopyFrom(ready_endpoint)
        tables = RoutingTables()
        control = ControlPlane(app_address, GATEWAY_ID)
        cold_starts = ColdStarts(
            tables,
            wake=control.wake,
            timeout=cold_start_timeout,
            queue_length=cold_start_queue_length,
            unimplemented=lambda: "WakeDeployment" in control.unimplemented,
        )
        pool = EnginePool()
        servicer = OpenAiServicer(tables, pool, SECRET, cold_starts=cold_starts, **servicer_args)
        servicer.load.idle_after = load_report_interval
        tasks = [
            asyncio.create_task(
                RoutingWatcher(app_address, tables, GATEWAY_ID, channel=control.channel).run()
            ),
            asyncio.create_task(report_load(servicer.load, control, load_report_interval)),
        ]
        grpc_server = grpc_face(servicer, "127.0.0.1:0", RequestLimits(), transcoder.MAX_BODY_BYTES)
        await grpc_server.start()
        try:
            await asyncio.wait_for(tables.loaded.wait(), 10)
            headers = {"authorization": f"Bearer {key.secret}"}
            async with (
                http_server(build_transcoder(servicer, tables)) as url,
                httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as http,
                service_channel(f"127.0.0.1:{grpc_server.port}", tls=None) as channel,
            ):
                yield OpsStack(
                    double,
                    tables,
                    servicer,
                    cold_starts,
                    control,
                    http,
                    openai_service_pb2_grpc.OpenAiServiceStub(channel),
                    key,
                )
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await grpc_server.stop(0)
            await cold_starts.close()
            await control.close()
            await pool.close()


async def wait_for(check: Any, timeout: float = 5.0) -> None:
    """Waits until `check()` (a plain callable) is true."""
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)
