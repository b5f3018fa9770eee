"""The hooks every RPC passes through: request ids, logging, metrics, tracing, error mapping
(authorisation is a component's interceptor, appended by `GrpcServer`).

A :class:`CallInterceptor` wraps one method's behaviour (the servicer's coroutine or async
generator) once, when the method is first called; the wrapped behaviour then runs per call. The
same chain serves both paths a call can take: :class:`InterceptorChain` is the
`grpc.aio.ServerInterceptor` every :class:`~budrt.grpc_server.GrpcServer` installs, and
:class:`~budrt.inprocess.InProcessService` applies it to the servicer a co-hosted caller calls
directly, so a call behaves the same over the wire and in process.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextvars import ContextVar
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from budrt import metrics, tracing
from budrt.errors import ServiceError

log = logging.getLogger(__name__)

REQUEST_ID_KEY = "x-request-id"
# The longest request id a client may choose, and its characters; any other id a client sends
# (HTTP `X-Request-Id`, gRPC `x-request-id`) is replaced by a generated one, never refused: it
# goes into logs and usage records, whose store refuses longer ids (a 129-character id once
# stopped usage reporting for everyone).
MAX_REQUEST_ID_LENGTH = 128
_REQUEST_ID_RE = re.compile(rf"[A-Za-z0-9._:-]{{1,{MAX_REQUEST_ID_LENGTH}}}")
# The id of the call being served, for the logs (budrt.logs adds it to every line).
request_id: ContextVar[str] = ContextVar("request_id", default="")


def new_request_id() -> str:
    """A generated request id (32 hex digits)."""
    return uuid.uuid4().hex


def accepted_request_id(value: str | None) -> str:
    """The request id a client sent when it is one we carry (1 to `MAX_REQUEST_ID_LENGTH` of
    letters, digits and '._:-'), a generated one otherwise (none sent included)."""
    if value and _REQUEST_ID_RE.fullmatch(value):
        return value
    return new_request_id()


def call_request_id(context: Any) -> str:
    """The id of the call being served: the one `RequestIds` bound, else the call's accepted
    `x-request-id` metadata (a servicer called without the interceptors)."""
    return request_id.get() or accepted_request_id(_metadata_value(context, REQUEST_ID_KEY))


Behavior = Callable[..., Any]


class CallInterceptor:
    """Wraps the behaviour of one RPC method; `method` is "package.Service/Method".
    The default wraps nothing (a hook may care for one shape of call only)."""

    def wrap_unary(self, behavior: Behavior, method: str) -> Behavior:
        """The coroutine function to run instead of `behavior` (request, context) → response."""
        return behavior

    def wrap_stream(self, behavior: Behavior, method: str) -> Behavior:
        """The async generator function to run instead of `behavior` (request, context) → items."""
        return behavior


def _metadata_value(context: Any, key: str) -> str | None:
    for k, v in context.invocation_metadata() or ():
        if k == key:
            return v
    return None


class RequestIds(CallInterceptor):
    """Binds the call's request id (its `x-request-id` metadata if `accepted_request_id` takes
    it, or a new one) to the logs of the call. A stream keeps it bound in the task that iterates
    it."""

    def wrap_unary(self, behavior: Behavior, method: str) -> Behavior:
        async def with_request_id(request: Any, context: Any) -> Any:
            token = request_id.set(accepted_request_id(_metadata_value(context, REQUEST_ID_KEY)))
            try:
                return await behavior(request, context)
            finally:
                request_id.reset(token)

        return with_request_id

    def wrap_stream(self, behavior: Behavior, method: str) -> Behavior:
        async def with_request_id(request: Any, context: Any) -> Any:
            request_id.set(accepted_request_id(_metadata_value(context, REQUEST_ID_KEY)))
            items = behavior(request, context)
            try:
                async for item in items:
                    yield item
            finally:
                await items.aclose()  # a caller that stops early ends the servicer's stream now

        return with_request_id


class CallLog(CallInterceptor):
    """Logs each call's method, outcome and duration at DEBUG. Costs nothing when DEBUG is off at
    the method's first call (the behaviour is then left unwrapped)."""

    def wrap_unary(self, behavior: Behavior, method: str) -> Behavior:
        if not log.isEnabledFor(logging.DEBUG):
            return behavior

        async def logged(request: Any, context: Any) -> Any:
            started = time.perf_counter()
            outcome = "OK"
            try:
                return await behavior(request, context)
            except BaseException as err:
                outcome = type(err).__name__
                raise
            finally:
                log.debug(
                    "rpc",
                    extra={
                        "method": method,
                        "outcome": outcome,
                        "ms": round((time.perf_counter() - started) * 1000, 3),
                    },
                )

        return logged

    def wrap_stream(self, behavior: Behavior, method: str) -> Behavior:
        if not log.isEnabledFor(logging.DEBUG):
            return behavior

        async def logged(request: Any, context: Any) -> Any:
            started = time.perf_counter()
            outcome, count = "OK", 0
            items = behavior(request, context)
            try:
                async for item in items:
                    count += 1
                    yield item
            except BaseException as err:
                outcome = type(err).__name__
                raise
            finally:
                await items.aclose()
                log.debug(
                    "rpc",
                    extra={
                        "method": method,
                        "outcome": outcome,
                        "items": count,
                        "ms": round((time.perf_counter() - started) * 1000, 3),
                    },
                )

        return logged


