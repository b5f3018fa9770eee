"""Signed links to stored images: `/v1/images/{id}/content?token=...`, where the token is an
HMAC-SHA256 over the owning project, the image id and the expiry. The link works without an API
key until it expires; a token for another image, of another project, expired or altered, is
refused. The secret is derived from one the gateways share (the key-hash secret, under a label of
its own: a token is never a key hash), so any gateway verifies any gateway's links; it is never
logged."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass
from urllib.parse import quote

# The label the link secret is derived under (HKDF-style: HMAC of the label by the shared secret).
LINK_LABEL = b"bud image link v1"


def link_secret(shared_secret: str) -> bytes:
    """The image links' signing key, derived from a secret the gateways share."""
    return hmac.new(shared_secret.encode(), LINK_LABEL, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Verdict:
    """What a token says: the project it was made for, or why it is refused (`problem`)."""

    project_id: str = ""
    problem: str = ""  # "" | "invalid" | "expired"


class LinkSigner:
    """Makes and checks image tokens: `<expiry>.<project, base64url>.<signature, base64url>`."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _signature(self, project_id: str, image_id: str, expires: int) -> bytes:
        message = f"{project_id}\n{image_id}\n{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).digest()

    def token(self, project_id: str, image_id: str, expires: int) -> str:
        """A token for the image, valid until `expires` (unix seconds)."""
        signature = self._signature(project_id, image_id, expires)
        return f"{expires}.{_b64(project_id.encode())}.{_b64(signature)}"

    def url(self, base: str, project_id: str, image_id: str, expires: int) -> str:
        """The image's content URL under `base` (the gateway's public origin)."""
        token = self.token(project_id, image_id, expires)
        return f"{base.rstrip('/')}/v1/images/{quote(image_id, safe='')}/content?token={token}"

    def verify(self, token: str, image_id: str, now: float | None = None) -> Verdict:
        """The token's project when it is a genuine, unexpired token for `image_id`."""
        try:
            expiry_text, project_text, signature_text = token.split(".")
            expires = int(expiry_text)
            project_id = _unb64(project_text).decode()
            signature = _unb64(signature_text)
        except (ValueError, UnicodeDecodeError):
            return Verdict(problem="invalid")
        if not hmac.compare_digest(signature, self._signature(project_id, image_id, expires)):
            return Verdict(problem="invalid")
        if expires <= (time.time() if now is None else now):
            return Verdict(project_id, problem="expired")
        return Verdict(project_id)
