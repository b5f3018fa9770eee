"""An in-process stack for prompt execution tests and the prompt benchmark: the app (SQLite,
bootstrapped), the instant engine, the gateway's `serve()` and the prompt executor co-hosted with
it as `budrt up` runs them (each calls the other in process; prompt bodies from WatchPrompts), on
an event loop of their own thread (the openai SDK is blocking)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from app.component import component as app_component
from app.server import start_app
from app.settings import AppSettings
from auth.service_identity import APP, GATEWAY, POLICY, ServiceIdentityPolicy
from bud.openai.v1 import openai_service_pb2_grpc
from bud.prompt.v1 import prompt_pb2_grpc
from budrt.grpc_server import GrpcServer, ServiceBinding, service_channel
from gateway.backends import LocalBackend
from gateway.server import serve
from gateway.settings import GatewaySettings
from prompt.component import PROMPT_EXECUTION_SERVICE, InProcessOpenAi
from prompt.execution import PromptExecutor
from prompt.render import Limits
from prompt.store import PromptStore, PromptWatcher
from registry.component import bindings as registry_bindings
from tests.app.conftest import ADMIN_PASSWORD, ADMIN_USERNAME, FAST_RECONCILER, HASH_SECRET, JWT_SECRET
from tests.support.instant_engine import InstantEngine, serve_instant_engine
from tests.support.mesh import free_port


@dataclass
class PromptStack:
    """What tests use: the HTTP URL, the bootstrap key and its project, the admin's token, the
    chat model's name, the engine and the executor."""

    url: str
    api_key: str
    engine: InstantEngine
    executor: PromptExecutor
    loop: asyncio.AbstractEventLoop
    token: str = ""
    project_id: str = ""
    model: str = ""
    # The gateway's public gRPC face (remote stacks only).
    grpc_address: str = ""

    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}

    def price_model(self, input_usd: str, output_usd: str, request_usd: str) -> None:
        """Sets the price of the project's chat deployment (per million input and output tokens,
        per request)."""
        base = f"{self.url}/v1/projects/{self.project_id}/deployments"
        deployments = requests.get(base, headers=self.headers(), timeout=10).json()["deployments"]
        chat = next(d for d in deployments if d["name"] == self.model)
        pricing = {
            "input_per_million_usd": input_usd,
            "output_per_million_usd": output_usd,
            "per_request_usd": request_usd,
        }
        reply = requests.patch(
            f"{base}/{chat['id']}?update_mask=pricing",
            json={"pricing": pricing},
            headers=self.headers(),
            timeout=10,
        )
        assert reply.status_code == 200, reply.text

    def create_prompt(self, name: str, version: dict[str, Any], **fields: Any) -> dict[str, Any]:
        """Saves a prompt (version 1) in the key's project; waits until the executor holds it."""
        body = {"name": name, "version": {"model": self.model, **version}, **fields}
        reply = requests.post(
            f"{self.url}/v1/projects/{self.project_id}/prompts", json=body, headers=self.headers(), timeout=30
        )
        assert reply.status_code == 200, reply.text
        prompt = reply.json()["prompt"]
        self.wait_for(prompt["id"], 1)
        return prompt

    def add_version(self, prompt_id: str, version: dict[str, Any]) -> int:
        reply = requests.post(
            f"{self.url}/v1/projects/{self.project_id}/prompts/{prompt_id}/versions",
            json={"model": self.model, **version},
            headers=self.headers(),
            timeout=30,
        )
        assert reply.status_code == 200, reply.text
        number = int(reply.json()["version"]["version"])
        self.wait_for(prompt_id, number)
        return number

    def set_label(self, prompt_id: str, label: str, version: int) -> None:
        reply = requests.put(
            f"{self.url}/v1/projects/{self.project_id}/prompts/{prompt_id}/labels/{label}",
            json={"version": version},
            headers=self.headers(),
            timeout=30,
        )
        assert reply.status_code == 200, reply.text
        deadline = time.monotonic() + 10
        while not any(
            lb.name == label and lb.version == version
            for lb in self.executor.store.prompts[prompt_id].snapshot.prompt.labels
        ):
            assert time.monotonic() < deadline, "the label never reached the executor"
            time.sleep(0.02)

    def deploy(self, name: str, target: dict[str, Any], **fields: Any) -> dict[str, Any]:
        """Creates a prompt deployment in the key's project (`target`: PromptTarget's JSON)."""
        reply = requests.post(
            f"{self.url}/v1/projects/{self.project_id}/deployments",
            json={"name": name, "prompt": target, **fields},
            headers=self.headers(),
            timeout=30,
        )
        assert reply.status_code == 200, reply.text
        return reply.json()["deployment"]

    def wait_routed(self, name: str, ready: bool = True) -> None:
        """Waits until the gateway's tables hold the deployment `name` (ready or not)."""
        tables = self.gateway_tables()
        deadline = time.monotonic() + 10
        while not any(d.name == name and d.ready == ready for d in tables.deployments.values()):
            assert time.monotonic() < deadline, f"the gateway never saw {name} (ready={ready})"
            time.sleep(0.02)

    def gateway_tables(self) -> Any:
        """The gateway's routing tables (the servicer the executor calls back)."""
        return self.executor.openai().servicer.tables  # type: ignore[union-attr]

    def wait_for(self, prompt_id: str, version: int) -> None:
        deadline = time.monotonic() + 10
        while True:
            entry = self.executor.store.prompts.get(prompt_id)
            if entry is not None and any(v.version == version for v in entry.snapshot.versions):
                return
            assert time.monotonic() < deadline, "the prompt never reached the executor"
            time.sleep(0.02)