class ErrorMapping(CallInterceptor):
    """A raised ServiceError becomes the call's status with its details; any other exception is
    logged and becomes INTERNAL. An abort (`context.abort`) and a cancellation pass unchanged."""

    def wrap_unary(self, behavior: Behavior, method: str) -> Behavior:
        async def mapped(request: Any, context: Any) -> Any:
            try:
                return await behavior(request, context)
            except ServiceError as err:
                trailers = err.trailing_metadata()  # bounds the message first
                await context.abort(err.code, err.message, trailing_metadata=trailers)
            except grpc.aio.AbortError:
                raise
            except Exception:
                log.exception("unhandled error in %s", method)
                await context.abort(grpc.StatusCode.INTERNAL, f"internal error in {method}")

        return mapped

    def wrap_stream(self, behavior: Behavior, method: str) -> Behavior:
        async def mapped(request: Any, context: Any) -> Any:
            items = behavior(request, context)
            try:
                async for item in items:
                    yield item
            except ServiceError as err:
                trailers = err.trailing_metadata()  # bounds the message first
                await context.abort(err.code, err.message, trailing_metadata=trailers)
            except (grpc.aio.AbortError, GeneratorExit):
                raise
            except Exception:
                log.exception("unhandled error in %s", method)
                await context.abort(grpc.StatusCode.INTERNAL, f"internal error in {method}")
            finally:
                await items.aclose()

        return mapped


def _outcome(err: BaseException) -> str:
    """The status code name a call ending with `err` answers (raised inside ErrorMapping)."""
    if isinstance(err, ServiceError):
        return err.code.name
    if isinstance(err, (GeneratorExit, asyncio.CancelledError)):
        return "CANCELLED"
    if isinstance(err, grpc.aio.AbortError):
        return "ABORTED_BY_SERVICER"
    return "INTERNAL"


