"""The generic HTTP/JSON → gRPC transcoder: an ASGI app whose routes come from the annotations of
the services it fronts. Unary RPCs answer JSON; server-streaming RPCs (and unary RPCs whose
`bud.api.v1.sse` switch is on in the request) answer server-sent events. Every error is answered
with the HTTP status of the canonical gRPC mapping, in its service's dialect (`gateway/errors.py`:
OpenAI error JSON for OpenAI-dialect services, google.rpc.Status JSON for the others); an error
after the stream started is sent as a last SSE event, never a silent truncation."""

from __future__ import annotations

import asyncio
import importlib
import logging
import multiprocessing
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import grpc
import orjson
from google.protobuf import message_factory
from google.protobuf.descriptor import FieldDescriptor, MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message

from auth.client_address import FORWARDED_FOR
from bud.api.v1 import json_pb2
from budrt import tracing
from budrt.errors import (
    Reason,
    ServiceError,
    echo,
    http_status,
    internal,
    invalid_argument,
    not_found,
    unauthenticated,
)
from budrt.interceptors import accepted_request_id
from budrt.json_face import (
    STRING_FORM_TYPES,
    JsonFaceError,
    codec_for,
    from_python,
    to_json,
    well_known_from_text,
)
from gateway.backends import Backend
from gateway.errors import OPENAI_ERRORS, STATUS_ERRORS, ErrorDialect
from gateway.http_rules import Route, Router, routes_for_service

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
PlainHandler = Callable[[Scope], Awaitable[tuple[int, bytes]]]

# Defaults of the request-body limits (gateway settings `http_max_body_bytes`, `http_body_timeout`).
MAX_BODY_BYTES = 8 * 1024 * 1024
BODY_TIMEOUT_S = 30.0
# Bodies (and unary answers) larger than this are not converted on the event loop: a
# multi-megabyte conversion costs up to seconds of CPU, which on the loop would stall every other
# request (and /healthz) for as long. A whole-body request is parsed, checked and converted in a
# conversion process (it comes back as protobuf bytes, parsed in C in milliseconds): on a thread
# the parse (orjson) and the freeing of the parsed JSON are single C calls that hold the GIL for
# hundreds of milliseconds, stalling the loop all the same. Other large work (answers, bodies of
# a field) goes to a thread. Below the threshold the hop would cost more than the conversion.
OFFLOAD_BODY_BYTES = 64 * 1024
CONVERSION_WORKERS = 2  # processes, and threads: the loop keeps its share however many arrive
# HTTP headers passed on to the RPC as metadata (lower case); others are dropped.
FORWARDED_HEADERS = ("authorization", "x-request-id", "openai-organization", "openai-project")

_JSON_HEADERS = [(b"content-type", b"application/json")]
# Answers of this type are raw HTTP bodies (content type and bytes), not JSON.
HTTP_BODY = "google.api.HttpBody"
# Response metadata passed on as HTTP headers besides x-*.
_PASSED_HEADERS = frozenset({"retry-after", "cache-control"})
# The metadata naming the HTTP request's origin, `scheme://host` (links a service makes to
# itself, e.g. the image links); HTTP clients cannot set it (not a forwarded header).
ORIGIN_KEY = "x-bud-origin"
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
# Refusals made while the body is still arriving: the rest of it is never read, so the
# connection cannot carry another request and is closed.
_BODY_REFUSALS = {Reason.BODY_TOO_LARGE: 413, Reason.REQUEST_TIMEOUT: 408}
_CLOSE = [(b"connection", b"close")]


@dataclass(frozen=True)
class FrontedService:
    """A service the transcoder fronts: its descriptor, how to call it, and its dialect.

    `lenient` marks the OpenAI dialect: the service's JSON ignores unknown fields (as vLLM's
    server does) and its errors are OpenAI error JSON. Otherwise (management services) unknown
    fields are refused and errors are google.rpc.Status JSON, as grpc-gateway writes them.

    `check`, when set, is given each whole-body request's type (a message's full name) and its
    parsed JSON before the JSON is converted (`RequestLimits.check_json`: caps that fail fast);
    it refuses by raising ServiceError."""

    descriptor: ServiceDescriptor
    backend: Backend
    lenient: bool = False
    check: Callable[[str, Any], None] | None = None

    @property
    def errors(self) -> ErrorDialect:
        """How this service's REST errors are written."""
        return OPENAI_ERRORS if self.lenient else STATUS_ERRORS


