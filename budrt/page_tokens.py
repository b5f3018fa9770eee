"""Opaque page tokens for keyset pagination, shared by every service's listings: a token names
its listing (`scope`, which binds it to the listing's filters) and the last id returned."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

from budrt.errors import invalid_argument


def encode_page_token(scope: str, last_id: str) -> str:
    """An opaque token resuming listing `scope` after `last_id`."""
    return base64.urlsafe_b64encode(orjson.dumps({"s": scope, "a": last_id})).decode().rstrip("=")


def decode_page_token(token: str, scope: str) -> str | None:
    """The id to resume after (None for the first page); refuses tokens of other listings."""
    if not token:
        return None
    try:
        data: Any = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError):
        data = None
    if not isinstance(data, dict) or data.get("s") != scope or not isinstance(data.get("a"), str):
        raise invalid_argument("invalid page_token (not from this listing)", param="page_token")
    return str(data["a"])
