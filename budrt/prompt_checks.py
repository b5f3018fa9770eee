"""A prompt output's custom validation: a declarative constraint document, never code.

One definition for both sides of a prompt, as `prompt_variables.py`: the app checks a document
when a version is saved (`app.prompts.body`), the prompt executor checks a model's answer with it
(`prompt.outputs`) and asks a model to write one (`prompt.studio`, GenerateValidation).

The document (JSON)::

    {"schema": {JSON-Schema keywords, applied to the output},
     "checks": [{"check": "contains_variable", "variable": "customer", "field": "summary"},
                {"check": "max_words", "n": 40, "field": "summary"},
                {"check": "min_words", "n": 3},
                {"check": "matches", "regex": "^[A-Z]"}]}

- ``schema``: the JSON-Schema keywords of :data:`SCHEMA_KEYWORDS` only (no ``$ref``, ``format``
  or ``patternProperties``: nothing that reaches outside the document), at most
  :data:`MAX_SCHEMA_DEPTH` deep; applied to the output's text (a text output) or its parsed
  object (a structured output). ``pattern`` follows the rules of ``matches``.
- ``checks`` (at most :data:`MAX_CHECKS`), each on ``field`` (a dotted path in a structured
  output; the whole output when empty or absent; a non-string value is read as its JSON text):
  ``contains_variable`` — the value of the input variable ``variable`` appears in it (case
  ignored); ``max_words`` / ``min_words`` — at most / at least ``n`` words (whitespace-separated);
  ``matches`` — the regular expression ``regex`` (at most :data:`MAX_REGEX_CHARS` characters)
  matches somewhere in it. Expressions run in the `regex` module with a
  :data:`REGEX_TIMEOUT_S` budget per search: one that runs out fails its check.

Nothing in a document is executed: it is data read by the fixed code below.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import regex
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import SchemaError, ValidationError

MAX_DOCUMENT_CHARS = 20_000
MAX_CHECKS = 32
MAX_REGEX_CHARS = 500
MAX_SCHEMA_DEPTH = 6
MAX_ENUM = 256
MAX_WORDS = 100_000
REGEX_TIMEOUT_S = 0.05
# Problems reported per answer (a repair turn lists them; more helps nobody).
MAX_PROBLEMS = 20

CHECKS: dict[str, tuple[str, ...]] = {
    "contains_variable": ("variable",),
    "max_words": ("n",),
    "min_words": ("n",),
    "matches": ("regex",),
}
# JSON-Schema keywords a document may use: each one checks the value in hand, none reaches out.
SCHEMA_KEYWORDS = frozenset(
    {
        "type",
        "enum",
        "const",
        "minLength",
        "maxLength",
        "pattern",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "minItems",
        "maxItems",
        "items",
        "required",
        "properties",
        "minProperties",
        "maxProperties",
        "description",
    }
)
# The flat keywords a model writes per field in a generated document (GENERATION_SCHEMA).
_FLAT_KEYWORDS: dict[str, list[str]] = {
    "minLength": ["integer", "null"],
    "maxLength": ["integer", "null"],
    "pattern": ["string", "null"],
    "minimum": ["number", "null"],
    "maximum": ["number", "null"],
    "minItems": ["integer", "null"],
    "maxItems": ["integer", "null"],
}


class DocumentError(ValueError):
    """A document that is not valid: `path` names the part at fault (".checks[1].n", "" for the
    whole document)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


@dataclass(frozen=True)
class Check:
    """One check of a document."""

    kind: str
    field: str = ""
    variable: str = ""
    n: int = 0
    pattern: regex.Pattern[str] | None = None


@dataclass(frozen=True)
class Document:
    """A checked document: its JSON-Schema part (as a validator), its checks, its canonical JSON."""

    schema: Any
    checks: tuple[Check, ...]
    text: str

    @property
    def variables(self) -> frozenset[str]:
        """The input variables its checks read."""
        return frozenset(c.variable for c in self.checks if c.kind == "contains_variable")


def _search(pattern: regex.Pattern[str], text: str) -> bool:
    """Whether `pattern` matches in `text`; TimeoutError past the budget."""
    return pattern.search(text, timeout=REGEX_TIMEOUT_S) is not None


def _compile_regex(source: Any, path: str) -> regex.Pattern[str]:
    if not isinstance(source, str) or not source:
        raise DocumentError(path, "must be a non-empty string")
    if len(source) > MAX_REGEX_CHARS:
        raise DocumentError(path, f"is longer than {MAX_REGEX_CHARS} characters")
    try:
        return regex.compile(source)
    except (regex.error, ValueError, OverflowError) as err:
        raise DocumentError(path, f"is not a valid regular expression: {str(err)[:200]}") from None