class Transcoder:
    """ASGI application serving the annotated routes of the fronted services."""

    def __init__(
        self,
        services: list[FrontedService],
        plain_routes: dict[tuple[str, str], PlainHandler] | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        body_timeout: float = BODY_TIMEOUT_S,
        offload_bytes: int = OFFLOAD_BODY_BYTES,
    ) -> None:
        """`max_body_bytes`: the largest request body accepted (413 beyond, before any parsing);
        `body_timeout`: the seconds a client has to send the whole body (408 after);
        `offload_bytes`: bodies and unary answers larger are converted off the event loop (in a
        conversion process; see OFFLOAD_BODY_BYTES)."""
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout
        self.offload_bytes = offload_bytes
        self._threads: ThreadPoolExecutor | None = None
        routes: list[Route] = []
        self._backends: dict[str, FrontedService] = {}
        for service in services:
            routes += routes_for_service(service.descriptor)
            self._backends[service.descriptor.full_name] = service
        self.router = Router(routes)
        self.plain_routes = plain_routes or {}
        self._request_classes: dict[str, type[Message]] = {}

    # ---- ASGI entry -----------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        raw = scope.get("raw_path") or scope["path"].encode()
        raw_path = raw.decode("latin-1").split("?", 1)[0]
        method = scope["method"]
        # A client's id that is too long or has odd characters is replaced, not refused.
        request_id = accepted_request_id(_header(scope, b"x-request-id"))
        plain = self.plain_routes.get((method, raw_path))
        if plain is not None:
            status, body = await plain(scope)
            await _respond(send, status, body, request_id)
            return
        found = self.router.find(method, raw_path)
        if found is None:
            allowed = self.router.allows(raw_path)
            # A URL no service serves has no dialect: OpenAI's (what OpenAI itself answers).
            if allowed:
                err = invalid_argument(
                    f"Method {method} not allowed for {raw_path}", reason=Reason.METHOD_NOT_ALLOWED
                )
                await _respond(
                    send, 405, OPENAI_ERRORS.body(err), request_id, [(b"allow", ", ".join(allowed).encode())]
                )
            else:
                err = not_found(f"Unknown request URL: {method} {raw_path}", reason=Reason.UNKNOWN_URL)
                await _respond(send, 404, OPENAI_ERRORS.body(err), request_id)
            return
        route, path_values = found
        if tracing.enabled():
            await self._serve_traced(route, path_values, scope, receive, send, request_id)
        else:
            await self._serve_route(route, path_values, scope, receive, send, request_id)

    async def _serve_traced(
        self,
        route: Route,
        path_values: dict[str, str],
        scope: Scope,
        receive: Receive,
        send: Send,
        request_id: str,
    ) -> None:
        """`_serve_route` inside the request's SERVER span (named by the route's template, never
        the raw path), a child of the client's `traceparent` header when it sent one."""
        parent = tracing.extract(scope.get("headers"))
        span, ctx = tracing.start_span(f"{route.http_method} {route.template}", parent)
        recording = span.is_recording()
        if recording:
            span.set_attributes(
                {
                    "http.request.method": route.http_method,
                    "http.route": route.template,
                    "bud.request_id": request_id,
                }
            )
        status = 0

        async def observed(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        token = tracing.otel_context.attach(ctx)
        try:
            await self._serve_route(route, path_values, scope, receive, observed, request_id)
        finally:
            tracing.otel_context.detach(token)
            if recording:
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    tracing.set_error(span, f"HTTP {status}")
            span.end()

    async def _serve_route(
        self,
        route: Route,
        path_values: dict[str, str],
        scope: Scope,
        receive: Receive,
        send: Send,
        request_id: str,
    ) -> None:
        errors = self._backends[route.service.full_name].errors
        try:
            body = await self._read_body(scope, receive)
        except ServiceError as err:
            await _respond(send, _BODY_REFUSALS[Reason(err.reason)], errors.body(err), request_id, _CLOSE)
            return
        try:
            metadata = _metadata(scope, request_id)
            if len(body) > self.offload_bytes:
                request, streaming = await self._build_request_off_loop(route, path_values, scope, body)
            else:
                request, streaming = self._build_request(route, path_values, scope, body)
        except JsonFaceError as err:
            await _respond(send, 400, errors.body(invalid_argument(err.message, param=err.param)), request_id)
            return
        except ServiceError as err:
            await _respond(send, http_status(err.code), errors.body(err), request_id)
            return
        if streaming is not None:
            await self._serve_stream(route, streaming, request, metadata, request_id, receive, send)
        else:
            await self._serve_unary(route, request, metadata, request_id, receive, send)

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        """The request body, refused (ServiceError, a reason of `_BODY_REFUSALS`) when it is
        announced or turns out larger than the cap, or takes longer than the body timeout to
        arrive: a slow or unfinished body cannot hold a connection for ever."""
        limit = self.max_body_bytes
        declared = _header(scope, b"content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            raise _too_large(limit)  # refused before a byte of it is read
        try:
            async with asyncio.timeout(self.body_timeout):
                return await _read_body(receive, limit)
        except TimeoutError:
            raise invalid_argument(
                f"The request body was not received within {self.body_timeout:g} seconds.",
                reason=Reason.REQUEST_TIMEOUT,
            ) from None

    async def _off_loop(self, function: Callable[..., Any], *args: Any) -> Any:
        """`function(*args)` on one of the conversion threads (created on first use)."""
        if self._threads is None:
            self._threads = ThreadPoolExecutor(CONVERSION_WORKERS, thread_name_prefix="transcode")
        return await asyncio.get_running_loop().run_in_executor(self._threads, function, *args)

    async def _encode_off_loop(self, response: Message, response_body: str) -> bytes:
        """`_encode` of a large answer in a conversion process (its bytes there, its JSON back:
        `orjson.dumps` of millions of floats holds the GIL), else on a thread."""
        pool = _conversion_processes()
        if pool is not None:
            cls = type(response)
            args = (cls.__module__, cls.__name__, response.SerializeToString(), response_body)
            try:
                payload = await asyncio.get_running_loop().run_in_executor(pool, encode_answer, *args)
            except BrokenProcessPool:
                _drop_conversion_processes(pool)
                payload = None
            if payload is not None:
                return payload
        return await self._off_loop(_encode, response, response_body)

    async def _build_request_off_loop(
        self, route: Route, path_values: dict[str, str], scope: Scope, body: bytes
    ) -> tuple[Message, MethodDescriptor | None]:
        """`_build_request` of a large body: a whole body in a conversion process, anything else
        (or when no process can be had) on a thread."""
        service = self._backends[route.service.full_name]
        cls = self._request_class(route.method)
        pool = _conversion_processes() if route.body == "*" else None
        if pool is not None:
            when = route.sse.when_field if route.sse is not None and route.sse.method is not None else ""
            args = (cls.__module__, cls.__name__, body, service.lenient, service.check, when)
            try:
                outcome = await asyncio.get_running_loop().run_in_executor(pool, convert_body, *args)
            except BrokenProcessPool:
                _drop_conversion_processes(pool)
                outcome = None
            if outcome is not None:
                kind, payload, detail = outcome
                if kind == "json":
                    raise JsonFaceError(payload, detail)
                if kind == "refused":
                    code, reason, param = detail
                    raise ServiceError(_STATUS_CODES[code], payload, reason=reason, param=param)
                request = cls.FromString(payload)
                return request, self._finish_request(route, path_values, scope, request, detail)
        return await self._off_loop(self._build_request, route, path_values, scope, body)

    # ---- request building -----------------------------------------------------------------
    def _request_class(self, method: MethodDescriptor) -> type[Message]:
        cls = self._request_classes.get(method.full_name)
        if cls is None:
            cls = self._request_classes[method.full_name] = message_factory.GetMessageClass(method.input_type)
        return cls

    def _build_request(
        self, route: Route, path_values: dict[str, str], scope: Scope, body: bytes
    ) -> tuple[Message, MethodDescriptor | None]:
        request = self._request_class(route.method)()
        service = self._backends[route.service.full_name]
        lenient = service.lenient
        obj: Any = None
        if route.body:
            try:
                obj = orjson.loads(body) if body.strip() else {}
            except orjson.JSONDecodeError as err:
                raise JsonFaceError(f"We could not parse the JSON body of your request: {err}") from None
            if route.body == "*":
                if service.check is not None:
                    service.check(route.method.input_type.full_name, obj)  # before converting it
                from_python(obj, request, lenient)
            else:
                fd = request.DESCRIPTOR.fields_by_name.get(route.body)
                if fd is None:
                    raise internal(f"{route.method.full_name}: no body field {route.body!r}", reason=None)
                sub = getattr(request, route.body)
                sub.SetInParent()
                codec_for(fd.message_type).decode(obj, sub, route.body, lenient)
        flag = None
        if route.sse is not None and route.sse.method is not None and isinstance(obj, dict):
            flag = obj.get(route.sse.when_field)
        return request, self._finish_request(route, path_values, scope, request, flag)

    def _finish_request(
        self, route: Route, path_values: dict[str, str], scope: Scope, request: Message, flag: Any
    ) -> MethodDescriptor | None:
        """Binds the query and path to `request` (filled from the body); the streaming method
        when the route streams (or its `sse` switch, `flag`, is true), else None."""
        if route.body != "*":
            for key, value in parse_qsl(
                scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True
            ):
                _set_path(request, key, value, repeated_ok=True)
        for field_path, value in path_values.items():
            _set_path(request, field_path, value)
        if route.server_streaming:
            return route.method
        if route.sse is not None and route.sse.method is not None and flag is True:
            return route.sse.method
        return None

    # ---- unary ----------------------------------------------------------------------------
    async def _serve_unary(
        self,
        route: Route,
        request: Message,
        metadata: list[tuple[str, str]],
        request_id: str,
        receive: Receive,
        send: Send,
    ) -> None:
        service = self._backends[route.service.full_name]
        response_metadata: list[tuple[str, str]] = []
        # A client that leaves before the answer cancels the call, as a stream's does: the
        # cancellation reaches the engine call (an in-process one is the same task; a grpc.aio
        # call cancels its RPC when the task awaiting it is cancelled), so the engine aborts.
        watcher = asyncio.create_task(_cancel_on_disconnect(receive, asyncio.current_task()))
        content_type = b""
        try:
            response = await service.backend.unary(route.method, request, metadata, response_metadata)
            if response.DESCRIPTOR.full_name == HTTP_BODY:
                # google.api.HttpBody, as grpc-gateway answers it: its bytes are the body.
                content_type = response.content_type.encode("latin-1") or b"application/octet-stream"
                payload = response.data
            elif response.ByteSize() > self.offload_bytes:  # a large answer (embeddings): off the loop
                payload = await self._encode_off_loop(response, route.response_body)
            else:
                payload = _encode(response, route.response_body)
            status = 200
        except ServiceError as err:
            status, payload = http_status(err.code), service.errors.body(err)
        except Exception:
            log.exception("transcoding %s failed", route.method.full_name)
            status, payload = 500, service.errors.body(internal("internal error", reason=None))
        except asyncio.CancelledError:
            if watcher.done():
                return  # the client left: nobody to answer
            raise
        finally:
            watcher.cancel()
        if content_type and status == 200:
            await _respond_raw(send, payload, content_type, request_id, _extra_headers(response_metadata))
            return
        await _respond(send, status, payload, request_id, _extra_headers(response_metadata))

    # ---- streaming ------------------------------------------------------------------------
    async def _serve_stream(
        self,
        route: Route,
        method: MethodDescriptor,
        request: Message,
        metadata: list[tuple[str, str]],
        request_id: str,
        receive: Receive,
        send: Send,
    ) -> None:
        service = self._backends[route.service.full_name]
        done_data, event_field = _framing(route, method)
        response_metadata: list[tuple[str, str]] = []
        stream = service.backend.stream(method, request, metadata, response_metadata)
        task = asyncio.current_task()
        watcher = asyncio.create_task(_cancel_on_disconnect(receive, task))
        started = False
        sequence = 0
        try:
            async for item in stream:
                if not started:
                    headers = [
                        *_SSE_HEADERS,
                        (b"x-request-id", request_id.encode()),
                        *_extra_headers(response_metadata),
                    ]
                    await send({"type": "http.response.start", "status": 200, "headers": headers})
                    started = True
                if event_field:
                    name = getattr(item, event_field)
                    frame = b"event: " + name.encode() + b"\ndata: " + to_json(item) + b"\n\n"
                    sequence += 1
                else:
                    frame = b"data: " + to_json(item) + b"\n\n"
                await send({"type": "http.response.body", "body": frame, "more_body": True})
            if not started:  # an empty stream still answers a well-formed event stream
                await send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [*_SSE_HEADERS, (b"x-request-id", request_id.encode())],
                    }
                )
                started = True
            tail = b"data: " + done_data.encode() + b"\n\n" if done_data else b""
            await send({"type": "http.response.body", "body": tail, "more_body": False})
        except asyncio.CancelledError:
            # The client went away: closing the stream cancels the RPC (the engine aborts).
            await stream.aclose()
            if watcher.done():
                return
            raise
        except ServiceError as err:
            await _stream_error(
                send, started, service.errors, err, request_id, event_field, sequence, response_metadata
            )
        except Exception:
            log.exception("streaming %s failed", method.full_name)
            err = internal("internal error", reason=None)
            await _stream_error(
                send, started, service.errors, err, request_id, event_field, sequence, response_metadata
            )
        finally:
            watcher.cancel()


