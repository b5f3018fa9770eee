"""An integration tool's call is a span `execute_tool {name}` (GenAI conventions) under the
caller's span, naming the tool only: never its arguments, its result or the key."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import orjson
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bud.prompt.v1 import prompt_pb2
from budrt import tracing
from prompt.tools.base import ConnectorConfig
from prompt.tools.toolbox import Toolbox
from tests.support.fake_connectors import NOTION_TOKEN, SLACK_TOKEN, FakeConnectors, fake_connectors


@pytest.fixture
def fakes() -> Iterator[FakeConnectors]:
    with fake_connectors() as running:
        yield running


async def test_a_tool_call_is_a_span_without_its_content(fakes: FakeConnectors) -> None:
    exporter = InMemorySpanExporter()
    tracing.configure("", "prompt", exporter=exporter)
    try:
        version = prompt_pb2.PromptVersion(
            integration_tools=[
                prompt_pb2.IntegrationTool(
                    integration="slack", active=True, access_keys={"bot_token": SLACK_TOKEN}
                ),
                prompt_pb2.IntegrationTool(
                    integration="notion", active=True, access_keys={"api_key": NOTION_TOKEN}
                ),
            ]
        )
        config = ConnectorConfig(
            slack_base_url=fakes.slack_url, notion_base_url=fakes.notion_url, timeout_s=5.0
        )
        arguments = orjson.dumps({"channel": "C01", "text": "the tool's secret argument"}).decode()
        with tracing.span("caller") as caller:
            async with httpx.AsyncClient() as http:
                result = await Toolbox(version).run(http, config, "slack_post_message", arguments)
        assert not result.failed
        tracing.force_flush()
        spans = {s.name: s for s in exporter.get_finished_spans()}
    finally:
        tracing.shutdown()
    tool = spans["execute_tool slack_post_message"]
    assert tool.parent.span_id == caller.get_span_context().span_id
    assert tool.attributes["gen_ai.operation.name"] == "execute_tool"
    assert tool.attributes["gen_ai.tool.name"] == "slack_post_message"
    dumped = str(dict(tool.attributes)) + str([e.attributes for e in tool.events])
    assert "secret argument" not in dumped and SLACK_TOKEN not in dumped and "1700000000" not in dumped
