"""Save-time checks of a prompt version body (`app.prompts.body`): every rule refuses its bad input
with INVALID_ARGUMENT naming the field, and declared-but-unused variables come back as warnings."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
from jinja2.exceptions import SecurityError

from app.prompts import body as checks
from bud.openai.v1 import common_pb2
from bud.prompt.v1 import prompt_pb2
from budrt.errors import ServiceError

pytestmark = pytest.mark.unit

P = prompt_pb2
S, INT, N, B, E, A, OBJ = (
    P.VARIABLE_TYPE_STRING,
    P.VARIABLE_TYPE_INTEGER,
    P.VARIABLE_TYPE_NUMBER,
    P.VARIABLE_TYPE_BOOLEAN,
    P.VARIABLE_TYPE_ENUM,
    P.VARIABLE_TYPE_ARRAY,
    P.VARIABLE_TYPE_OBJECT,
)
BASIC, CUSTOM = P.VALIDATION_MODE_BASIC, P.VALIDATION_MODE_CUSTOM


def good() -> P.PromptVersion:
    return P.PromptVersion(
        deployment_id="dep_1",
        system_prompt="Answer in {{ language }}.",
        messages=[
            P.PromptMessage(role="user", template="{% for t in topics %}{{ t }} {% endfor %}{{ name }}")
        ],
        input=P.PromptIo(
            mode=P.IO_MODE_STRUCTURED,
            variables=[
                P.Variable(name="name", type=S, validation=BASIC, constraints=P.Constraints(max_length=20)),
                P.Variable(name="language", type=E, options=["fr", "de"], default='"fr"'),
                P.Variable(
                    name="topics",
                    type=A,
                    items=P.Variable(type=S),
                    default='["a"]',
                    validation=BASIC,
                    constraints=P.Constraints(max_items=3),
                ),
            ],
        ),
    )


def var(version: P.PromptVersion, index: int) -> P.Variable:
    return version.input.variables[index]


def add_var(version: P.PromptVersion, **fields: Any) -> P.Variable:
    return version.input.variables.add(**fields)


Edit = Callable[[P.PromptVersion], Any]

CASES: list[tuple[str, Edit, str, str]] = [
    ("no deployment", lambda v: v.ClearField("deployment_id"), "version.deployment_id", "required"),
    (
        "syntax error in a message",
        lambda v: v.messages.add(role="user", template="ok\n{{ name }}\n{{ name + }}"),
        "version.messages[1].template",
        "line 3",
    ),
    (
        "syntax error in the system prompt",
        lambda v: setattr(v, "system_prompt", "{{ language "),
        "version.system_prompt",
        "line 1",
    ),
    (
        "undeclared variable",
        lambda v: v.messages.add(role="assistant", template="{{ nmae }}"),
        "version.messages[1].template",
        "'nmae'",
    ),
    (
        "unstructured input reads only `input`",
        lambda v: v.input.Clear(),
        "version.system_prompt",
        "unstructured input is the variable 'input'",
    ),
    ("unknown role", lambda v: setattr(v.messages[0], "role", "robot"), "version.messages[0].role", "one of"),
    (
        "no template",
        lambda v: (v.ClearField("messages"), v.ClearField("system_prompt")),
        "version.messages",
        "",
    ),
    (
        "too many messages",
        lambda v: v.messages.extend([P.PromptMessage(role="user", template="x")] * (checks.MAX_MESSAGES + 1)),
        "version.messages",
        "at most",
    ),
    (
        "template too long",
        lambda v: setattr(v, "system_prompt", "x" * (checks.MAX_TEMPLATE_CHARS + 1)),
        "version.system_prompt",
        "longer than",
    ),
    (
        "too many variables",
        lambda v: [add_var(v, name=f"v{i}", type=S) for i in range(checks.MAX_VARIABLES)],
        "version.input.variables",
        "at most",
    ),
    (
        "name not an identifier",
        lambda v: setattr(var(v, 0), "name", "first-name"),
        "version.input.variables[0].name",
        "",
    ),
    ("name a keyword", lambda v: setattr(var(v, 0), "name", "class"), "version.input.variables[0].name", ""),
    ("duplicate name", lambda v: add_var(v, name="name", type=S), "version.input.variables[3].name", "twice"),
    ("type missing", lambda v: add_var(v, name="x"), "version.input.variables[3].type", "required"),
    (
        "enum without options",
        lambda v: add_var(v, name="x", type=E),
        "version.input.variables[3].options",
        "",
    ),
    (
        "enum default not an option",
        lambda v: setattr(var(v, 1), "default", '"es"'),
        "version.input.variables[1].default",
        "",
    ),
    (
        "default of the wrong type",
        lambda v: add_var(v, name="n", type=INT, default='"3"'),
        "version.input.variables[3].default",
        "integer",
    ),
    (
        "default breaks a constraint",
        lambda v: setattr(var(v, 0), "default", '"' + "x" * 21 + '"'),
        "version.input.variables[0].default",
        "at most 20",
    ),
    (
        "array default item of the wrong type",
        lambda v: setattr(var(v, 2), "default", "[1]"),
        "version.input.variables[2].default",
        "[0]",
    ),
    (
        "array default too long",
        lambda v: setattr(var(v, 2), "default", '["a","b","c","d"]'),
        "version.input.variables[2].default",
        "",
    ),
    (
        "default not JSON",
        lambda v: setattr(var(v, 0), "default", "nope"),
        "version.input.variables[0].default",
        "JSON",
    ),
    ("array without items", lambda v: add_var(v, name="x", type=A), "version.input.variables[3].items", ""),
    (
        "object without fields",
        lambda v: add_var(v, name="x", type=OBJ),
        "version.input.variables[3].fields",
        "",
    ),
    (
        "object field default",
        lambda v: add_var(v, name="x", type=OBJ, fields=[P.Variable(name="n", type=N, default="true")]),
        "version.input.variables[3].fields[0].default",
        "",
    ),
    (
        "constraint for another type",
        lambda v: add_var(v, name="x", type=B, validation=BASIC, constraints=P.Constraints(ge=1)),
        "version.input.variables[3].constraints.ge",
        "does not apply",
    ),
    (
        "constraints without validation",
        lambda v: add_var(v, name="x", type=S, constraints=P.Constraints(min_length=1)),
        "version.input.variables[3].validation",
        "",
    ),
    (
        "min above max",
        lambda v: add_var(
            v, name="x", type=S, validation=BASIC, constraints=P.Constraints(min_length=5, max_length=2)
        ),
        "version.input.variables[3].constraints.min_length",
        "",
    ),
    (
        "bad pattern",
        lambda v: add_var(v, name="x", type=S, validation=BASIC, constraints=P.Constraints(pattern="([")),
        "version.input.variables[3].constraints.pattern",
        "regular expression",
    ),
    (
        "custom without rule",
        lambda v: add_var(v, name="x", type=S, validation=CUSTOM),
        "version.input.variables[3].rule",
        "",
    ),
    (
        "structured output without variables",
        lambda v: setattr(v.output, "mode", P.IO_MODE_STRUCTURED),
        "version.output.variables",
        "",
    ),
    (
        "temperature out of range",
        lambda v: setattr(v.parameters, "temperature", 2.5),
        "version.parameters.temperature",
        "",
    ),
    ("top_p zero", lambda v: setattr(v.parameters, "top_p", 0.0), "version.parameters.top_p", ""),
    (
        "max_tokens zero",
        lambda v: setattr(v.parameters, "max_tokens", 0),
        "version.parameters.max_tokens",
        "",
    ),
    ("too many stops", lambda v: v.parameters.stop.extend(["a"] * 5), "version.parameters.stop", ""),
    (
        "two temperatures",
        lambda v: (setattr(v, "temperature", 0.1), setattr(v.parameters, "temperature", 0.2)),
        "version.temperature",
        "differ",
    ),
    ("extra not an object", lambda v: setattr(v.parameters, "extra", "[1]"), "version.parameters.extra", ""),
    (
        "extra shadows a field",
        lambda v: setattr(v.parameters, "extra", '{"seed": 1}'),
        "version.parameters.extra.seed",
        "",
    ),
    (
        "tool schema invalid",
        lambda v: v.tools.add(
            type="function", function=common_pb2.FunctionDefinition(name="f", parameters='{"type": 5}')
        ),
        "version.tools[0].function.parameters",
        "JSON Schema",
    ),
    (
        "tool name invalid",
        lambda v: v.tools.add(type="function", function=common_pb2.FunctionDefinition(name="a b")),
        "version.tools[0].function.name",
        "",
    ),
    (
        "tool names twice",
        lambda v: v.tools.extend(
            [common_pb2.Tool(type="function", function=common_pb2.FunctionDefinition(name="f"))] * 2
        ),
        "version.tools[1].function.name",
        "twice",
    ),
    (
        "unknown integration",
        lambda v: v.integration_tools.add(integration="jira"),
        "version.integration_tools[0].integration",
        "catalogue",
    ),
    (
        "integration key missing",
        lambda v: v.integration_tools.add(integration="slack"),
        "version.integration_tools[0].access_keys.bot_token",
        "",
    ),
    (
        "integration key unknown",
        lambda v: v.integration_tools.add(integration="notion", access_keys={"api_key": "k", "other": "x"}),
        "version.integration_tools[0].access_keys.other",
        "",
    ),
    (
        "integration key name too long (not echoed into the field path)",
        lambda v: v.integration_tools.add(
            integration="notion", access_keys={"api_key": "k", "x" * 10_000: "y"}
        ),
        "version.integration_tools[0].access_keys",
        "longer than 64",
    ),
    ("note too long", lambda v: setattr(v, "note", "x" * 2001), "version.note", ""),
    ("sketch's input_schema", lambda v: setattr(v, "input_schema", "{}"), "version.input_schema", "replaced"),
]


@pytest.mark.parametrize(("edit", "param", "says"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_rule_refuses_with_its_field(edit: Edit, param: str, says: str) -> None:
    version = good()
    checks.check_version(version)  # the good one passes
    version = good()
    edit(version)
    with pytest.raises(ServiceError) as refused:
        checks.check_version(version)
    assert (refused.value.code, refused.value.param) == (grpc.StatusCode.INVALID_ARGUMENT, param), (
        refused.value
    )
    assert says in refused.value.message


def test_unused_variables_are_warnings() -> None:
    version = good()
    version.input.variables.add(name="tone", type=S, default='"dry"')
    warnings = checks.check_version(version)
    assert [(w.field, "'tone'" in w.message) for w in warnings] == [("version.input.variables[3]", True)]


def test_unstructured_input_is_the_variable_input() -> None:
    version = P.PromptVersion(
        model="chat", messages=[P.PromptMessage(role="user", template="{{ input | upper }}")]
    )
    assert checks.check_version(version) == []


def test_the_sandbox_compiles_what_it_will_render() -> None:
    """Templates compile in the sandbox part 2 renders with: private attributes render as
    undefined, and the environment is immutable (a template cannot change its inputs)."""
    assert checks.JINJA.sandboxed
    assert checks.JINJA.from_string("{{ name.__class__ }}").render(name="x") == ""
    with pytest.raises(SecurityError):
        checks.JINJA.from_string("{{ topics.append(1) }}").render(topics=[])


def test_sampling_values_are_mirrored() -> None:
    version = good()
    version.temperature = 0.3
    version.parameters.max_tokens = 64
    checks.check_version(version)
    assert version.parameters.temperature == pytest.approx(0.3) and version.max_tokens == 64


@pytest.mark.parametrize(
    ("label", "ok"),
    [
        ("production", True),
        ("v1.2-rc_1", True),
        ("latest", False),
        ("", False),
        ("has space", False),
        ("x" * 65, False),
    ],
)
def test_label_names(label: str, ok: bool) -> None:
    if ok:
        checks.check_label(label, "label")
    else:
        with pytest.raises(ServiceError):
            checks.check_label(label, "label")


def _output_validation(document: str, **io: Any) -> P.PromptVersion:
    version = good()
    version.output.CopyFrom(P.PromptIo(validation=document, **io))
    return version


@pytest.mark.parametrize(
    ("document", "param", "says"),
    [
        ('{"checks": [{"check": "eval", "code": "1"}]}', "version.output.validation", ".checks[0].check"),
        ('{"schema": {"$ref": "https://example.com"}}', "version.output.validation", ".schema.$ref"),
        (
            '{"checks": [{"check": "contains_variable", "variable": "nobody"}]}',
            "version.output.validation",
            "nobody",
        ),
        (
            '{"checks": [{"check": "max_words", "n": 3, "field": "summary"}]}',
            "version.output.validation",
            "summary",
        ),
        (
            '{"checks": [{"check": "matches", "regex": "(("}]}',
            "version.output.validation",
            "regular expression",
        ),
        ("[1]", "version.output.validation", "object"),
    ],
)
def test_an_output_validation_document_is_checked(document: str, param: str, says: str) -> None:
    with pytest.raises(ServiceError) as refused:
        checks.check_version(_output_validation(document))
    assert (refused.value.code, refused.value.param) == (grpc.StatusCode.INVALID_ARGUMENT, param)
    assert says in refused.value.message


def test_an_output_validation_document_is_kept_canonical_and_only_on_the_output() -> None:
    version = _output_validation(
        '{"checks": [{"check": "contains_variable", "variable": "name", "field": "summary"}]} ',
        mode=P.IO_MODE_STRUCTURED,
        variables=[P.Variable(name="summary", type=S)],
        rule="mention the name",
    )
    checks.check_version(version)
    assert version.output.validation == (
        '{"checks":[{"check":"contains_variable","variable":"name","field":"summary"}]}'
    )
    version = good()
    version.input.rule = "no"
    with pytest.raises(ServiceError) as refused:
        checks.check_version(version)
    assert refused.value.param == "version.input.rule"
    version = _output_validation('{"checks": [{"check": "min_words", "n": 1}]}', rule="x" * 2001)
    with pytest.raises(ServiceError) as refused:
        checks.check_version(version)
    assert refused.value.param == "version.output.rule"