# The executor's server here: the app reaches it for the studio's runs with the test process's
# certificate, a gateway's (tests/conftest.py), so that identity is let in beside the app's
# (tests/auth/test_service_identity.py holds the real table to the app alone).
STACK_POLICY = {
    **POLICY,
    "bud.prompt.v1.PromptExecutionService/RunPromptBody": frozenset({APP, GATEWAY}),
    "bud.prompt.v1.PromptExecutionService/StreamRunPromptBody": frozenset({APP, GATEWAY}),
    "bud.prompt.v1.PromptExecutionService/GenerateValidationDocument": frozenset({APP, GATEWAY}),
}


async def _serve(
    tmp: Path,
    started: Future[PromptStack],
    stopping: threading.Event,
    remote: bool,
    overrides: dict[str, dict[str, Any]],
) -> None:
    engine = InstantEngine()
    engine_server = await serve_instant_engine("127.0.0.1:0", engine)
    prompt_address = f"127.0.0.1:{free_port()}"
    app_settings = AppSettings(
        prompt_address=prompt_address,
        data_dir=tmp / "app",
        database_url=f"sqlite:///{tmp / 'bud.db'}",
        app_address="127.0.0.1:0",
        engine_address=f"127.0.0.1:{engine_server.port}",
        key_hash_secret=HASH_SECRET,
        jwt_secret=JWT_SECRET,
        admin_username=ADMIN_USERNAME,
        admin_password=ADMIN_PASSWORD,
        **overrides.get("app", {}),
    )
    app = await start_app(app_settings, [*registry_bindings()], reconciler_options=FAST_RECONCILER)
    port = free_port()
    gateway_settings = GatewaySettings(
        data_dir=tmp / "gateway",
        gateway_http_port=port,
        gateway_grpc_address=f"127.0.0.1:{free_port()}" if remote else "127.0.0.1:0",
        app_address=app.address,
        engine_address=app_settings.engine_address,
        key_hash_secret=HASH_SECRET,
        # The tests and bench_prompt send bursts with one key: no default 100 requests a minute.
        default_key_requests_per_minute=0,
        **overrides.get("gateway", {}),
    )
    openai: list[Any] = []
    store = PromptStore()
    executor = PromptExecutor(
        store, lambda: openai[0] if openai else None, Limits(), 3, run_secret=HASH_SECRET
    )
    backend: Any = LocalBackend(executor, PROMPT_EXECUTION_SERVICE)
    channels: list[Any] = []
    # Served co-hosted too, as the component does (the app's way in for the studio's runs).
    binding = ServiceBinding(
        executor, prompt_pb2_grpc.add_PromptExecutionServiceServicer_to_server, PROMPT_EXECUTION_SERVICE
    )
    server = GrpcServer(prompt_address, [binding], authorization=ServiceIdentityPolicy(STACK_POLICY))
    await server.start()
    if remote:
        # `budrt serve prompt` on its own: the gateway calls PromptExecutionService over mutual
        # TLS (as a gateway identity), the executor calls the gateway's public face in plaintext
        # with the caller's key.
        channels = [
            service_channel(f"127.0.0.1:{server.port}"),
            service_channel(gateway_settings.gateway_grpc_address, tls=None),
        ]
        backend = prompt_pb2_grpc.PromptExecutionServiceStub(channels[0])
        openai.append(openai_service_pb2_grpc.OpenAiServiceStub(channels[1]))
    watcher = asyncio.create_task(PromptWatcher(app.address, store, "tests").run())
    stop = asyncio.Event()
    gateway = asyncio.create_task(
        serve(
            gateway_settings,
            stop,
            None,
            [(s, app.address) for s in app_component.rest_services],
            prompts=lambda: backend,
            offer=None if remote else lambda servicer: openai.append(InProcessOpenAi(servicer)),
        )
    )
    assert app.bootstrapped is not None
    started.set_result(
        PromptStack(
            f"http://127.0.0.1:{port}",
            app.bootstrapped.secret,
            engine,
            executor,
            asyncio.get_running_loop(),
            grpc_address=gateway_settings.gateway_grpc_address if remote else "",
        )
    )
    await asyncio.to_thread(stopping.wait)
    stop.set()
    await gateway
    await server.stop(0)
    for channel in channels:
        await channel.close()
    watcher.cancel()
    await asyncio.gather(watcher, return_exceptions=True)
    await app.stop(grace=0)
    await engine_server.stop(0)