def _pattern_keyword(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    """JSON Schema's `pattern`, bounded like `matches`."""
    if not validator.is_type(instance, "string"):
        return
    compiled = _compile_regex(pattern, ".pattern")
    try:
        matched = _search(compiled, instance)
    except TimeoutError:
        yield ValidationError(f"matching the pattern {pattern!r} took too long")
        return
    if not matched:
        yield ValidationError(f"does not match the pattern {pattern!r}")


_Validator = validators.extend(Draft202012Validator, {"pattern": _pattern_keyword})


def _check_schema(schema: Any, path: str, depth: int = 1) -> None:
    """Refuses a schema part using a keyword outside SCHEMA_KEYWORDS, nested too deep, or with an
    invalid regular expression."""
    if not isinstance(schema, dict):
        raise DocumentError(path, "must be an object of JSON-Schema keywords")
    if depth > MAX_SCHEMA_DEPTH:
        raise DocumentError(path, f"is nested more than {MAX_SCHEMA_DEPTH} levels deep")
    for key, value in schema.items():
        where = f"{path}.{str(key)[:64]}"
        if key not in SCHEMA_KEYWORDS:
            raise DocumentError(
                where, f"is not an allowed keyword (allowed: {', '.join(sorted(SCHEMA_KEYWORDS))})"
            )
        if key == "pattern":
            _compile_regex(value, where)
        elif key == "properties":
            if not isinstance(value, dict):
                raise DocumentError(where, "must be an object")
            for name, sub in value.items():
                _check_schema(sub, f"{where}.{str(name)[:64]}", depth + 1)
        elif key == "items":
            _check_schema(value, where, depth + 1)
        elif key == "enum" and isinstance(value, list) and len(value) > MAX_ENUM:
            raise DocumentError(where, f"has more than {MAX_ENUM} values")


def _check_entry(
    entry: Any, path: str, inputs: frozenset[str] | None, fields: frozenset[str] | None
) -> Check:
    if not isinstance(entry, dict):
        raise DocumentError(path, "must be an object")
    kind = entry.get("check")
    if kind not in CHECKS:
        raise DocumentError(f"{path}.check", f"must be one of {', '.join(CHECKS)}")
    allowed = {"check", "field", *CHECKS[kind]}
    for key in entry:
        if key not in allowed:
            raise DocumentError(f"{path}.{str(key)[:64]}", f"is not a field of a {kind} check")
    field = entry.get("field") or ""
    if not isinstance(field, str) or len(field) > 256:
        raise DocumentError(f"{path}.field", "must be a string (a dotted path; empty: the whole output)")
    if field and fields is not None and field.split(".", 1)[0] not in fields:
        raise DocumentError(f"{path}.field", f"names no output variable ({field[:64]!r})")
    if kind == "contains_variable":
        variable = entry.get("variable")
        if not isinstance(variable, str) or not variable:
            raise DocumentError(f"{path}.variable", "must name an input variable")
        if inputs is not None and variable not in inputs:
            raise DocumentError(f"{path}.variable", f"names no input variable ({variable[:64]!r})")
        return Check(kind, field, variable=variable)
    if kind in ("max_words", "min_words"):
        n = entry.get("n")
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_WORDS:
            raise DocumentError(f"{path}.n", f"must be an integer from 0 to {MAX_WORDS}")
        return Check(kind, field, n=n)
    return Check(kind, field, pattern=_compile_regex(entry.get("regex"), f"{path}.regex"))


def parse_document(
    source: str | Mapping[str, Any],
    *,
    inputs: frozenset[str] | None = None,
    fields: frozenset[str] | None = None,
) -> Document:
    """A checked document from its JSON text (or parsed object). `inputs`: the declared input
    variables `contains_variable` may name; `fields`: the output's top-level fields a check's
    `field` may start with (empty set: a text output, no field at all). None: not checked."""
    if isinstance(source, str):
        if len(source) > MAX_DOCUMENT_CHARS:
            raise DocumentError("", f"is longer than {MAX_DOCUMENT_CHARS} characters")
        try:
            data = orjson.loads(source)
        except orjson.JSONDecodeError:
            raise DocumentError("", "is not valid JSON") from None
    else:
        data = dict(source)
    if not isinstance(data, dict):
        raise DocumentError("", "must be a JSON object")
    for key in data:
        if key not in ("schema", "checks"):
            raise DocumentError(
                f".{str(key)[:64]}", 'is not a field of a constraint document ("schema", "checks")'
            )
    schema = data.get("schema")
    validator = None
    if schema is not None:
        _check_schema(schema, ".schema")
        try:
            _Validator.check_schema(schema)
        except SchemaError as err:
            raise DocumentError(".schema", err.message[:300]) from None
        validator = _Validator(schema)
    entries = data.get("checks") or []
    if not isinstance(entries, list):
        raise DocumentError(".checks", "must be an array")
    if len(entries) > MAX_CHECKS:
        raise DocumentError(".checks", f"has more than {MAX_CHECKS} checks")
    checks = tuple(_check_entry(e, f".checks[{i}]", inputs, fields) for i, e in enumerate(entries))
    if validator is None and not checks:
        raise DocumentError("", "has neither a schema nor checks")
    text = orjson.dumps({k: data[k] for k in ("schema", "checks") if data.get(k) is not None}).decode()
    return Document(validator, checks, text)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _target(check: Check, text: str, parsed: Any) -> tuple[bool, str]:
    """The text a check reads: the field's value (found, its text), or the whole output."""
    if not check.field:
        return True, text
    value = parsed
    for part in check.field.split("."):
        if not isinstance(value, dict) or part not in value:
            return False, ""
        value = value[part]
    return True, _text(value)


def _check_one(check: Check, text: str, values: Mapping[str, Any]) -> str | None:
    """Why `text` fails `check`; None when it passes."""
    if check.kind == "contains_variable":
        if check.variable not in values or values[check.variable] is None:
            return f"the input variable {check.variable!r} has no value to look for"
        needle = _text(values[check.variable])
        if needle.casefold() not in text.casefold():
            return f"must contain the value of the input variable {check.variable!r} ({needle[:200]!r})"
        return None
    if check.kind in ("max_words", "min_words"):
        words = len(text.split())
        if check.kind == "max_words" and words > check.n:
            return f"must have at most {check.n} words (has {words})"
        if check.kind == "min_words" and words < check.n:
            return f"must have at least {check.n} words (has {words})"
        return None
    assert check.pattern is not None
    try:
        matched = _search(check.pattern, text)
    except TimeoutError:
        return f"matching the pattern {check.pattern.pattern!r} took too long"
    return None if matched else f"must match the pattern {check.pattern.pattern!r}"


def evaluate(document: Document, text: str, parsed: Any, values: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The problems of an output (path, why): `text` the output's text, `parsed` its object (a
    structured output; None for text), `values` the run's input values."""
    problems: list[tuple[str, str]] = []
    if document.schema is not None:
        instance = text if parsed is None else parsed
        for err in document.schema.iter_errors(instance):
            where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path)
            problems.append((f"output{where}", err.message[:500]))
            if len(problems) >= MAX_PROBLEMS:
                return problems
    for check in document.checks:
        found, target = _target(check, text, parsed)
        path = f"output.{check.field}" if check.field else "output"
        why = _check_one(check, target, values) if found else "is missing"
        if why is not None:
            problems.append((path, f"{check.kind}: {why}"))
            if len(problems) >= MAX_PROBLEMS:
                break
    return problems


