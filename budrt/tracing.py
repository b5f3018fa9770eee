"""OpenTelemetry tracing for every process of the mesh: the tracer provider (OTLP export when an
endpoint is configured, nothing at all otherwise), W3C `traceparent` propagation (from HTTP
headers, in gRPC metadata both ways), and the GenAI semantic-convention attributes read from our
requests and answers.

Off (no `otlp_endpoint`), nothing is installed: :func:`enabled` is False, the interceptors leave
every method unwrapped when it is first called, channels are not wrapped, and the
instrumentation points in the services test :func:`enabled` before they build anything — the
cost is one attribute read per point. On, spans go through a batch processor to the OTLP
exporter off the request path.

Attributes never carry keys, passwords or message content; content (the prompt and the answer's
text) is recorded only with `trace_capture_content` on, an explicit, off-by-default setting.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagators.textmap import Getter, Setter
from opentelemetry.trace import NonRecordingSpan, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

log = logging.getLogger(__name__)

# W3C trace context only (`traceparent`, `tracestate`): what every OpenTelemetry SDK speaks.
PROPAGATOR = TraceContextTextMapPropagator()
TRACEPARENT = "traceparent"
# Recorded content (with trace_capture_content) is cut to this many characters per attribute.
MAX_CONTENT_CHARS = 4096

_state: dict[str, Any] = {"provider": None, "tracer": None, "capture_content": False}


def enabled() -> bool:
    """Whether this process exports traces (an OTLP endpoint is configured)."""
    return _state["tracer"] is not None


def capture_content() -> bool:
    """Whether message content may be recorded in spans (`trace_capture_content`)."""
    return bool(_state["capture_content"])


def tracer() -> trace.Tracer:
    """The process's tracer; a no-op one when tracing is off (callers test `enabled()` first)."""
    return _state["tracer"] or trace.NoOpTracer()


def provider() -> Any:
    """The installed SDK tracer provider, or None (tracing off)."""
    return _state["provider"]


def configure(
    endpoint: str,
    service_name: str,
    *,
    sample_ratio: float = 1.0,
    capture: bool = False,
    exporter: Any = None,
) -> Any:
    """Installs the tracer provider of this process and returns it; with no `endpoint` (and no
    `exporter`) installs nothing and returns None. `endpoint`: an OTLP/gRPC collector
    (`http://host:4317` is plaintext, `https://` TLS; the `OTEL_EXPORTER_OTLP_*` variables for
    headers and certificates are honoured by the exporter). `sample_ratio`: the share of traces
    started here that are kept (a parent's decision is always followed)."""
    shutdown()
    if not endpoint and exporter is None:
        return None
    # Imported only when tracing is on: the SDK costs a process that does not trace nothing.
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    if exporter is None:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=endpoint, insecure=endpoint.startswith("http://") or None)
    resource = Resource.create({"service.name": service_name, "service.namespace": "bud"})
    sdk = TracerProvider(resource=resource, sampler=ParentBased(TraceIdRatioBased(sample_ratio)))
    sdk.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=1000))
    _state.update(provider=sdk, tracer=sdk.get_tracer("bud"), capture_content=capture)
    # The global provider too (once per process: the API refuses to replace it), for libraries
    # that trace through it.
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        trace.set_tracer_provider(sdk)
    log.info("tracing on", extra={"otlp_endpoint": endpoint or "(custom exporter)", "ratio": sample_ratio})
    return sdk


def configure_from(settings: Any, service_name: str) -> Any:
    """:func:`configure` from a settings model's `otlp_endpoint`, `trace_sample_ratio` and
    `trace_capture_content` (`budrt.settings.RuntimeSettings`)."""
    return configure(
        settings.otlp_endpoint,
        service_name,
        sample_ratio=settings.trace_sample_ratio,
        capture=settings.trace_capture_content,
    )


def shutdown() -> None:
    """Flushes and removes this process's provider (tracing off afterwards)."""
    sdk = _state["provider"]
    _state.update(provider=None, tracer=None, capture_content=False)
    if sdk is not None:
        sdk.shutdown()


def force_flush(timeout_ms: int = 5000) -> None:
    """Exports the spans still queued (tests, and a process about to exit)."""
    sdk = _state["provider"]
    if sdk is not None:
        sdk.force_flush(timeout_ms)


# ---- propagation ---------------------------------------------------------------------------
class _PairsGetter(Getter[Sequence[tuple[str, Any]]]):
    """Reads a carrier of (key, value) pairs: gRPC metadata, or ASGI headers (bytes)."""

    def get(self, carrier: Sequence[tuple[Any, Any]], key: str) -> list[str] | None:
        wanted = key.encode() if carrier and isinstance(carrier[0][0], bytes) else key
        values = [v.decode("latin-1") if isinstance(v, bytes) else v for k, v in carrier if k == wanted]
        return values or None

    def keys(self, carrier: Sequence[tuple[Any, Any]]) -> list[str]:
        return [k.decode("latin-1") if isinstance(k, bytes) else k for k, _ in carrier]


