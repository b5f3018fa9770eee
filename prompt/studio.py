"""The prompt studio's side of the executor: `RunPromptBody` (a draft or a saved version run
without deploying) and `GenerateValidationDocument` (a rule in natural language turned into a
declarative constraint document by a chat deployment).

Both are called by the app only (`auth/service_identity.py`): it has checked the user's token and
editor role in the project, resolved the deployment and, for a saved version, read its body. The
run is the same as a deployed prompt's — variables validated, templates rendered in the bounded
sandbox, the model called back through the gateway's OpenAI service, the answer checked and
repaired (`PromptExecutor.render_request`, `call_model`) — with two differences: the model call
names the project in `ACTING_PROJECT_HEADER` under the executor's own service identity instead of
presenting an API key (the gateway routes to the project's deployments, applies their limits and
charges the usage to the project), and nothing is stored (`store` false on the model call).
Nothing here keeps state between calls: runs side by side are independent.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson

from auth.service_identity import ACTING_PROJECT_HEADER
from bud.openai.v1 import response_pb2
from bud.prompt.v1 import prompt_pb2
from budrt.errors import Reason, bounded, invalid_argument, unavailable
from budrt.interceptors import call_request_id
from budrt.prompt_checks import CHECKS, GENERATION_SCHEMA, DocumentError, from_generated, parse_document
from prompt.calls import end_call
from prompt.inputs import UNSTRUCTURED_INPUT
from prompt.outputs import MAX_RAW_ECHO, repair_messages
from prompt.store import CompiledVersion, compile_version
from prompt.tools.toolbox import Toolbox

if TYPE_CHECKING:
    from prompt.execution import PromptExecutor

P = prompt_pb2
R = response_pb2
log = logging.getLogger(__name__)

MAX_RULE_CHARS = 2000
# The event types of a streamed run (StreamRunPromptBody, the app's StreamRunPrompt).
RUN_DELTA = "run.delta"
RUN_COMPLETED = "run.completed"
# Tokens a generated document may take (a document is small; this bounds a runaway answer).
GENERATION_MAX_TOKENS = 1024

_INSTRUCTIONS = """You turn a validation rule, written in natural language, into a constraint \
document that a program applies to the output of a prompt. Answer with JSON only, matching the \
given schema.

- "constraints": JSON-Schema keywords on a field of the output ("field": its name; "" for the \
whole output): minLength, maxLength (characters), pattern (a regular expression), minimum, \
maximum (numbers), minItems, maxItems (arrays). Use null for the keywords you do not need.
- "checks": each {{"check", "field", "variable", "n", "regex"}} with null for the fields a check \
does not use:
  - "contains_variable": the field contains the value of the input variable "variable";
  - "max_words" / "min_words": the field has at most / at least "n" words;
  - "matches": the field matches the regular expression "regex".

The prompt's input variables: {inputs}.
The prompt's output: {output}.
Use only what the rule asks for."""


def _metadata(context: Any, project_id: str) -> tuple[tuple[str, str], ...]:
    """The model call's metadata: the project it is made for (no API key) and the request id."""
    return ((ACTING_PROJECT_HEADER, project_id), ("x-request-id", call_request_id(context)))


def _require_project(project_id: str) -> None:
    if not project_id:
        raise invalid_argument("project_id is required", param="project_id")


def _gateway_in_process(executor: PromptExecutor) -> Any:
    """The gateway's OpenAI service, in process: a call naming a project without a key is only
    believed from the executor's own identity, which a call over the gateway's public face (a
    standalone executor's) does not carry."""
    stub = executor._stub()
    if not getattr(stub, "in_process", False):
        raise unavailable(
            "The prompt studio's runs need the prompt service co-hosted with a gateway "
            "(prompt_in_gateway); this one runs on its own.",
            reason=Reason.NOT_READY,
        )
    return stub


