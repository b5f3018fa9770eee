"""A prompt version's input: the pydantic model of its declared variables, and the validation of a
caller's values against it.

Structured input (`IO_MODE_STRUCTURED`): one field per declared variable (its type, its BASIC
constraints, its default; no default = required), nested objects as nested models; unknown
variables are refused (`extra="forbid"` at every level); values are validated strictly from
their JSON (a string is not a number, a number is not a string). Unstructured input: one string,
the template variable ``input`` (part 1's `app.prompts.body.UNSTRUCTURED_INPUT`), required when a
template reads it.

Every failing field is reported in one INVALID_ARGUMENT (`prompt.variables.<path>: why; ...`),
the first one as the error's `param`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from bud.prompt.v1 import prompt_pb2
from budrt.errors import Reason, ServiceError, invalid_argument
from budrt.prompt_variables import object_model

P = prompt_pb2

# The template variable an unstructured input is (as in app/prompts/body.py, which part 1 checks
# templates against at save time).
UNSTRUCTURED_INPUT = "input"
# The request field the variables arrive in (OpenAI's prompt reference).
PARAM = "prompt.variables"
# Errors named in one answer at most (the message stays bounded).
MAX_REPORTED = 20

_FORBID = ConfigDict(extra="forbid", strict=True)


def input_model(io: P.PromptIo, used: frozenset[str] = frozenset({UNSTRUCTURED_INPUT})) -> type[BaseModel]:
    """The model of a version's input; `used`: the names its templates read (an unstructured
    input's string is required only when a template reads it)."""
    if io.mode == P.IO_MODE_STRUCTURED:
        return object_model("input", io.variables)
    default = ... if UNSTRUCTURED_INPUT in used else ""
    return create_model("input_model", __config__=_FORBID, **{UNSTRUCTURED_INPUT: (str, default)})


def field_path(loc: Sequence[int | str], prefix: str = PARAM) -> str:
    return prefix + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)


def describe(err: ValidationError, prefix: str = PARAM) -> list[tuple[str, str]]:
    """(field path, why) of every error of a validation."""
    out = []
    for e in err.errors(include_url=False):
        why = "unknown variable (not declared by the prompt)" if e["type"] == "extra_forbidden" else e["msg"]
        out.append((field_path(e["loc"], prefix), why))
    return out


def validation_error(problems: list[tuple[str, str]], what: str, *, reason: Reason) -> ServiceError:
    """One INVALID_ARGUMENT naming every problem (the first as `param`)."""
    shown = problems[:MAX_REPORTED]
    text = "; ".join(f"{path}: {why}" for path, why in shown)
    more = f" (and {len(problems) - len(shown)} more)" if len(problems) > len(shown) else ""
    return invalid_argument(f"{what}: {text}{more}", reason=reason, param=shown[0][0] if shown else PARAM)


def validate(model: type[BaseModel], variables_json: str | None) -> dict[str, Any]:
    """The caller's variables (JSON text of an object; None: none given) validated against the
    input model: the values templates render with (defaults filled)."""
    text = variables_json or "{}"
    try:
        value = model.model_validate_json(text, strict=True)
    except ValidationError as err:
        if any(e["type"] in ("json_invalid", "model_type") for e in err.errors()):
            raise invalid_argument(
                f"{PARAM} must be a JSON object", reason=Reason.INVALID_PROMPT_INPUT, param=PARAM
            ) from None
        raise validation_error(
            describe(err), "invalid prompt variables", reason=Reason.INVALID_PROMPT_INPUT
        ) from None
    return value.model_dump(mode="python")