class _ListSetter(Setter[list[tuple[str, str]]]):
    def set(self, carrier: list[tuple[str, str]], key: str, value: str) -> None:
        carrier.append((key, value))


_GETTER = _PairsGetter()
_SETTER = _ListSetter()


def extract(pairs: Sequence[tuple[Any, Any]] | None) -> otel_context.Context | None:
    """The remote parent named by a carrier's `traceparent` (gRPC metadata or ASGI headers), or
    None when it names none (a malformed one counts as none: the trace starts here)."""
    if not pairs or not any(k in (TRACEPARENT, TRACEPARENT.encode()) for k, _ in pairs):
        return None
    ctx = PROPAGATOR.extract(pairs, getter=_GETTER)
    return ctx if trace.get_current_span(ctx).get_span_context().is_valid else None


def inject(metadata: Iterable[tuple[str, Any]] | None) -> list[tuple[str, Any]]:
    """`metadata` plus the current span's `traceparent` (any `traceparent` already there, from
    a caller upstream, is replaced: the current span is the parent of the next hop)."""
    pairs = [(k, v) for k, v in (metadata or ()) if k not in (TRACEPARENT, "tracestate")]
    PROPAGATOR.inject(pairs, setter=_SETTER)
    return pairs


def current_ids() -> tuple[str, str] | None:
    """The current span's trace id and span id as hex (the log lines carry them), or None."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


# ---- spans ---------------------------------------------------------------------------------
@contextlib.contextmanager
def span(
    name: str, attributes: dict[str, Any] | None = None, kind: SpanKind = SpanKind.INTERNAL
) -> Iterator[Span]:
    """A child span of the current one, current inside the block (a raised exception is recorded
    and sets the status to ERROR). With tracing off: a non-recording span, nothing exported."""
    if not enabled():
        yield trace.INVALID_SPAN
        return
    with tracer().start_as_current_span(name, kind=kind, attributes=attributes) as current:
        yield current


@contextlib.contextmanager
def child_span(name: str, attributes: dict[str, Any] | None = None) -> Iterator[Span]:
    """:func:`span`, only inside a span that records: work done on a traced call's behalf (a
    database transaction) is part of its trace, and the same work done by a background loop
    starts no trace of its own."""
    if not enabled() or not trace.get_current_span().is_recording():
        yield trace.INVALID_SPAN
        return
    with tracer().start_as_current_span(name, attributes=attributes) as current:
        yield current


def set_error(current: Span, description: str) -> None:
    """Marks a span failed (an error status, without a stack trace)."""
    if current.is_recording():
        current.set_status(Status(StatusCode.ERROR, description[:256]))


def start_span(
    name: str,
    parent: otel_context.Context | None = None,
    kind: SpanKind = SpanKind.SERVER,
    attributes: dict[str, Any] | None = None,
) -> tuple[Span, otel_context.Context]:
    """A started span (the caller ends it) under `parent` (None: the current context) and the
    context in which it is current."""
    base = parent if parent is not None else otel_context.get_current()
    started = tracer().start_span(name, context=base, kind=kind, attributes=attributes)
    return started, trace.set_span_in_context(started, base)


def is_recording() -> bool:
    """Whether the current span records (tracing on and this trace sampled)."""
    current = trace.get_current_span()
    return current.is_recording() and not isinstance(current, NonRecordingSpan)


# ---- GenAI semantic conventions ---------------------------------------------------------------
# The engine contract's and the OpenAI service's RPCs, as GenAI operation names.
_OPERATIONS = {
    "ChatCompletion": "chat",
    "Completion": "text_completion",
    "Embedding": "embeddings",
    "Response": "chat",
}
_REQUEST_FIELDS = {
    "max_tokens": "gen_ai.request.max_tokens",
    "max_completion_tokens": "gen_ai.request.max_tokens",
    "max_output_tokens": "gen_ai.request.max_tokens",
    "temperature": "gen_ai.request.temperature",
    "top_p": "gen_ai.request.top_p",
    "seed": "gen_ai.request.seed",
    "frequency_penalty": "gen_ai.request.frequency_penalty",
    "presence_penalty": "gen_ai.request.presence_penalty",
}


# Usage fields of the chat/completions/embeddings contracts and of the Responses API.
_USAGE_FIELDS = (
    ("prompt_tokens", "gen_ai.usage.input_tokens"),
    ("input_tokens", "gen_ai.usage.input_tokens"),
    ("completion_tokens", "gen_ai.usage.output_tokens"),
    ("output_tokens", "gen_ai.usage.output_tokens"),
)


def genai_operation(method: str) -> str | None:
    """The GenAI operation name of an RPC ("pkg.Service/StreamChatCompletion" → "chat"), or None
    for RPCs that are not model calls."""
    name = method.rsplit("/", 1)[-1]
    for prefix in ("Create", "Stream"):
        if name.startswith(prefix) and name[len(prefix) :] in _OPERATIONS:
            return _OPERATIONS[name[len(prefix) :]]
    return None


def request_attributes(operation: str, request: Any) -> dict[str, Any]:
    """`gen_ai.*` attributes of a model call's request message (model and sampling settings;
    the messages only when content capture is on). Never raises."""
    attributes: dict[str, Any] = {"gen_ai.operation.name": operation, "gen_ai.system": "vllm"}
    try:
        fields = request.DESCRIPTOR.fields_by_name
        if "model" in fields and request.model:
            attributes["gen_ai.request.model"] = request.model
        for field, attribute in _REQUEST_FIELDS.items():
            if field in fields and request.HasField(field):
                attributes[attribute] = getattr(request, field)
        if capture_content():
            for field in ("messages", "prompt", "input"):
                if field in fields:
                    attributes["gen_ai.input.messages"] = _cut(str(getattr(request, field)))
                    break
    except Exception:
        log.debug("span attributes of a request failed", exc_info=True)
    return attributes


def answer_attributes(current: Span, answer: Any) -> None:
    """Records a model answer's (or a stream chunk's) usage, id and finish reasons. Never
    raises: a span's detail is not worth a failed call."""
    try:
        _answer_attributes(current, answer)
    except Exception:
        log.debug("span attributes of an answer failed", exc_info=True)


