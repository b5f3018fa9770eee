"""Project API keys: format, generation and keyed hashing, shared by the app (which mints them)
and the gateway (which checks them). Keys read `bud-<prefix>-<secret>`; only the prefix and an
HMAC-SHA256 of the whole key, keyed by the platform secret, are ever stored."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from dataclasses import dataclass

PREFIX_LEN = 8
_ALPHABET = string.ascii_letters + string.digits


@dataclass(frozen=True)
class NewKey:
    """A freshly minted key: the full secret (shown once), its prefix and its hash."""

    secret: str
    prefix: str
    key_hash: bytes


def hash_key(key: str, hash_secret: str) -> bytes:
    """Keyed hash of a full key."""
    return hmac.new(hash_secret.encode(), key.encode(), hashlib.sha256).digest()


def mint_key(hash_secret: str) -> NewKey:
    """A new random key."""
    prefix = "".join(secrets.choice(_ALPHABET) for _ in range(PREFIX_LEN))
    secret = f"bud-{prefix}-{secrets.token_urlsafe(32)}"
    return NewKey(secret=secret, prefix=prefix, key_hash=hash_key(secret, hash_secret))


def key_prefix(key: str) -> str | None:
    """The prefix of a well-formed key, else None."""
    parts = key.split("-", 2)
    if len(parts) != 3 or parts[0] != "bud" or len(parts[1]) != PREFIX_LEN or not parts[2]:
        return None
    return parts[1]


def key_matches(key: str, key_hash: bytes, hash_secret: str) -> bool:
    """Whether `key` hashes to `key_hash` (constant-time comparison)."""
    return hmac.compare_digest(hash_key(key, hash_secret), key_hash)
