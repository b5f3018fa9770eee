"""A prompt version's body and the checks made when it is saved.

Everything here is pure (no database): :func:`check_version` refuses a body with INVALID_ARGUMENT
naming the field at fault (``version.messages[2].template``, ``version.input.variables[0].default``
...) and returns the warnings that do not stop a save. The deployment a version runs on is checked
against the database by `store.py`.

Templates are compiled in the sandboxed Jinja environment the executing side renders with
(:data:`JINJA`). Limits (documented in app/README.md): :data:`MAX_TEMPLATE_CHARS` per template,
:data:`MAX_MESSAGES` messages, :data:`MAX_VARIABLES` variables per level (nested
:data:`MAX_VARIABLE_DEPTH` deep), :data:`MAX_TOOLS` tools.
"""

from __future__ import annotations

import keyword
import math
import re
from collections.abc import Iterator, Sequence
from typing import Any

import jsonschema
import orjson
from jinja2 import TemplateSyntaxError, meta
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import TypeAdapter, ValidationError

from app.prompts import integrations
from app.validation import check_description
from bud.prompt.v1 import prompt_pb2
from budrt.errors import echo, invalid_argument
from budrt.prompt_checks import DocumentError, parse_document
from budrt.prompt_variables import python_type

P = prompt_pb2

# The environment part 2 renders with; templates are compiled in it at save time.
JINJA = ImmutableSandboxedEnvironment(autoescape=False)

# The variable an unstructured input is available as in templates.
UNSTRUCTURED_INPUT = "input"

MAX_TEMPLATE_CHARS = 100_000
MAX_MESSAGES = 100
MAX_VARIABLES = 64
MAX_VARIABLE_DEPTH = 5
MAX_OPTIONS = 256
MAX_TOOLS = 64
MAX_NOTE = 2000
MAX_STOP = 4
MAX_DEFAULT_CHARS = 10_000
MAX_SCHEMA_CHARS = 100_000
MAX_RULE_CHARS = 2000

ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
FUNCTION_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
PROMPT_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,127}$")
LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
LATEST = "latest"

# The integration catalogue (`integrations.py`): name → the access keys it needs.
INTEGRATIONS: dict[str, tuple[str, ...]] = integrations.required_keys()

# Which constraints apply to which variable type.
_STRING_CONSTRAINTS = {"min_length", "max_length", "pattern", "enum_values"}
_NUMBER_CONSTRAINTS = {"ge", "gt", "le", "lt", "multiple_of"}
_ARRAY_CONSTRAINTS = {"min_items", "max_items"}
_APPLICABLE = {
    P.VARIABLE_TYPE_STRING: _STRING_CONSTRAINTS,
    P.VARIABLE_TYPE_INTEGER: _NUMBER_CONSTRAINTS,
    P.VARIABLE_TYPE_NUMBER: _NUMBER_CONSTRAINTS,
    P.VARIABLE_TYPE_ARRAY: _ARRAY_CONSTRAINTS,
}

# (name, low, high, low inclusive) of the sampling parameters with a range.
_RANGES = (
    ("temperature", 0.0, 2.0, True),
    ("top_p", 0.0, 1.0, False),
    ("frequency_penalty", -2.0, 2.0, True),
    ("presence_penalty", -2.0, 2.0, True),
    ("min_p", 0.0, 1.0, True),
)


def check_prompt_name(name: str, param: str) -> None:
    """Prompt names: 1-128 of letters, digits and '._:/@+-', starting with a letter or digit."""
    if not name:
        raise invalid_argument(f"{param} is required", param=param)
    if len(name) > 128:
        raise invalid_argument(f"{param} is longer than 128 characters", param=param)
    if not PROMPT_NAME_RE.match(name):
        raise invalid_argument(
            f"invalid prompt name {echo(name)}: use up to 128 letters, digits or '._:/@+-', "
            "starting with a letter or digit",
            param=param,
        )


def check_label(label: str, param: str, *, allow_latest: bool = False) -> None:
    """Label names: 1-64 of letters, digits and '._-'; "latest" only where it may be read."""
    if not label:
        raise invalid_argument(f"{param} is required", param=param)
    if len(label) > 64 or not LABEL_RE.match(label):
        raise invalid_argument(
            f"invalid label {echo(label)}: use up to 64 letters, digits or '._-', starting with a "
            "letter or digit",
            param=param,
        )
    if label == LATEST and not allow_latest:
        raise invalid_argument('"latest" is reserved: it always means the highest version', param=param)


