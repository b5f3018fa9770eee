"""Traces, metrics and logs of real calls through the in-process stack (`conftest.observed`):
one trace per request across the gateway, the prompt executor and the engine's gRPC server, the
series Prometheus scrapes, and log lines that carry the request's facts and none of its secrets."""

from __future__ import annotations

import secrets
from typing import Any

import orjson
import requests

from budrt import tracing
from tests.app.conftest import ADMIN_PASSWORD, HASH_SECRET, JWT_SECRET
from tests.observability.conftest import ObservedStack
from tests.observability.otlp_receiver import ReceivedSpan

ENGINE_STREAM = "bud.engine.v1.EngineService/StreamChatCompletion"
ENGINE_CREATE = "bud.engine.v1.EngineService/CreateChatCompletion"
GATEWAY_STREAM = "bud.openai.v1.OpenAiService/StreamChatCompletion"
PROMPT_EXECUTE = "bud.prompt.v1.PromptExecutionService/ExecutePrompt"
# Content the spans must not carry (content capture is off by default).
CONTENT = "the secret content of a message 7f3a"


def _chat(observed: ObservedStack, headers: dict[str, str] | None = None, stream: bool = True) -> list[str]:
    stack = observed.stack
    reply = requests.post(
        f"{stack.url}/v1/chat/completions",
        json={"model": stack.model, "messages": [{"role": "user", "content": CONTENT}], "stream": stream},
        headers={"authorization": f"Bearer {stack.api_key}", **(headers or {})},
        stream=stream,
        timeout=30,
    )
    assert reply.status_code == 200, reply.text
    return [line.decode() for line in reply.iter_lines() if line] if stream else [reply.text]


def _by_id(spans: list[ReceivedSpan]) -> dict[str, ReceivedSpan]:
    return {s.span_id: s for s in spans}


def _ancestors(span: ReceivedSpan, index: dict[str, ReceivedSpan]) -> list[ReceivedSpan]:
    chain = []
    while span.parent_span_id in index:
        span = index[span.parent_span_id]
        chain.append(span)
    return chain


def _spans_of(observed: ObservedStack, trace_id: str, predicate: Any) -> list[ReceivedSpan]:
    tracing.force_flush()
    spans = observed.receiver.wait_for(lambda all_: predicate([s for s in all_ if s.trace_id == trace_id]))
    return [s for s in spans if s.trace_id == trace_id]


def test_a_streamed_chat_is_one_trace_from_the_client_to_the_engine(observed: ObservedStack) -> None:
    trace_id, client_span = secrets.token_hex(16), secrets.token_hex(8)
    lines = _chat(observed, {"traceparent": f"00-{trace_id}-{client_span}-01"})
    assert lines[-1] == "data: [DONE]"

    def complete(spans: list[ReceivedSpan]) -> bool:
        names = {s.attributes.get("rpc.method") for s in spans} | {s.name for s in spans}
        return {ENGINE_STREAM, GATEWAY_STREAM, "POST /v1/chat/completions"} <= names

    spans = _spans_of(observed, trace_id, complete)
    index = _by_id(spans)
    (http,) = [s for s in spans if s.name == "POST /v1/chat/completions"]
    (gateway,) = [s for s in spans if s.attributes.get("rpc.method") == GATEWAY_STREAM]
    (engine,) = [s for s in spans if s.attributes.get("rpc.method") == ENGINE_STREAM]
    # The client's traceparent is the HTTP span's parent; the chain runs down to the engine's
    # server span, which crossed a real gRPC hop (its parent came in the call's metadata).
    assert http.parent_span_id == client_span
    assert http.attributes["http.route"] == "/v1/chat/completions"
    assert http.attributes["http.response.status_code"] == 200
    assert gateway.parent_span_id == http.span_id
    assert engine.parent_span_id == gateway.span_id
    assert [s.span_id for s in _ancestors(engine, index)] == [gateway.span_id, http.span_id]
    # GenAI semantic conventions on the model call; first and last token events.
    assert gateway.name == f"chat {observed.stack.model}"
    assert gateway.attributes["gen_ai.operation.name"] == "chat"
    assert gateway.attributes["gen_ai.request.model"] == observed.stack.model
    assert engine.attributes["gen_ai.usage.output_tokens"] > 0
    assert engine.attributes["gen_ai.usage.input_tokens"] > 0
    assert "first_token" in engine.events and "last_token" in engine.events
    assert engine.events.index("first_token") < engine.events.index("last_token")
    # The gateway's steps, each under the gateway's call.
    steps = {s.name: s for s in spans if s.parent_span_id == gateway.span_id}
    assert {"bud.authenticate", "bud.route", "bud.rate_limit"} <= set(steps), sorted(steps)
    assert gateway.attributes["bud.replica"]  # the replica chosen
    # Never a key or the content (content capture is off).
    dumped = orjson.dumps([s.attributes for s in spans], default=str).decode()
    assert observed.stack.api_key not in dumped
    assert observed.stack.api_key.split("-", 2)[2] not in dumped
    assert CONTENT not in dumped