def _prepare(stack: PromptStack) -> None:
    """Waits for the gateway to route the default models and the executor to hold the prompts;
    logs the admin in and finds the key's project."""
    deadline = time.monotonic() + 120
    while True:
        with contextlib.suppress(requests.ConnectionError):
            ready = requests.get(f"{stack.url}/readyz", timeout=10)
            if ready.status_code == 200 and ready.json()["deployments_ready"] >= 2:
                break
        assert time.monotonic() < deadline, "the gateway never became ready"
        time.sleep(0.2)
    while not stack.executor.store.loaded.is_set():
        assert time.monotonic() < deadline, "the prompt executor never got its snapshot"
        time.sleep(0.05)
    models = requests.get(
        f"{stack.url}/v1/models", headers={"authorization": f"Bearer {stack.api_key}"}, timeout=30
    ).json()["data"]
    login = requests.post(
        f"{stack.url}/v1/auth/login",
        json={"username": ADMIN_USERNAME, "password": ADMIN_PASSWORD},
        timeout=30,
    )
    stack.token = login.json()["access_token"]
    projects = requests.get(f"{stack.url}/v1/projects", headers=stack.headers(), timeout=30).json()[
        "projects"
    ]
    assert len(projects) == 1, projects
    stack.project_id = projects[0]["id"]
    chat = AppSettings.model_fields["default_model_name"].default
    assert chat in {m["id"] for m in models}
    stack.model = chat


@contextlib.contextmanager
def prompt_stack(
    tmp: Path,
    *,
    remote: bool = False,
    app: dict[str, Any] | None = None,
    gateway: dict[str, Any] | None = None,
) -> Iterator[PromptStack]:
    """The stack, ready (see the module's docstring); `remote`: the executor as its own server
    (`budrt serve prompt`), each side calling the other over gRPC; `app`, `gateway`: settings of
    theirs to change."""
    started: Future[PromptStack] = Future()
    stopping = threading.Event()
    thread = threading.Thread(
        target=lambda: asyncio.run(
            _serve(tmp, started, stopping, remote, {"app": app or {}, "gateway": gateway or {}})
        ),
        daemon=True,
    )
    thread.start()
    try:
        stack = started.result(timeout=60)
        _prepare(stack)
        yield stack
    finally:
        stopping.set()
        thread.join(timeout=30)
