"""The one error vocabulary: reasons keep their wire values, every factory has the same shape,
the status table is the canonical mapping both ways, and rich details survive a real gRPC hop
(packed and read by grpcio-status)."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import grpc
import pytest
from google.protobuf import empty_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from budrt import errors
from budrt.errors import HTTP_STATUS, Reason, ServiceError, grpc_code, http_status
from budrt.grpc_server import service_channel
from tests.support.mesh import free_port

ROOT = Path(__file__).resolve().parents[2]

# Every reason clients could see before the vocabulary was one enum: their values are API.
WIRE_REASONS = {
    "INVALID_ARGUMENT",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "UNAUTHENTICATED",
    "ABORTED",
    "UNIMPLEMENTED",
    "INTERNAL",
    "INVALID_CREDENTIALS",
    "INVALID_TOKEN",
    "TOKEN_EXPIRED",
    "TOO_MANY_LOGIN_ATTEMPTS",
    "INVALID_API_KEY",
    "RATE_LIMIT_EXCEEDED",
    "LAST_OWNER",
    "PROJECT_HAS_DEPLOYMENTS",
    "API_KEY_REVOKED",
    "API_KEY_EXPIRED",
    "NOT_READY",
    "MISSING_MODEL",
    "MODEL_NOT_FOUND",
    "MODEL_NOT_READY",
    "MODEL_UNAVAILABLE",
    "MODEL_NAME_TAKEN",
    "UNSUPPORTED_OPERATION",
    "UNKNOWN_URL",
    "METHOD_NOT_ALLOWED",
    "BODY_TOO_LARGE",
}

FACTORIES = {
    "invalid_argument": grpc.StatusCode.INVALID_ARGUMENT,
    "not_found": grpc.StatusCode.NOT_FOUND,
    "already_exists": grpc.StatusCode.ALREADY_EXISTS,
    "permission_denied": grpc.StatusCode.PERMISSION_DENIED,
    "unauthenticated": grpc.StatusCode.UNAUTHENTICATED,
    "failed_precondition": grpc.StatusCode.FAILED_PRECONDITION,
    "resource_exhausted": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "aborted": grpc.StatusCode.ABORTED,
    "unimplemented": grpc.StatusCode.UNIMPLEMENTED,
    "unavailable": grpc.StatusCode.UNAVAILABLE,
    "internal": grpc.StatusCode.INTERNAL,
}


def test_reasons_keep_their_wire_values() -> None:
    assert WIRE_REASONS <= {r.value for r in Reason}
    for reason in Reason:
        assert reason.value == reason.name  # UPPER_SNAKE on the wire, the member's own name
        assert reason == reason.value and f"{reason}" == reason.value  # a str wherever a str was


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_every_factory_has_the_same_shape(name: str) -> None:
    factory = getattr(errors, name)
    params = inspect.signature(factory).parameters
    assert list(params) == ["message", "reason", "param"]
    assert params["message"].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert params["reason"].kind is params["param"].kind is inspect.Parameter.KEYWORD_ONLY
    with pytest.raises(TypeError):
        factory("message", "param")  # nothing after the message is positional
    code = FACTORIES[name]
    plain = factory("went wrong")
    assert (plain.code, plain.message, plain.reason, plain.param) == (code, "went wrong", code.name, "")
    full = factory("went wrong", reason=Reason.MODEL_NOT_FOUND, param="model")
    assert (full.reason, full.param) == ("MODEL_NOT_FOUND", "model")
    assert factory("went wrong", reason=None).to_status().details == []  # no ErrorInfo at all


def test_a_retry_delay_travels_as_retry_info() -> None:
    """A refusal to retry later (a rate or concurrency limit) tells gRPC callers when, as a
    google.rpc.RetryInfo detail beside its ErrorInfo; none is sent without one."""
    from google.rpc import error_details_pb2

    error = errors.resource_exhausted("slow down", reason=Reason.CONCURRENCY_LIMIT_EXCEEDED)
    assert len(error.to_status().details) == 1
    error.retry_after = 7
    info, retry = error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo()
    first, second = error.to_status().details
    assert first.Unpack(info) and info.reason == "CONCURRENCY_LIMIT_EXCEEDED"
    assert second.Unpack(retry) and retry.retry_delay.seconds == 7


def test_no_reason_is_a_free_string_in_service_code() -> None:
    """Reasons come from `Reason`: a `reason="..."` literal in service code is a new, unlisted one."""
    found = []
    for package in ("app", "gateway", "engine", "prompt", "registry", "budrt"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call):
                    for kw in node.keywords:
                        if kw.arg == "reason" and isinstance(kw.value, ast.Constant) and kw.value.value:
                            found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not found, found


def test_status_table_is_the_canonical_mapping_both_ways() -> None:
    assert set(HTTP_STATUS) == set(grpc.StatusCode)
    expected = {
        "OK": 200,
        "CANCELLED": 499,
        "INVALID_ARGUMENT": 400,
        "FAILED_PRECONDITION": 400,
        "OUT_OF_RANGE": 400,
        "UNAUTHENTICATED": 401,
        "PERMISSION_DENIED": 403,
        "NOT_FOUND": 404,
        "ALREADY_EXISTS": 409,
        "ABORTED": 409,
        "RESOURCE_EXHAUSTED": 429,
        "UNKNOWN": 500,
        "INTERNAL": 500,
        "DATA_LOSS": 500,
        "UNIMPLEMENTED": 501,
        "UNAVAILABLE": 503,
        "DEADLINE_EXCEEDED": 504,
    }
    assert {code.name: http_status(code) for code in grpc.StatusCode} == expected
    for code in grpc.StatusCode:  # read backwards, every status lands on a code with the same status
        if code is not grpc.StatusCode.OK:
            assert http_status(grpc_code(http_status(code))) == http_status(code)
    assert (
        grpc_code(400) is grpc.StatusCode.INVALID_ARGUMENT
        and grpc_code(409) is grpc.StatusCode.ALREADY_EXISTS
    )
    assert grpc_code(500) is grpc.StatusCode.INTERNAL
    # What HTTP peers (vLLM) send beyond the table, and what means nothing here.
    assert grpc_code(408) is grpc.StatusCode.DEADLINE_EXCEEDED
    assert grpc_code(413) is grpc_code(422) is grpc.StatusCode.INVALID_ARGUMENT
    assert grpc_code(418) is grpc.StatusCode.INTERNAL


def test_details_are_packed_as_google_rpc_status() -> None:
    err = errors.failed_precondition("revoked", reason=Reason.API_KEY_REVOKED, param="api_key.id")
    status = err.grpc_status()
    assert status.code is grpc.StatusCode.FAILED_PRECONDITION and status.details == "revoked"
    [(key, raw)] = status.trailing_metadata
    assert key == "grpc-status-details-bin" and err.trailing_metadata() == ((key, raw),)
    info, bad = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
    packed = err.to_status()
    assert packed.code == grpc.StatusCode.FAILED_PRECONDITION.value[0] and packed.message == "revoked"
    assert packed.details[0].Unpack(info) and packed.details[1].Unpack(bad)
    assert (info.reason, info.domain) == ("API_KEY_REVOKED", errors.ERROR_DOMAIN)
    assert [(v.field, v.description) for v in bad.field_violations] == [("api_key.id", "revoked")]


def test_abort_arguments_rebuild_the_error() -> None:
    """What an in-process context gets in `abort(code, details, trailing_metadata)`."""
    err = errors.not_found("gone", reason=Reason.MODEL_NOT_FOUND, param="model")
    status = err.grpc_status()
    again = ServiceError.from_status(status.code, status.details, status.trailing_metadata)
    assert again == err
    bare = ServiceError.from_status(grpc.StatusCode.INTERNAL, "internal error in X")
    assert (bare.code, bare.message, bare.reason, bare.param) == (
        grpc.StatusCode.INTERNAL,
        "internal error in X",
        "",
        "",
    )
    # Details that contradict the status are dropped, not trusted.
    clash = ServiceError.from_status(grpc.StatusCode.INTERNAL, "other message", status.trailing_metadata)
    assert (clash.code, clash.message, clash.reason) == (grpc.StatusCode.INTERNAL, "other message", "")


@pytest.mark.parametrize(
    "raised",
    [
        errors.invalid_argument("title must be a string", param="book.title"),
        # Unbounded input in a message (10,000 three-byte characters, twice on the wire) is cut
        # short enough to pass a peer's metadata limit: not a RESOURCE_EXHAUSTED instead.
        errors.invalid_argument("\u754c" * 10_000, param="\u754c" * 10_000),
    ],
    ids=["short", "unbounded"],
)
async def test_details_survive_a_real_grpc_hop(raised: ServiceError) -> None:

    async def fail(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        status = raised.grpc_status()
        await context.abort(status.code, status.details, status.trailing_metadata)
        return b""

    handler = grpc.method_handlers_generic_handler(
        "test.Errors", {"Fail": grpc.unary_unary_rpc_method_handler(fail)}
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port(f"127.0.0.1:{free_port()}")
    await server.start()
    channel = service_channel(f"127.0.0.1:{port}", tls=None)  # a bare plaintext server
    try:
        call = channel.unary_unary(
            "/test.Errors/Fail",
            request_serializer=empty_pb2.Empty.SerializeToString,
            response_deserializer=empty_pb2.Empty.FromString,
        )
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call(empty_pb2.Empty())
        assert rpc_status.from_call(info.value) == raised.to_status()
        assert ServiceError.from_rpc_error(info.value) == raised
    finally:
        await channel.close()
        await server.stop(0)


def test_messages_and_echoed_values_are_bounded() -> None:
    name = "\u00e9" * 10_000
    assert errors.echo("short") == "'short'"
    quoted = errors.echo(name)
    assert len(quoted) < errors.MAX_ECHO_CHARS + 30 and quoted.endswith("… (10000 characters)")
    err = errors.invalid_argument(f"bad name {name}", param="x" * 10_000)
    size = len(err.message.encode())
    assert errors.MAX_MESSAGE_BYTES - 4 < size <= errors.MAX_MESSAGE_BYTES and err.message.endswith("…")
    assert err.message.startswith("bad name \u00e9\u00e9")  # cut on a character boundary
    assert len(err.param.encode()) <= errors.MAX_PARAM_BYTES
    err.message = name  # changed after it was built: still bounded on the wire
    [violation] = _violations(err.to_status())
    assert err.message == violation.description and len(err.message.encode()) <= errors.MAX_MESSAGE_BYTES
    assert errors.bounded("short") == "short"


def _violations(status: status_pb2.Status) -> list[error_details_pb2.BadRequest.FieldViolation]:
    found = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found += bad.field_violations
    return found
