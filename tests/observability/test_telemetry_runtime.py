"""The runtime's telemetry pieces on their own: tracing off installs nothing, traceparent
propagation, the tracing interceptor's spans and statuses, the `/metrics` endpoint's
authentication and listening rule, and the log lines' trace ids."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import orjson
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from budrt import metrics, tracing
from budrt.errors import invalid_argument
from budrt.interceptors import Tracing
from budrt.logs import JsonFormatter, _ContextFilter
from budrt.metrics import MetricsServer, check_metrics_listen, start_process_metrics
from budrt.settings import SettingsError
from gateway import observe

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    """Tracing on for one test, spans kept in memory."""
    exporter = InMemorySpanExporter()
    tracing.configure("", "test", exporter=exporter)
    try:
        yield exporter
    finally:
        tracing.shutdown()


def test_without_an_endpoint_nothing_is_installed() -> None:
    """No OTLP endpoint: no tracer provider, no SDK imported, no exporter, no channel or server
    interceptor — in a fresh process, as `budrt serve` starts one."""
    code = """
import sys
from opentelemetry import trace
from budrt import tracing, settings, cli  # everything the launcher imports
import gateway.server, app.server, prompt.execution
from budrt.interceptors import Tracing
provider = tracing.configure_from(settings.RuntimeSettings(), "gateway+engine")
behaviour = lambda request, context: None
assert provider is None and not tracing.enabled()
assert type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider", trace.get_tracer_provider()
assert not [m for m in sys.modules if m.startswith(("opentelemetry.sdk", "opentelemetry.exporter"))]
assert tracing.traced_channel(channel := object()) is channel
assert Tracing().wrap_unary(behaviour, "a.B/C") is behaviour
assert Tracing().wrap_stream(behaviour, "a.B/C") is behaviour
print("nothing installed")
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BUD_", "OTEL_"))}
    env["PYTHONPATH"] = f"{REPO}{os.pathsep}{REPO / 'gen'}"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "nothing installed" in result.stdout


def test_traceparent_round_trip_and_malformed_ones(exported: InMemorySpanExporter) -> None:
    with tracing.span("outer") as outer:
        metadata = tracing.inject(
            [("x-request-id", "r1"), ("traceparent", "00-" + "1" * 32 + "-" + "2" * 16 + "-01")]
        )
    # The upstream traceparent is replaced by the current span's.
    assert [k for k, _ in metadata].count("traceparent") == 1
    parent = tracing.extract(metadata)
    assert parent is not None
    ctx = tracing.trace.get_current_span(parent).get_span_context()
    assert ctx.trace_id == outer.get_span_context().trace_id
    assert ctx.span_id == outer.get_span_context().span_id
    # ASGI headers (bytes) too; garbage, an all-zero id and no header start a new trace.
    assert tracing.extract([(b"traceparent", dict(metadata)["traceparent"].encode())]) is not None
    assert tracing.extract([("traceparent", "garbage")]) is None
    assert tracing.extract([("traceparent", "00-" + "0" * 32 + "-" + "0" * 16 + "-01")]) is None
    assert tracing.extract([("x-request-id", "r1")]) is None


async def test_the_tracing_interceptor_records_statuses_and_genai_attributes(
    exported: InMemorySpanExporter,
) -> None:
    from bud.openai.v1 import chat_pb2

    async def failing(request: object, context: object) -> None:
        raise invalid_argument("bad value", param="x")

    async def streaming(request: object, context: object):  # type: ignore[no-untyped-def]
        first = chat_pb2.ChatCompletionChunk(id="c1")
        first.choices.add(finish_reason="")
        yield first
        last = chat_pb2.ChatCompletionChunk(id="c1")
        last.usage.prompt_tokens, last.usage.completion_tokens = 5, 2
        yield last

    context = SimpleNamespace(
        invocation_metadata=lambda: [("traceparent", "00-" + "a" * 32 + "-" + "b" * 16 + "-01")]
    )
    wrapped = Tracing().wrap_unary(failing, "pkg.S/CreateThing")
    with pytest.raises(Exception, match="bad value"):
        await wrapped(object(), context)
    request = chat_pb2.ChatCompletionRequest(model="m1", max_tokens=7, temperature=0.5)
    chunks = [
        c
        async for c in Tracing().wrap_stream(streaming, "bud.engine.v1.EngineService/StreamChatCompletion")(
            request, context
        )
    ]
    assert len(chunks) == 2
    tracing.force_flush()
    spans = {s.name: s for s in exported.get_finished_spans()}
    failed = spans["pkg.S/CreateThing"]
    assert failed.status.status_code == StatusCode.ERROR
    assert failed.attributes["rpc.grpc.status_code"] == "INVALID_ARGUMENT"
    assert format(failed.parent.span_id, "016x") == "b" * 16  # the caller's traceparent
    chat = spans["chat m1"]
    assert chat.attributes["gen_ai.request.model"] == "m1"
    assert chat.attributes["gen_ai.request.max_tokens"] == 7
    assert chat.attributes["gen_ai.usage.input_tokens"] == 5
    assert chat.attributes["gen_ai.usage.output_tokens"] == 2
    assert [e.name for e in chat.events] == ["first_token", "last_token"]
    assert "gen_ai.input.messages" not in chat.attributes  # content capture is off by default


