"""Access tokens: issue, verify, tampering, expiry, and the caller of an RPC's metadata."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import grpc
import jwt
import pytest

from auth.tokens import CLOCK_SKEW_S, Authenticator, Caller
from budrt.errors import ServiceError

SECRET = "a-test-jwt-secret-of-at-least-32-bytes"


class Context:
    """The part of a servicer context the authenticator reads."""

    def __init__(self, *metadata: tuple[str, str]) -> None:
        self._metadata = metadata

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata


def _refused(call: Any, reason: str) -> ServiceError:
    with pytest.raises(ServiceError) as refused:
        call()
    assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert refused.value.reason == reason, refused.value
    return refused.value


def _claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, SECRET, algorithms=["HS256"])


def test_issue_then_verify_round_trips() -> None:
    auth = Authenticator(SECRET, lifetime_s=60)
    token = auth.issue("usr_1", True)
    assert auth.verify(token) == Caller("usr_1", True)
    claims = _claims(token)
    assert set(claims) == {"sub", "admin", "gen", "iat", "exp", "jti"} and claims["gen"] == 0
    assert claims["exp"] - claims["iat"] == 60
    assert claims["jti"] != _claims(auth.issue("usr_1", True))["jti"]  # every token is distinct
    assert auth.verify(auth.issue("usr_2", False)) == Caller("usr_2", False)
    assert auth.verify(auth.issue("usr_3", False, generation=4)) == Caller("usr_3", False, 4)


def test_an_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError):
        Authenticator("")


def test_tampered_tokens_are_invalid() -> None:
    auth = Authenticator(SECRET)
    token = auth.issue("usr_1", False)
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["admin"] = True  # promote oneself, keep the signature
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    _refused(lambda: auth.verify(f"{header}.{forged}.{signature}"), "INVALID_TOKEN")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    _refused(lambda: auth.verify(f"{header}.{payload}.{flipped}"), "INVALID_TOKEN")
    _refused(lambda: Authenticator("another-secret-of-at-least-32-bytes!").verify(token), "INVALID_TOKEN")
    unsigned = jwt.encode(_claims(token), None, algorithm="none")
    _refused(lambda: auth.verify(unsigned), "INVALID_TOKEN")
    _refused(lambda: auth.verify("not-a-jwt"), "INVALID_TOKEN")
    _refused(lambda: auth.verify(""), "INVALID_TOKEN")


@pytest.mark.parametrize(
    "change",
    [
        {"jti": None},
        {"sub": None},
        {"admin": None},
        {"exp": None},
        {"admin": "yes"},
        {"sub": ""},
        {"sub": 7},
        {"gen": None},  # a token issued before token generations
        {"gen": "1"},
        {"gen": True},
    ],
)
def test_incomplete_or_mistyped_claims_are_invalid(change: dict[str, Any]) -> None:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": "usr_1",
        "admin": False,
        "gen": 0,
        "iat": now,
        "exp": now + 60,
        "jti": "j",
    }
    claims.update(change)
    claims = {k: v for k, v in claims.items() if v is not None}
    _refused(
        lambda: Authenticator(SECRET).verify(jwt.encode(claims, SECRET, algorithm="HS256")), "INVALID_TOKEN"
    )


def test_expiry_tolerates_the_clock_skew_and_no_more() -> None:
    auth = Authenticator(SECRET)
    now = int(time.time())

    def token(exp: int) -> str:
        claims = {"sub": "u", "admin": False, "gen": 0, "iat": now - 3600, "exp": exp, "jti": "j"}
        return jwt.encode(claims, SECRET)

    assert auth.verify(token(now - CLOCK_SKEW_S // 2)) == Caller("u", False)  # within the skew
    error = _refused(lambda: auth.verify(token(now - CLOCK_SKEW_S - 5)), "TOKEN_EXPIRED")
    assert "log in again" in error.message
    expired = Authenticator(SECRET, lifetime_s=-(CLOCK_SKEW_S + 5)).issue("u", False)
    _refused(lambda: auth.verify(expired), "TOKEN_EXPIRED")


def test_caller_reads_the_bearer_metadata() -> None:
    auth = Authenticator(SECRET)
    token = auth.issue("usr_1", False)
    assert auth.caller(Context(("authorization", f"Bearer {token}"))) == Caller("usr_1", False)
    assert auth.caller(Context(("authorization", f"bearer   {token} "))) == Caller("usr_1", False)
    missing = _refused(lambda: auth.caller(Context()), "UNAUTHENTICATED")
    assert "UserService.Login" in missing.message
    for metadata in (
        (("authorization", f"Basic {token}"),),
        (("authorization", "Bearer "),),
        (("authorization", f"Bearer {token}"), ("authorization", f"Bearer {token}")),  # exactly one
    ):
        _refused(lambda: auth.caller(Context(*metadata)), "INVALID_TOKEN")  # noqa: B023
    _refused(lambda: auth.caller(Context(("authorization", "Bearer not-a-jwt"))), "INVALID_TOKEN")
