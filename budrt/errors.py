"""The platform's one error vocabulary.

Servicers raise `ServiceError`, built with the factories below (one `ErrorFactory` per gRPC status,
all `factory(message, *, reason=..., param=...)`); every machine-readable reason is a `Reason`. On
the wire an error is a gRPC status with a `google.rpc.Status` in `grpc-status-details-bin`
(`ErrorInfo` for the reason, `BadRequest` for the field at fault), packed and read with
grpcio-status. `HTTP_STATUS` is the one gRPC↔HTTP status table (the canonical google.rpc mapping);
the gateway writes REST error bodies from it (`gateway/errors.py`).

Where new code goes: a new kind of failure is a new `Reason` member (its value is API: never
change one); a status no factory covers yet gets an `ErrorFactory` here.

Errors never carry unbounded client input: a message is cut to `MAX_MESSAGE_BYTES`, and a value a
message quotes goes through `echo` (at most `MAX_ECHO_CHARS`). A status travels in gRPC trailers
(the message twice: `grpc-message` and the field violation's description in
`grpc-status-details-bin`), which a peer refuses past its metadata limit (8-16 KiB): a long
echoed name once turned a 400 into a 429 "metadata size exceeds hard limit".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass
from enum import Enum, StrEnum
from typing import Literal

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

ERROR_DOMAIN = "bud.runtime"
# The longest error message sent, in bytes of UTF-8 (longer ones are cut, marked with "…"), and
# the longest field name a field violation carries: with the message twice on the wire, percent-
# encoded in `grpc-message` (up to 3 bytes a byte) and base64 in the details, a status stays
# under 7 KiB, below the 8 KiB from which gRPC peers start refusing metadata.
MAX_MESSAGE_BYTES = 1024
MAX_PARAM_BYTES = 256
# The longest client value a message quotes (`echo`), in characters.
MAX_ECHO_CHARS = 64


def echo(value: object) -> str:
    """`value` quoted for an error message (its `repr`), cut to `MAX_ECHO_CHARS` characters with
    its length said, so that a message never repeats unbounded client input."""
    text = repr(value)
    if len(text) <= MAX_ECHO_CHARS:
        return text
    size = f" ({len(value)} characters)" if isinstance(value, (str, bytes)) else ""
    return f"{text[:MAX_ECHO_CHARS]}…{size}"


def bounded(text: str, limit: int = MAX_MESSAGE_BYTES) -> str:
    """`text` cut to at most `limit` bytes of UTF-8 (on a character boundary, "…" included)."""
    if len(text) * 4 <= limit:  # short enough whatever its characters
        return text
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[: limit - 3].decode(errors="ignore") + "…"


class Reason(StrEnum):
    """Why a call failed, for machines: `ErrorInfo.reason` on the wire (UPPER_SNAKE) and, lower
    case, the `code` of OpenAI error JSON. The values are what clients match on: never change one."""

    # The default reason of each factory: the status itself.
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    ABORTED = "ABORTED"
    UNIMPLEMENTED = "UNIMPLEMENTED"
    UNAVAILABLE = "UNAVAILABLE"
    INTERNAL = "INTERNAL"
    # Logins, access tokens and API keys.
    INVALID_CREDENTIALS = "INVALID_CREDENTIALS"
    INVALID_TOKEN = "INVALID_TOKEN"
    TOKEN_EXPIRED = "TOKEN_EXPIRED"
    TOO_MANY_LOGIN_ATTEMPTS = "TOO_MANY_LOGIN_ATTEMPTS"
    INVALID_API_KEY = "INVALID_API_KEY"
    RATE_LIMIT_EXCEEDED = "RATE_LIMIT_EXCEEDED"
    # A deployment's max_concurrency was reached and its queue was full or timed out.
    CONCURRENCY_LIMIT_EXCEEDED = "CONCURRENCY_LIMIT_EXCEEDED"
    # A deployment scaled to zero did not come up for a waiting request (503 with Retry-After):
    # the wait passed the gateway's cold-start timeout, the deployment's cold-start queue was
    # full, or the deployment failed (or was stopped) while the request waited.
    COLD_START_TIMEOUT = "COLD_START_TIMEOUT"
    COLD_START_QUEUE_FULL = "COLD_START_QUEUE_FULL"
    COLD_START_FAILED = "COLD_START_FAILED"
    # A project's (or key's) spending budget with a hard stop is spent for its period.
    BUDGET_EXCEEDED = "BUDGET_EXCEEDED"
    # Management state.
    LAST_OWNER = "LAST_OWNER"
    LAST_ADMIN = "LAST_ADMIN"
    PROJECT_HAS_DEPLOYMENTS = "PROJECT_HAS_DEPLOYMENTS"
    PROMPT_HAS_DEPLOYMENTS = "PROMPT_HAS_DEPLOYMENTS"
    API_KEY_REVOKED = "API_KEY_REVOKED"
    API_KEY_EXPIRED = "API_KEY_EXPIRED"
    # Models and serving.
    NOT_READY = "NOT_READY"
    MISSING_MODEL = "MISSING_MODEL"
    MODEL_NOT_FOUND = "MODEL_NOT_FOUND"
    MODEL_NOT_READY = "MODEL_NOT_READY"
    MODEL_UNAVAILABLE = "MODEL_UNAVAILABLE"
    MODEL_NAME_TAKEN = "MODEL_NAME_TAKEN"
    MODEL_OWNER_MISMATCH = "MODEL_OWNER_MISMATCH"
    NO_ENGINE_CAPACITY = "NO_ENGINE_CAPACITY"
    ENGINE_IN_USE = "ENGINE_IN_USE"
    # A named engine announced itself once and stopped (its lease ended).
    ENGINE_LEASE_EXPIRED = "ENGINE_LEASE_EXPIRED"
    UNSUPPORTED_OPERATION = "UNSUPPORTED_OPERATION"
    # The model registry: a model a deployment uses is not deleted unless forced.
    MODEL_IN_USE = "MODEL_IN_USE"
    # A registry model whose last scan is not CLEAN (or whose files changed since) is not deployed.
    MODEL_SCAN_NOT_CLEAN = "MODEL_SCAN_NOT_CLEAN"
    MODEL_FILES_CHANGED = "MODEL_FILES_CHANGED"
    # Service-to-service calls: a service identity the RPC's policy does not allow.
    SERVICE_NOT_ALLOWED = "SERVICE_NOT_ALLOWED"
    # The HTTP face.
    UNKNOWN_URL = "UNKNOWN_URL"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    BODY_TOO_LARGE = "BODY_TOO_LARGE"
    REQUEST_TIMEOUT = "REQUEST_TIMEOUT"
    # Prompt execution.
    INVALID_PROMPT_INPUT = "INVALID_PROMPT_INPUT"
    TEMPLATE_ERROR = "TEMPLATE_ERROR"
    RENDER_LIMIT = "RENDER_LIMIT"
    INVALID_MODEL_OUTPUT = "INVALID_MODEL_OUTPUT"


# gRPC status → HTTP status: the canonical google.rpc mapping (google/rpc/code.proto; grpc-gateway's
# HTTPStatusFromCode, Envoy's transcoder).
HTTP_STATUS: Mapping[grpc.StatusCode, int] = {
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

# HTTP status → gRPC status, for peers that answer HTTP statuses (vLLM's ErrorResponse): the
# table above read backwards (where several codes share a status, the one it stands for first),
# plus the client-error statuses such peers send that the table never produces.
_CODE_BY_HTTP: Mapping[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.ALREADY_EXISTS,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    499: grpc.StatusCode.CANCELLED,
    500: grpc.StatusCode.INTERNAL,
    501: grpc.StatusCode.UNIMPLEMENTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
    408: grpc.StatusCode.DEADLINE_EXCEEDED,
    413: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
}


def http_status(code: grpc.StatusCode) -> int:
    """The HTTP status a gRPC status is answered with over REST."""
    return HTTP_STATUS.get(code, 500)


def grpc_code(http: int) -> grpc.StatusCode:
    """The gRPC status an HTTP status stands for (INTERNAL for one with no meaning here)."""
    return _CODE_BY_HTTP.get(http, grpc.StatusCode.INTERNAL)


@dataclass
class ServiceError(Exception):
    """A failure to report to the caller; the one exception type servicers raise.

    `reason` is a `Reason` (ErrorInfo.reason; the OpenAI `code`, lower case; empty: none sent),
    `param` the request field at fault (BadRequest.field_violations; the OpenAI `param`). An
    error rebuilt from a peer's status may carry a reason this vocabulary does not know: it stays
    the peer's string.
    """

    code: grpc.StatusCode
    message: str
    _: KW_ONLY
    reason: str = ""
    param: str = ""
    # Seconds the caller should wait before retrying (a google.rpc.RetryInfo detail; 0: none). Over
    # REST the gateway sends it as `Retry-After` from its metadata.
    retry_after: int = 0

    def __post_init__(self) -> None:
        self.message = bounded(self.message)
        self.param = bounded(self.param, MAX_PARAM_BYTES)  # a query parameter's name is client input

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"

    def to_status(self) -> status_pb2.Status:
        """The google.rpc.Status carrying this error and its details (the message bounded again:
        it may have been changed since the error was built)."""
        self.message = bounded(self.message)
        status = status_pb2.Status(code=self.code.value[0], message=self.message)
        if self.reason:
            status.details.add().Pack(error_details_pb2.ErrorInfo(reason=self.reason, domain=ERROR_DOMAIN))
        if self.param:
            violation = error_details_pb2.BadRequest.FieldViolation(
                field=self.param, description=self.message
            )
            status.details.add().Pack(error_details_pb2.BadRequest(field_violations=[violation]))
        if self.retry_after > 0:
            retry = error_details_pb2.RetryInfo()
            retry.retry_delay.seconds = self.retry_after
            status.details.add().Pack(retry)
        return status

    def grpc_status(self) -> grpc.Status:
        """The status to abort an RPC with (`code`, `details`, `trailing_metadata`), rich details
        packed by grpcio-status."""
        return rpc_status.to_status(self.to_status())

    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
        """Trailing metadata that carries the rich status."""
        return tuple(self.grpc_status().trailing_metadata)

    @classmethod
    def from_rpc_error(cls, err: grpc.RpcError) -> ServiceError:
        """Rebuilds the error a peer sent (details included when it sent them)."""
        code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
        message = (err.details() if hasattr(err, "details") else None) or code.name
        try:
            status = rpc_status.from_call(err) if hasattr(err, "trailing_metadata") else None
        except ValueError:  # details that contradict the status: the status wins
            status = None
        return cls(code, message, **_unpack_details(status))

    @classmethod
    def from_status(
        cls, code: grpc.StatusCode, message: str, trailing_metadata: object = None
    ) -> ServiceError:
        """Rebuilds an error from a status code, message and the trailing metadata carrying its
        details (if any): what a servicer passes to `context.abort`."""
        pairs = grpc.aio.Metadata(*(trailing_metadata or ()))  # type: ignore[attr-defined]
        return cls.from_rpc_error(grpc.aio.AioRpcError(code, grpc.aio.Metadata(), pairs, details=message))


def _unpack_details(status: status_pb2.Status | None) -> dict[str, str]:
    """`reason` and `param` from a google.rpc.Status's ErrorInfo and BadRequest details."""
    found = {"reason": "", "param": ""}
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            found["reason"] = info.reason
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            if bad.field_violations:
                found["param"] = bad.field_violations[0].field
    return found