def _prepare(
    executor: PromptExecutor, request: P.RunPromptBodyRequest | P.StreamRunPromptBodyRequest
) -> tuple[CompiledVersion, dict[str, Any], R.ResponseRequest]:
    """The body compiled, its variables validated and its templates rendered: the model call's
    request (nothing of it stored)."""
    _require_project(request.project_id)
    prompt = P.Prompt(id=request.prompt_id, project_id=request.project_id)
    try:
        compiled = compile_version(prompt, request.version)
    except DocumentError as err:
        raise invalid_argument(
            f"version.output.validation{err.path}: {err.message}", param="version.output.validation"
        ) from None
    _gateway_in_process(executor)
    variables = request.variables if request.HasField("variables") else None
    values, model_request = executor.render_request(
        compiled, variables, R.ResponseRequest(), request.prompt_id or "draft"
    )
    model_request.store = False  # nothing of a studio run is kept
    log.info(
        "studio run",
        extra={"project_id": request.project_id, "prompt_id": request.prompt_id, "user_id": request.user_id},
    )
    return compiled, values, model_request


def _run_of(
    request: P.RunPromptBodyRequest | P.StreamRunPromptBodyRequest, answer: P.ExecutePromptResponse
) -> P.PromptRun:
    """The run's answer, the prompt named in its response."""
    if request.prompt_id:
        answer.response.prompt.id = request.prompt_id
        answer.response.prompt.version = str(request.version.version)
    run = P.PromptRun(
        text=answer.text,
        model_calls=answer.model_calls,
        usage=answer.usage,
        response=answer.response,
        version=request.version.version,
    )
    if answer.HasField("output"):
        run.output = answer.output
    return run


async def run_body(
    executor: PromptExecutor, request: P.RunPromptBodyRequest, context: Any
) -> P.RunPromptBodyResponse:
    """Runs the body in the request for its project (see the module's docstring)."""
    compiled, values, model_request = _prepare(executor, request)
    answer = await executor.call_model(
        compiled, model_request, values, _metadata(context, request.project_id)
    )
    return P.RunPromptBodyResponse(run=_run_of(request, answer))


async def stream_body(
    executor: PromptExecutor, request: P.StreamRunPromptBodyRequest, context: Any
) -> AsyncIterator[P.StreamRunPromptBodyResponse]:
    """The run of `run_body`, streamed: "run.delta" events as the model writes a text output,
    then "run.completed" with the run. A checked output (structured, or with a custom
    validation) or a body with integration tools is finished (checked, repaired) first, then
    released as one delta: what is shown is never an answer the checks would refuse. When the
    caller leaves, the model call is cancelled (the engine stops generating)."""
    from prompt.execution import _stream, output_text  # the executor's own helpers

    compiled, values, model_request = _prepare(executor, request)
    metadata = _metadata(context, request.project_id)
    if compiled.checked or Toolbox(compiled.version):
        answer = await executor.call_model(compiled, model_request, values, metadata)
        run = _run_of(request, answer)
        if run.text:
            yield P.StreamRunPromptBodyResponse(type=RUN_DELTA, delta=run.text)
        yield P.StreamRunPromptBodyResponse(type=RUN_COMPLETED, run=run)
        return
    call = _gateway_in_process(executor).StreamResponse(model_request, metadata=metadata)
    final: R.Response | None = None
    try:
        async for event in _stream(call):
            if event.type == "response.output_text.delta" and event.delta:
                yield P.StreamRunPromptBodyResponse(type=RUN_DELTA, delta=event.delta)
            elif event.type in ("response.completed", "response.incomplete"):
                final = event.response
    finally:
        # A caller that left (the app's stream cancelled) cancels the model call with it.
        await end_call(call)
    if final is None:
        raise unavailable("The model's stream ended without a response.", reason=Reason.NOT_READY)
    answer = P.ExecutePromptResponse(text=output_text(final), model_calls=1, response=final)
    answer.usage.prompt_tokens = final.usage.input_tokens
    answer.usage.completion_tokens = final.usage.output_tokens
    answer.usage.total_tokens = final.usage.total_tokens
    yield P.StreamRunPromptBodyResponse(type=RUN_COMPLETED, run=_run_of(request, answer))


def _names(version: P.PromptVersion) -> tuple[frozenset[str], frozenset[str]]:
    """The input variables a check may name, and the output fields a check may target (none
    for a text output)."""
    if version.input.mode == P.IO_MODE_STRUCTURED:
        inputs = frozenset(v.name for v in version.input.variables)
    else:
        inputs = frozenset({UNSTRUCTURED_INPUT})
    if version.output.mode == P.IO_MODE_STRUCTURED:
        return inputs, frozenset(v.name for v in version.output.variables)
    return inputs, frozenset()


