"""The prompt run a model call belongs to, as a signed claim the prompt executor attaches to the
model calls it makes back through a gateway (`x-bud-prompt-run` metadata).

The executor calls the gateway's OpenAI service with the caller's own key (in process, or on the
gateway's public gRPC face when it runs alone), so the gateway cannot tell its calls from a
client's by where they come from. The claim says which prompt, version and prompt deployment the
call runs, so that the gateway applies that deployment's rate limits and names them in the usage
record; it is signed with a key derived from the platform's `key_hash_secret` (which every
gateway and executor of a mesh shares), so a client cannot make its direct calls look like a
prompt's (or charge them to another deployment): a claim that does not verify is ignored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

import orjson

# The metadata key of the claim.
PROMPT_RUN_KEY = "x-bud-prompt-run"
# Longer claims are not even parsed.
MAX_CLAIM_CHARS = 1024
_VERSION = "v1"


@dataclass(frozen=True)
class PromptRun:
    """A model call's prompt run: the key's project, the prompt, its version and the prompt
    deployment named as the reference's `id` ("" when the prompt was named by id)."""

    project_id: str
    prompt_id: str
    version: int
    deployment_id: str = ""


def _key(secret: str) -> bytes:
    # A key of its own (not the key hashes' one), derived from the shared secret.
    return hmac.new(secret.encode(), b"bud prompt run claim v1", hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign(run: PromptRun, secret: str) -> str:
    """The claim's metadata value."""
    payload = _b64(orjson.dumps([run.project_id, run.prompt_id, run.version, run.deployment_id]))
    mac = hmac.new(_key(secret), f"{_VERSION}.{payload}".encode(), hashlib.sha256).digest()
    return f"{_VERSION}.{payload}.{_b64(mac)}"


def verify(value: str, secret: str) -> PromptRun | None:
    """The run a claim names, or None when it is malformed or its signature does not match."""
    if not secret or len(value) > MAX_CLAIM_CHARS or value.count(".") != 2:
        return None
    version, payload, mac = value.split(".")
    if version != _VERSION:
        return None
    expected = _b64(hmac.new(_key(secret), f"{version}.{payload}".encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(expected, mac):
        return None
    try:
        fields = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        project_id, prompt_id, number, deployment_id = fields
    except (ValueError, TypeError, orjson.JSONDecodeError):
        return None
    if not all(isinstance(v, str) for v in (project_id, prompt_id, deployment_id)) or not isinstance(
        number, int
    ):
        return None
    return PromptRun(project_id, prompt_id, number, deployment_id)


def claim_of(metadata: object, secret: str) -> PromptRun | None:
    """The verified claim among a call's invocation metadata, if any (the first one counts)."""
    for key, value in metadata or ():  # type: ignore[attr-defined]
        if key == PROMPT_RUN_KEY:
            return verify(value if isinstance(value, str) else "", secret)
    return None
