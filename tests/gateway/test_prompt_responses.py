"""`POST /v1/responses` with a prompt reference, through the official openai SDK, against the
in-process stack (app + instant engine + gateway with the co-hosted prompt executor)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import orjson
import pytest

from tests.gateway.prompt_stack import PromptStack, prompt_stack

pytestmark = pytest.mark.integration

GREETING = {
    "system_prompt": "You greet people in {{ language }}.",
    "messages": [{"role": "user", "template": "Greet {{ name }} ({{ age }} years old)."}],
    "input": {
        "mode": "IO_MODE_STRUCTURED",
        "variables": [
            {
                "name": "name",
                "type": "VARIABLE_TYPE_STRING",
                "validation": "VALIDATION_MODE_BASIC",
                "constraints": {"max_length": 20},
            },
            {"name": "age", "type": "VARIABLE_TYPE_INTEGER"},
            {"name": "language", "type": "VARIABLE_TYPE_ENUM", "options": ["en", "fr"], "default": "en"},
        ],
    },
}
STRUCTURED = {
    "messages": [{"role": "user", "template": "Summarise {{ input }}"}],
    "output": {
        "mode": "IO_MODE_STRUCTURED",
        "variables": [
            {
                "name": "summary",
                "type": "VARIABLE_TYPE_STRING",
                "validation": "VALIDATION_MODE_BASIC",
                "constraints": {"max_length": 10},
            },
            {"name": "words", "type": "VARIABLE_TYPE_INTEGER"},
        ],
    },
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PromptStack]:
    with prompt_stack(Path(tmp_path_factory.mktemp("prompt-stack"))) as running:
        running.engine.keep_requests = True
        yield running


@pytest.fixture(scope="module")
def client(stack: PromptStack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.url}/v1", api_key=stack.api_key, max_retries=0)


@pytest.fixture(scope="module")
def greeting(stack: PromptStack) -> str:
    return stack.create_prompt("greeting", GREETING)["id"]


def _last_messages(stack: PromptStack) -> list[tuple[str, str]]:
    request = stack.engine.chat_requests[-1]
    return [(m.role, m.content_text) for m in request.messages]


def test_sdk_runs_a_prompt(stack: PromptStack, client: openai.OpenAI, greeting: str) -> None:
    stack.engine.replies = ["Hello Ada!"]
    response = client.responses.create(prompt={"id": greeting, "variables": {"name": "Ada", "age": "36"}})
    assert response.output_text == "Hello Ada!"
    assert response.prompt is not None and response.prompt.id == greeting and response.prompt.version == "1"
    assert response.model == stack.model
    assert response.usage is not None and response.usage.total_tokens > 0
    assert _last_messages(stack) == [
        ("system", "You greet people in en."),
        ("user", "Greet Ada (36 years old)."),
    ]


def test_extra_input_turns_are_appended(stack: PromptStack, client: openai.OpenAI, greeting: str) -> None:
    client.responses.create(
        prompt={"id": greeting, "variables": {"name": "Bo", "age": "3", "language": "fr"}},
        input="And say goodbye.",
    )
    assert _last_messages(stack) == [
        ("system", "You greet people in fr."),
        ("user", "Greet Bo (3 years old)."),
        ("user", "And say goodbye."),
    ]


def test_versions_and_labels(stack: PromptStack, client: openai.OpenAI) -> None:
    prompt_id = stack.create_prompt(
        "versions", {"messages": [{"role": "user", "template": "v1 {{ input }}"}]}
    )["id"]
    two = stack.add_version(prompt_id, {"messages": [{"role": "user", "template": "v2 {{ input }}"}]})
    stack.set_label(prompt_id, "prod", 1)
    for version, expected in (
        (None, "v2 x"),
        ("1", "v1 x"),
        ("prod", "v1 x"),
        (str(two), "v2 x"),
        ("latest", "v2 x"),
    ):
        ref = {"id": prompt_id, "variables": {"input": "x"}}
        if version is not None:
            ref["version"] = version
        client.responses.create(prompt=ref)
        assert _last_messages(stack) == [("user", expected)], version


def test_every_bad_variable_is_named(client: openai.OpenAI, greeting: str) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(
            prompt={"id": greeting, "variables": {"name": "x" * 30, "age": "old", "colour": "red"}}
        )
    body = err.value.body
    assert isinstance(body, dict)
    assert body["code"] == "invalid_prompt_input" and body["param"] == "prompt.variables.name"
    for name in ("name", "age", "colour"):
        assert f"prompt.variables.{name}:" in body["message"]


def test_missing_variable_is_named(client: openai.OpenAI, greeting: str) -> None:
    with pytest.raises(openai.BadRequestError, match=r"prompt.variables.age: Field required"):
        client.responses.create(prompt={"id": greeting, "variables": {"name": "Ada"}})


@pytest.mark.parametrize("version", ["9", "nolabel"])
def test_unknown_prompt_version_or_label_is_404(client: openai.OpenAI, greeting: str, version: str) -> None:
    with pytest.raises(openai.NotFoundError):
        client.responses.create(
            prompt={"id": greeting, "version": version, "variables": {"name": "A", "age": "1"}}
        )
    with pytest.raises(openai.NotFoundError):
        client.responses.create(prompt={"id": "pmpt_nope"})


def test_another_projects_prompt_is_404(stack: PromptStack, client: openai.OpenAI, greeting: str) -> None:
    """The store holds it, but the key's project is not its project: as if absent."""
    entry = stack.executor.store.prompts[greeting]
    real = entry.snapshot.prompt.project_id
    entry.snapshot.prompt.project_id = "proj_other"
    try:
        with pytest.raises(openai.NotFoundError):
            client.responses.create(prompt={"id": greeting, "variables": {"name": "A", "age": "1"}})
    finally:
        entry.snapshot.prompt.project_id = real


