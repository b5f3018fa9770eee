"""Issue 15 on real engines: autoscaling across two vLLM engine processes with the tiny model.

The instant-engine version of this scenario (`tests/gateway/test_scaling_stack.py`) checks the
decisions quickly; this one checks that they hold with real engines: a replica the control plane
adds is really loaded on the second engine and serves, and removing it (drain first) fails no
request.

The scaling windows are app settings, fixed at start, and the session mesh's are the defaults
(30 s up, 300 s down), so an app and a gateway of their own run here (`budrt serve app`,
`budrt serve gateway`, as in `test_app_outage.py`) with short windows and frequent load reports.
Their first engine is the session mesh's (the replica the deployment names; a second served model
there, no new process), the second a `budrt serve engine` process of its own
(`tests.support.mesh.start_engine`), registered through EngineRegistryService by the platform
admin. Everything shares the mesh's CA. Nothing of it outlives the test: the deployment is deleted
(its model unloaded from the mesh's engine) and the three processes stopped.

Its time is vLLM starting on the second engine (the engine process imports vLLM at its first load,
then the engine core and its worker start): minutes on two CPU cores, up to a quarter of an hour
when other runs share them (18 minutes measured with the machine's load average near 27).
`enforce_eager` spares each load torch.compile's warm-up.

In a CI run this test once waited out its limit: the second engine's vLLM worker, pinned by vLLM's
CPU binding to the core where the first engine's worker served the test's load, got 0.16 s of CPU
in 150 s while importing torch. The engine now leaves vLLM's threads unbound (as many as vLLM's
binding would use) and bounds each start (`model_start_timeout_seconds`; engine/README.md,
"Starting a model"): the test took under 4 minutes then.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from bud.engine.v1 import engine_service_pb2, engine_service_pb2_grpc
from budrt.tls import LocalCa
from tests.support.mesh import ExtraEngine, Mesh, free_port, spawn_service, start_engine, stop_process
from tests.support.procs import descendants, still_running, wait_until
from tests.support.tls import share_ca

pytestmark = pytest.mark.mesh

NAME = "auto-llama"
# Short windows so that each decision shows within the test (the defaults are tens of seconds to
# minutes); up above 3 outstanding requests per ready replica, down below 2 (hysteresis between).
SCALING_ENV = {
    "BUD_SCALE_UP_OUTSTANDING": "3",
    "BUD_SCALE_UP_WINDOW_SECONDS": "2",
    "BUD_SCALE_DOWN_OUTSTANDING": "2",
    "BUD_SCALE_DOWN_WINDOW_SECONDS": "10",  # a moment to see the added replica serving
    # Long: the drain must end by the gateway's reports (nothing in flight), not by the timeout.
    "BUD_DRAIN_TIMEOUT_SECONDS": "120",
    "BUD_LOAD_REPORT_INTERVAL": "0.5",
}
LOAD_CLIENTS = 6  # 6 outstanding on one replica: above 3
BACKGROUND_CLIENTS = 2  # 2 outstanding: 1 per replica on two (under 2), never above 3 on one
START_TIMEOUT_S = 300.0
LOAD_TIMEOUT_S = 1200.0  # vLLM starting on two CPU cores shared with the load (and other runs)


@dataclass
class Platform:
    """This test's app and gateway, the second engine, and an admin's REST client."""

    mesh: Mesh
    data_dir: Path
    env: dict[str, str]
    http_url: str
    engine: ExtraEngine
    processes: dict[str, Any] = field(default_factory=dict)
    admin: httpx.Client | None = None
    api_key: str = ""
    project_id: str = ""

    def log(self, service: str) -> str:
        path = self.data_dir / f"{service}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def logs(self) -> str:
        return "\n".join(
            f"--- {name} ---\n{text[-4000:]}"
            for name, text in (
                ("app", self.log("app")),
                ("gateway", self.log("gateway")),
                ("engine", self.engine.log_text()),
            )
        )

    def deployments(self) -> str:
        return f"/v1/projects/{self.project_id}/deployments"

    def get(self, deployment_id: str) -> dict[str, Any]:
        assert self.admin is not None
        reply = self.admin.get(f"{self.deployments()}/{deployment_id}")
        assert reply.status_code == 200, reply.text
        return reply.json()["deployment"]

    def events(self, deployment_id: str) -> list[dict[str, Any]]:
        assert self.admin is not None
        reply = self.admin.get(f"{self.deployments()}/{deployment_id}/scaling_events")
        assert reply.status_code == 200, reply.text
        return reply.json().get("events", [])


def _served(mesh: Mesh, address: str) -> dict[str, int]:
    """An engine's served models and their states (ListModels)."""
    with mesh.channel(address) as channel:
        models = (
            engine_service_pb2_grpc.EngineServiceStub(channel)
            .ListModels(engine_service_pb2.ListModelsRequest(), timeout=30)
            .models
        )
    return {m.name: m.state for m in models}