# ---- conversion processes ------------------------------------------------------------------
_PROCESSES: ProcessPoolExecutor | None = None
_STATUS_CODES = {code.value[0]: code for code in grpc.StatusCode}


def _conversion_processes() -> Executor | None:
    """The process pool converting large bodies (one per gateway process, started on first use:
    spawned, not forked, as the process runs gRPC's threads); None when none can be started."""
    global _PROCESSES
    if _PROCESSES is None:
        try:
            _PROCESSES = ProcessPoolExecutor(
                CONVERSION_WORKERS, mp_context=multiprocessing.get_context("spawn")
            )
        except OSError:
            log.exception("no conversion process; large bodies are converted on a thread")
            return None
    return _PROCESSES


def warm_conversion_processes() -> list[Future[Any]]:
    """Starts the conversion processes now (a spawned process takes a second or more to import
    its modules), so that the first large request does not wait for them; the futures of the
    warming tasks (done once a process has imported what it needs)."""
    pool = _conversion_processes()
    if pool is None:
        return []
    # One task each (processes are spawned as tasks wait), importing what a conversion imports.
    return [pool.submit(_ready) for _ in range(CONVERSION_WORKERS)]


def _ready() -> bool:
    """A conversion process's first task: unpickling it imports this module (and so the codec)."""
    return True


