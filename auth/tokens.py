"""Access tokens of the management API: HS256 JWTs, and the caller they name.

Tokens are signed with the `jwt_secret` setting, valid 15 minutes, with the claims ``sub`` (user
id), ``admin`` (platform admin when issued), ``gen`` (the user's token generation when issued),
``iat``, ``exp`` and a random ``jti``. They are not stored; the service that owns the users
compares ``gen`` with the user's current generation on every call (the app: `app.authz.Access`),
so bumping it revokes every earlier token at once. Project roles are not in the token (see
`auth.roles`).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt

from auth.bearer import BearerError, MissingBearer, bearer_credential
from budrt.errors import Reason, unauthenticated

TOKEN_LIFETIME_S = 15 * 60
TOKEN_TYPE = "Bearer"
# Tolerated clock difference between the app replica that issued a token and the one checking it.
CLOCK_SKEW_S = 10
_ALGORITHM = "HS256"
_CLAIMS = ("sub", "admin", "gen", "iat", "exp", "jti")


@dataclass(frozen=True)
class Caller:
    """The authenticated user of a call, as its token says (`admin` as the user's row says, once
    the app has checked the token's generation)."""

    user_id: str
    admin: bool
    generation: int = 0


class Authenticator:
    """Issues access tokens and turns a call's bearer token into its :class:`Caller`."""

    def __init__(self, secret: str, lifetime_s: int = TOKEN_LIFETIME_S) -> None:
        if not secret:
            raise ValueError("the JWT secret is empty")
        self._secret = secret
        self.lifetime_s = lifetime_s

    def issue(self, user_id: str, admin: bool, generation: int = 0) -> str:
        """A signed access token for the user at their token `generation`, valid `lifetime_s`
        seconds from now."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "sub": user_id,
            "admin": admin,
            "gen": generation,
            "iat": now,
            "exp": now + self.lifetime_s,
            "jti": secrets.token_urlsafe(16),
        }
        return jwt.encode(claims, self._secret, algorithm=_ALGORITHM)

    def verify(self, token: str) -> Caller:
        """The caller a token names; UNAUTHENTICATED unless it is well signed, complete and
        unexpired."""
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[_ALGORITHM],
                leeway=CLOCK_SKEW_S,
                options={"require": list(_CLAIMS)},
            )
        except jwt.ExpiredSignatureError:
            raise unauthenticated(
                "the access token has expired; log in again", reason=Reason.TOKEN_EXPIRED
            ) from None
        except jwt.InvalidTokenError:
            raise unauthenticated("invalid access token", reason=Reason.INVALID_TOKEN) from None
        user_id, admin, generation = claims["sub"], claims["admin"], claims["gen"]
        if (
            not isinstance(user_id, str)
            or not user_id
            or not isinstance(admin, bool)
            or not isinstance(generation, int)
            or isinstance(generation, bool)
        ):
            raise unauthenticated("invalid access token", reason=Reason.INVALID_TOKEN)
        return Caller(user_id, admin, generation)

    def caller(self, context: Any) -> Caller:
        """The caller of an RPC, from its ``authorization: Bearer <token>`` metadata (`context`
        is a gRPC servicer context or anything with its ``invocation_metadata()``)."""
        try:
            token = bearer_credential(context.invocation_metadata())
        except MissingBearer:
            raise unauthenticated(
                "missing access token: send 'authorization: Bearer <token>' (UserService.Login gives one)"
            ) from None
        except BearerError:
            raise unauthenticated(
                "malformed authorization: expected one 'Bearer <token>'", reason=Reason.INVALID_TOKEN
            ) from None
        return self.verify(token)
