"""The Responses API for direct model calls, through the real SDK (plain and streamed)."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.support.mesh import Mesh

pytestmark = pytest.mark.mesh


def _client(mesh: Mesh) -> openai.OpenAI:
    return openai.OpenAI(base_url=mesh.openai_base_url, api_key=mesh.api_key, max_retries=0, timeout=120)


def test_response_plain(mesh: Mesh) -> None:
    response = _client(mesh).responses.create(
        model="tiny-llama", input="Say hi", instructions="Be brief", max_output_tokens=6, temperature=0
    )
    assert response.object == "response" and response.id.startswith("resp_")
    assert response.status in ("completed", "incomplete")
    assert response.output[0].type == "message" and response.output[0].role == "assistant"
    assert response.output[0].content[0].type == "output_text"
    assert response.output_text == response.output[0].content[0].text
    assert response.usage is not None and response.usage.output_tokens <= 6
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    if response.status == "incomplete":
        assert (
            response.incomplete_details is not None
            and response.incomplete_details.reason == "max_output_tokens"
        )


def test_response_streamed_events(mesh: Mesh) -> None:
    events = list(
        _client(mesh).responses.create(
            model="tiny-llama",
            input=[{"role": "user", "content": "Tell me a story"}],
            max_output_tokens=8,
            temperature=1.0,
            stream=True,
        )
    )
    types = [e.type for e in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] in ("response.completed", "response.incomplete")
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    done = [e for e in events if e.type == "response.output_text.done"]
    if deltas:
        assert done and done[0].text == deltas
        assert "response.output_item.added" in types and "response.content_part.done" in types
    final = events[-1].response
    assert final.usage is not None and final.usage.output_tokens == 8


def test_response_raw_sse_has_named_events_and_no_done(mesh: Mesh) -> None:
    r = httpx.post(
        f"{mesh.openai_base_url}/responses",
        timeout=120,
        headers={"authorization": f"Bearer {mesh.api_key}"},
        json={"model": "tiny-llama", "input": "hi", "max_output_tokens": 3, "stream": True},
    )
    frames = [f for f in r.text.split("\n\n") if f]
    assert frames[0].startswith("event: response.created\ndata: {")
    assert "[DONE]" not in r.text


def test_response_errors(mesh: Mesh) -> None:
    with pytest.raises(openai.NotFoundError):
        _client(mesh).responses.create(model="nope", input="x")
    with pytest.raises(openai.NotFoundError) as err:  # no such stored response
        _client(mesh).responses.create(model="tiny-llama", input="x", previous_response_id="resp_123")
    assert err.value.body["param"] == "previous_response_id"  # type: ignore[index]
