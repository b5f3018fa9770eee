"""The prompt-run claim the executor signs on its model calls (`auth/prompt_run.py`): it verifies
with the shared secret only, and anything altered or malformed is None (ignored by gateways)."""

from __future__ import annotations

import base64

import orjson
import pytest

from auth.prompt_run import MAX_CLAIM_CHARS, PROMPT_RUN_KEY, PromptRun, claim_of, sign, verify

SECRET = "shared-secret"
RUN = PromptRun("prj_1", "pmpt_1", 3, "dep_1")


def test_a_signed_claim_verifies() -> None:
    assert verify(sign(RUN, SECRET), SECRET) == RUN
    assert claim_of([("authorization", "Bearer x"), (PROMPT_RUN_KEY, sign(RUN, SECRET))], SECRET) == RUN
    assert claim_of([("authorization", "Bearer x")], SECRET) is None


def test_another_secret_does_not_verify() -> None:
    assert verify(sign(RUN, "another"), SECRET) is None
    assert verify(sign(RUN, SECRET), "") is None  # no secret: no claim is believed


def test_an_altered_payload_does_not_verify() -> None:
    version, _, mac = sign(RUN, SECRET).split(".")
    forged = base64.urlsafe_b64encode(orjson.dumps(["prj_1", "pmpt_1", 3, "dep_other"])).rstrip(b"=").decode()
    assert verify(f"{version}.{forged}.{mac}", SECRET) is None


@pytest.mark.parametrize(
    "value", ["", "v1", "v1.a.b.c", "v2.e30.AAAA", "x" * (MAX_CLAIM_CHARS + 1), "v1.!!!.???"]
)
def test_malformed_claims_are_none(value: str) -> None:
    assert verify(value, SECRET) is None


def test_a_signed_claim_of_the_wrong_shape_is_none() -> None:
    # Signed, but not the four fields: still refused (never a crash).
    import hashlib
    import hmac

    from auth import prompt_run

    payload = base64.urlsafe_b64encode(orjson.dumps({"a": 1})).rstrip(b"=").decode()
    mac = hmac.new(prompt_run._key(SECRET), f"v1.{payload}".encode(), hashlib.sha256).digest()
    assert verify(f"v1.{payload}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}", SECRET) is None
