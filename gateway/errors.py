"""The OpenAI error body every REST error is written in (with the HTTP status of
`budrt.errors.http_status`, the one status table)."""

from __future__ import annotations

from typing import Any

import orjson

from budrt.errors import ServiceError, http_status

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
