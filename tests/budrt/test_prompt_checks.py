"""The declarative constraint document of a prompt output (budrt/prompt_checks.py): what a
document may say (and the code it can never carry), each check passing and failing, the bounded
regular expressions, and the conversion of a model's generated answer."""

from __future__ import annotations

import pytest

from budrt import prompt_checks
from budrt.prompt_checks import (
    GENERATION_SCHEMA,
    DocumentError,
    evaluate,
    from_generated,
    parse_document,
)

INPUTS = frozenset({"customer"})


def _problems(document: dict, text: str, parsed: object = None, values: dict | None = None) -> list[str]:
    doc = parse_document(document, inputs=INPUTS, fields=frozenset({"summary", "words"}))
    return [f"{path}: {why}" for path, why in evaluate(doc, text, parsed, values or {"customer": "Ada"})]


def test_each_check_passes_and_fails() -> None:
    contains = {"checks": [{"check": "contains_variable", "variable": "customer"}]}
    assert _problems(contains, "Dear ADA, hello") == []  # case ignored
    assert "contains_variable" in _problems(contains, "Dear customer")[0]
    words = {"checks": [{"check": "max_words", "n": 3}, {"check": "min_words", "n": 2}]}
    assert _problems(words, "one two three") == []
    assert _problems(words, "one two three four") == ["output: max_words: must have at most 3 words (has 4)"]
    assert _problems(words, "one") == ["output: min_words: must have at least 2 words (has 1)"]
    matches = {"checks": [{"check": "matches", "regex": "^[A-Z]"}]}
    assert _problems(matches, "Yes") == [] and len(_problems(matches, "no")) == 1


def test_checks_on_a_field_and_schema_keywords_on_an_object() -> None:
    document = {
        "schema": {
            "properties": {"summary": {"maxLength": 10}, "words": {"minimum": 1}},
            "required": ["words"],
        },
        "checks": [{"check": "max_words", "field": "summary", "n": 2}],
    }
    assert _problems(document, "{}", {"summary": "short one", "words": 2}) == []
    found = _problems(document, "{}", {"summary": "far too long a summary", "words": 0})
    assert any(p.startswith("output.summary:") and "long" in p for p in found)
    assert any(p.startswith("output.words:") for p in found)
    assert any(p.startswith("output.summary: max_words") for p in found)
    assert _problems(document, "{}", {"words": 1}) == ["output.summary: max_words: is missing"]


@pytest.mark.parametrize(
    ("document", "path"),
    [
        ({"schema": {"$ref": "http://evil.example/schema"}}, ".schema.$ref"),
        ({"schema": {"format": "email"}}, ".schema.format"),
        (
            {"schema": {"properties": {"a": {"patternProperties": {}}}}},
            ".schema.properties.a.patternProperties",
        ),
        ({"checks": [{"check": "python", "code": "import os"}]}, ".checks[0].check"),
        ({"checks": [{"check": "max_words", "n": 3, "code": "x"}]}, ".checks[0].code"),
        ({"checks": [{"check": "max_words", "n": -1}]}, ".checks[0].n"),
        ({"checks": [{"check": "max_words", "n": True}]}, ".checks[0].n"),
        ({"checks": [{"check": "matches", "regex": "a" * 501}]}, ".checks[0].regex"),
        ({"checks": [{"check": "matches", "regex": "(unclosed"}]}, ".checks[0].regex"),
        ({"schema": {"pattern": "(unclosed"}}, ".schema.pattern"),
        ({"checks": [{"check": "contains_variable", "variable": "nobody"}]}, ".checks[0].variable"),
        ({"checks": [{"check": "min_words", "n": 1, "field": "other"}]}, ".checks[0].field"),
        ({"exec": "print(1)"}, ".exec"),
        ({}, ""),
        ({"checks": [{"check": "max_words", "n": 1}] * 33}, ".checks"),
        ({"schema": {"minLength": "ten"}}, ".schema"),
    ],
)
def test_a_document_says_only_what_it_may(document: dict, path: str) -> None:
    with pytest.raises(DocumentError) as refused:
        parse_document(document, inputs=INPUTS, fields=frozenset({"summary"}))
    assert refused.value.path == path


def test_a_text_document_and_its_canonical_form() -> None:
    with pytest.raises(DocumentError):
        parse_document("not json")
    with pytest.raises(DocumentError):
        parse_document("x" * (prompt_checks.MAX_DOCUMENT_CHARS + 1))
    doc = parse_document('{"checks": [{"check": "max_words", "n": 2}], "schema": {"maxLength": 9}}')
    assert doc.text == '{"schema":{"maxLength":9},"checks":[{"check":"max_words","n":2}]}'
    # A text output: no field may be named.
    with pytest.raises(DocumentError):
        parse_document({"checks": [{"check": "max_words", "n": 2, "field": "a"}]}, fields=frozenset())


def test_a_runaway_regular_expression_fails_its_check_in_bounded_time() -> None:
    import time

    document = {"checks": [{"check": "matches", "regex": r"^(\w+\s?)*$"}], "schema": {"pattern": "(a|aa)+$"}}
    started = time.monotonic()
    found = _problems(document, "a" * 5000 + "!")
    assert time.monotonic() - started < 3
    assert len(found) == 2 and all("took too long" in p for p in found)


def test_a_generated_answer_becomes_a_document() -> None:
    answer = {
        "constraints": [
            {"field": "", "maxLength": 100, "minLength": None},
            {"field": "summary", "pattern": "^[A-Z]", "maxLength": None},
        ],
        "checks": [{"check": "max_words", "field": "", "variable": None, "n": 40, "regex": None}],
    }
    assert from_generated(answer) == {
        "checks": [{"check": "max_words", "n": 40}],
        "schema": {"maxLength": 100, "properties": {"summary": {"pattern": "^[A-Z]"}}},
    }
    parse_document(from_generated(answer), fields=frozenset({"summary"}))

    # The schema the model answers under is strict: every object closed, every property required.
    def closed(schema: dict) -> None:
        if schema.get("type") == "object":
            assert schema["additionalProperties"] is False
            assert set(schema["required"]) == set(schema["properties"])
            for sub in schema["properties"].values():
                closed(sub)
        if "items" in schema:
            closed(schema["items"])

    closed(GENERATION_SCHEMA)
