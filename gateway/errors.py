"""gRPC status → HTTP status (the canonical google.rpc mapping, as grpc-gateway and Envoy do) and
the OpenAI error body every REST error is written in."""

from __future__ import annotations

from typing import Any

import grpc
import orjson

from budrt.errors import ServiceError

HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}

# OpenAI's `type` values, by HTTP status.
_OPENAI_TYPE = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    429: "rate_limit_error",
    499: "cancelled",
    501: "not_implemented_error",
    503: "service_unavailable_error",
    504: "timeout_error",
}


def http_status(code: grpc.StatusCode) -> int:
    """HTTP status for a gRPC status code."""
    return HTTP_STATUS.get(code, 500)


def error_object(err: ServiceError) -> dict[str, Any]:
    """The OpenAI `error` object: message, type, param, code."""
    status = http_status(err.code)
    return {
        "message": err.message,
        "type": _OPENAI_TYPE.get(status, "server_error" if status >= 500 else "invalid_request_error"),
        "param": err.param or None,
        "code": err.reason.lower() if err.reason else None,
    }


def error_body(err: ServiceError) -> bytes:
    """`{"error": {...}}` as JSON bytes."""
    return orjson.dumps({"error": error_object(err)})
