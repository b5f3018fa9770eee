"""A prompt version's structured output: the JSON Schema the engine enforces, the validation of the
model's answer with pydantic, and the repair turn sent back when it fails.

The schema is sent as the chat call's `response_format` (`json_schema`, strict): the engine's
guided decoding keeps the answer inside it. The answer is validated again with the pydantic model
(the constraints a grammar cannot express, and any engine that ignores the format). A failing
answer is either the final error (`allow_multiple_calls` false: :func:`invalid_output`, 400
INVALID_MODEL_OUTPUT with the errors and the raw output) or, with `allow_multiple_calls`, the
model is shown its answer and the errors (:func:`repair_messages`) and asked again.

A version's output may also carry a custom validation (`output.validation`, a declarative
constraint document: `budrt.prompt_checks`), text or structured: :func:`check_answer` applies it
after the schema, and its failures take the same path (the final error, or the repair turns).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from bud.prompt.v1 import prompt_pb2
from budrt.errors import Reason, ServiceError, bounded, invalid_argument
from budrt.prompt_checks import Document, evaluate, parse_document
from prompt.inputs import describe, object_model

P = prompt_pb2

# Characters of a raw output quoted in an error.
MAX_RAW_ECHO = 2000


@dataclass(frozen=True)
class OutputSpec:
    """The structured output of a version: its model, and the JSON Schema sent to the engine."""

    model: type[BaseModel]
    schema: dict[str, Any]

    def response_format(self) -> dict[str, Any]:
        """The chat call's `response_format`."""
        return {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": self.schema, "strict": True},
        }


def output_spec(io: P.PromptIo) -> OutputSpec | None:
    """The spec of a structured output; None for text."""
    if io.mode != P.IO_MODE_STRUCTURED:
        return None
    model = object_model("output", io.variables)
    return OutputSpec(model=model, schema=model.model_json_schema())


@dataclass(frozen=True)
class Checked:
    """One answer checked: the parsed object (None when it failed) and the problems found."""

    parsed: dict[str, Any] | None
    problems: list[tuple[str, str]]


def check(spec: OutputSpec, raw: str) -> Checked:
    """Validates the model's raw answer against the output model."""
    try:
        value = spec.model.model_validate_json(raw, strict=True)
    except ValidationError as err:
        if any(e["type"] == "json_invalid" for e in err.errors()):
            return Checked(None, [("output", "not valid JSON")])
        return Checked(None, describe(err, prefix="output"))
    return Checked(value.model_dump(mode="json"), [])


def output_validation(io: P.PromptIo) -> Document | None:
    """The custom validation of an output (its constraint document); None without one. Saved
    documents were checked at save time (`app.prompts.body`)."""
    return parse_document(io.validation) if io.HasField("validation") else None


def check_answer(
    spec: OutputSpec | None, validation: Document | None, raw: str, values: dict[str, Any]
) -> Checked:
    """Checks an answer against the output schema (a structured output) and then the custom
    validation (`values`: the run's inputs, for `contains_variable`)."""
    parsed = None
    if spec is not None:
        checked = check(spec, raw)
        if checked.problems or validation is None:
            return checked
        parsed = checked.parsed
    problems = evaluate(validation, raw, parsed, values) if validation is not None else []
    return Checked(None if problems else parsed, problems)


def repair_messages(
    raw: str, problems: list[tuple[str, str]], *, structured: bool = True
) -> list[dict[str, str]]:
    """The turns appended to ask the model again: its answer, then what is wrong with it."""
    listing = "\n".join(f"- {path}: {why}" for path, why in problems)
    again = (
        "Answer again with only a JSON object that matches the schema and the rules."
        if structured
        else "Answer again, meeting every requirement."
    )
    return [
        {"role": "assistant", "content": raw},
        {
            "role": "user",
            "content": f"Your answer does not meet the output requirements:\n{listing}\n{again}",
        },
    ]


def invalid_output(attempts: list[tuple[str, list[tuple[str, str]]]]) -> ServiceError:
    """The error of an output still invalid after the last allowed call: every attempt's errors
    and the last raw output."""
    parts = []
    for i, (_, problems) in enumerate(attempts, 1):
        text = "; ".join(f"{path}: {why}" for path, why in problems)
        parts.append(f"attempt {i}: {text}")
    raw = attempts[-1][0] if attempts else ""
    raw_echo = raw if len(raw) <= MAX_RAW_ECHO else raw[:MAX_RAW_ECHO] + "…"
    message = (
        f"the model's output does not match the prompt's output schema or validation after {len(attempts)} "
        f"call(s): {' | '.join(parts)}; raw output: {orjson.dumps(raw_echo).decode()}"
    )
    return invalid_argument(bounded(message), reason=Reason.INVALID_MODEL_OUTPUT, param="output")
