"""Tools in prompts, end to end, through the official openai SDK against the in-process stack
(app + instant engine + gateway with the co-hosted prompt executor): a prompt's function tools
come back as `function_call` items (unary and streamed as OpenAI streams them) and the caller
continues with `function_call_output` + `previous_response_id`; its integration tools (Slack,
Notion) run server-side against local fake servers that check the key, their results fed back
to the model, the transcript in the response, failures as tool errors, the key nowhere."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest

from prompt.tools.base import ConnectorConfig
from tests.gateway.prompt_stack import PromptStack, prompt_stack
from tests.support.fake_connectors import NOTION_TOKEN, SLACK_TOKEN, FakeConnectors, fake_connectors

pytestmark = pytest.mark.integration

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
ASSISTANT = {
    "system_prompt": "You help {{ name }}.",
    "messages": [{"role": "user", "template": "{{ question }}"}],
    "input": {
        "mode": "IO_MODE_STRUCTURED",
        "variables": [
            {"name": "name", "type": "VARIABLE_TYPE_STRING"},
            {"name": "question", "type": "VARIABLE_TYPE_STRING"},
        ],
    },
}


@pytest.fixture(scope="module")
def fakes() -> Iterator[FakeConnectors]:
    with fake_connectors() as running:
        yield running


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, fakes: FakeConnectors) -> Iterator[PromptStack]:
    with prompt_stack(Path(tmp_path_factory.mktemp("prompt-tools"))) as running:
        running.engine.keep_requests = True
        running.executor.connectors = ConnectorConfig(
            slack_base_url=fakes.slack_url, notion_base_url=fakes.notion_url, timeout_s=0.5
        )
        yield running


@pytest.fixture(autouse=True)
def _reset(fakes: FakeConnectors, stack: PromptStack) -> None:
    fakes.fail.clear()
    fakes.requests.clear()
    stack.engine.replies.clear()


@pytest.fixture(scope="module")
def client(stack: PromptStack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.url}/v1", api_key=stack.api_key, max_retries=0)


@pytest.fixture(scope="module")
def weather(stack: PromptStack) -> str:
    return stack.create_prompt("weather", {**ASSISTANT, "tools": [WEATHER_TOOL]})["id"]


def ref(prompt_id: str) -> dict[str, Any]:
    return {"id": prompt_id, "variables": {"name": "Ada", "question": "Weather in Paris?"}}


def chat(stack: PromptStack, index: int = -1) -> list[tuple[str, str, list[tuple[str, str]], str]]:
    """(role, text, [(tool name, arguments)], tool_call_id) of a chat request the engine got."""
    return [
        (
            m.role,
            m.content_text or "".join(p.text for p in m.content_parts.values),
            [(c.function.name, c.function.arguments) for c in m.tool_calls],
            m.tool_call_id,
        )
        for m in stack.engine.chat_requests[index].messages
    ]


def test_function_calls_come_back_and_the_caller_continues(
    stack: PromptStack, client: openai.OpenAI, weather: str
) -> None:
    stack.engine.replies = [[("get_weather", '{"city": "Paris"}')], "Sunny in Paris."]
    first = client.responses.create(prompt=ref(weather))
    (call,) = first.output
    assert call.type == "function_call" and call.name == "get_weather"
    assert orjson.loads(call.arguments) == {"city": "Paris"} and call.call_id
    assert [t.function.name for t in stack.engine.chat_requests[-1].tools] == ["get_weather"]

    second = client.responses.create(
        prompt=ref(weather),
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": '{"sky": "clear"}'}],
    )
    assert second.output_text == "Sunny in Paris." and second.previous_response_id == first.id
    assert second.prompt is not None and second.prompt.id == weather
    # The model sees the prompt once, the call and its output; the tools again.
    assert chat(stack) == [
        ("system", "You help Ada.", [], ""),
        ("user", "Weather in Paris?", [], ""),
        ("assistant", "", [("get_weather", '{"city": "Paris"}')], ""),
        ("tool", '{"sky": "clear"}', [], call.call_id),
    ]
    assert [t.function.name for t in stack.engine.chat_requests[-1].tools] == ["get_weather"]
    # Both turns are stored: the conversation can be read back.
    assert client.responses.retrieve(second.id).output_text == "Sunny in Paris."


def test_store_false_is_honoured_on_the_prompt_path(
    stack: PromptStack, client: openai.OpenAI, weather: str
) -> None:
    stack.engine.replies = [[("get_weather", '{"city": "Lima"}')]]
    response = client.responses.create(prompt=ref(weather), store=False)
    assert response.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)


def test_an_unknown_previous_response_is_404(client: openai.OpenAI, weather: str) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        client.responses.create(prompt=ref(weather), previous_response_id="resp_nope", input="x")
    assert err.value.body["param"] == "previous_response_id"  # type: ignore[index]


def test_a_streamed_function_call_is_announced_then_its_arguments(
    stack: PromptStack, client: openai.OpenAI, weather: str
) -> None:
    stack.engine.replies = [[("get_weather", '{"city": "Oslo"}')]]
    events = list(client.responses.create(prompt=ref(weather), stream=True))
    assert [e.type for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    added, delta, done = events[2], events[3], events[4]
    assert (
        added.item.type == "function_call" and added.item.arguments == "" and added.item.name == "get_weather"
    )
    assert delta.delta == '{"city": "Oslo"}' and done.arguments == '{"city": "Oslo"}'
    assert [e.sequence_number for e in events] == list(range(len(events)))
    # The stream helper assembles the call.
    stack.engine.replies = [[("get_weather", '{"city": "Rome"}')]]
    with client.responses.stream(input=[], model=stack.model, prompt=ref(weather)) as stream:
        final = stream.get_final_response()
    (call,) = final.output
    assert call.type == "function_call" and call.arguments == '{"city": "Rome"}'


def slack_prompt(stack: PromptStack, name: str, token: str = SLACK_TOKEN, multiple: bool = True) -> str:
    version = {
        **ASSISTANT,
        "allow_multiple_calls": multiple,
        "integration_tools": [
            {"integration": "slack", "active": True, "access_keys": {"bot_token": token}},
            {"integration": "notion", "active": True, "access_keys": {"api_key": NOTION_TOKEN}},
        ],
    }
    return stack.create_prompt(name, version)["id"]


def test_integration_tools_run_server_side_and_the_transcript_comes_back(
    stack: PromptStack, client: openai.OpenAI, fakes: FakeConnectors
) -> None:
    prompt_id = slack_prompt(stack, "announcer")
    stack.engine.replies = [
        [("slack_list_channels", "{}")],
        [("slack_post_message", '{"channel": "C01", "text": "Ship it"}')],
        "Posted in #general.",
    ]
    response = client.responses.create(prompt=ref(prompt_id))
    assert response.output_text == "Posted in #general."
    assert [(i.type, getattr(i, "name", None)) for i in response.output] == [
        ("function_call", "slack_list_channels"),
        ("function_call_output", None),
        ("function_call", "slack_post_message"),
        ("function_call_output", None),
        ("message", None),
    ]
    assert orjson.loads(response.output[3].output) == {
        "ok": True,
        "channel": "C01",
        "ts": "1700000000.000100",
    }
    assert [(m, p) for m, p, _ in fakes.of("slack")] == [
        ("GET", "/api/conversations.list"),
        ("POST", "/api/chat.postMessage"),
    ]
    # The model was offered the tools and saw each result; usage counts the three calls.
    assert {t.function.name for t in stack.engine.chat_requests[-1].tools} >= {
        "slack_post_message",
        "notion_search",
    }
    last = chat(stack)
    assert last[-1][0] == "tool" and '"ts"' in last[-1][1]
    assert "general" in last[-3][1]
    assert response.usage is not None and response.usage.output_tokens == 3


def test_a_streamed_run_with_integration_tools(
    stack: PromptStack, client: openai.OpenAI, fakes: FakeConnectors
) -> None:
    prompt_id = slack_prompt(stack, "searcher")
    stack.engine.replies = [[("notion_search", '{"query": "road"}')], "Found the roadmap."]
    with client.responses.stream(input=[], model=stack.model, prompt=ref(prompt_id)) as stream:
        types = [e.type for e in stream]
        final = stream.get_final_response()
    assert final.output_text == "Found the roadmap."
    assert [i.type for i in final.output] == ["function_call", "function_call_output", "message"]
    assert "Roadmap" in final.output[1].output
    assert types[-1] == "response.completed" and "response.function_call_arguments.delta" in types


def test_without_multiple_calls_the_tool_runs_once_and_its_result_is_returned(
    stack: PromptStack, client: openai.OpenAI, fakes: FakeConnectors
) -> None:
    prompt_id = slack_prompt(stack, "one-shot", multiple=False)
    stack.engine.replies = [[("slack_post_message", '{"channel": "C02", "text": "hi"}')], "never asked"]
    calls = len(stack.engine.chat_requests)
    response = client.responses.create(prompt=ref(prompt_id))
    assert len(stack.engine.chat_requests) == calls + 1
    assert [i.type for i in response.output] == ["function_call", "function_call_output"]
    assert len(fakes.of("slack")) == 1


@pytest.mark.parametrize("failure", ["key", "500", "timeout"])
def test_connector_failures_reach_the_model_and_never_the_key(
    stack: PromptStack,
    client: openai.OpenAI,
    fakes: FakeConnectors,
    caplog: pytest.LogCaptureFixture,
    failure: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "xoxb-wrong-but-secret-token-5555"
    prompt_id = slack_prompt(stack, f"broken-{failure}", token=wrong if failure == "key" else SLACK_TOKEN)
    if failure != "key":
        fakes.fail["slack"] = failure
        fakes.delay = 1.5
    stack.engine.replies = [[("slack_list_channels", "{}")], "Slack is unavailable."]
    response = client.responses.create(prompt=ref(prompt_id))
    fco = response.output[1]
    assert fco.type == "function_call_output" and fco.status == "incomplete"
    error = orjson.loads(fco.output)["error"]
    assert {"key": "refused", "500": "server error", "timeout": "no answer"}[failure] in error
    assert chat(stack)[-1][1] == fco.output  # the model read the error
    assert response.output_text == "Slack is unavailable."
    # The key is nowhere: response, stored response, logs.
    stored = client.responses.retrieve(response.id)
    logged = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    for text in (response.model_dump_json(), stored.model_dump_json(), logged):
        assert wrong not in text and SLACK_TOKEN not in text and NOTION_TOKEN not in text
