"""prompt/inputs.py and prompt/outputs.py: typed inputs (every failing field in one 400) and
structured output (schema, validation, repair turns, the final error)."""

from __future__ import annotations

import orjson
import pytest

from bud.prompt.v1 import prompt_pb2 as P
from budrt.errors import Reason, ServiceError
from prompt.inputs import input_model, validate
from prompt.outputs import check, invalid_output, output_spec, repair_messages

IO = P.PromptIo(
    mode=P.IO_MODE_STRUCTURED,
    variables=[
        P.Variable(
            name="name",
            type=P.VARIABLE_TYPE_STRING,
            validation=P.VALIDATION_MODE_BASIC,
            constraints=P.Constraints(max_length=5),
        ),
        P.Variable(name="count", type=P.VARIABLE_TYPE_INTEGER, default="3"),
        P.Variable(name="tone", type=P.VARIABLE_TYPE_ENUM, options=["dry", "warm"], default='"dry"'),
        P.Variable(
            name="who",
            type=P.VARIABLE_TYPE_OBJECT,
            fields=[P.Variable(name="age", type=P.VARIABLE_TYPE_NUMBER)],
        ),
        P.Variable(
            name="tags",
            type=P.VARIABLE_TYPE_ARRAY,
            items=P.Variable(type=P.VARIABLE_TYPE_STRING),
            default="[]",
        ),
    ],
)


def test_valid_values_get_defaults() -> None:
    values = validate(input_model(IO), '{"name": "Ada", "who": {"age": 36}}')
    assert values == {"name": "Ada", "count": 3, "tone": "dry", "who": {"age": 36.0}, "tags": []}


def test_every_failing_field_is_reported() -> None:
    bad = {"name": "toolong", "count": "3", "tone": "loud", "who": {"age": "old", "x": 1}, "extra": True}
    with pytest.raises(ServiceError) as err:
        validate(input_model(IO), orjson.dumps(bad).decode())
    e = err.value
    assert e.code.name == "INVALID_ARGUMENT" and e.reason == Reason.INVALID_PROMPT_INPUT
    for path in ("name", "count", "tone", "who.age", "who.x", "extra"):
        assert f"prompt.variables.{path}:" in e.message
    assert "unknown variable" in e.message
    assert e.param == "prompt.variables.name"


def test_missing_variable_is_named() -> None:
    with pytest.raises(ServiceError, match=r"prompt.variables.name: Field required"):
        validate(input_model(IO), '{"who": {"age": 1}}')


@pytest.mark.parametrize("text", ["[1]", "nope", '"a"'])
def test_variables_must_be_an_object(text: str) -> None:
    with pytest.raises(ServiceError, match="must be a JSON object"):
        validate(input_model(IO), text)


def test_unstructured_input_is_one_string() -> None:
    model = input_model(P.PromptIo())
    assert validate(model, '{"input": "hi"}') == {"input": "hi"}
    with pytest.raises(ServiceError, match="prompt.variables.input"):
        validate(model, '{"input": 3}')
    with pytest.raises(ServiceError, match="prompt.variables.other: unknown"):
        validate(model, '{"input": "x", "other": 1}')
    assert validate(input_model(P.PromptIo(), used=frozenset()), None) == {"input": ""}


def test_output_schema_and_validation() -> None:
    spec = output_spec(IO)
    assert spec is not None
    fmt = spec.response_format()
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["schema"]["additionalProperties"] is False
    ok = check(spec, '{"name": "Ada", "who": {"age": 3}}')
    assert ok.parsed and not ok.problems
    bad = check(spec, '{"name": "far too long", "who": {}}')
    assert bad.parsed is None
    assert {p for p, _ in bad.problems} == {"output.name", "output.who.age"}
    assert check(spec, "not json").problems == [("output", "not valid JSON")]
    assert output_spec(P.PromptIo()) is None


def test_repair_turns_and_final_error() -> None:
    turns = repair_messages('{"x": 1}', [("output.name", "Field required")])
    assert turns[0] == {"role": "assistant", "content": '{"x": 1}'}
    assert "output.name: Field required" in turns[1]["content"]
    err = invalid_output(
        [("a", [("output", "not valid JSON")]), ('{"x": 1}', [("output.name", "Field required")])]
    )
    assert err.reason == Reason.INVALID_MODEL_OUTPUT
    assert "attempt 1: output: not valid JSON" in err.message and "attempt 2: output.name" in err.message
    assert 'raw output: "{\\"x\\": 1}"' in err.message
