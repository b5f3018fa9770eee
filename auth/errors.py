"""The two statuses authentication and authorisation answer with."""

from __future__ import annotations

import grpc

from budrt.errors import ServiceError


def unauthenticated(message: str, reason: str = "UNAUTHENTICATED") -> ServiceError:
    """UNAUTHENTICATED: no valid credentials."""
    return ServiceError(grpc.StatusCode.UNAUTHENTICATED, message, reason=reason)


def permission_denied(message: str) -> ServiceError:
    """PERMISSION_DENIED: the caller is known but may not do this."""
    return ServiceError(grpc.StatusCode.PERMISSION_DENIED, message, reason="PERMISSION_DENIED")