def test_template_runtime_error_names_the_location(stack: PromptStack, client: openai.OpenAI) -> None:
    prompt_id = stack.create_prompt(
        "broken", {"messages": [{"role": "user", "template": "line\n{{ input|int / 0 }}"}]}
    )["id"]
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(prompt={"id": prompt_id, "variables": {"input": "1"}})
    body = err.value.body
    assert isinstance(body, dict) and body["code"] == "template_error"
    assert "messages[0].template, line 2" in body["message"] and "ZeroDivisionError" in body["message"]


def test_render_limit_is_400(stack: PromptStack, client: openai.OpenAI) -> None:
    prompt_id = stack.create_prompt(
        "flood", {"messages": [{"role": "user", "template": "{{ input * 100000 }}"}]}
    )["id"]
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(prompt={"id": prompt_id, "variables": {"input": "xyz"}})
    assert isinstance(err.value.body, dict) and err.value.body["code"] == "render_limit"


def test_injection_as_a_value_is_inert(stack: PromptStack, client: openai.OpenAI, greeting: str) -> None:
    payload = "{{ cycler.__init__.__globals__.os.environ }}"
    with pytest.raises(openai.BadRequestError):  # over max_length: refused before rendering
        client.responses.create(prompt={"id": greeting, "variables": {"name": payload, "age": "1"}})
    prompt_id = stack.create_prompt("echo", {"messages": [{"role": "user", "template": "say {{ input }}"}]})[
        "id"
    ]
    client.responses.create(prompt={"id": prompt_id, "variables": {"input": payload}})
    assert _last_messages(stack) == [("user", f"say {payload}")]


def test_structured_output_single_call(stack: PromptStack, client: openai.OpenAI) -> None:
    prompt_id = stack.create_prompt("summary", STRUCTURED)["id"]
    stack.engine.replies = ['{"summary": "short", "words": 1}']
    response = client.responses.create(prompt={"id": prompt_id, "variables": {"input": "a text"}})
    assert orjson.loads(response.output_text) == {"summary": "short", "words": 1}
    fmt = stack.engine.chat_requests[-1].response_format
    assert fmt.type == "json_schema" and orjson.loads(fmt.json_schema.schema)["required"] == [
        "summary",
        "words",
    ]
    calls = stack.engine.calls
    stack.engine.replies = [
        '{"summary": "far too long a summary", "words": 1}',
        '{"summary": "ok", "words": 1}',
    ]
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(prompt={"id": prompt_id, "variables": {"input": "a text"}})
    assert stack.engine.calls == calls + 1  # exactly one model call
    body = err.value.body
    assert isinstance(body, dict) and body["code"] == "invalid_model_output"
    assert "output.summary" in body["message"] and "far too long a summary" in body["message"]
    stack.engine.replies = []


