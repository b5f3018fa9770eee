"""One error type for every service: raised by servicers, sent as a gRPC status with rich details
(google.rpc.Status in `grpc-status-details-bin`), turned into OpenAI error JSON by the gateway."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

STATUS_DETAILS_KEY = "grpc-status-details-bin"
ERROR_DOMAIN = "bud.runtime"


@dataclass
class ServiceError(Exception):
    """A failure to report to the caller.

    `reason` is a short UPPER_SNAKE machine code (ErrorInfo.reason; the OpenAI `code`, lower case),
    `param` the request field at fault (BadRequest.field_violations; the OpenAI `param`).
    """

    code: grpc.StatusCode
    message: str
    reason: str = ""
    param: str = ""

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"

    def to_status(self) -> status_pb2.Status:
        """The google.rpc.Status carrying this error's details."""
        status = status_pb2.Status(code=self.code.value[0], message=self.message)
        if self.reason:
            detail = any_pb2.Any()
            detail.Pack(error_details_pb2.ErrorInfo(reason=self.reason, domain=ERROR_DOMAIN))
            status.details.append(detail)
        if self.param:
            detail = any_pb2.Any()
            detail.Pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(field=self.param, description=self.message)
                    ]
                )
            )
            status.details.append(detail)
        return status

    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
        """Trailing metadata that carries the rich status."""
        return ((STATUS_DETAILS_KEY, self.to_status().SerializeToString()),)

    @classmethod
    def from_rpc_error(cls, err: grpc.RpcError) -> ServiceError:
        """Rebuilds the error a peer sent (details included when it sent them)."""
        code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
        message = (err.details() if hasattr(err, "details") else None) or code.name
        trailers = err.trailing_metadata() if hasattr(err, "trailing_metadata") else None
        return cls.from_status(code, message, trailers)

    @classmethod
    def from_status(cls, code: grpc.StatusCode, message: str, trailing_metadata: object = None) -> ServiceError:
        """Rebuilds an error from a status code, message and the trailing metadata carrying its
        details (if any)."""
        reason = param = ""
        for key, value in trailing_metadata or ():  # type: ignore[attr-defined]
            if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
                reason, param = _unpack_details(value)
        return cls(code=code, message=message, reason=reason, param=param)


def _unpack_details(raw: bytes) -> tuple[str, str]:
    status = status_pb2.Status.FromString(raw)
    reason = param = ""
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            if bad.field_violations:
                param = bad.field_violations[0].field
    return reason, param


_CODE_BY_NUMBER = {c.value[0]: c for c in grpc.StatusCode}


def status_code(number: int) -> grpc.StatusCode:
    """grpc.StatusCode from its number (google.rpc.Code)."""
    return _CODE_BY_NUMBER.get(number, grpc.StatusCode.UNKNOWN)


def invalid_argument(message: str, param: str = "", reason: str = "INVALID_ARGUMENT") -> ServiceError:
    """Shorthand for the commonest error: the request is wrong."""
    return ServiceError(grpc.StatusCode.INVALID_ARGUMENT, message, reason=reason, param=param)


def not_found(message: str, reason: str = "NOT_FOUND", param: str = "") -> ServiceError:
    """Shorthand: the named thing does not exist (or the caller may not see it)."""
    return ServiceError(grpc.StatusCode.NOT_FOUND, message, reason=reason, param=param)


__all__ = [
    "ServiceError",
    "STATUS_DETAILS_KEY",
    "code_pb2",
    "invalid_argument",
    "not_found",
    "status_code",
]
