"""A prompt deployment's name as the prompt reference's `id` (`POST /v1/responses`): the routing
feed carries its target, the app marks it READY while that target exists, the gateway resolves the
name and applies the deployment's own rate limits with the key's. Through the openai SDK against
the in-process stack."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import requests

from tests.gateway.prompt_stack import PromptStack, prompt_stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PromptStack]:
    with prompt_stack(Path(tmp_path_factory.mktemp("prompt-deployments"))) as running:
        running.engine.keep_requests = True
        yield running


@pytest.fixture(scope="module")
def client(stack: PromptStack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.url}/v1", api_key=stack.api_key, max_retries=0)


def _prompt(stack: PromptStack, name: str) -> str:
    """A prompt with versions 1 ("v1 ...") and 2 ("v2 ..."), version 1 labelled `prod`."""
    prompt_id = stack.create_prompt(name, {"messages": [{"role": "user", "template": "v1 {{ input }}"}]})[
        "id"
    ]
    stack.add_version(prompt_id, {"messages": [{"role": "user", "template": "v2 {{ input }}"}]})
    stack.set_label(prompt_id, "prod", 1)
    return prompt_id


def _rendered(stack: PromptStack) -> str:
    return stack.engine.chat_requests[-1].messages[-1].content_text


def _deployment(stack: PromptStack, deployment_id: str) -> dict[str, Any]:
    reply = requests.get(
        f"{stack.url}/v1/projects/{stack.project_id}/deployments/{deployment_id}",
        headers=stack.headers(),
        timeout=30,
    )
    assert reply.status_code == 200, reply.text
    return reply.json()["deployment"]


def test_pinned_and_following_deployments_run_by_name(stack: PromptStack, client: openai.OpenAI) -> None:
    prompt_id = _prompt(stack, "named")
    pinned = stack.deploy("named-pinned", {"prompt_id": prompt_id, "version": 1})
    assert pinned["status"] == "DEPLOYMENT_STATUS_READY"  # its version exists: runnable at once
    stack.deploy("named-prod", {"prompt_id": prompt_id, "label": "prod"})
    stack.deploy("named-default", {"prompt_id": prompt_id})  # the default label: latest
    for name in ("named-pinned", "named-prod", "named-default"):
        stack.wait_routed(name)
    for name, expected, version in (
        ("named-pinned", "v1 x", "1"),
        ("named-prod", "v1 x", "1"),
        ("named-default", "v2 x", "2"),
    ):
        response = client.responses.create(prompt={"id": name, "variables": {"input": "x"}})
        assert _rendered(stack) == expected, name
        # the reference as the caller wrote it, the version resolved
        assert response.prompt is not None and (response.prompt.id, response.prompt.version) == (
            name,
            version,
        )
    # a version named by the caller wins over the one the deployment pins
    client.responses.create(prompt={"id": "named-pinned", "version": "2", "variables": {"input": "x"}})
    assert _rendered(stack) == "v2 x"
    # the label moves: the deployment follows it
    stack.set_label(prompt_id, "prod", 2)
    client.responses.create(prompt={"id": "named-prod", "variables": {"input": "x"}})
    assert _rendered(stack) == "v2 x"


def test_a_deployment_whose_label_is_gone_is_not_ready(stack: PromptStack, client: openai.OpenAI) -> None:
    prompt_id = _prompt(stack, "labelled")
    deployment = stack.deploy("follows-canary", {"prompt_id": prompt_id, "label": "prod"})
    stack.wait_routed("follows-canary")
    reply = requests.delete(
        f"{stack.url}/v1/projects/{stack.project_id}/prompts/{prompt_id}/labels/prod",
        headers=stack.headers(),
        timeout=30,
    )
    assert reply.status_code == 200, reply.text
    gone = _deployment(stack, deployment["id"])
    assert gone["status"] == "DEPLOYMENT_STATUS_FAILED" and "no label 'prod'" in gone["status_message"]
    stack.wait_routed("follows-canary", ready=False)
    with pytest.raises(openai.InternalServerError) as err:
        client.responses.create(prompt={"id": "follows-canary", "variables": {"input": "x"}})
    assert err.value.status_code == 503
    # the label back: READY again
    stack.set_label(prompt_id, "prod", 2)
    assert _deployment(stack, deployment["id"])["status"] == "DEPLOYMENT_STATUS_READY"
    stack.wait_routed("follows-canary")
    client.responses.create(prompt={"id": "follows-canary", "variables": {"input": "x"}})
    assert _rendered(stack) == "v2 x"


def test_deleting_the_prompt_takes_its_deployments(stack: PromptStack, client: openai.OpenAI) -> None:
    prompt_id = _prompt(stack, "doomed")
    deployment = stack.deploy("doomed-dep", {"prompt_id": prompt_id, "version": 2})
    stack.wait_routed("doomed-dep")
    reply = requests.delete(
        f"{stack.url}/v1/projects/{stack.project_id}/prompts/{prompt_id}?force=true",
        headers=stack.headers(),
        timeout=30,
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["deleted_deployment_ids"] == [deployment["id"]]
    deadline = time.monotonic() + 10
    while any(d.name == "doomed-dep" for d in stack.gateway_tables().deployments.values()):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(prompt={"id": "doomed-dep", "variables": {"input": "x"}})


def test_a_prompt_deployment_is_not_a_model(stack: PromptStack, client: openai.OpenAI) -> None:
    prompt_id = _prompt(stack, "not-a-model")
    stack.deploy("not-a-model-dep", {"prompt_id": prompt_id, "version": 1})
    stack.wait_routed("not-a-model-dep")
    with pytest.raises(openai.BadRequestError, match="prompt deployment"):
        client.responses.create(model="not-a-model-dep", input="hi")
    assert "not-a-model-dep" not in {m.id for m in client.models.list()}
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("not-a-model-dep")


def _key(stack: PromptStack, **limits: int) -> openai.OpenAI:
    reply = requests.post(
        f"{stack.url}/v1/projects/{stack.project_id}/api_keys",
        json={"name": f"limited-{time.monotonic_ns()}", **limits},
        headers=stack.headers(),
        timeout=30,
    )
    assert reply.status_code == 200, reply.text
    secret = reply.json()["secret"]
    deadline = time.monotonic() + 10
    key_id = reply.json()["api_key"]["id"]
    while key_id not in stack.gateway_tables().key_prefix_by_id:
        assert time.monotonic() < deadline, "the key never reached the gateway"
        time.sleep(0.02)
    return openai.OpenAI(base_url=f"{stack.url}/v1", api_key=secret, max_retries=0)


def test_the_prompt_deployments_rate_limit_applies(stack: PromptStack, client: openai.OpenAI) -> None:
    prompt_id = _prompt(stack, "limited")
    stack.deploy(
        "limited-dep", {"prompt_id": prompt_id, "version": 1}, rate_limits={"requests_per_minute": 2}
    )
    stack.wait_routed("limited-dep")
    ref = {"id": "limited-dep", "variables": {"input": "x"}}
    for _ in range(2):
        client.responses.create(prompt=ref)
    with pytest.raises(openai.RateLimitError) as err:
        client.responses.create(prompt=ref)
    assert "Rate limit" in str(err.value)
    # the limit is the deployment's: the same prompt by id (no deployment) still runs
    client.responses.create(prompt={"id": prompt_id, "variables": {"input": "x"}})


def test_the_keys_rate_limit_applies_too(stack: PromptStack) -> None:
    prompt_id = _prompt(stack, "key-limited")
    stack.deploy("key-limited-dep", {"prompt_id": prompt_id, "version": 1})
    stack.wait_routed("key-limited-dep")
    limited = _key(stack, requests_per_minute=1)
    ref = {"id": "key-limited-dep", "variables": {"input": "x"}}
    limited.responses.create(prompt=ref)
    with pytest.raises(openai.RateLimitError):
        limited.responses.create(prompt=ref)


def test_a_key_limited_to_other_deployments_does_not_see_it(stack: PromptStack) -> None:
    prompt_id = _prompt(stack, "hidden")
    stack.deploy("hidden-dep", {"prompt_id": prompt_id, "version": 1})
    stack.wait_routed("hidden-dep")
    chat = next(d.id for d in stack.gateway_tables().deployments.values() if d.name == stack.model)
    narrow = _key(stack, deployment_ids=[chat])  # type: ignore[arg-type]
    with pytest.raises(openai.NotFoundError):
        narrow.responses.create(prompt={"id": "hidden-dep", "variables": {"input": "x"}})


STRUCTURED = {
    "messages": [{"role": "user", "template": "Summarise {{ input }}"}],
    "allow_multiple_calls": True,
    "output": {
        "mode": "IO_MODE_STRUCTURED",
        "variables": [
            {
                "name": "summary",
                "type": "VARIABLE_TYPE_STRING",
                "validation": "VALIDATION_MODE_BASIC",
                "constraints": {"max_length": 10},
            }
        ],
    },
}


def _usage(stack: PromptStack, count: int, **query: str) -> list[dict[str, Any]]:
    """The usage buckets QueryUsage answers for `query`, once they count `count` requests (the
    gateway sends records in batches)."""
    deadline = time.monotonic() + 15
    while True:
        reply = requests.get(
            f"{stack.url}/v1/projects/{stack.project_id}/usage",
            params=query,
            headers=stack.headers(),
            timeout=30,
        )
        assert reply.status_code == 200, reply.text
        buckets = reply.json().get("buckets", [])
        if sum(int(b["requests"]) for b in buckets) >= count:
            return buckets
        assert time.monotonic() < deadline, f"usage never reached {count}: {buckets}"
        time.sleep(0.1)


def test_usage_records_name_the_prompt_version_and_deployment(
    stack: PromptStack, client: openai.OpenAI
) -> None:
    prompt_id = stack.create_prompt("metered", STRUCTURED)["id"]
    deployment = stack.deploy("metered-dep", {"prompt_id": prompt_id, "version": 1})
    stack.wait_routed("metered-dep")
    stack.engine.replies = ['{"summary": "far too long a summary"}', '{"summary": "ok"}']
    client.responses.create(prompt={"id": "metered-dep", "variables": {"input": "x"}})
    # both model calls of the run (the first answer and its repair) are records of the run
    buckets = _usage(stack, 2, prompt_deployment_id=deployment["id"])
    assert [(b["prompt_id"], b["prompt_version"], int(b["requests"])) for b in buckets] == [(prompt_id, 1, 2)]
    chat = next(d.id for d in stack.gateway_tables().deployments.values() if d.name == stack.model)
    assert buckets[0]["deployment_id"] == chat  # the model's deployment stays the record's deployment
    # by id: the prompt and version, no deployment
    stack.engine.replies = ['{"summary": "ok"}']
    client.responses.create(prompt={"id": prompt_id, "variables": {"input": "x"}})
    by_prompt = _usage(stack, 3, prompt_id=prompt_id)
    assert sorted((b["prompt_deployment_id"], int(b["requests"])) for b in by_prompt) == [
        ("", 1),
        (deployment["id"], 2),
    ]
    stack.engine.replies = []


def test_an_unlabelled_old_version_runs_fetched_once(stack: PromptStack, client: openai.OpenAI) -> None:
    """Version 1 with no label and no deployment is not in the watch: the executor fetches it from
    the app (FetchPromptVersion) on the first call, then runs it from memory."""
    prompt_id = stack.create_prompt("old", {"messages": [{"role": "user", "template": "old {{ input }}"}]})[
        "id"
    ]
    stack.add_version(prompt_id, {"messages": [{"role": "user", "template": "new {{ input }}"}]})
    store = stack.executor.store
    assert all(v.version != 1 for v in store.prompts[prompt_id].snapshot.versions)
    fetch = store.fetch
    assert fetch is not None
    calls: list[int] = []

    async def counting(pid: str, number: int) -> Any:
        calls.append(number)
        return await fetch(pid, number)

    store.fetch = counting
    try:
        for _ in range(3):
            client.responses.create(prompt={"id": prompt_id, "version": "1", "variables": {"input": "x"}})
            assert _rendered(stack) == "old x"
    finally:
        store.fetch = fetch
    assert calls == [1]
    with pytest.raises(openai.NotFoundError):
        client.responses.create(prompt={"id": prompt_id, "version": "3", "variables": {"input": "x"}})
