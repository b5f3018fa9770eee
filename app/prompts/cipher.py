"""Integration access keys at rest: AES-256-GCM (authenticated encryption).

The key is derived (HKDF-SHA256) from the `prompt_secrets_key` setting, generated into
`data_dir/secrets/` when unset like the other secrets. Each ciphertext is bound to where it
belongs (prompt, integration, key name) as associated data, so a value copied to another prompt
or key does not decrypt. Stored form: ``v1:`` + urlsafe base64 of the 12-byte nonce and the
ciphertext with its tag. Plaintext keys are never returned (see :func:`mask`) nor logged.
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PREFIX = "v1:"
NONCE_BYTES = 12
# What a masked key looks like: this, then the key's last 4 characters.
MASK = "****"


def mask(plaintext: str) -> str:
    """What reads return for a key: ``****`` and its last 4 characters (fewer for a short key)."""
    return MASK + plaintext[-4:] if len(plaintext) > 8 else MASK


def is_masked(value: str) -> bool:
    """Whether a value sent by a client is a masked key read back (keep the stored key)."""
    return value.startswith(MASK)


class KeyCipher:
    """Encrypts and decrypts access keys with one secret."""

    def __init__(self, secret: str) -> None:
        if not secret:
            raise ValueError("the prompt secrets key is empty")
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"bud prompt access keys v1").derive(
            secret.encode()
        )
        self._aead = AESGCM(key)

    def encrypt(self, plaintext: str, where: str) -> str:
        """The stored form of `plaintext`, bound to `where`."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), where.encode())
        return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()

    def decrypt(self, stored: str, where: str) -> str:
        """The plaintext of a stored value; ValueError when it was not made here for `where`
        (another key, another place, tampered with)."""
        if not stored.startswith(PREFIX):
            raise ValueError("not an encrypted access key")
        try:
            raw = base64.urlsafe_b64decode(stored.removeprefix(PREFIX))
            return self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], where.encode()).decode()
        except (InvalidTag, ValueError) as err:
            raise ValueError("an access key does not decrypt with this prompt secrets key") from err
