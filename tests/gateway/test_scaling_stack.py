"""Issue 15 end to end: the gateway's load reports and wakes against the app's real control plane
(no RoutingService double), on the in-process stack (`prompt_stack.py`: app, gateway, instant
engine) plus a second registered instant engine. Clients are the openai SDK.

- a deployment with `min_replicas: 0` scales to zero after its idle timeout, and the next
  requests (several at once, one streamed) wake it through the gateway and all succeed;
- with `autoscale`, load through the gateway adds a replica on the second engine, and the end of
  the load drains and removes it, with every request succeeding throughout.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai
import pytest
import requests

from tests.gateway.prompt_stack import PromptStack, prompt_stack
from tests.support.instant_engine import InstantEngine, serve_instant_engine

pytestmark = pytest.mark.integration

# Short windows so that each decision shows within a test (the defaults are tens of seconds).
APP_SETTINGS: dict[str, Any] = {
    "min_idle_timeout_seconds": 1,
    "scale_up_outstanding": 2,
    "scale_up_window_seconds": 0.5,
    "scale_down_outstanding": 1,
    "scale_down_window_seconds": 1.0,
    "drain_timeout_seconds": 10.0,
    "load_report_ttl_seconds": 3.0,
}
GATEWAY_SETTINGS: dict[str, Any] = {"load_report_interval": 0.2, "cold_start_timeout": 60}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PromptStack]:
    with prompt_stack(
        tmp_path_factory.mktemp("scaling"), app=APP_SETTINGS, gateway=GATEWAY_SETTINGS
    ) as stack:
        yield stack


@pytest.fixture(scope="module")
def second_engine(stack: PromptStack) -> Iterator[tuple[str, InstantEngine]]:
    """A second instant engine, registered with the app by the platform admin; its id and it."""
    engine = InstantEngine(chunks=8)
    server = asyncio.run_coroutine_threadsafe(serve_instant_engine("127.0.0.1:0", engine), stack.loop).result(
        30
    )
    reply = requests.post(
        f"{stack.url}/v1/engines",
        json={"name": "second", "address": f"127.0.0.1:{server.port}", "max_models": 8},
        headers=stack.headers(),
        timeout=30,
    )
    assert reply.status_code == 200, reply.text
    yield reply.json()["engine"]["id"], engine
    asyncio.run_coroutine_threadsafe(server.stop(0), stack.loop).result(30)


@pytest.fixture(scope="module")
def client(stack: PromptStack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.url}/v1", api_key=stack.api_key, max_retries=0, timeout=60)


def _deployments(stack: PromptStack) -> str:
    return f"{stack.url}/v1/projects/{stack.project_id}/deployments"


def _create(stack: PromptStack, name: str, scaling: dict[str, Any]) -> dict[str, Any]:
    reply = requests.post(
        _deployments(stack),
        json={"name": name, "model": {"builtin": "tiny-llama"}, "scaling": scaling},
        headers=stack.headers(),
        timeout=30,
    )
    assert reply.status_code == 200, reply.text
    return reply.json()["deployment"]


def _get(stack: PromptStack, deployment_id: str) -> dict[str, Any]:
    reply = requests.get(f"{_deployments(stack)}/{deployment_id}", headers=stack.headers(), timeout=30)
    assert reply.status_code == 200, reply.text
    return reply.json()["deployment"]


def _events(stack: PromptStack, deployment_id: str) -> list[dict[str, Any]]:
    reply = requests.get(
        f"{_deployments(stack)}/{deployment_id}/scaling_events", headers=stack.headers(), timeout=30
    )
    assert reply.status_code == 200, reply.text
    return reply.json().get("events", [])


def _until(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _chat(client: openai.OpenAI, model: str, stream: bool = False) -> str:
    if stream:
        chunks = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=8, stream=True
        )
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=8
    )
    return reply.choices[0].message.content or ""


def test_scale_to_zero_then_requests_wake_it_through_the_gateway(
    stack: PromptStack, client: openai.OpenAI
) -> None:
    deployment = _create(stack, "sleepy", {"min_replicas": 0, "idle_timeout_seconds": 1})
    stack.wait_routed("sleepy")
    assert _chat(client, "sleepy")

    # Idle for its timeout (the gateway's reports carry the last request's time): unloaded.
    _until(
        lambda: _get(stack, deployment["id"])["status"] == "DEPLOYMENT_STATUS_SCALED_TO_ZERO",
        "the deployment to scale to zero",
    )
    assert _get(stack, deployment["id"])["ready_replicas"] == 0
    served = f"{deployment['id']}-g1"
    _until(lambda: served not in stack.engine.models, "the engine to unload it")
    listed = client.models.list()
    assert "sleepy" in {m.id for m in listed.data}  # still listed while scaled to zero

    # Requests arriving while it is scaled to zero wait for one wake, then all succeed.
    with ThreadPoolExecutor(4) as pool:
        calls = [pool.submit(_chat, client, "sleepy") for _ in range(3)]
        calls.append(pool.submit(_chat, client, "sleepy", True))
        answers = [c.result(timeout=90) for c in calls]
    assert all(answers), answers
    after = _get(stack, deployment["id"])
    assert after["status"] == "DEPLOYMENT_STATUS_READY" and after["ready_replicas"] == 1
    actions = [e["action"] for e in _events(stack, deployment["id"])]
    assert actions[:2] == ["SCALING_ACTION_WAKE", "SCALING_ACTION_SCALE_TO_ZERO"], actions
    assert actions.count("SCALING_ACTION_WAKE") == 1, actions  # one wake for every waiting request


def test_load_through_the_gateway_adds_a_replica_and_its_end_removes_it(
    stack: PromptStack, client: openai.OpenAI, second_engine: tuple[str, InstantEngine]
) -> None:
    engines = (stack.engine, second_engine[1])
    deployment = _create(stack, "busy", {"autoscale": True, "min_replicas": 1, "max_replicas": 2})
    stack.wait_routed("busy")
    for engine in engines:
        engine.chunk_delay = 0.25  # streams last ~1 s: requests stay in flight
    failures: list[BaseException] = []
    done = 0
    stop = time.monotonic() + 60

    def load() -> None:
        nonlocal done
        while time.monotonic() < stop:
            try:
                _chat(client, "busy", stream=True)
                done += 1
            except BaseException as err:  # every failure is the test's failure
                failures.append(err)
                return
            if _get(stack, deployment["id"])["ready_replicas"] >= 2:
                return

    try:
        with ThreadPoolExecutor(6) as pool:
            workers = [pool.submit(load) for _ in range(6)]
            _until(
                lambda: _get(stack, deployment["id"])["ready_replicas"] == 2,
                "a second replica",
                timeout=60,
            )
            for worker in workers:
                worker.result(timeout=90)
    finally:
        for engine in engines:
            engine.chunk_delay = 0.0
    assert not failures, failures
    up = [e for e in _events(stack, deployment["id"]) if e["action"] == "SCALING_ACTION_SCALE_UP"]
    # On the other engine: replicas of a deployment go on distinct engines.
    assert up and up[0]["engine_id"], up
    first = [e["engine_id"] for e in deployment.get("endpoints", [])]
    assert up[0]["engine_id"] not in first, (up, first)
    assert "outstanding" in up[0]["reason"], up

    # The load is over: the replica the scaler added is drained and removed; calls keep working.
    _until(
        lambda: _get(stack, deployment["id"])["ready_replicas"] == 1 and _chat(client, "busy"),
        "the added replica to be removed",
        timeout=60,
    )
    actions = [e["action"] for e in _events(stack, deployment["id"])]
    assert "SCALING_ACTION_SCALE_DOWN" in actions, actions