def _json(text: str, param: str, limit: int) -> Any:
    if len(text) > limit:
        raise invalid_argument(f"{param} is longer than {limit} characters", param=param)
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as err:
        raise invalid_argument(f"{param} is not valid JSON: {err}", param=param) from err


def normalise_parameters(version: P.PromptVersion) -> None:
    """Makes `parameters` hold the sampling values and the top-level `temperature` and
    `max_tokens` mirror them (the sketch's fields, kept on the wire)."""
    params = version.parameters
    for name in ("temperature", "max_tokens"):
        top = version.HasField(name)
        inner = params.HasField(name)
        if top and inner and getattr(version, name) != getattr(params, name):
            raise invalid_argument(
                f"version.{name} and version.parameters.{name} differ (set one)", param=f"version.{name}"
            )
        if top and not inner:
            setattr(params, name, getattr(version, name))
        elif inner:
            setattr(version, name, getattr(params, name))


def _check_parameters(params: P.ModelParameters, param: str) -> None:
    for name, low, high, low_inclusive in _RANGES:
        if params.HasField(name):
            value = getattr(params, name)
            ok = (low <= value if low_inclusive else low < value) and value <= high and math.isfinite(value)
            if not ok:
                bracket = "[" if low_inclusive else "("
                raise invalid_argument(
                    f"{param}.{name} must be in {bracket}{low:g}, {high:g}]", param=f"{param}.{name}"
                )
    if params.HasField("max_tokens") and params.max_tokens < 1:
        raise invalid_argument(f"{param}.max_tokens must be at least 1", param=f"{param}.max_tokens")
    if params.HasField("repetition_penalty") and not params.repetition_penalty > 0:
        raise invalid_argument(
            f"{param}.repetition_penalty must be above 0", param=f"{param}.repetition_penalty"
        )
    if params.HasField("top_k") and params.top_k < -1:
        raise invalid_argument(f"{param}.top_k must be -1 or more", param=f"{param}.top_k")
    if len(params.stop) > MAX_STOP or any(not s or len(s) > 256 for s in params.stop):
        raise invalid_argument(
            f"{param}.stop: at most {MAX_STOP} non-empty sequences of up to 256 characters",
            param=f"{param}.stop",
        )
    if params.HasField("extra"):
        extra = _json(params.extra, f"{param}.extra", MAX_SCHEMA_CHARS)
        if not isinstance(extra, dict):
            raise invalid_argument(f"{param}.extra must be a JSON object", param=f"{param}.extra")
        known = {f.name for f in P.ModelParameters.DESCRIPTOR.fields}
        for key in extra:
            if key in known:
                raise invalid_argument(
                    f"{param}.extra.{key}: set it as {param}.{key}", param=f"{param}.extra.{key}"
                )


def _compile(template: str, param: str) -> set[str]:
    """Compiles a template in the sandbox; the variables it reads. A syntax error is refused,
    naming the field and the line."""
    if len(template) > MAX_TEMPLATE_CHARS:
        raise invalid_argument(f"{param} is longer than {MAX_TEMPLATE_CHARS} characters", param=param)
    try:
        tree = JINJA.parse(template)
    except TemplateSyntaxError as err:
        raise invalid_argument(f"{param}: line {err.lineno}: {err.message}", param=param) from err
    return set(meta.find_undeclared_variables(tree))


def _check_variables(variables: Sequence[P.Variable], param: str, depth: int = 1) -> None:
    if len(variables) > MAX_VARIABLES:
        raise invalid_argument(f"{param}: at most {MAX_VARIABLES} variables", param=param)
    seen: set[str] = set()
    for i, variable in enumerate(variables):
        _check_variable(variable, f"{param}[{i}]", depth)
        if variable.name in seen:
            raise invalid_argument(
                f"{param}[{i}].name: {echo(variable.name)} is declared twice", param=f"{param}[{i}].name"
            )
        seen.add(variable.name)


