"""API-key format and keyed hashing; argon2 password hashing."""

from __future__ import annotations

import asyncio

from auth.keys import PREFIX_LEN, hash_key, key_matches, key_prefix, mint_key
from auth.passwords import hash_password, needs_rehash, verify_password

SECRET = "a-key-hash-secret"


def test_minted_keys_parse_and_match_only_their_hash() -> None:
    key = mint_key(SECRET)
    assert key.secret.startswith(f"bud-{key.prefix}-") and len(key.prefix) == PREFIX_LEN
    assert key_prefix(key.secret) == key.prefix
    assert key.key_hash == hash_key(key.secret, SECRET)
    assert key_matches(key.secret, key.key_hash, SECRET)
    assert not key_matches(key.secret, key.key_hash, "another-secret")
    assert not key_matches(key.secret + "x", key.key_hash, SECRET)
    assert mint_key(SECRET).secret != key.secret


def test_malformed_keys_have_no_prefix() -> None:
    for key in (
        "",
        "bud",
        "bud-1234567-x",
        "bud-123456789-x",
        "bud-12345678-",
        "sk-12345678-x",
        "bud_12345678_x",
    ):
        assert key_prefix(key) is None, key
    assert key_prefix("bud-12345678-with-dashes") == "12345678"


def test_password_hashing() -> None:
    async def run() -> None:
        stored = await hash_password("correct horse")
        assert stored.startswith("$argon2id$") and not needs_rehash(stored)
        assert await verify_password(stored, "correct horse")
        assert not await verify_password(stored, "wrong horse")
        assert not await verify_password(None, "correct horse")  # no such user: still a clean no
        assert not await verify_password("not-a-hash", "correct horse")

    asyncio.run(run())
