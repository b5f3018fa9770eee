"""The studio's streamed runs over REST (`prompts:run` with `"stream": true`: StreamRunPrompt,
server-sent events through the gateway's transcoding), against the in-process stack: text
deltas as the engine writes them, then the finished run; errors before the first event as a
plain error answer; a client that leaves cancels the model call. And a run's cost (unary and
streamed) at its deployment's price."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests

from tests.gateway.prompt_stack import PromptStack, prompt_stack

pytestmark = pytest.mark.integration

DRAFT = {
    "messages": [{"role": "user", "template": "Say something about {{ input }}"}],
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PromptStack]:
    with prompt_stack(Path(tmp_path_factory.mktemp("studio-stream"))) as running:
        yield running


def _stream(stack: PromptStack, draft: dict[str, Any], variables: dict[str, Any]) -> requests.Response:
    body = {"version": {"model": stack.model, **draft}, "variables": variables, "stream": True}
    return requests.post(
        f"{stack.url}/v1/projects/{stack.project_id}/prompts:run",
        json=body,
        headers=stack.headers(),
        timeout=30,
        stream=True,
    )


def _events(reply: requests.Response) -> Iterator[tuple[str, dict[str, Any], float]]:
    """(event name, data, arrival time) of each server-sent event."""
    name = ""
    for line in reply.iter_lines():
        if line.startswith(b"event: "):
            name = line[7:].decode()
        elif line.startswith(b"data: "):
            yield name, orjson.loads(line[6:]), time.monotonic()


def test_text_streams_as_deltas_then_the_run(stack: PromptStack) -> None:
    stack.engine.chunks, stack.engine.chunk_delay = 5, 0.2
    try:
        reply = _stream(stack, DRAFT, {"input": "tea"})
        assert reply.status_code == 200, reply.text
        assert reply.headers["content-type"].startswith("text/event-stream")
        events = list(_events(reply))
    finally:
        stack.engine.chunks, stack.engine.chunk_delay = 4, 0.0
    names = [name for name, _, _ in events]
    assert names == ["run.delta"] * 5 + ["run.completed"], names
    deltas = [data["delta"] for name, data, _ in events if name == "run.delta"]
    assert deltas == [f"w{i} " for i in range(5)]
    # They arrive as the engine writes them, not all at the end.
    assert events[-1][2] - events[0][2] > 0.5
    run = events[-1][1]["run"]
    assert run["text"] == "".join(deltas)
    assert run["model_calls"] == 1 and int(run["usage"]["completion_tokens"]) == 5


def test_a_checked_output_is_released_once_checked(stack: PromptStack) -> None:
    structured = {
        **DRAFT,
        "output": {
            "mode": "IO_MODE_STRUCTURED",
            "variables": [{"name": "summary", "type": "VARIABLE_TYPE_STRING"}],
        },
    }
    stack.engine.replies = ['{"summary": "fine"}']
    events = list(_events(_stream(stack, structured, {"input": "x"})))
    assert [name for name, _, _ in events] == ["run.delta", "run.completed"]
    assert events[-1][1]["run"]["output"] == {"summary": "fine"}


def test_errors_before_the_stream_are_plain_answers(stack: PromptStack) -> None:
    reply = _stream(stack, {"messages": [{"role": "user", "template": "{{ nope }}"}]}, {})
    assert reply.status_code == 400, reply.text
    assert "nope" in reply.json()["message"]
    viewer_less = requests.post(
        f"{stack.url}/v1/projects/{stack.project_id}/prompts:run",
        json={"version": {"model": stack.model, **DRAFT}, "stream": True},
        timeout=30,
    )
    assert viewer_less.status_code == 401


def test_leaving_cancels_the_model_call(stack: PromptStack) -> None:
    stack.engine.chunks, stack.engine.chunk_delay = 100, 0.2
    try:
        reply = _stream(stack, DRAFT, {"input": "a long one"})
        events = _events(reply)
        name, data, _ = next(events)
        assert name == "run.delta"
        assert stack.engine.open_streams == 1
        reply.close()  # the client leaves after the first words
        deadline = time.monotonic() + 5  # the stream would run 20 s
        while stack.engine.open_streams and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stack.engine.open_streams == 0
    finally:
        stack.engine.chunks, stack.engine.chunk_delay = 4, 0.0


def expected_cost(run: dict[str, Any], input_usd: str, output_usd: str, request_usd: str) -> str:
    usage = run["usage"]
    cost = (
        Decimal(usage["prompt_tokens"]) * Decimal(input_usd) / 1_000_000
        + Decimal(usage["completion_tokens"]) * Decimal(output_usd) / 1_000_000
        + Decimal(request_usd) * run["model_calls"]
    )
    return str(cost.quantize(Decimal("0.000000001"), rounding=ROUND_HALF_UP))


def test_a_run_shows_its_cost_at_its_deployments_price(stack: PromptStack) -> None:
    stack.price_model("1.5", "20", "0.001")
    try:
        unary = requests.post(
            f"{stack.url}/v1/projects/{stack.project_id}/prompts:run",
            json={"version": {"model": stack.model, **DRAFT}, "variables": {"input": "x"}},
            headers=stack.headers(),
            timeout=30,
        )
        assert unary.status_code == 200, unary.text
        run = unary.json()["run"]
        assert run["cost_usd"] == expected_cost(run, "1.5", "20", "0.001")
        assert Decimal(run["cost_usd"]) > Decimal("0.001")
        streamed = list(_events(_stream(stack, DRAFT, {"input": "x"})))[-1][1]["run"]
        assert streamed["cost_usd"] == expected_cost(streamed, "1.5", "20", "0.001")
        # A repaired structured output: each model call pays the per-request price.
        structured = {
            **DRAFT,
            "output": {
                "mode": "IO_MODE_STRUCTURED",
                "variables": [{"name": "summary", "type": "VARIABLE_TYPE_STRING"}],
            },
            "allow_multiple_calls": True,
        }
        stack.engine.replies = ["not json", '{"summary": "fine"}']
        repaired = list(_events(_stream(stack, structured, {"input": "x"})))[-1][1]["run"]
        assert repaired["model_calls"] == 2
        assert repaired["cost_usd"] == expected_cost(repaired, "1.5", "20", "0.001")
    finally:
        stack.price_model("0", "0", "0")