def _check_variable(variable: P.Variable, param: str, depth: int, *, named: bool = True) -> None:
    if named and not (variable.name.isidentifier() and not keyword.iskeyword(variable.name)):
        raise invalid_argument(
            f"{param}.name: {echo(variable.name)} is not an identifier (letters, digits, '_')",
            param=f"{param}.name",
        )
    if len(variable.description) > MAX_NOTE:
        raise invalid_argument(
            f"{param}.description is longer than {MAX_NOTE} characters", param=f"{param}.description"
        )
    kind = variable.type
    if kind == P.VARIABLE_TYPE_UNSPECIFIED:
        raise invalid_argument(f"{param}.type is required", param=f"{param}.type")
    if kind == P.VARIABLE_TYPE_ENUM:
        options = list(variable.options)
        if not options or len(options) > MAX_OPTIONS or len(set(options)) != len(options):
            raise invalid_argument(
                f"{param}.options: an enum needs 1 to {MAX_OPTIONS} distinct options",
                param=f"{param}.options",
            )
    elif variable.options:
        raise invalid_argument(f"{param}.options: only an enum has options", param=f"{param}.options")
    if depth > MAX_VARIABLE_DEPTH and kind in (P.VARIABLE_TYPE_ARRAY, P.VARIABLE_TYPE_OBJECT):
        raise invalid_argument(f"{param}: nested deeper than {MAX_VARIABLE_DEPTH} levels", param=param)
    if kind == P.VARIABLE_TYPE_ARRAY:
        if not variable.HasField("items"):
            raise invalid_argument(
                f"{param}.items: an array needs the type of its items", param=f"{param}.items"
            )
        _check_variable(variable.items, f"{param}.items", depth + 1, named=False)
    elif variable.HasField("items"):
        raise invalid_argument(f"{param}.items: only an array has items", param=f"{param}.items")
    if kind == P.VARIABLE_TYPE_OBJECT:
        if not variable.fields:
            raise invalid_argument(f"{param}.fields: an object needs fields", param=f"{param}.fields")
        _check_variables(variable.fields, f"{param}.fields", depth + 1)
    elif variable.fields:
        raise invalid_argument(f"{param}.fields: only an object has fields", param=f"{param}.fields")
    _check_validation(variable, param)
    if variable.HasField("default"):
        _check_default(variable, param)


def _check_validation(variable: P.Variable, param: str) -> None:
    mode, c = variable.validation, variable.constraints
    set_fields = {f.name for f, _ in c.ListFields()}
    if mode == P.VALIDATION_MODE_UNSPECIFIED:
        if set_fields or variable.rule:
            raise invalid_argument(
                f"{param}.validation: constraints or a rule need validation BASIC or CUSTOM",
                param=f"{param}.validation",
            )
        return
    if mode == P.VALIDATION_MODE_CUSTOM and not variable.rule.strip():
        raise invalid_argument(f"{param}.rule: custom validation needs its rule", param=f"{param}.rule")
    if mode == P.VALIDATION_MODE_BASIC and variable.rule:
        raise invalid_argument(f"{param}.rule: a rule needs validation CUSTOM", param=f"{param}.rule")
    if len(variable.rule) > MAX_NOTE:
        raise invalid_argument(f"{param}.rule is longer than {MAX_NOTE} characters", param=f"{param}.rule")
    stray = set_fields - _APPLICABLE.get(variable.type, set())
    if stray:
        name = sorted(stray)[0]
        raise invalid_argument(
            f"{param}.constraints.{name} does not apply to a {P.VariableType.Name(variable.type)} variable",
            param=f"{param}.constraints.{name}",
        )
    for low, high in (("min_length", "max_length"), ("min_items", "max_items"), ("ge", "le")):
        if c.HasField(low) and c.HasField(high) and getattr(c, low) > getattr(c, high):
            raise invalid_argument(
                f"{param}.constraints.{low} is above {high}", param=f"{param}.constraints.{low}"
            )
    for name in ("min_length", "max_length", "min_items", "max_items"):
        if c.HasField(name) and getattr(c, name) < 0:
            raise invalid_argument(
                f"{param}.constraints.{name} must not be negative", param=f"{param}.constraints.{name}"
            )
    if c.HasField("multiple_of") and not c.multiple_of > 0:
        raise invalid_argument(
            f"{param}.constraints.multiple_of must be above 0", param=f"{param}.constraints.multiple_of"
        )
    if c.HasField("pattern"):
        try:
            re.compile(c.pattern)
        except re.error as err:
            raise invalid_argument(
                f"{param}.constraints.pattern is not a regular expression: {err}",
                param=f"{param}.constraints.pattern",
            ) from err


