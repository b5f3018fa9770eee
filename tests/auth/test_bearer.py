"""`auth.bearer.bearer_credential`: the one parser of ``authorization: Bearer <credential>``."""

from __future__ import annotations

import pytest

from auth.bearer import MalformedBearer, MissingBearer, bearer_credential


@pytest.mark.parametrize(
    ("metadata", "credential"),
    [
        ([("authorization", "Bearer abc")], "abc"),
        ([("authorization", "bearer abc")], "abc"),  # the scheme is case-insensitive
        ([("authorization", "BEARER  abc  ")], "abc"),  # surrounding blanks go
        ([("x-request-id", "r1"), ("authorization", "Bearer a b")], "a b"),  # the rest is the credential
        ((("authorization", "Bearer bud-12345678-x"),), "bud-12345678-x"),
    ],
)
def test_well_formed(metadata: list[tuple[str, str]], credential: str) -> None:
    assert bearer_credential(metadata) == credential


@pytest.mark.parametrize("metadata", [None, [], [("x-request-id", "r1")], [("Authorization-X", "Bearer a")]])
def test_missing(metadata: list[tuple[str, str]] | None) -> None:
    with pytest.raises(MissingBearer):
        bearer_credential(metadata)


@pytest.mark.parametrize(
    "value",
    ["", "Bearer", "Bearer ", "Bearer    ", "Basic abc", "Token abc", "abc", " Bearer abc", "Bearerabc"],
)
def test_malformed(value: str) -> None:
    with pytest.raises(MalformedBearer):
        bearer_credential([("authorization", value)])


def test_repeated_entries_are_malformed_unless_the_first_counts() -> None:
    metadata = [("authorization", "Bearer first"), ("authorization", "Bearer second")]
    with pytest.raises(MalformedBearer):
        bearer_credential(metadata)
    assert bearer_credential(metadata, first_of_many=True) == "first"
    with pytest.raises(MalformedBearer):  # the first one is what is judged
        bearer_credential([("authorization", "Basic x"), ("authorization", "Bearer y")], first_of_many=True)