def test_a_request_without_traceparent_starts_its_trace_at_the_gateway(observed: ObservedStack) -> None:
    before = {s.trace_id for s in observed.receiver.spans}
    _chat(observed, stream=False)
    tracing.force_flush()
    spans = observed.receiver.wait_for(
        lambda all_: any(
            s.attributes.get("rpc.method") == ENGINE_CREATE and s.trace_id not in before for s in all_
        )
    )
    (engine,) = [
        s for s in spans if s.attributes.get("rpc.method") == ENGINE_CREATE and s.trace_id not in before
    ]
    trace = [s for s in spans if s.trace_id == engine.trace_id]
    roots = [s for s in trace if not s.parent_span_id]
    assert [r.name for r in roots] == ["POST /v1/chat/completions"]
    assert roots[0] in _ancestors(engine, _by_id(trace))


def test_a_prompt_call_is_one_trace_through_the_executor_to_the_engine(observed: ObservedStack) -> None:
    stack = observed.stack
    prompt_id = stack.create_prompt(
        "traced", {"messages": [{"role": "user", "template": "say {{ input }}"}]}
    )["id"]
    trace_id, client_span = secrets.token_hex(16), secrets.token_hex(8)
    reply = requests.post(
        f"{stack.url}/v1/responses",
        json={"prompt": {"id": prompt_id, "variables": {"input": "hello"}}},
        headers={
            "authorization": f"Bearer {stack.api_key}",
            "traceparent": f"00-{trace_id}-{client_span}-01",
        },
        timeout=30,
    )
    assert reply.status_code == 200, reply.text

    def complete(spans: list[ReceivedSpan]) -> bool:
        methods = {s.attributes.get("rpc.method") for s in spans}
        # The HTTP span ends last (after the answer is written): wait for it too.
        http = any(s.name == "POST /v1/responses" for s in spans)
        return http and ENGINE_CREATE in methods and PROMPT_EXECUTE in methods

    spans = _spans_of(observed, trace_id, complete)
    index = _by_id(spans)
    (engine,) = [s for s in spans if s.attributes.get("rpc.method") == ENGINE_CREATE]
    chain = _ancestors(engine, index)
    names = [s.attributes.get("rpc.method", s.name) for s in chain]
    # engine ← the executor's model call back through the gateway ← the executor ← the
    # gateway's prompt call ← the HTTP request ← the client.
    assert names[-1] == "POST /v1/responses", names
    assert PROMPT_EXECUTE in names, names
    assert chain[-1].parent_span_id == client_span
    (execute,) = [s for s in spans if s.attributes.get("rpc.method") == PROMPT_EXECUTE]
    render = [s for s in spans if s.name == "bud.prompt.render"]
    assert render and render[0].parent_span_id == execute.span_id
    assert render[0].attributes["bud.prompt.id"] == prompt_id


def test_management_calls_are_traced_into_the_app_and_its_database(observed: ObservedStack) -> None:
    stack = observed.stack
    trace_id = secrets.token_hex(16)
    reply = requests.get(
        f"{stack.url}/v1/projects",
        headers={**stack.headers(), "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"},
        timeout=30,
    )
    assert reply.status_code == 200

    def complete(spans: list[ReceivedSpan]) -> bool:
        # The HTTP span ends last (after the answer is written): wait for it too.
        names = {s.name for s in spans}
        return "db.snapshot" in names and "GET /v1/projects" in names

    spans = _spans_of(observed, trace_id, complete)
    index = _by_id(spans)
    (db,) = [s for s in spans if s.name == "db.snapshot"][:1]
    chain = [s.attributes.get("rpc.method", s.name) for s in _ancestors(db, index)]
    assert chain[0] == "bud.app.v1.ProjectService/ListProjects", chain
    assert chain[-1] == "GET /v1/projects", chain
    assert db.attributes["db.system.name"] == "sqlite"