def test_log_lines_carry_the_current_span_ids(exported: InMemorySpanExporter) -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(_ContextFilter("test"))
    logger = logging.getLogger("tests.observability.ids")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with tracing.span("work") as current:
            logger.info("inside")
        logger.info("outside")
    finally:
        logger.removeHandler(handler)
    inside, outside = (orjson.loads(line) for line in out.getvalue().splitlines())
    assert inside["trace_id"] == format(current.get_span_context().trace_id, "032x")
    assert inside["span_id"] == format(current.get_span_context().span_id, "016x")
    assert "trace_id" not in outside and "timestamp" in outside


def test_a_key_is_logged_by_its_prefix_only() -> None:
    assert observe.key_prefix("bud-abcdefgh-" + "s" * 40) == "bud-abcdefgh"
    assert observe.key_prefix("sk-something-secret") == ""
    assert observe.key_prefix("bud-short-secret") == ""


def test_metrics_on_a_reachable_address_need_a_token_or_insecure() -> None:
    with pytest.raises(SettingsError, match="BUD_METRICS_TOKEN"):
        check_metrics_listen("0.0.0.0:9464", "", insecure=False)
    check_metrics_listen("0.0.0.0:9464", "a-token", insecure=False)
    check_metrics_listen("0.0.0.0:9464", "", insecure=True)
    check_metrics_listen("127.0.0.1:9464", "", insecure=False)
    check_metrics_listen("", "", insecure=False)  # no endpoint at all


async def _get(port: int, path: str, headers: str = "") -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
    await writer.drain()
    answer = await reader.read()
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


async def test_the_metrics_endpoint_answers_with_its_token_only() -> None:
    metrics.AUTH_ATTEMPTS.labels("success").inc()
    server = MetricsServer("127.0.0.1:0", token="scrape-token")
    await server.start()
    try:
        assert (await _get(server.port, "/metrics"))[0] == 401
        assert (await _get(server.port, "/metrics", "Authorization: Bearer wrong\r\n"))[0] == 401
        status, body = await _get(server.port, "/metrics", "Authorization: Bearer scrape-token\r\n")
        assert status == 200
        assert b'bud_auth_attempts_total{outcome="success"}' in body
        assert b"# TYPE bud_requests_total counter" in body
        assert b"# TYPE bud_time_to_first_token_seconds histogram" in body
        assert (await _get(server.port, "/other", "Authorization: Bearer scrape-token\r\n"))[0] == 404
    finally:
        await server.stop()


async def test_a_taken_metrics_port_is_logged_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        conf = SimpleNamespace(gateway_metrics_address=f"127.0.0.1:{port}", metrics_token="", insecure=False)
        with caplog.at_level(logging.ERROR):
            assert await start_process_metrics(conf, "gateway") is None
    assert "cannot serve /metrics" in caplog.text


async def test_the_engine_stats_source() -> None:
    state = SimpleNamespace(
        running=2, waiting=1, kv_cache_usage=0.25, prompt_tokens_total=10, generation_tokens_total=4
    )
    metrics.CALLBACKS.add("test-engine", metrics.engine_stats(lambda: [("m-g1", state), ("empty", None)]))
    try:
        text = metrics.generate_latest(metrics.REGISTRY).decode()
    finally:
        metrics.CALLBACKS.remove("test-engine")
    assert 'bud_engine_requests_running{model="m-g1"} 2.0' in text
    assert 'bud_engine_kv_cache_usage_ratio{model="m-g1"} 0.25' in text
    assert 'bud_engine_generation_tokens_total{model="m-g1"} 4.0' in text
    assert 'model="empty"' not in text
