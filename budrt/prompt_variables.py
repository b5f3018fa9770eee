"""The typed variables of the prompt contract (`bud.prompt.v1.Variable`) as pydantic types.

One definition for both sides of a prompt: the app checks a version's defaults with it when the
version is saved (`app.prompts.body`), the prompt executor validates callers' inputs and models'
outputs with it (`prompt.inputs`, `prompt.outputs`), so a value one accepts the other accepts.
A variable's type is its declared kind plus its constraints when its validation is BASIC or
CUSTOM; objects are models that refuse unknown keys (`extra="forbid"`) and validate strictly; a
field without a default is required.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, create_model

from bud.prompt.v1 import prompt_pb2

P = prompt_pb2

_FORBID = ConfigDict(extra="forbid", strict=True)


def python_type(variable: P.Variable) -> Any:
    """The Python (pydantic) type of a declared variable, its BASIC/CUSTOM constraints included."""
    kind = variable.type
    c = variable.constraints if variable.validation else P.Constraints()
    base: Any
    if kind == P.VARIABLE_TYPE_STRING:
        base = Literal[tuple(c.enum_values)] if c.enum_values else str
    elif kind == P.VARIABLE_TYPE_INTEGER:
        base = int
    elif kind == P.VARIABLE_TYPE_NUMBER:
        base = float
    elif kind == P.VARIABLE_TYPE_BOOLEAN:
        base = bool
    elif kind == P.VARIABLE_TYPE_ENUM:
        base = Literal[tuple(variable.options)]
    elif kind == P.VARIABLE_TYPE_ARRAY:
        base = list[python_type(variable.items)]  # type: ignore[misc]
    else:
        base = object_model(variable.name or "object", variable.fields)
    rules = {
        name: getattr(c, name)
        for name in ("min_length", "max_length", "pattern", "ge", "gt", "le", "lt", "multiple_of")
        if c.HasField(name)
    }
    if c.HasField("min_items"):
        rules["min_length"] = c.min_items
    if c.HasField("max_items"):
        rules["max_length"] = c.max_items
    description = variable.description or None
    if rules or description:
        return Annotated[base, Field(description=description, **rules)]
    return base


def object_model(name: str, fields: Sequence[P.Variable]) -> type[BaseModel]:
    """The model of an object's (or a structured input's / output's) fields: unknown keys
    refused, a field with no default required."""
    spec: dict[str, Any] = {}
    for field in fields:
        default = orjson.loads(field.default) if field.HasField("default") else ...
        spec[field.name] = (python_type(field), default)
    return create_model(f"{name}_model", __config__=_FORBID, **spec)