def _describe_output(version: P.PromptVersion) -> str:
    if version.output.mode != P.IO_MODE_STRUCTURED:
        return 'text (use "" as the field)'
    fields = ", ".join(
        f"{v.name} ({P.VariableType.Name(v.type).removeprefix('VARIABLE_TYPE_').lower()})"
        for v in version.output.variables
    )
    return f"a JSON object with the fields {fields}"


def generation_request(request: P.GenerateValidationDocumentRequest) -> R.ResponseRequest:
    """The model call that writes the document: the instructions, the rule, the document's
    schema as a strict `json_schema` format (the engine keeps the answer inside it)."""
    inputs, _ = _names(request.version)
    instructions = _INSTRUCTIONS.format(
        inputs=", ".join(sorted(inputs)) or "none", output=_describe_output(request.version)
    )
    out = R.ResponseRequest(model=request.model, store=False, temperature=0.0)
    out.max_output_tokens = GENERATION_MAX_TOKENS
    out.input_items.values.add(role="system", content_text=instructions)
    out.input_items.values.add(role="user", content_text=f"The rule: {request.rule}")
    out.text.format.type = "json_schema"
    out.text.format.name = "constraint_document"
    out.text.format.schema = orjson.dumps(GENERATION_SCHEMA).decode()
    out.text.format.strict = True
    return out


def _document_of(raw: str, inputs: frozenset[str], fields: frozenset[str]) -> str:
    """The checked document of a model's answer; DocumentError when it is not one."""
    try:
        answer = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise DocumentError("", "is not valid JSON") from None
    return parse_document(from_generated(answer), inputs=inputs, fields=fields).text


async def generate_validation(
    executor: PromptExecutor, request: P.GenerateValidationDocumentRequest, context: Any
) -> P.GenerateValidationDocumentResponse:
    """Asks the deployment for a constraint document (see the module's docstring); an answer
    that is not a valid document is sent back with the problem, up to `max_attempts` calls."""
    from prompt.execution import _add_usage, _call, output_text  # the executor's own helpers

    _require_project(request.project_id)
    rule = request.rule.strip()
    if not rule:
        raise invalid_argument("rule is required", param="rule")
    if len(rule) > MAX_RULE_CHARS:
        raise invalid_argument(f"rule is longer than {MAX_RULE_CHARS} characters", param="rule")
    if not request.model:
        raise invalid_argument("model (a chat deployment of the project) is required", param="model")
    inputs, fields = _names(request.version)
    model_request = generation_request(request)
    metadata = _metadata(context, request.project_id)
    stub = _gateway_in_process(executor)
    usage = R.ResponseUsage()
    failures: list[str] = []
    for _ in range(executor.max_attempts):
        response = await _call(stub.CreateResponse(model_request, metadata=metadata))
        _add_usage(usage, response.usage)
        raw = output_text(response)
        try:
            document = _document_of(raw, inputs, fields)
        except DocumentError as err:
            problem = [(f"document{err.path}", err.message)]
            failures.append(f"document{err.path}: {err.message}")
            for turn in repair_messages(raw, problem):
                model_request.input_items.values.add(role=turn["role"], content_text=turn["content"])
            continue
        out = P.GenerateValidationDocumentResponse(validation=document, model_calls=len(failures) + 1)
        out.usage.prompt_tokens = usage.input_tokens
        out.usage.completion_tokens = usage.output_tokens
        out.usage.total_tokens = usage.total_tokens
        return out
    raw_echo = raw if len(raw) <= MAX_RAW_ECHO else raw[:MAX_RAW_ECHO] + "…"
    listing = " | ".join(f"attempt {i}: {why}" for i, why in enumerate(failures, 1))
    raise invalid_argument(
        bounded(
            f"the model did not write a valid constraint document in {len(failures)} call(s): "
            f"{listing}; raw output: {orjson.dumps(raw_echo).decode()}; checks: {', '.join(CHECKS)}"
        ),
        reason=Reason.INVALID_MODEL_OUTPUT,
        param="rule",
    )