@pytest.fixture()
def platform(mesh: Mesh, tmp_path: Path) -> Iterator[Platform]:
    engine = start_engine(mesh, tmp_path / "engine")
    data_dir = tmp_path / "platform"
    data_dir.mkdir()
    share_ca(LocalCa(mesh.data_dir / "tls"), data_dir)  # the app, gateway and both engines trust each other
    env = {
        **os.environ,
        "BUD_DATA_DIR": str(data_dir),
        "BUD_APP_ADDRESS": f"127.0.0.1:{free_port()}",
        "BUD_ENGINE_ADDRESS": mesh.engine_grpc,  # registered as "default" by the app
        "BUD_GATEWAY_HTTP_PORT": str(free_port()),
        "BUD_GATEWAY_GRPC_ADDRESS": f"127.0.0.1:{free_port()}",
        "BUD_DEFAULT_MODEL_NAME": "",  # no first-start deployments: the test makes its own
        "BUD_DEFAULT_EMBEDDING_MODEL_NAME": "",
        "BUD_DEFAULT_IMAGE_MODEL_NAME": "",
        "BUD_DEFAULT_KEY_REQUESTS_PER_MINUTE": "0",
        # Not the session mesh's /metrics ports.
        "BUD_APP_METRICS_ADDRESS": f"127.0.0.1:{free_port()}",
        "BUD_GATEWAY_METRICS_ADDRESS": f"127.0.0.1:{free_port()}",
        "BUD_PROMPT_METRICS_ADDRESS": f"127.0.0.1:{free_port()}",
        "PYTHONUNBUFFERED": "1",
        **SCALING_ENV,
    }
    running = Platform(mesh, data_dir, env, f"http://127.0.0.1:{env['BUD_GATEWAY_HTTP_PORT']}", engine)
    spawned: set[int] = set()
    try:
        for service in ("app", "gateway"):
            running.processes[service] = spawn_service([service], env, data_dir / f"{service}.log")
        first_log = wait_until(
            "the app's bootstrap output",
            lambda: "BUD_ADMIN_PASSWORD=" in running.log("app") and running.log("app"),
            START_TIMEOUT_S,
            running.logs,
        )
        running.api_key = re.search(r"^OPENAI_API_KEY=(bud-\S+)$", first_log, re.MULTILINE).group(1)  # type: ignore[union-attr]
        password = re.search(r"^BUD_ADMIN_PASSWORD=(\S+)$", first_log, re.MULTILINE).group(1)  # type: ignore[union-attr]

        def login() -> str:
            try:
                reply = httpx.post(
                    f"{running.http_url}/v1/auth/login",
                    json={"username": "admin", "password": password},
                    timeout=10,
                )
            except httpx.HTTPError:
                return ""
            return reply.json()["access_token"] if reply.status_code == 200 else ""

        token = wait_until("the gateway answering", login, START_TIMEOUT_S, running.logs)
        running.admin = httpx.Client(
            base_url=running.http_url, headers={"authorization": f"Bearer {token}"}, timeout=30
        )
        running.project_id = running.admin.get("/v1/projects").json()["projects"][0]["id"]
        yield running
    finally:
        for process in running.processes.values():
            spawned |= descendants(process.pid)
        spawned |= descendants(engine.process.pid)
        try:
            if running.admin is not None:
                _delete_deployments(running)
        finally:
            for name in ("gateway", "app"):
                if name in running.processes:
                    stop_process(running.processes[name], timeout=30)
            engine.stop()
            if running.admin is not None:
                running.admin.close()
    deadline = time.monotonic() + 10
    while still_running(spawned) and time.monotonic() < deadline:
        time.sleep(0.2)
    leftover = still_running(spawned)
    for pid in leftover:  # never into later tests (an engine stopped while loading left its core)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert not leftover, f"processes outlived the test: {sorted(leftover)}"