# ---- factories: one per status, `factory(message, *, reason=<the status>, param="")` ----------


class _Default(Enum):
    """The `reason` a factory sends when none is given: its own (the status itself)."""

    REASON = "the factory's own reason"


@dataclass(frozen=True)
class ErrorFactory:
    """Builds the `ServiceError`s of one gRPC status: `factory(message, *, reason=..., param="")`.

    `reason` defaults to the factory's own (`default_reason`); `reason=None` sends no ErrorInfo
    (an OpenAI `code` of null), for failures with nothing more to say. `param` names the request
    field at fault."""

    code: grpc.StatusCode
    default_reason: Reason

    def __call__(
        self,
        message: str,
        *,
        reason: Reason | None | Literal[_Default.REASON] = _Default.REASON,
        param: str = "",
    ) -> ServiceError:
        if reason is _Default.REASON:
            reason = self.default_reason
        return ServiceError(self.code, message, reason=reason or "", param=param)


# INVALID_ARGUMENT (HTTP 400): the request is wrong, whatever the state.
invalid_argument = ErrorFactory(grpc.StatusCode.INVALID_ARGUMENT, Reason.INVALID_ARGUMENT)
# NOT_FOUND (404): the named thing does not exist (or the caller may not see it).
not_found = ErrorFactory(grpc.StatusCode.NOT_FOUND, Reason.NOT_FOUND)
# ALREADY_EXISTS (409): a unique name or endpoint is taken.
already_exists = ErrorFactory(grpc.StatusCode.ALREADY_EXISTS, Reason.ALREADY_EXISTS)
# PERMISSION_DENIED (403): the caller is known but may not do this.
permission_denied = ErrorFactory(grpc.StatusCode.PERMISSION_DENIED, Reason.PERMISSION_DENIED)
# UNAUTHENTICATED (401): no valid credentials.
unauthenticated = ErrorFactory(grpc.StatusCode.UNAUTHENTICATED, Reason.UNAUTHENTICATED)
# FAILED_PRECONDITION (400): the request is right but the state refuses it (say which in `reason`).
failed_precondition = ErrorFactory(grpc.StatusCode.FAILED_PRECONDITION, Reason.FAILED_PRECONDITION)
# RESOURCE_EXHAUSTED (429): a limit or quota is reached; retry later.
resource_exhausted = ErrorFactory(grpc.StatusCode.RESOURCE_EXHAUSTED, Reason.RESOURCE_EXHAUSTED)
# ABORTED (409): a concurrent change won; retry the whole call.
aborted = ErrorFactory(grpc.StatusCode.ABORTED, Reason.ABORTED)
# UNIMPLEMENTED (501): understood, but not carried out by this version.
unimplemented = ErrorFactory(grpc.StatusCode.UNIMPLEMENTED, Reason.UNIMPLEMENTED)
# UNAVAILABLE (503): not now; the same call may succeed on retry.
unavailable = ErrorFactory(grpc.StatusCode.UNAVAILABLE, Reason.UNAVAILABLE)
# INTERNAL (500): a bug or a broken invariant on our side.
internal = ErrorFactory(grpc.StatusCode.INTERNAL, Reason.INTERNAL)


__all__ = [
    "ERROR_DOMAIN",
    "MAX_ECHO_CHARS",
    "MAX_MESSAGE_BYTES",
    "MAX_PARAM_BYTES",
    "ErrorFactory",
    "HTTP_STATUS",
    "Reason",
    "ServiceError",
    "aborted",
    "already_exists",
    "bounded",
    "echo",
    "failed_precondition",
    "grpc_code",
    "http_status",
    "internal",
    "invalid_argument",
    "not_found",
    "permission_denied",
    "resource_exhausted",
    "unauthenticated",
    "unavailable",
    "unimplemented",
]
