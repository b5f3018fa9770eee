"""Stored prompt responses and the rate-limit headers of the prompt path: a prompt call with
`store` (the default) is stored as the prompt's response (its reference, the rendered input, the
output), not as the executor's inner model call; `previous_response_id` continues it; the inner
call's rate-limit headers reach the caller. Through the openai SDK against the in-process stack."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import requests

from tests.gateway.prompt_stack import PromptStack, prompt_stack

pytestmark = pytest.mark.integration

GREETING = {
    "system_prompt": "You greet people in {{ language }}.",
    "messages": [{"role": "user", "template": "Greet {{ name }}."}],
    "input": {
        "mode": "IO_MODE_STRUCTURED",
        "variables": [
            {"name": "name", "type": "VARIABLE_TYPE_STRING"},
            {"name": "language", "type": "VARIABLE_TYPE_STRING", "default": "en"},
        ],
    },
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PromptStack]:
    with prompt_stack(Path(tmp_path_factory.mktemp("prompt-stored"))) as running:
        running.engine.keep_requests = True
        yield running


@pytest.fixture(scope="module")
def client(stack: PromptStack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.url}/v1", api_key=stack.api_key, max_retries=0)


@pytest.fixture(scope="module")
def greeting(stack: PromptStack) -> str:
    return stack.create_prompt("stored-greeting", GREETING)["id"]


def _messages(stack: PromptStack) -> list[tuple[str, str]]:
    return [
        (m.role, m.content_text or "".join(part.text for part in m.content_parts.values))
        for m in stack.engine.chat_requests[-1].messages
    ]


def _texts(items: list[object]) -> list[tuple[str, str]]:
    return [(i.role, i.content[0].text) for i in items]  # type: ignore[attr-defined]


def test_a_prompt_response_is_stored_with_its_prompt_and_rendered_input(
    stack: PromptStack, client: openai.OpenAI, greeting: str
) -> None:
    stack.engine.replies = ["Hello Ada!"]
    response = client.responses.create(
        prompt={"id": greeting, "variables": {"name": "Ada"}}, input="Be brief."
    )
    assert response.store is True
    stored = client.responses.retrieve(response.id)
    assert stored.prompt is not None and (stored.prompt.id, stored.prompt.version) == (greeting, "1")
    assert stored.output_text == "Hello Ada!" and stored.store is True
    items = client.responses.input_items.list(response.id, order="asc").data
    assert _texts(items) == [
        ("system", "You greet people in en."),
        ("user", "Greet Ada."),
        ("user", "Be brief."),
    ]
    stack.engine.replies = []


def test_store_false_keeps_nothing(client: openai.OpenAI, greeting: str) -> None:
    response = client.responses.create(prompt={"id": greeting, "variables": {"name": "Bo"}}, store=False)
    assert response.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)


def test_previous_response_id_continues_a_prompt_response(
    stack: PromptStack, client: openai.OpenAI, greeting: str
) -> None:
    stack.engine.replies = ["Hello Ada!"]
    first = client.responses.create(prompt={"id": greeting, "variables": {"name": "Ada"}})
    # a direct call continues it: the earlier turn (rendered input and output) comes first
    stack.engine.replies = ["Bye."]
    second = client.responses.create(model=stack.model, previous_response_id=first.id, input="Now bye.")
    assert _messages(stack) == [
        ("system", "You greet people in en."),
        ("user", "Greet Ada."),
        ("assistant", "Hello Ada!"),
        ("user", "Now bye."),
    ]
    # a prompt call continues it too: the earlier turns, then this run's rendered messages
    stack.engine.replies = ["Salut Bo!"]
    third = client.responses.create(
        prompt={"id": greeting, "variables": {"name": "Bo", "language": "fr"}}, previous_response_id=second.id
    )
    assert third.previous_response_id == second.id
    assert _messages(stack) == [
        ("system", "You greet people in en."),
        ("user", "Greet Ada."),
        ("assistant", "Hello Ada!"),
        ("user", "Now bye."),
        ("assistant", "Bye."),
        ("system", "You greet people in fr."),
        ("user", "Greet Bo."),
    ]
    stored = client.responses.retrieve(third.id)
    assert stored.prompt is not None and stored.previous_response_id == second.id
    with pytest.raises(openai.NotFoundError):
        client.responses.create(
            prompt={"id": greeting, "variables": {"name": "Bo"}}, previous_response_id="resp_missing"
        )
    stack.engine.replies = []


def test_a_streamed_prompt_response_is_stored(
    stack: PromptStack, client: openai.OpenAI, greeting: str
) -> None:
    events = list(client.responses.create(stream=True, prompt={"id": greeting, "variables": {"name": "Cy"}}))
    final = events[-1].response  # type: ignore[union-attr]
    stored = client.responses.retrieve(final.id)
    assert stored.prompt is not None and stored.prompt.id == greeting
    assert stored.output_text == final.output_text
    assert _texts(client.responses.input_items.list(final.id, order="asc").data) == [
        ("system", "You greet people in en."),
        ("user", "Greet Cy."),
    ]


def _limited_key(stack: PromptStack, rpm: int) -> str:
    reply = requests.post(
        f"{stack.url}/v1/projects/{stack.project_id}/api_keys",
        json={"name": f"headers-{time.monotonic_ns()}", "requests_per_minute": rpm},
        headers=stack.headers(),
        timeout=30,
    )
    assert reply.status_code == 200, reply.text
    key_id = reply.json()["api_key"]["id"]
    deadline = time.monotonic() + 10
    while key_id not in stack.gateway_tables().key_prefix_by_id:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return reply.json()["secret"]


def test_the_model_calls_rate_limit_headers_reach_the_caller(stack: PromptStack, greeting: str) -> None:
    secret = _limited_key(stack, 50)
    body = {"prompt": {"id": greeting, "variables": {"name": "Di"}}}
    with httpx.Client(base_url=stack.url, headers={"authorization": f"Bearer {secret}"}, timeout=30) as http:
        first = http.post("/v1/responses", json=body)
        assert first.status_code == 200, first.text
        assert first.headers["x-ratelimit-limit-requests"] == "50"
        assert first.headers["x-ratelimit-remaining-requests"] == "49"
        streamed = http.post("/v1/responses", json={**body, "stream": True})
        assert streamed.status_code == 200 and streamed.headers["x-ratelimit-remaining-requests"] == "48"
    # through a prompt deployment with a tighter limit: the tighter one is shown
    stack.deploy("headers-dep", {"prompt_id": greeting, "version": 1}, rate_limits={"requests_per_minute": 5})
    stack.wait_routed("headers-dep")
    with httpx.Client(base_url=stack.url, headers={"authorization": f"Bearer {secret}"}, timeout=30) as http:
        reply = http.post(
            "/v1/responses", json={"prompt": {"id": "headers-dep", "variables": {"name": "Di"}}}
        )
        assert reply.status_code == 200, reply.text
        assert reply.headers["x-ratelimit-limit-requests"] == "5"
        assert reply.headers["x-ratelimit-remaining-requests"] == "4"


def test_a_streamed_prompt_call_over_the_limit_is_a_plain_429(stack: PromptStack, greeting: str) -> None:
    secret = _limited_key(stack, 1)
    body = {"prompt": {"id": greeting, "variables": {"name": "Ed"}}, "stream": True}
    with httpx.Client(base_url=stack.url, headers={"authorization": f"Bearer {secret}"}, timeout=30) as http:
        assert http.post("/v1/responses", json=body).status_code == 200
        refused = http.post("/v1/responses", json=body)
        assert refused.status_code == 429  # before any event: a plain error, not an error event
        assert refused.json()["error"]["code"] == "rate_limit_exceeded"


def test_a_direct_streamed_response_is_admitted_before_its_first_event(stack: PromptStack) -> None:
    """The direct path too: its rate-limit headers are sent (they were not: the events began
    before the admission, and on the gRPC face sending them then failed the call), and a refusal
    is a plain 429."""
    secret = _limited_key(stack, 2)
    body = {"model": stack.model, "input": "hi", "stream": True}
    with httpx.Client(base_url=stack.url, headers={"authorization": f"Bearer {secret}"}, timeout=30) as http:
        first = http.post("/v1/responses", json=body)
        assert first.status_code == 200 and first.headers["x-ratelimit-remaining-requests"] == "1"
        assert "response.completed" in first.text or "response.incomplete" in first.text
        http.post("/v1/responses", json=body)
        refused = http.post("/v1/responses", json=body)
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limit_exceeded"
