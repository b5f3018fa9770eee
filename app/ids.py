"""Resource ids: ``<kind>_<time><random>``, e.g. ``dep_0193a1b2c3d4e5f60718293a``.

The leading 12 hex digits are the creation time in milliseconds, so ids sort roughly by creation
(lists page through them in that order); the 12 random hex digits make them unique. They are safe
as engine model names and in URLs.
"""

from __future__ import annotations

import secrets
import time

PROJECT = "prj"
DEPLOYMENT = "dep"
API_KEY = "key"
USER = "usr"
ENGINE = "eng"
PROMPT = "pmpt"
SCALING_EVENT = "sev"
BUDGET = "bgt"


def new_id(kind: str) -> str:
    """A new id for a resource of `kind` (one of the constants above)."""
    return f"{kind}_{time.time_ns() // 1_000_000:012x}{secrets.token_hex(6)}"
