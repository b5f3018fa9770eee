"""REST error bodies, in the two dialects the gateway speaks (HTTP statuses come from
`budrt.errors.http_status`, the one status table):

- `OPENAI_ERRORS`, for OpenAI-dialect services: OpenAI's `{"error": {"message", "type", "param",
  "code"}}`, an error after a stream started as a last `data: {"error": ...}` event (Responses
  streams: a named `error` event);
- `STATUS_ERRORS`, for every other (management) service: the `google.rpc.Status` JSON grpc-gateway
  writes, `{"code", "message", "details": [{"@type": ...}]}`, an error after a stream started as a
  last `data: {"error": <Status>}` event (grpc-gateway's error chunk)."""

from __future__ import annotations

from typing import Any, Protocol

import orjson
from google.protobuf import json_format

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


class ErrorDialect(Protocol):
    """How one kind of REST client reads errors."""

    def body(self, err: ServiceError) -> bytes:
        """The JSON body of an error response (sent with `http_status(err.code)`)."""
        ...

    def stream_frame(self, err: ServiceError, event_field: str, sequence: int) -> bytes:
        """The last SSE frame of a stream that fails after it started. `event_field`: the
        stream names its events (Responses API); `sequence`: events sent so far."""
        ...


def openai_error(err: ServiceError) -> dict[str, Any]:
    """The OpenAI `error` object: message, type, param, code."""
    status = http_status(err.code)
    return {
        "message": err.message,
        "type": _OPENAI_TYPE.get(status, "server_error" if status >= 500 else "invalid_request_error"),
        "param": err.param or None,
        "code": err.reason.lower() if err.reason else None,
    }


class OpenAiErrors:
    """OpenAI error JSON."""

    def body(self, err: ServiceError) -> bytes:
        return orjson.dumps({"error": openai_error(err)})

    def stream_frame(self, err: ServiceError, event_field: str, sequence: int) -> bytes:
        obj = openai_error(err)
        if event_field:  # Responses API style: a named error event
            payload = orjson.dumps(
                {
                    "type": "error",
                    "code": obj["code"],
                    "message": obj["message"],
                    "param": obj["param"],
                    "sequence_number": sequence,
                }
            )
            return b"event: error\ndata: " + payload + b"\n\n"
        return b"data: " + orjson.dumps({"error": obj}) + b"\n\n"


def status_json(err: ServiceError) -> dict[str, Any]:
    """The error as grpc-gateway writes a google.rpc.Status (protojson, unpopulated fields
    emitted): `{"code": <gRPC code number>, "message", "details": [{"@type": ..., ...}]}`."""
    return json_format.MessageToDict(err.to_status(), always_print_fields_with_no_presence=True)


class StatusErrors:
    """google.rpc.Status JSON, as grpc-gateway writes it."""

    def body(self, err: ServiceError) -> bytes:
        return orjson.dumps(status_json(err))

    def stream_frame(self, err: ServiceError, event_field: str, sequence: int) -> bytes:
        frame = b"data: " + orjson.dumps({"error": status_json(err)}) + b"\n\n"
        return b"event: error\n" + frame if event_field else frame


OPENAI_ERRORS: ErrorDialect = OpenAiErrors()
STATUS_ERRORS: ErrorDialect = StatusErrors()