def _check_default(variable: P.Variable, param: str) -> None:
    value = _json(variable.default, f"{param}.default", MAX_DEFAULT_CHARS)
    try:
        TypeAdapter(python_type(variable)).validate_python(value, strict=True)
    except ValidationError as err:
        first = err.errors()[0]
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"])
        raise invalid_argument(f"{param}.default{where}: {first['msg']}", param=f"{param}.default") from err


def _check_io(io: P.PromptIo, param: str) -> None:
    if io.mode != P.IO_MODE_STRUCTURED and io.variables:
        raise invalid_argument(
            f"{param}.variables: variables need mode IO_MODE_STRUCTURED", param=f"{param}.variables"
        )
    if io.mode == P.IO_MODE_STRUCTURED:
        if not io.variables:
            raise invalid_argument(
                f"{param}.variables: a structured {param.rsplit('.', 1)[-1]} needs variables",
                param=f"{param}.variables",
            )
        _check_variables(io.variables, f"{param}.variables")


def _check_output_validation(version: P.PromptVersion, param: str) -> None:
    """The output's custom validation: a constraint document (`budrt.prompt_checks`) whose checks
    name declared input variables and output fields; only an output has one."""
    for side in ("input", "output"):
        io = getattr(version, side)
        if side == "input" and (io.rule or io.HasField("validation")):
            which = "rule" if io.rule else "validation"
            raise invalid_argument(
                f"{param}.input.{which}: custom validation applies to the output only",
                param=f"{param}.input.{which}",
            )
    out = version.output
    if len(out.rule) > MAX_RULE_CHARS:
        raise invalid_argument(
            f"{param}.output.rule is longer than {MAX_RULE_CHARS} characters", param=f"{param}.output.rule"
        )
    if not out.HasField("validation"):
        return
    structured_in = version.input.mode == P.IO_MODE_STRUCTURED
    inputs = (
        frozenset(v.name for v in version.input.variables)
        if structured_in
        else frozenset({UNSTRUCTURED_INPUT})
    )
    fields = frozenset(v.name for v in out.variables) if out.mode == P.IO_MODE_STRUCTURED else frozenset()
    where = f"{param}.output.validation"
    try:
        document = parse_document(out.validation, inputs=inputs, fields=fields)
    except DocumentError as err:
        raise invalid_argument(f"{where}{err.path}: {err.message}", param=where) from None
    out.validation = document.text


def _check_tools(version: P.PromptVersion, param: str) -> None:
    if len(version.tools) + len(version.integration_tools) > MAX_TOOLS:
        raise invalid_argument(f"{param}.tools: at most {MAX_TOOLS} tools", param=f"{param}.tools")
    names: set[str] = set()
    for i, tool in enumerate(version.tools):
        at = f"{param}.tools[{i}]"
        if tool.type != "function":
            raise invalid_argument(f'{at}.type must be "function"', param=f"{at}.type")
        name = tool.function.name
        if not FUNCTION_NAME_RE.match(name):
            raise invalid_argument(
                f"{at}.function.name: 1-64 letters, digits, '_' or '-'", param=f"{at}.function.name"
            )
        if name in names:
            raise invalid_argument(
                f"{at}.function.name: {name!r} is declared twice", param=f"{at}.function.name"
            )
        names.add(name)
        if tool.function.HasField("parameters"):
            schema = _json(tool.function.parameters, f"{at}.function.parameters", MAX_SCHEMA_CHARS)
            if not isinstance(schema, dict):
                raise invalid_argument(
                    f"{at}.function.parameters must be a JSON Schema object",
                    param=f"{at}.function.parameters",
                )
            try:
                jsonschema.Draft202012Validator.check_schema(schema)
            except jsonschema.SchemaError as err:
                raise invalid_argument(
                    f"{at}.function.parameters is not a valid JSON Schema: {err.message}",
                    param=f"{at}.function.parameters",
                ) from err
    seen: set[str] = set()
    for i, tool in enumerate(version.integration_tools):
        at = f"{param}.integration_tools[{i}]"
        needed = INTEGRATIONS.get(tool.integration)
        if needed is None:
            raise invalid_argument(
                f"{at}.integration: {echo(tool.integration)} is not in the catalogue "
                f"({', '.join(sorted(INTEGRATIONS))})",
                param=f"{at}.integration",
            )
        if tool.integration in seen:
            raise invalid_argument(
                f"{at}.integration: {tool.integration} is listed twice", param=f"{at}.integration"
            )
        seen.add(tool.integration)
        for key in needed:
            if not tool.access_keys.get(key):
                raise invalid_argument(
                    f"{at}.access_keys.{key}: {tool.integration} needs it", param=f"{at}.access_keys.{key}"
                )
        for key, value in tool.access_keys.items():
            if len(key) > 64:  # not quoted in the field path: it could be any size
                raise invalid_argument(
                    f"{at}.access_keys: a key name is longer than 64 characters", param=f"{at}.access_keys"
                )
            if key not in needed:
                raise invalid_argument(
                    f"{at}.access_keys.{key}: {tool.integration} takes only {', '.join(needed)}",
                    param=f"{at}.access_keys.{key}",
                )
            if len(value) > 4096:
                raise invalid_argument(f"{at}.access_keys.{key} is too long", param=f"{at}.access_keys.{key}")


