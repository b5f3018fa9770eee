"""Bad client input that the real vLLM once answered with a 5xx (issue 11, finding 10), sent
over REST to a running mesh: each is a 400 in OpenAI's error JSON naming the field at fault, and
a recursive JSON schema that has a base case is still served by real guided decoding."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.mesh import Mesh

pytestmark = pytest.mark.mesh

MODEL = "tiny-llama"
MESSAGES = [{"role": "user", "content": "Say something."}]
TOOLS = [{"type": "function", "function": {"name": "known", "parameters": {"type": "object"}}}]


def post(mesh: Mesh, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{mesh.openai_base_url}/{path}",
        json={"model": MODEL, "max_tokens": 8, **body},
        headers={"authorization": f"Bearer {mesh.api_key}"},
        timeout=120,
    )


def schema_format(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        (
            "chat/completions",
            {"messages": MESSAGES, "stream_options": {"include_usage": True}},
            "stream_options",
        ),
        ("completions", {"prompt": "Hi", "stream_options": {"include_usage": True}}, "stream_options"),
        (
            "chat/completions",
            {
                "messages": MESSAGES,
                "tools": TOOLS,
                "tool_choice": {"type": "function", "function": {"name": "unknown"}},
            },
            "tool_choice",
        ),
        ("completions", {"prompt": "Hi", "echo": True, "logprobs": 5}, "echo"),
        (
            "chat/completions",
            {"messages": MESSAGES, "response_format": schema_format({"$ref": "#"})},
            "response_format.json_schema.schema",
        ),
    ],
    ids=[
        "chat-stream-options",
        "completion-stream-options",
        "unknown-tool-choice",
        "echo-logprobs",
        "ref-loop",
    ],
)
def test_bad_input_is_a_400_in_openais_dialect(
    mesh: Mesh, path: str, body: dict[str, Any], param: str
) -> None:
    r = post(mesh, path, body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", param), error


def test_a_recursive_schema_with_a_base_case_is_served(mesh: Mesh) -> None:
    tree = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "children": {"type": "array", "items": {"$ref": "#"}}},
        "required": ["name"],
    }
    r = post(mesh, "chat/completions", {"messages": MESSAGES, "response_format": schema_format(tree)})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"].lstrip().startswith("{")