class CallMetrics(CallInterceptor):
    """Counts every call served over gRPC by method and status code and times it (`budrt.metrics`:
    bud_grpc_server_handled_total, bud_grpc_server_handling_seconds). Inside ErrorMapping, so a
    ServiceError is counted with its code. The label children are looked up once per method."""

    def wrap_unary(self, behavior: Behavior, method: str) -> Behavior:
        duration = metrics.GRPC_DURATION.labels(method)
        ok = metrics.GRPC_HANDLED.labels(method, "OK")

        async def measured(request: Any, context: Any) -> Any:
            started = time.perf_counter()
            try:
                response = await behavior(request, context)
            except BaseException as err:
                metrics.GRPC_HANDLED.labels(method, _outcome(err)).inc()
                raise
            finally:
                duration.observe(time.perf_counter() - started)
            ok.inc()
            return response

        return measured

    def wrap_stream(self, behavior: Behavior, method: str) -> Behavior:
        if method.rsplit("/", 1)[-1].startswith("Watch"):
            return behavior  # watch streams last as long as their peer: no duration to speak of
        duration = metrics.GRPC_DURATION.labels(method)
        ok = metrics.GRPC_HANDLED.labels(method, "OK")

        async def measured(request: Any, context: Any) -> Any:
            started = time.perf_counter()
            items = behavior(request, context)
            try:
                async for item in items:
                    yield item
            except BaseException as err:
                metrics.GRPC_HANDLED.labels(method, _outcome(err)).inc()
                raise
            else:
                ok.inc()
            finally:
                duration.observe(time.perf_counter() - started)
                await items.aclose()

        return measured


class Tracing(CallInterceptor):
    """A SERVER span per call (`budrt.tracing`), child of the caller's: the current span for an
    in-process call, else the `traceparent` of the call's metadata, else a new trace. Model calls
    (`genai_operation`) carry GenAI attributes (model, sampling settings, usage, finish reasons)
    and, streamed, the events `first_token` and `last_token`. With tracing off when the method is
    first called, the behaviour is left unwrapped: it costs nothing. Watch streams (as long-lived
    as their peer) are not traced."""

    def wrap_unary(self, behavior: Behavior, method: str) -> Behavior:
        if not tracing.enabled():
            return behavior
        operation = tracing.genai_operation(method)

        async def traced(request: Any, context: Any) -> Any:
            span, ctx = _server_span(method, operation, request, context)
            token = otel_context.attach(ctx)
            try:
                response = await behavior(request, context)
            except BaseException as err:
                _end_failed(span, err)
                raise
            finally:
                otel_context.detach(token)
            if operation is not None and span.is_recording():
                tracing.answer_attributes(span, response)
            span.end()
            return response

        return traced

    def wrap_stream(self, behavior: Behavior, method: str) -> Behavior:
        if not tracing.enabled() or method.rsplit("/", 1)[-1].startswith("Watch"):
            return behavior
        operation = tracing.genai_operation(method)

        async def traced(request: Any, context: Any) -> Any:
            span, ctx = _server_span(method, operation, request, context)
            items = behavior(request, context)
            recording = span.is_recording()
            first = True
            try:
                while True:
                    # Current only while the servicer runs: an async generator's steps run in
                    # its consumer's context, which must get its own span back after each one.
                    token = otel_context.attach(ctx)
                    try:
                        item = await items.__anext__()
                    except StopAsyncIteration:
                        break
                    finally:
                        otel_context.detach(token)
                    if recording and operation is not None:
                        if first:
                            span.add_event("first_token")
                            first = False
                        tracing.answer_attributes(span, item)
                    yield item
                if recording and operation is not None:
                    span.add_event("last_token")
            except BaseException as err:
                _end_failed(span, err)
                raise
            finally:
                await items.aclose()
            span.end()

        return traced


def _server_span(method: str, operation: str | None, request: Any, context: Any) -> tuple[Any, Any]:
    """The call's span and the context it is current in: under the current span when the call is
    made in process, else under the metadata's `traceparent` (None: a new trace). Its attributes
    are read only when it records (a trace not sampled costs the span's creation alone)."""
    parent = None
    if not trace.get_current_span().get_span_context().is_valid:
        parent = tracing.extract(context.invocation_metadata())
    name = method
    if operation is not None:
        model = getattr(request, "model", "")
        name = f"{operation} {model}" if model else operation
    span, ctx = tracing.start_span(name, parent, SpanKind.SERVER)
    if span.is_recording():
        attributes: dict[str, Any] = {"rpc.system": "grpc", "rpc.method": method}
        if operation is not None:
            attributes.update(tracing.request_attributes(operation, request))
        current = request_id.get()
        if current:
            attributes["bud.request_id"] = current
        span.set_attributes(attributes)
    return span, ctx