def test_the_request_log_line_and_no_secret_in_any_log(observed: ObservedStack) -> None:
    stack = observed.stack
    trace_id = secrets.token_hex(16)
    _chat(observed, {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01", "x-request-id": "obs-req-1"})
    # A wrong key and a wrong password: refused, logged by outcome and prefix only.
    wrong_key = "bud-abcdefgh-" + secrets.token_urlsafe(24)
    refused = requests.post(
        f"{stack.url}/v1/chat/completions",
        json={"model": stack.model, "messages": [{"role": "user", "content": "x"}]},
        headers={"authorization": f"Bearer {wrong_key}"},
        timeout=30,
    )
    assert refused.status_code == 401
    wrong_password = "not-the-password-" + secrets.token_hex(8)
    login = requests.post(
        f"{stack.url}/v1/auth/login", json={"username": "admin", "password": wrong_password}, timeout=30
    )
    assert login.status_code in (401, 429)
    text = observed.log_lines()
    entries = [orjson.loads(line) for line in text.splitlines() if line.startswith("{")]
    (line,) = [
        e for e in entries if e.get("request_id") == "obs-req-1" and e.get("event") == "completion_generated"
    ]
    assert line["level"] == "INFO" and line["timestamp"].endswith("Z")
    assert line["deployment"] == stack.model
    assert line["tokens"]["total"] == line["tokens"]["prompt"] + line["tokens"]["completion"] > 0
    assert line["duration_ms"] > 0 and line["status"] == 200 and line["route"] == "chat.completions"
    assert line["trace_id"] == trace_id and len(line["span_id"]) == 16
    assert line["project"] and line["key_prefix"] == "bud-" + stack.api_key.split("-")[1]
    # The stack's deployments carry the default price (AppSettings: 0, free): a known cost of 0.
    assert line["cost_usd"] == 0
    (failed,) = [
        e for e in entries if e.get("event") == "authentication" and e.get("key_prefix") == "bud-abcdefgh"
    ]
    assert failed["outcome"] == "invalid_key"
    assert any(e.get("event") == "authentication" and e.get("outcome") == "failed" for e in entries)
    assert any(e.get("event") == "authentication" and e.get("outcome") == "success" for e in entries)
    # None of the secrets the run used, anywhere in the logs (DEBUG included).
    for secret in (
        stack.api_key,
        stack.api_key.split("-", 2)[2],
        wrong_key.split("-", 2)[2],
        ADMIN_PASSWORD,
        wrong_password,
        stack.token,
        HASH_SECRET,
        JWT_SECRET,
        CONTENT,
    ):
        assert secret not in text, f"a secret is in the logs: {secret[:6]}…"


def test_prometheus_scrapes_the_request_counter_and_the_ttft_histogram(
    observed: ObservedStack, prometheus: Any
) -> None:
    target = observed.metrics_url.split("//", 1)[1].split("/", 1)[0]
    with prometheus([target]) as server:
        for _ in range(3):
            _chat(observed)
        model = observed.stack.model
        requests_total = server.wait_for(
            f'sum(bud_requests_total{{route="chat.completions",deployment="{model}",status="200"}})',
            lambda result: result and float(result[0]["value"][1]) >= 3,
        )
        assert float(requests_total[0]["value"][1]) >= 3
        ttft = server.wait_for(
            f'bud_time_to_first_token_seconds_count{{deployment="{model}"}}',
            lambda result: result and float(result[0]["value"][1]) >= 3,
        )
        assert ttft[0]["metric"]["deployment"] == model
        quantile = server.query(
            f'histogram_quantile(0.5, sum by (le) (bud_time_to_first_token_seconds_bucket{{deployment="{model}"}}))'
        )
        assert quantile and float(quantile[0]["value"][1]) > 0
        # The other families are there too: replicas from the routing tables, tokens, gRPC.
        assert server.wait_for("bud_deployment_replicas", lambda result: bool(result))
        assert server.query(f'bud_output_tokens_total{{deployment="{model}"}}')
        assert server.query("bud_grpc_server_handled_total")
        # Bounded labels: no request id or key id among them.
        series = requests.get(f"{server.url}/api/v1/labels", timeout=10).json()["data"]
        assert not {"request_id", "key_id", "api_key_id"} & set(series)
