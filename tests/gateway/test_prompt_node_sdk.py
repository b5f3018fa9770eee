"""The official `openai` package for Node runs a saved prompt through `/v1/responses` (unary and
both streaming styles, a function call streamed both ways too) against the in-process stack with
the co-hosted prompt executor."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway.prompt_stack import PromptStack, prompt_stack
from tests.gateway.test_node_sdk import node_sdk  # noqa: F401  (the fixture: npm install once)
from tests.gateway.test_prompt_responses import GREETING
from tests.gateway.test_prompt_tools import WEATHER_TOOL

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PromptStack]:
    with prompt_stack(Path(tmp_path_factory.mktemp("prompt-node"))) as running:
        yield running


def test_node_sdk_runs_and_streams_a_prompt(stack: PromptStack, node_sdk: Path) -> None:  # noqa: F811
    prompt_id = stack.create_prompt("node", GREETING)["id"]
    tool_prompt = stack.create_prompt("node-tools", {**GREETING, "tools": [WEATHER_TOOL]})["id"]
    # The two tool-prompt streams come first in prompt_check.mjs: each answers with a call.
    stack.engine.replies = [[("get_weather", '{"city": "Oslo"}')], [("get_weather", '{"city": "Rome"}')]]
    result = subprocess.run(
        ["node", "prompt_check.mjs"],
        cwd=node_sdk,
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **os.environ,
            "BASE_URL": f"{stack.url}/v1",
            "API_KEY": stack.api_key,
            "PROMPT_ID": prompt_id,
            "TOOL_PROMPT_ID": tool_prompt,
            "MODEL": stack.model,
            "VARIABLES": json.dumps({"name": "Ada", "age": "36"}),
        },
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["tools"]["types"] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert out["tools"]["deltas"] == ['{"city": "Oslo"}']
    assert out["tools"]["call"] == [
        {"type": "function_call", "name": "get_weather", "arguments": '{"city": "Rome"}'}
    ]
    assert out["plain"]["text"] == "ok" and out["plain"]["prompt"]["id"] == prompt_id
    types = out["stream"]["types"]
    assert types[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert types[-1] in ("response.completed", "response.incomplete")
    assert out["stream"]["sequence"] == list(range(len(types)))
    assert out["stream"]["text"] == "w0 w1 w2 w3 "
    assert out["helper"]["types"] == types and out["helper"]["text"] == "w0 w1 w2 w3 "
    assert out["bad"] == {"status": 400, "code": "invalid_prompt_input", "param": "prompt.variables.name"}