def _drop_conversion_processes(pool: Executor) -> None:
    global _PROCESSES
    log.warning("a conversion process died; starting new ones")
    if _PROCESSES is pool:
        _PROCESSES = None
    pool.shutdown(wait=False)


def convert_body(
    module: str,
    name: str,
    body: bytes,
    lenient: bool,
    check: Callable[[str, Any], None] | None,
    when_field: str,
) -> tuple[str, Any, Any] | None:
    """In a conversion process: a whole JSON body parsed, checked (`check`) and converted into
    the message `module.name`: ("ok", the message's bytes, the body's `when_field` value),
    ("json", message, param) for a JsonFaceError, ("refused", message, (code, reason, param))
    for a ServiceError; None when the message type cannot be had here (one made at run time):
    the caller converts it itself."""
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None
    try:
        obj = orjson.loads(body) if body.strip() else {}
    except orjson.JSONDecodeError as err:
        return "json", f"We could not parse the JSON body of your request: {err}", ""
    try:
        if check is not None:
            check(cls.DESCRIPTOR.full_name, obj)
        request = from_python(obj, cls(), lenient)
    except JsonFaceError as err:
        return "json", err.message, err.param
    except ServiceError as err:
        return "refused", err.message, (err.code.value[0], err.reason, err.param)
    flag = obj.get(when_field) if when_field and isinstance(obj, dict) else None
    return "ok", request.SerializeToString(), flag


