"""Prompt runs are cached on the rendered request (issue 15, "Caching"): the prompt executor calls
the model back through the gateway's OpenAI service, whose response cache keys on the request
the template rendered. The same variables with a deterministic prompt: one engine call; other
variables: a new one. Runs on the in-process stack (app, instant engine, gateway and the
co-hosted executor) with the chat deployment's `caching` switched on through the management API."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
import requests

from tests.gateway.prompt_stack import PromptStack, prompt_stack

pytestmark = pytest.mark.integration

GREETING = {
    "messages": [{"role": "user", "template": "Greet {{ name }}."}],
    "parameters": {"temperature": 0},
    "input": {"mode": "IO_MODE_STRUCTURED", "variables": [{"name": "name", "type": "VARIABLE_TYPE_STRING"}]},
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PromptStack]:
    with prompt_stack(Path(tmp_path_factory.mktemp("prompt-cache"))) as running:
        _switch_caching_on(running)
        yield running


def _switch_caching_on(stack: PromptStack) -> None:
    """Turns the chat deployment's caching on and waits until the gateway routes it, READY."""
    base = f"{stack.url}/v1/projects/{stack.project_id}/deployments"
    (chat,) = [
        d
        for d in requests.get(base, headers=stack.headers(), timeout=30).json()["deployments"]
        if d["name"] == stack.model
    ]
    reply = requests.patch(
        f"{base}/{chat['id']}",
        params={"update_mask": "caching"},
        json={"caching": True},
        headers=stack.headers(),
        timeout=30,
    )
    assert reply.status_code == 200, reply.text
    key = {"authorization": f"Bearer {stack.api_key}"}
    body = {"model": stack.model, "messages": [{"role": "user", "content": "probe"}], "temperature": 0}
    deadline = time.monotonic() + 60
    while True:  # the new generation loads, then the routing watch brings it with the switch
        probe = requests.post(f"{stack.url}/v1/chat/completions", json=body, headers=key, timeout=30)
        if probe.status_code == 200 and "x-bud-cache" in probe.headers:
            return
        assert time.monotonic() < deadline, f"caching never reached the gateway: {probe.status_code}"
        time.sleep(0.1)


def test_a_prompt_run_is_cached_on_its_rendered_request(stack: PromptStack) -> None:
    prompt_id = stack.create_prompt("cached-greeting", GREETING)["id"]
    client = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=stack.api_key, max_retries=0)

    def run(name: str) -> openai.types.responses.Response:
        return client.responses.create(prompt={"id": prompt_id, "variables": {"name": name}}, store=False)

    before = stack.engine.calls
    first, second = run("Ada"), run("Ada")
    assert stack.engine.calls == before + 1  # the second run's model call was a hit
    assert second.output_text == first.output_text and second.id != first.id
    run("Grace")  # another rendered request: a miss
    assert stack.engine.calls == before + 2


def test_a_prompt_runs_caller_is_told_hit_or_miss(stack: PromptStack) -> None:
    """The model call's `x-bud-cache` travels back with its rate-limit headers: executor →
    gateway → the client of `/v1/responses`, unary and streamed."""
    prompt_id = stack.create_prompt("told-greeting", GREETING)["id"]
    key = {"authorization": f"Bearer {stack.api_key}"}
    body = {"prompt": {"id": prompt_id, "variables": {"name": "Lin"}}, "store": False}
    seen = []
    for extra in ({}, {}, {"stream": True}):
        reply = requests.post(f"{stack.url}/v1/responses", json={**body, **extra}, headers=key, timeout=30)
        assert reply.status_code == 200, reply.text
        seen.append(reply.headers.get("x-bud-cache"))
    assert seen == ["miss", "hit", "miss"]  # a stream is its own entry: a miss, then stored