def test_structured_output_repair_loop(stack: PromptStack, client: openai.OpenAI) -> None:
    prompt_id = stack.create_prompt("repaired", {**STRUCTURED, "allow_multiple_calls": True})["id"]
    stack.engine.replies = [
        '{"summary": "far too long a summary", "words": 1}',
        '{"summary": "fixed", "words": 2}',
    ]
    calls = stack.engine.calls
    response = client.responses.create(prompt={"id": prompt_id, "variables": {"input": "a text"}})
    assert orjson.loads(response.output_text) == {"summary": "fixed", "words": 2}
    assert stack.engine.calls == calls + 2
    assert response.usage is not None and response.usage.output_tokens == 2  # both calls counted
    repair = stack.engine.chat_requests[-1].messages
    assert repair[-2].role == "assistant" and "far too long" in repair[-2].content_text
    assert "output.summary" in repair[-1].content_text
    # still invalid after every attempt (3): the error lists each attempt's errors
    stack.engine.replies = ["not json", '{"words": 1}', '{"summary": 5, "words": 1}']
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(prompt={"id": prompt_id, "variables": {"input": "a text"}})
    message = err.value.body["message"]  # type: ignore[index]
    assert "after 3 call(s)" in message and "attempt 1: output: not valid JSON" in message
    assert "attempt 2: output.summary: Field required" in message and "attempt 3: output.summary" in message
    stack.engine.replies = []


def test_without_a_key_is_401(stack: PromptStack, greeting: str) -> None:
    bad = openai.OpenAI(base_url=f"{stack.url}/v1", api_key="bud_wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.responses.create(prompt={"id": greeting, "variables": {"name": "A", "age": "1"}})


EXPECTED_TEXT_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
]


def _squash(kinds: list[str]) -> list[str]:
    """The event types with runs of deltas folded into one."""
    out: list[str] = []
    for kind in kinds:
        if not (out and out[-1] == kind == "response.output_text.delta"):
            out.append(kind)
    return out


def test_sdk_streams_a_text_prompt(stack: PromptStack, client: openai.OpenAI, greeting: str) -> None:
    stack.engine.chunks = 4
    events = list(
        client.responses.create(
            stream=True, prompt={"id": greeting, "variables": {"name": "Ada", "age": "36"}}
        )
    )
    kinds = [e.type for e in events]
    assert _squash(kinds)[:-1] == EXPECTED_TEXT_EVENTS
    assert kinds[-1] in ("response.completed", "response.incomplete")  # the instant engine stops at "length"
    assert kinds.count("response.output_text.delta") == 4
    assert [e.sequence_number for e in events] == list(range(len(events)))
    final = events[-1].response  # type: ignore[union-attr]
    assert final.output_text == "w0 w1 w2 w3 "
    assert final.prompt is not None and final.prompt.id == greeting and final.prompt.version == "1"
    assert _last_messages(stack)[-1] == ("user", "Greet Ada (36 years old).")


def test_sdk_stream_helper_and_structured_output(stack: PromptStack, client: openai.OpenAI) -> None:
    prompt_id = stack.create_prompt("streamed-summary", {**STRUCTURED, "allow_multiple_calls": True})["id"]
    stack.engine.replies = ['{"summary": 3}', '{"summary": "fine", "words": 4}']
    # the helper wants `input` and `model`: no extra turns, the prompt's own deployment
    ref = {"id": prompt_id, "variables": {"input": "text"}}
    with client.responses.stream(input=[], model=stack.model, prompt=ref) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds == [*EXPECTED_TEXT_EVENTS, "response.completed"]  # validated, then released whole
    assert orjson.loads(final.output_text) == {"summary": "fine", "words": 4}
    assert final.usage is not None and final.usage.output_tokens == 2


def test_stream_errors_before_the_first_event_are_plain(client: openai.OpenAI, greeting: str) -> None:
    with pytest.raises(openai.BadRequestError, match="prompt.variables.age"):
        list(client.responses.create(stream=True, prompt={"id": greeting, "variables": {"name": "A"}}))
    with pytest.raises(openai.NotFoundError):
        list(client.responses.create(stream=True, prompt={"id": "pmpt_missing"}))


