"""The integration tools (`prompt/tools/`) against local fake Slack and Notion servers that check
the bearer token: each connector's calls, its failures as tool errors (refused key, server error,
timeout), the loop that feeds results back to the model, and the key kept out of outputs and
logs."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from bud.openai.v1 import response_pb2
from bud.prompt.v1 import prompt_pb2
from prompt.tools.base import ConnectorConfig
from prompt.tools.loop import MAX_TOOL_STEPS, run_tools
from prompt.tools.toolbox import Toolbox
from tests.support.fake_connectors import NOTION_TOKEN, SLACK_TOKEN, FakeConnectors, fake_connectors

R = response_pb2
P = prompt_pb2


@pytest.fixture(scope="module")
def fakes() -> Iterator[FakeConnectors]:
    with fake_connectors() as running:
        yield running


@pytest.fixture(autouse=True)
def _reset(fakes: FakeConnectors) -> None:
    fakes.fail.clear()
    fakes.requests.clear()
    fakes.delay = 2.0


def config(fakes: FakeConnectors, timeout_s: float = 5.0) -> ConnectorConfig:
    return ConnectorConfig(
        slack_base_url=fakes.slack_url, notion_base_url=fakes.notion_url, timeout_s=timeout_s
    )


def version(slack: str = SLACK_TOKEN, notion: str = NOTION_TOKEN, multiple: bool = True) -> P.PromptVersion:
    return P.PromptVersion(
        allow_multiple_calls=multiple,
        integration_tools=[
            P.IntegrationTool(integration="slack", active=True, access_keys={"bot_token": slack}),
            P.IntegrationTool(integration="notion", active=True, access_keys={"api_key": notion}),
        ],
    )


async def run(box: Toolbox, fakes: FakeConnectors, name: str, args: dict[str, Any], **kw: Any) -> Any:
    async with httpx.AsyncClient() as http:
        result = await box.run(http, config(fakes, **kw), name, orjson.dumps(args).decode())
    return result.failed, orjson.loads(result.output)


def test_the_toolbox_offers_active_integrations_as_function_tools() -> None:
    v = version()
    v.integration_tools[1].active = False
    request = R.ResponseRequest(tools=[R.ResponseTool(type="function", name="slack_post_message")])
    Toolbox(v).offer(request)
    assert [t.name for t in request.tools] == ["slack_post_message", "slack_list_channels"]
    schema = orjson.loads(request.tools[0].parameters)
    assert schema["required"] == ["channel", "text"]
    assert not Toolbox(P.PromptVersion())


async def test_slack_posts_and_lists_with_the_bearer_token(fakes: FakeConnectors) -> None:
    box = Toolbox(version())
    failed, out = await run(box, fakes, "slack_post_message", {"channel": "C01", "text": "hi"})
    assert not failed and out == {"ok": True, "channel": "C01", "ts": "1700000000.000100"}
    failed, out = await run(box, fakes, "slack_list_channels", {"limit": 5})
    assert not failed and [c["name"] for c in out["channels"]] == ["general", "random"]
    assert fakes.of("slack") == [
        ("POST", "/api/chat.postMessage", {"channel": "C01", "text": "hi"}),
        ("GET", "/api/conversations.list", {"limit": "5", "exclude_archived": "true"}),
    ]


async def test_notion_creates_and_searches(fakes: FakeConnectors) -> None:
    box = Toolbox(version())
    failed, out = await run(
        box, fakes, "notion_create_page", {"parent_page_id": "p0", "title": "Notes", "content": "a\n\nb"}
    )
    assert not failed and out == {"id": "page-1", "url": "https://www.notion.so/page-1"}
    failed, out = await run(box, fakes, "notion_search", {"query": "road"})
    assert not failed and out["results"][0]["title"] == "Roadmap"
    (_, _, page), (_, _, search) = fakes.of("notion")
    assert page["parent"] == {"page_id": "p0"} and len(page["children"]) == 2
    assert search == {"query": "road", "page_size": 10}


@pytest.mark.parametrize(
    ("mode", "service", "tool", "args", "says"),
    [
        ("key", "slack", "slack_post_message", {"channel": "C", "text": "t"}, "refused (invalid_auth)"),
        ("key", "notion", "notion_search", {"query": "q"}, "refused (HTTP 401)"),
        ("500", "slack", "slack_list_channels", {}, "server error (HTTP 500)"),
        ("500", "notion", "notion_search", {"query": "q"}, "server error (HTTP 500)"),
        ("timeout", "notion", "notion_search", {"query": "q"}, "no answer within the timeout"),
        (
            "timeout",
            "slack",
            "slack_post_message",
            {"channel": "C", "text": "t"},
            "no answer within the timeout",
        ),
    ],
)
async def test_connector_failures_are_tool_errors_without_the_key(
    fakes: FakeConnectors,
    caplog: pytest.LogCaptureFixture,
    mode: str,
    service: str,
    tool: str,
    args: dict[str, Any],
    says: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = {"slack": "xoxb-wrong-token-aaaa1111", "notion": "secret_wrong-key-bbbb2222"}
    box = Toolbox(version(*(wrong.values() if mode == "key" else (SLACK_TOKEN, NOTION_TOKEN))))
    if mode != "key":
        fakes.fail[service] = mode
        fakes.delay = 1.0
    failed, out = await run(box, fakes, tool, args, timeout_s=0.3)
    assert failed and says in out["error"], out
    logged = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    for secret in (SLACK_TOKEN, NOTION_TOKEN, *wrong.values()):
        assert secret not in orjson.dumps(out).decode()
        assert secret not in logged


async def test_bad_arguments_and_missing_keys_are_tool_errors(fakes: FakeConnectors) -> None:
    box = Toolbox(version())
    failed, out = await run(box, fakes, "slack_post_message", {"channel": "C"})
    assert failed and "'text' is required" in out["error"]
    async with httpx.AsyncClient() as http:
        broken = await box.run(http, config(fakes), "notion_search", "{not json")
    assert broken.failed and "not valid JSON" in broken.output
    masked = Toolbox(version(slack="****1234"))
    failed, out = await run(masked, fakes, "slack_list_channels", {})
    assert failed and "no access key" in out["error"]
    assert fakes.of("slack") == []  # nothing was sent without a key


async def test_an_api_echoing_the_key_is_scrubbed(fakes: FakeConnectors) -> None:
    fakes.channels = [{"id": "C9", "name": f"leak-{SLACK_TOKEN}"}]
    try:
        failed, out = await run(Toolbox(version()), fakes, "slack_list_channels", {})
    finally:
        fakes.channels = FakeConnectors().channels
    assert not failed and out["channels"][0]["name"] == "leak-****"


def call_item(name: str, arguments: dict[str, Any], call_id: str) -> R.ResponseOutputItem:
    return R.ResponseOutputItem(
        type="function_call",
        id=f"fc_{call_id}",
        call_id=call_id,
        name=name,
        arguments=orjson.dumps(arguments),
    )


def text_item(text: str) -> R.ResponseOutputItem:
    item = R.ResponseOutputItem(type="message", id="msg_1", role="assistant", status="completed")
    item.content.add(type="output_text", text=text)
    return item


class ScriptedModel:
    """A model call answering the scripted outputs in order; keeps each request it saw."""

    def __init__(self, *outputs: list[R.ResponseOutputItem]) -> None:
        self.outputs = list(outputs)
        self.seen: list[R.ResponseRequest] = []

    async def __call__(self, request: R.ResponseRequest) -> R.Response:
        copy = R.ResponseRequest()
        copy.CopyFrom(request)
        self.seen.append(copy)
        return R.Response(id=f"resp_{len(self.seen)}", status="completed", output=self.outputs.pop(0))


async def test_the_loop_feeds_results_back_until_the_model_answers(fakes: FakeConnectors) -> None:
    model = ScriptedModel(
        [call_item("slack_list_channels", {}, "c1")],
        [call_item("slack_post_message", {"channel": "C01", "text": "hello"}, "c2")],
        [text_item("Posted in #general.")],
    )
    request = R.ResponseRequest(model="m")
    response, calls = await run_tools(
        model, request, Toolbox(version()), config(fakes), max_steps=5, multiple=True
    )
    assert calls == 3 and response.id == "resp_3" and response.status == "completed"
    assert [(i.type, i.call_id) for i in response.output] == [
        ("function_call", "c1"),
        ("function_call_output", "c1"),
        ("function_call", "c2"),
        ("function_call_output", "c2"),
        ("message", ""),
    ]
    assert orjson.loads(response.output[3].output)["ok"] is True
    # The last model call saw both calls and their outputs.
    assert [(i.type, i.call_id) for i in model.seen[-1].input_items.values] == [
        ("function_call", "c1"),
        ("function_call_output", "c1"),
        ("function_call", "c2"),
        ("function_call_output", "c2"),
    ]
    assert "general" in model.seen[-1].input_items.values[1].output


async def test_a_failed_call_reaches_the_model_and_the_response_says_so(fakes: FakeConnectors) -> None:
    fakes.fail["slack"] = "500"
    model = ScriptedModel([call_item("slack_list_channels", {}, "c1")], [text_item("Slack is down.")])
    request = R.ResponseRequest()
    response, _ = await run_tools(
        model, request, Toolbox(version()), config(fakes), max_steps=5, multiple=True
    )
    fco = response.output[1]
    assert fco.type == "function_call_output" and fco.status == "incomplete"
    assert "server error" in orjson.loads(fco.output)["error"]
    assert model.seen[1].input_items.values[1].output == fco.output


async def test_without_multiple_calls_the_calls_run_once_and_the_model_is_not_called_again(
    fakes: FakeConnectors,
) -> None:
    model = ScriptedModel([call_item("slack_post_message", {"channel": "C01", "text": "x"}, "c1")])
    response, calls = await run_tools(
        model, R.ResponseRequest(), Toolbox(version()), config(fakes), max_steps=5, multiple=False
    )
    assert calls == 1 and [i.type for i in response.output] == ["function_call", "function_call_output"]
    assert len(fakes.of("slack")) == 1


async def test_the_step_limit_ends_the_run_incomplete(fakes: FakeConnectors) -> None:
    model = ScriptedModel(*([call_item("slack_list_channels", {}, f"c{i}")] for i in range(3)))
    response, calls = await run_tools(
        model, R.ResponseRequest(), Toolbox(version()), config(fakes), max_steps=2, multiple=True
    )
    assert calls == 3 and len(fakes.of("slack")) == 2
    assert (response.status, response.incomplete_details.reason) == ("incomplete", MAX_TOOL_STEPS)
    assert [i.type for i in response.output][-1] == "function_call"  # the one not run


async def test_a_call_of_the_callers_own_tool_ends_the_loop(fakes: FakeConnectors) -> None:
    model = ScriptedModel(
        [call_item("slack_list_channels", {}, "c1"), call_item("lookup_customer", {"id": 7}, "c2")]
    )
    response, calls = await run_tools(
        model, R.ResponseRequest(), Toolbox(version()), config(fakes), max_steps=5, multiple=True
    )
    assert calls == 1
    assert [(i.type, i.name) for i in response.output] == [
        ("function_call", "slack_list_channels"),
        ("function_call_output", ""),
        ("function_call", "lookup_customer"),
    ]