def encode_answer(module: str, name: str, data: bytes, response_body: str) -> bytes | None:
    """In a conversion process: the JSON of an answer (the message `module.name` as `data`);
    None when the type cannot be had here."""
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None
    return _encode(cls.FromString(data), response_body)


# ---- helpers -------------------------------------------------------------------------------
def _encode(response: Message, response_body: str) -> bytes:
    """A unary answer's JSON: the whole message, or its `response_body` field."""
    if response_body:
        return orjson.dumps(codec_for(response.DESCRIPTOR).encode(response)[response_body])
    return to_json(response)


async def _stream_error(
    send: Send,
    started: bool,
    errors: ErrorDialect,
    err: ServiceError,
    request_id: str,
    event_field: str,
    sequence: int,
    response_metadata: list[tuple[str, str]],
) -> None:
    if not started:  # nothing sent yet: a plain HTTP error with the right status
        await _respond(
            send, http_status(err.code), errors.body(err), request_id, _extra_headers(response_metadata)
        )
        return
    frame = errors.stream_frame(err, event_field, sequence)
    await send({"type": "http.response.body", "body": frame, "more_body": False})


def _framing(route: Route, method: MethodDescriptor) -> tuple[str, str]:
    """(done_data, event_field) of a stream: the route's sse option, overridden by the streaming
    method's own where it sets them."""
    done_data = route.sse.done_data if route.sse else ""
    event_field = route.sse.event_field if route.sse else ""
    options = method.GetOptions()
    if options.HasExtension(json_pb2.sse):
        own = options.Extensions[json_pb2.sse]
        done_data = own.done_data or done_data
        event_field = own.event_field or event_field
    return done_data, event_field


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _cancel_on_disconnect(receive: Receive, task: asyncio.Task[Any] | None) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            if task is not None:
                task.cancel()
            return