def test_engine_error_mid_stream_is_a_final_error_event(
    stack: PromptStack, client: openai.OpenAI, greeting: str
) -> None:
    stack.engine.fail_after = 2
    try:
        events = list(
            client.responses.create(
                stream=True, prompt={"id": greeting, "variables": {"name": "A", "age": "1"}}
            )
        )
    finally:
        stack.engine.fail_after = None
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds.count("response.output_text.delta") == 2
    assert kinds[-1] == "error" and "response.completed" not in kinds
    assert "failed midway" in events[-1].message  # type: ignore[union-attr]


def test_model_not_ready_is_503(stack: PromptStack, client: openai.OpenAI, greeting: str) -> None:
    """The engine refusing the model call as not ready is a 503. Only the calls are refused: a
    model listed LOADING would make the control plane mark the deployment not ready, and the
    tests after this one would meet that instead of their model."""
    client.responses.create(prompt={"id": greeting, "variables": {"name": "A", "age": "1"}})
    served = stack.engine.chat_requests[-1].model  # the engine's name for it
    stack.engine.calls_not_ready.add(served)
    try:
        with pytest.raises(openai.InternalServerError) as err:
            client.responses.create(prompt={"id": greeting, "variables": {"name": "A", "age": "1"}})
        assert err.value.status_code == 503
    finally:
        stack.engine.calls_not_ready.discard(served)


def test_sdk_parse_gives_the_structured_output(stack: PromptStack, client: openai.OpenAI) -> None:
    """`client.responses.parse(..., text_format=Model)` against a prompt with structured output:
    the SDK's `output_parsed` is the validated object, and the reply carries it as
    `output_parsed` too (the gRPC face's field; plain `create` keeps working with it)."""
    from pydantic import BaseModel

    class Summary(BaseModel):
        summary: str
        words: int

    prompt_id = stack.create_prompt("parsed-summary", {**STRUCTURED, "allow_multiple_calls": True})["id"]
    stack.engine.replies = [
        '{"summary": "far too long a summary", "words": 1}',
        '{"summary": "ok", "words": 3}',
    ]
    parsed = client.responses.parse(
        prompt={"id": prompt_id, "variables": {"input": "a text"}}, text_format=Summary
    )
    assert parsed.output_parsed == Summary(summary="ok", words=3)
    assert parsed.prompt is not None and parsed.prompt.id == prompt_id
    # the prompt's own schema is the one enforced (the caller's text_format is the same shape)
    fmt = stack.engine.chat_requests[-1].response_format
    assert orjson.loads(fmt.json_schema.schema)["required"] == ["summary", "words"]
    stack.engine.replies = ['{"summary": "ok", "words": 3}']
    raw = client.responses.with_raw_response.create(
        prompt={"id": prompt_id, "variables": {"input": "a text"}}
    )
    assert orjson.loads(raw.http_response.content)["output_parsed"] == {"summary": "ok", "words": 3}
    assert orjson.loads(raw.parse().output_text) == {"summary": "ok", "words": 3}
    # a text prompt has none
    text_id = stack.create_prompt("parsed-text", {"messages": [{"role": "user", "template": "{{ input }}"}]})[
        "id"
    ]
    stack.engine.replies = ["plain"]
    plain = client.responses.with_raw_response.create(prompt={"id": text_id, "variables": {"input": "x"}})
    assert orjson.loads(plain.http_response.content).get("output_parsed") is None
    stack.engine.replies = []


def test_streamed_structured_output_carries_it(stack: PromptStack, client: openai.OpenAI) -> None:
    prompt_id = stack.create_prompt("streamed-parsed", STRUCTURED)["id"]
    stack.engine.replies = ['{"summary": "fine", "words": 4}']
    events = list(client.responses.create(stream=True, prompt={"id": prompt_id, "variables": {"input": "t"}}))
    final = events[-1]
    assert final.type == "response.completed"
    assert getattr(final.response, "output_parsed", None) == {"summary": "fine", "words": 4}
    stack.engine.replies = []