def _end_failed(span: Any, err: BaseException) -> None:
    if span.is_recording():
        code = _outcome(err)
        span.set_attribute("rpc.grpc.status_code", code)
        if code != "CANCELLED":
            message = err.message if isinstance(err, ServiceError) else type(err).__name__
            span.set_status(Status(StatusCode.ERROR, f"{code}: {message}"[:256]))
    span.end()


# Outermost first: the request id is bound before anything logs; errors are mapped outside the
# span, so a ServiceError reaches it with its code, and the hooks outside see the call end as the
# caller will (an abort). `GrpcServer` adds `CallMetrics` after ErrorMapping (`with_metrics`):
# calls over the wire are counted, in-process calls (already counted by what makes them: the
# gateway's requests) are not, which keeps ~20 µs of histogram work off the co-hosted path.
DEFAULT_INTERCEPTORS: tuple[CallInterceptor, ...] = (
    RequestIds(),
    CallLog(),
    ErrorMapping(),
    Tracing(),
)
_CALL_METRICS = CallMetrics()


def with_metrics(interceptors: Sequence[CallInterceptor]) -> tuple[CallInterceptor, ...]:
    """`interceptors` with `CallMetrics` just inside the first ErrorMapping (so a ServiceError is
    counted with its code), or innermost when there is none."""
    chain = list(interceptors)
    if any(isinstance(i, CallMetrics) for i in chain):
        return tuple(chain)
    at = next((n + 1 for n, i in enumerate(chain) if isinstance(i, ErrorMapping)), len(chain))
    chain.insert(at, _CALL_METRICS)
    return tuple(chain)


def is_generated_default(behavior: Behavior) -> bool:
    """Whether `behavior` is the generated base servicer's method (the servicer does not implement
    the RPC): it answers UNIMPLEMENTED itself and is left unwrapped."""
    function = getattr(behavior, "__func__", behavior)
    return getattr(function, "__module__", "").endswith("_pb2_grpc")


class InterceptorChain(grpc.aio.ServerInterceptor):
    """Applies call interceptors (outermost first) to the methods of some services, once per
    method: a call pays one dictionary lookup here, then the wrapped behaviour."""

    def __init__(
        self,
        interceptors: Sequence[CallInterceptor] = DEFAULT_INTERCEPTORS,
        services: Iterable[str] | None = None,
    ) -> None:
        self.interceptors = tuple(interceptors)
        # Only these services' methods are wrapped (None: all); health and reflection pass as is.
        self._services = None if services is None else frozenset(services)
        self._handlers: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def wrap(self, behavior: Behavior, method: str, streaming: bool) -> Behavior:
        """`behavior` with every interceptor applied; an RPC the servicer leaves to its generated
        base, or a behaviour that is not async, is returned unchanged."""
        if is_generated_default(behavior):
            return behavior
        if streaming:
            if not inspect.isasyncgenfunction(behavior):
                return behavior
            for interceptor in reversed(self.interceptors):
                behavior = interceptor.wrap_stream(behavior, method)
        else:
            if not inspect.iscoroutinefunction(behavior):
                return behavior
            for interceptor in reversed(self.interceptors):
                behavior = interceptor.wrap_unary(behavior, method)
        return behavior

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        path: str = handler_call_details.method  # type: ignore[attr-defined]
        cached = self._handlers.get(path)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap_handler(handler, path)
        self._handlers[path] = (handler, wrapped)
        return wrapped

    def _wrap_handler(self, handler: Any, path: str) -> Any:
        method = path.lstrip("/")
        if handler is None or (self._services is not None and method.rsplit("/", 1)[0] not in self._services):
            return handler
        if handler.unary_unary is not None:
            return handler._replace(unary_unary=self.wrap(handler.unary_unary, method, streaming=False))
        if handler.unary_stream is not None:
            return handler._replace(unary_stream=self.wrap(handler.unary_stream, method, streaming=True))
        return handler  # client- and bidi-streaming RPCs: none of ours; unwrapped