def _answer_attributes(current: Span, answer: Any) -> None:
    fields = answer.DESCRIPTOR.fields_by_name
    if "usage" in fields and answer.HasField("usage"):
        usage = answer.usage
        names = usage.DESCRIPTOR.fields_by_name
        for field, attribute in _USAGE_FIELDS:
            if field in names:
                current.set_attribute(attribute, getattr(usage, field))
    if "id" in fields and answer.id:
        current.set_attribute("gen_ai.response.id", answer.id)
    if "model" in fields and answer.model:
        current.set_attribute("gen_ai.response.model", answer.model)
    if "choices" in fields:
        reasons = [c.finish_reason for c in answer.choices if getattr(c, "finish_reason", "")]
        if reasons:
            current.set_attribute("gen_ai.response.finish_reasons", reasons)
        if capture_content():
            current.add_event("gen_ai.choice", {"content": _cut(str(list(answer.choices)))})


def _cut(text: str) -> str:
    return text if len(text) <= MAX_CONTENT_CHARS else text[:MAX_CONTENT_CHARS] + "…"


# ---- gRPC channels ---------------------------------------------------------------------------
def traced_channel(channel: Any) -> Any:
    """`channel` whose calls carry the current span's `traceparent` in their metadata (tracing
    off: `channel` itself). A thin wrapper of the channel's multicallables rather than a
    `grpc.aio` client interceptor: an intercepted call costs grpc.aio an extra task and a
    wrapper call object per RPC (measured: several times the cost of the span itself)."""
    if not enabled():
        return channel
    return _TracingChannel(channel)


class _Injecting:
    """A multicallable that adds `traceparent` to the call's metadata."""

    __slots__ = ("_call",)

    def __init__(self, call: Any) -> None:
        self._call = call

    def __call__(self, request: Any, *args: Any, metadata: Any = None, **kwargs: Any) -> Any:
        return self._call(request, *args, metadata=inject(metadata), **kwargs)


class _TracingChannel:
    """A `grpc.aio.Channel` stand-in: every multicallable injects the trace context; the rest
    (close, channel_ready, get_state, async with) is the channel's own."""

    def __init__(self, channel: Any) -> None:
        self._channel = channel

    def unary_unary(self, *args: Any, **kwargs: Any) -> Any:
        return _Injecting(self._channel.unary_unary(*args, **kwargs))

    def unary_stream(self, *args: Any, **kwargs: Any) -> Any:
        return _Injecting(self._channel.unary_stream(*args, **kwargs))

    def stream_unary(self, *args: Any, **kwargs: Any) -> Any:
        return _Injecting(self._channel.stream_unary(*args, **kwargs))

    def stream_stream(self, *args: Any, **kwargs: Any) -> Any:
        return _Injecting(self._channel.stream_stream(*args, **kwargs))

    async def __aenter__(self) -> _TracingChannel:
        await self._channel.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> Any:
        return await self._channel.__aexit__(*exc)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._channel, name)
