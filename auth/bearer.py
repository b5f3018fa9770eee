"""Bearer credentials from a call's metadata: ``authorization: Bearer <credential>``.

One parser for both kinds of bearer this platform takes: the app's access tokens (JWTs) and the
gateways' project API keys. It says what is wrong (missing or malformed) and leaves the status,
reason and wording to the caller, since the OpenAI surface and the management API word them
differently.
"""

from __future__ import annotations

from collections.abc import Iterable

AUTHORIZATION = "authorization"
SCHEME = "Bearer"

Metadata = Iterable[tuple[str, str | bytes]]


class BearerError(Exception):
    """The call carries no usable bearer credential."""


class MissingBearer(BearerError):
    """No ``authorization`` metadata at all."""


class MalformedBearer(BearerError):
    """``authorization`` is there, but is not one ``Bearer <credential>``."""


def bearer_credential(metadata: Metadata | None, *, first_of_many: bool = False) -> str:
    """The credential of the call's ``authorization: Bearer <credential>`` metadata, stripped.

    The scheme is matched case-insensitively. More than one ``authorization`` entry is
    :class:`MalformedBearer`, unless `first_of_many`, which takes the first (the gateways' way).
    Raises :class:`MissingBearer` or :class:`MalformedBearer`.
    """
    values = [value for key, value in metadata or () if key == AUTHORIZATION]
    if not values:
        raise MissingBearer(AUTHORIZATION)
    if len(values) > 1 and not first_of_many:
        raise MalformedBearer("more than one authorization entry")
    scheme, _, credential = str(values[0]).partition(" ")
    if scheme.lower() != SCHEME.lower() or not credential.strip():
        raise MalformedBearer("expected 'Bearer <credential>'")
    return credential.strip()