def _delete_deployments(platform: Platform) -> None:
    """Deletes the test's deployments and waits until the mesh's engine no longer serves them (the
    app's control plane unloads them): later mesh tests meet the mesh's engine as it was."""
    assert platform.admin is not None
    listed = platform.admin.get(platform.deployments()).json().get("deployments", [])
    prefixes = [d["id"] for d in listed]
    for deployment in listed:
        reply = platform.admin.delete(f"{platform.deployments()}/{deployment['id']}")
        assert reply.status_code == 200, reply.text
    wait_until(
        "the test's models unloaded from the mesh's engine",
        lambda: (
            not [
                n for n in _served(platform.mesh, platform.mesh.engine_grpc) if n.startswith(tuple(prefixes))
            ]
            if prefixes
            else True
        ),
        120,
        platform.logs,
    )


@dataclass
class Clients:
    """Threads calling the deployment through the gateway until stopped; every failure kept."""

    client: openai.OpenAI
    count: int
    stop: threading.Event = field(default_factory=threading.Event)
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Clients:
        for i in range(self.count):
            thread = threading.Thread(target=self._run, args=(i,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _run(self, i: int) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            try:
                _chat(self.client, stream=(i + n) % 2 == 0)
            except Exception as err:  # every failure is the test's failure, and kept to show
                with self._lock:
                    self.failures.append(f"{type(err).__name__}: {err}")
                continue
            with self._lock:
                self.ok += 1

    def finish(self) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout=120)
            assert not thread.is_alive(), "a client call hung"


def _actions(platform: Platform, deployment_id: str, action: str) -> list[dict[str, Any]]:
    """The deployment's scaling events of one action, newest first."""
    return [e for e in platform.events(deployment_id) if e["action"] == action]


def _chat(client: openai.OpenAI, stream: bool = False) -> None:
    messages = [{"role": "user", "content": "Tell me a story."}]
    if stream:
        chunks = client.chat.completions.create(model=NAME, messages=messages, max_tokens=48, stream=True)  # type: ignore[arg-type]
        finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        assert finishes, "the stream ended without a finish reason"
        return
    reply = client.chat.completions.create(model=NAME, messages=messages, max_tokens=48)  # type: ignore[arg-type]
    assert reply.choices and reply.choices[0].finish_reason, reply


def test_load_adds_a_replica_on_the_second_engine_and_idleness_removes_it_without_a_failed_request(
    platform: Platform,
) -> None:
    admin = platform.admin
    assert admin is not None
    engines = admin.get("/v1/engines").json()["engines"]
    (first,) = [e for e in engines if e["address"] == platform.mesh.engine_grpc]
    registered = admin.post(
        "/v1/engines", json={"name": "second", "address": platform.engine.address, "max_models": 4}
    )
    assert registered.status_code == 200, registered.text
    second = registered.json()["engine"]

    # One replica, named on the mesh's engine: the one the control plane adds can only go to the
    # second engine.
    created = admin.post(
        platform.deployments(),
        json={
            "name": NAME,
            "model": {"builtin": "tiny-llama"},
            "runner": "RUNNER_GENERATE",
            "endpoints": [{"engine_id": first["id"]}],
            "engine_args": {"max_model_len": 512, "kv_cache_space_gib": 0.25, "enforce_eager": True},
            "scaling": {"autoscale": True, "min_replicas": 1, "max_replicas": 2},
        },
    )
    assert created.status_code == 200, created.text
    deployment_id = created.json()["deployment"]["id"]
    client = openai.OpenAI(
        base_url=f"{platform.http_url}/v1", api_key=platform.api_key, max_retries=0, timeout=120
    )

    def serves() -> bool:
        try:
            _chat(client)
        except openai.OpenAIError:
            return False
        return True

    wait_until("the deployment serving on the mesh's engine", serves, LOAD_TIMEOUT_S, platform.logs)
    assert platform.get(deployment_id)["ready_replicas"] == 1
    served_name = f"{deployment_id}-g1"
    assert served_name not in _served(platform.mesh, platform.engine.address)

    # Load above the threshold: the control plane adds a replica on the second engine. The load
    # then falls to a light one (under the scale-up threshold, 2 per replica at most): the added
    # replica loads meanwhile (vLLM starts there; on two CPU cores busy with the load it would
    # take minutes), is not removed while it loads, joins routing once ready, and serves.
    load = Clients(client, LOAD_CLIENTS).start()
    try:
        up = wait_until(
            "a scale-up event",
            lambda: load.failures or _actions(platform, deployment_id, "SCALING_ACTION_SCALE_UP"),
            120,
            platform.logs,
        )
    finally:
        load.finish()
    assert not load.failures, load.failures[:5]
    assert len(up) == 1, up
    assert up[0]["engine_id"] == second["id"], up
    assert (up[0]["from_replicas"], up[0]["to_replicas"]) == (1, 2), up
    assert re.fullmatch(r"outstanding requests per ready replica [\d.]+ > 3 for 2 s", up[0]["reason"]), up

    background = Clients(client, BACKGROUND_CLIENTS).start()
    try:
        wait_until(
            "a second ready replica",
            lambda: background.failures or platform.get(deployment_id)["ready_replicas"] == 2,
            LOAD_TIMEOUT_S,
            platform.logs,
        )
        assert not background.failures, background.failures[:5]
        assert (
            _served(platform.mesh, platform.engine.address).get(served_name)
            == engine_service_pb2.MODEL_STATE_READY
        )
        assert not _actions(platform, deployment_id, "SCALING_ACTION_SCALE_DOWN")  # not while it loaded

        # Quiet for the scale-down window: the added replica is drained (out of routing first)
        # and unloaded, and no request fails meanwhile.
        down = wait_until(
            "a scale-down event",
            lambda: background.failures or _actions(platform, deployment_id, "SCALING_ACTION_SCALE_DOWN"),
            120,
            platform.logs,
        )
        assert not background.failures, background.failures[:5]
        decided = time.monotonic()
        wait_until(
            "the added replica unloaded from the second engine",
            lambda: background.failures or served_name not in _served(platform.mesh, platform.engine.address),
            90,
            platform.logs,
        )
        # Drained by the gateway's reports (nothing in flight), long before the drain timeout.
        assert time.monotonic() - decided < 60
        wait_until("one ready replica", lambda: platform.get(deployment_id)["ready_replicas"] == 1, 30)
        served_before = background.ok
        wait_until("requests served after the unload", lambda: background.ok >= served_before + 4, 60)
    finally:
        background.finish()
    assert not background.failures, background.failures[:5]
    assert background.ok > 0
    assert len(down) == 1, down
    assert down[0]["engine_id"] == second["id"], down
    assert (down[0]["from_replicas"], down[0]["to_replicas"]) == (2, 1), down
    assert re.fullmatch(r"outstanding requests per ready replica [\d.]+ < 2 for 10 s", down[0]["reason"]), (
        down
    )
    status = platform.get(deployment_id)
    assert (status["ready_replicas"], status["desired_replicas"]) == (1, 1), status
    assert [e["engine_id"] for e in status["endpoints"]] == [first["id"]]  # the tenant's replica stays
    assert served_name in _served(platform.mesh, platform.mesh.engine_grpc)