def templates(version: P.PromptVersion, param: str = "version") -> Iterator[tuple[str, str]]:
    """(field path, template) of every template of a version, system prompt first."""
    if version.system_prompt:
        yield f"{param}.system_prompt", version.system_prompt
    for i, message in enumerate(version.messages):
        yield f"{param}.messages[{i}].template", message.template


def check_version(version: P.PromptVersion, param: str = "version") -> list[P.PromptWarning]:
    """Checks a version body (see the module's docstring); returns the warnings. The deployment
    (`deployment_id` or `model`) must be named; whether it fits is the store's check."""
    if not version.deployment_id and not version.model:
        raise invalid_argument(
            f"{param}.deployment_id is required (a chat deployment of the project)",
            param=f"{param}.deployment_id",
        )
    if len(version.note) > MAX_NOTE:
        raise invalid_argument(f"{param}.note is longer than {MAX_NOTE} characters", param=f"{param}.note")
    if version.HasField("input_schema") or version.HasField("output_schema"):
        which = "input_schema" if version.HasField("input_schema") else "output_schema"
        raise invalid_argument(
            f"{param}.{which} is replaced by {param}.input / {param}.output (typed variables)",
            param=f"{param}.{which}",
        )
    normalise_parameters(version)
    _check_parameters(version.parameters, f"{param}.parameters")
    if len(version.messages) > MAX_MESSAGES:
        raise invalid_argument(
            f"{param}.messages: at most {MAX_MESSAGES} messages", param=f"{param}.messages"
        )
    if not version.messages and not version.system_prompt:
        raise invalid_argument(
            f"{param}.messages: a prompt needs a system prompt or at least one message",
            param=f"{param}.messages",
        )
    for i, message in enumerate(version.messages):
        if message.role not in ROLES:
            raise invalid_argument(
                f"{param}.messages[{i}].role must be one of {', '.join(sorted(ROLES))}",
                param=f"{param}.messages[{i}].role",
            )
    _check_io(version.input, f"{param}.input")
    _check_io(version.output, f"{param}.output")
    _check_output_validation(version, param)
    _check_tools(version, param)
    structured = version.input.mode == P.IO_MODE_STRUCTURED
    declared = [v.name for v in version.input.variables] if structured else [UNSTRUCTURED_INPUT]
    used: set[str] = set()
    for path, template in templates(version, param):
        names = _compile(template, path)
        unknown = sorted(names - set(declared))
        if unknown:
            raise invalid_argument(
                f"{path} uses undeclared variable(s) {', '.join(map(repr, unknown[:5]))}"
                + ("" if structured else f" (an unstructured input is the variable {UNSTRUCTURED_INPUT!r})"),
                param=path,
            )
        used |= names
    warnings = []
    if structured:
        for i, name in enumerate(declared):
            if name not in used:
                warnings.append(
                    P.PromptWarning(
                        field=f"{param}.input.variables[{i}]",
                        message=f"input variable {name!r} is declared but no template uses it",
                    )
                )
    return warnings


def check_prompt_fields(name: str, description: str) -> None:
    """A prompt's own fields (name and description)."""
    check_prompt_name(name, "name")
    check_description(description, "description")