# ---- generated documents ---------------------------------------------------------------------

# The JSON Schema a model answers under when it writes a document (strict structured output: every
# property required, nullable where unused): per-field flat keywords and the checks, converted to
# the document form by :func:`from_generated`.
GENERATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["constraints", "checks"],
    "properties": {
        "constraints": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["field", *_FLAT_KEYWORDS],
                "properties": {
                    "field": {"type": "string"},
                    **{k: {"type": t} for k, t in _FLAT_KEYWORDS.items()},
                },
            },
        },
        "checks": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["check", "field", "variable", "n", "regex"],
                "properties": {
                    "check": {"type": "string", "enum": list(CHECKS)},
                    "field": {"type": "string"},
                    "variable": {"type": ["string", "null"]},
                    "n": {"type": ["integer", "null"]},
                    "regex": {"type": ["string", "null"]},
                },
            },
        },
    },
}


def from_generated(answer: Any) -> dict[str, Any]:
    """The document a model's answer under GENERATION_SCHEMA stands for: each constraint's
    keywords on its field (nested `properties`; the output itself when the field is empty), each
    check without its unused (null) fields. Raises DocumentError on a shape it cannot read."""
    if not isinstance(answer, dict):
        raise DocumentError("", "must be a JSON object")
    schema: dict[str, Any] = {}
    for i, entry in enumerate(answer.get("constraints") or []):
        if not isinstance(entry, dict):
            raise DocumentError(f".constraints[{i}]", "must be an object")
        keywords = {k: v for k, v in entry.items() if k in _FLAT_KEYWORDS and v is not None}
        if not keywords:
            continue
        target = schema
        field = entry.get("field") or ""
        if not isinstance(field, str):
            raise DocumentError(f".constraints[{i}].field", "must be a string")
        for part in [p for p in field.split(".") if p]:
            target = target.setdefault("properties", {}).setdefault(part, {})
        target.update(keywords)
    checks = []
    for i, entry in enumerate(answer.get("checks") or []):
        if not isinstance(entry, dict):
            raise DocumentError(f".checks[{i}]", "must be an object")
        checks.append({k: v for k, v in entry.items() if v is not None and (k != "field" or v)})
    document: dict[str, Any] = {"checks": checks}
    if schema:
        document["schema"] = schema
    return document