def _too_large(limit: int) -> ServiceError:
    return invalid_argument(f"The request body exceeds {limit} bytes.", reason=Reason.BODY_TOO_LARGE)


async def _read_body(receive: Receive, limit: int) -> bytes:
    """Reads the body, refusing it as soon as it passes `limit` bytes (a chunked body announces
    no length)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise asyncio.CancelledError
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def _metadata(scope: Scope, request_id: str) -> list[tuple[str, str]]:
    """The RPC's metadata: the accepted request id and the forwarded headers. gRPC metadata
    values are printable ASCII: an Authorization header that is not is refused (401), any other
    such header is dropped (a gRPC channel would fail the whole call on it)."""
    metadata = [("x-request-id", request_id)]
    for key, value in scope["headers"]:
        name = key.decode("latin-1").lower()
        if name in FORWARDED_HEADERS and name != "x-request-id":
            text = value.decode("latin-1")
            if text.isascii() and text.isprintable():
                metadata.append((name, text))
            elif name == "authorization":
                raise unauthenticated(
                    "The Authorization header is not valid: send 'Bearer <token>' in printable ASCII."
                )
    host = _header(scope, b"host")
    if host and host.isascii() and host.isprintable():
        metadata.append((ORIGIN_KEY, f"{scope.get('scheme', 'http')}://{host}"))
    if scope.get("client"):
        # The HTTP client's address, for the app's per-address login throttle (a client's own
        # x-forwarded-for header is not in FORWARDED_HEADERS: dropped). See auth.client_address.
        metadata.append((FORWARDED_FOR, str(scope["client"][0])))
    return metadata


def _extra_headers(metadata: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    # Servicers speak to HTTP clients through metadata: x-*, retry-after and cache-control
    # become headers.
    return [(k.encode(), v.encode()) for k, v in metadata if k.startswith("x-") or k in _PASSED_HEADERS]


async def _respond_raw(
    send: Send, body: bytes, content_type: bytes, request_id: str, extra: list[tuple[bytes, bytes]]
) -> None:
    """An HttpBody answer: its bytes with its content type (never sniffed as something else)."""
    headers = [
        (b"content-type", content_type),
        (b"x-content-type-options", b"nosniff"),
        (b"x-request-id", request_id.encode()),
        *extra,
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _respond(
    send: Send, status: int, body: bytes, request_id: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [*_JSON_HEADERS, (b"x-request-id", request_id.encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _set_path(msg: Message, dotted: str, raw: str, repeated_ok: bool = False) -> None:
    """Sets a (possibly nested) field from a path variable or query parameter string."""
    parts = dotted.split(".")
    target = msg
    for part in parts[:-1]:
        fd = target.DESCRIPTOR.fields_by_name.get(part)
        if fd is None or fd.type != FieldDescriptor.TYPE_MESSAGE or fd.is_repeated:
            raise invalid_argument(f"unknown parameter '{dotted}'", param=dotted)
        target = getattr(target, part)
    name = parts[-1]
    fd = target.DESCRIPTOR.fields_by_name.get(name)
    if (
        fd is not None
        and not fd.is_repeated
        and fd.type == FieldDescriptor.TYPE_MESSAGE
        and fd.message_type.full_name in STRING_FORM_TYPES
    ):
        # update_mask=a,b / expire_time=2026-01-01T00:00:00Z: their JSON string forms.
        try:
            getattr(target, name).MergeFrom(well_known_from_text(fd.message_type, raw, dotted))
        except JsonFaceError as err:
            raise invalid_argument(err.message, param=dotted) from None
        return
    if fd is None or fd.type == FieldDescriptor.TYPE_MESSAGE and not _is_scalar_wrapper(fd):
        raise invalid_argument(f"unknown parameter '{dotted}'", param=dotted)
    value = _parse_scalar_text(fd, raw, dotted)
    if fd.is_repeated and not repeated_ok:
        raise invalid_argument(f"'{dotted}' cannot be bound from the path", param=dotted)
    try:
        if fd.is_repeated:
            getattr(target, name).append(value)
        elif fd.type == FieldDescriptor.TYPE_MESSAGE:
            getattr(target, name).value = value
        else:
            setattr(target, name, value)
    except ValueError:  # protobuf's range check: ?page_size=1000000000000 into an int32
        raise invalid_argument(f"'{dotted}' is out of range: {echo(raw)}", param=dotted) from None


def _is_scalar_wrapper(fd: FieldDescriptor) -> bool:
    return (
        fd.message_type.full_name.startswith("google.protobuf.")
        and fd.message_type.full_name.endswith("Value")
        and "value" in fd.message_type.fields_by_name
        and fd.message_type.full_name != "google.protobuf.Value"
    )


def _parse_scalar_text(fd: FieldDescriptor, raw: str, dotted: str) -> Any:
    target = fd.message_type.fields_by_name["value"] if fd.type == FieldDescriptor.TYPE_MESSAGE else fd
    t = target.type
    try:
        if t == FieldDescriptor.TYPE_BOOL:
            if raw.lower() in ("true", "1", ""):
                return True
            if raw.lower() in ("false", "0"):
                return False
            raise ValueError(raw)
        if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
            return float(raw)
        if t == FieldDescriptor.TYPE_ENUM:
            value = target.enum_type.values_by_name.get(raw)
            return value.number if value is not None else int(raw)
        if t == FieldDescriptor.TYPE_STRING:
            return raw
        if t == FieldDescriptor.TYPE_BYTES:
            return raw.encode()
        return int(raw)
    except ValueError:
        raise invalid_argument(f"invalid value for '{dotted}': {echo(raw)}", param=dotted) from None
