"""PromptExecutionService: runs a saved prompt for a gateway's `POST /v1/responses` with a prompt
reference.

One run: resolve the reference in the watch-fed store (`store.py`: the key's project only; a
number, a label, or the default label) → validate the variables (`inputs.py`: every failing field
in one 400) → render the templates in the bounded sandbox (`render.py`) → call the model **back
through the gateway's OpenAI service** (`CreateResponse`/`StreamResponse`, in process when
co-hosted, with the caller's own credentials: the same routing, key and deployment rate limits,
usage accounting and engine pool as a direct call) → with structured output, validate the answer
(`outputs.py`) and, when the version allows multiple calls, repair it.

The Responses request sent on is the caller's with the prompt resolved: the rendered messages as
input items, then the caller's `input` (extra turns); the version's deployment as `model` (the
caller's `model` wins when set), its sampling parameters unless the caller set them, its function
tools before the caller's, then its integration tools (`tools/`); structured output as
`text.format` json_schema (strict); `store`
false (the gateway stores the prompt's response, with the run's input this service answers as
`model_request`) and the caller's `previous_response_id`. Each model call carries the signed
prompt-run claim (`auth/prompt_run.py`: the gateway names the run in its usage record and applies
the prompt deployment's limits), and the last call's rate-limit headers are passed on to the
caller.

Tools: the model's calls of function tools come back to the caller as `function_call` items; the
caller answers with `function_call_output` items, `previous_response_id` and the same prompt
reference. Such a tool continuation does not render the prompt's messages again (the turn whose
calls it answers holds them, and the outputs must follow the calls); any other continuation
renders them for its turn after the earlier ones. The version's model, parameters, tools and
output format apply to every turn. Integration tools are run here (`tools/loop.py`), in a unary model call per
step: a version with integration tools streams its final response as events, like a structured
output.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import orjson

from auth.prompt_run import PROMPT_RUN_KEY, PromptRun, sign
from bud.openai.v1 import response_pb2
from bud.prompt.v1 import prompt_pb2, prompt_pb2_grpc
from budrt import tracing
from budrt.call_headers import pass_answer_headers
from budrt.errors import Reason, ServiceError, echo, invalid_argument, not_found, unavailable
from prompt import studio
from prompt.calls import end_call
from prompt.inputs import validate
from prompt.outputs import check_answer, invalid_output, repair_messages
from prompt.render import Limits, RenderLimitExceeded, TemplateRuntimeFailure, render_all
from prompt.store import CompiledVersion, PromptStore
from prompt.tools.base import ConnectorConfig
from prompt.tools.loop import run_tools
from prompt.tools.toolbox import Toolbox

P = prompt_pb2
R = response_pb2
log = logging.getLogger(__name__)

# Metadata forwarded from the gateway's call to the model call: the caller's credentials and
# request id (the model call is the caller's, charged and limited as theirs).
_FORWARDED = frozenset({"authorization", "x-request-id"})
# Chat roles a rendered message keeps on the Responses input; "tool" has no call to answer there.
_ROLES = {
    "system": "system",
    "developer": "developer",
    "user": "user",
    "assistant": "assistant",
    "tool": "user",
}
_STRING_TYPES = frozenset({P.VARIABLE_TYPE_STRING, P.VARIABLE_TYPE_ENUM, P.VARIABLE_TYPE_UNSPECIFIED})


class PromptExecutor(prompt_pb2_grpc.PromptExecutionServiceServicer):
    """Runs prompts (see the module's docstring). `openai`: the gateway's OpenAI service as a
    stub (a `LocalBackend` when co-hosted), looked up per call (the gateway offers it once it
    runs)."""

    def __init__(
        self,
        store: PromptStore,
        openai: Callable[[], Any],
        limits: Limits | None = None,
        max_attempts: int = 3,
        connectors: ConnectorConfig | None = None,
        max_tool_steps: int = 5,
        run_secret: str = "",
    ) -> None:
        self.store = store
        self.openai = openai
        self.limits = limits or Limits()
        self.max_attempts = max_attempts
        self.connectors = connectors or ConnectorConfig()
        self.max_tool_steps = max_tool_steps
        # Signs the prompt-run claim on each model call (`auth.prompt_run`): the platform's
        # key_hash_secret, shared with the gateways; empty: calls carry no claim.
        self.run_secret = run_secret

    # ---- preparing a run -------------------------------------------------------------------
    async def _prepare(self, request: Any) -> tuple[CompiledVersion, R.ResponseRequest, dict[str, Any]]:
        caller = request.request
        if not request.project_id:
            raise invalid_argument("project_id is required", param="project_id")
        if not caller.HasField("prompt") or not caller.prompt.id:
            raise invalid_argument("prompt.id is required", param="prompt.id")
        ref = caller.prompt
        compiled = await self._resolve(request, ref)
        values, model_request = self.render_request(
            compiled, _variables_json(ref, compiled.types), caller, ref.id
        )
        return compiled, model_request, values

    def render_request(
        self, compiled: CompiledVersion, variables_json: str | None, caller: R.ResponseRequest, name: str
    ) -> tuple[dict[str, Any], R.ResponseRequest]:
        """Validates the variables and renders the templates: the input values and the Responses
        request of the model call (`caller`: the caller's own request, its extra turns and
        settings; `name`: the prompt as errors name it)."""
        values = validate(compiled.inputs, variables_json)
        try:
            with tracing.span("bud.prompt.render", {"bud.prompt.id": name}):
                rendered = render_all([(t, values) for _, t in compiled.templates], self.limits)
        except RenderLimitExceeded as err:
            raise invalid_argument(
                f"rendering prompt {name} stopped: {err}", reason=Reason.RENDER_LIMIT, param="prompt"
            ) from None
        except TemplateRuntimeFailure as err:
            raise invalid_argument(
                f"template error in {err.where()}: {err.message}",
                reason=Reason.TEMPLATE_ERROR,
                param="prompt",
            ) from None
        model_request = _model_request(compiled, caller, [r for r, _ in compiled.templates], rendered)
        Toolbox(compiled.version).offer(model_request)
        return values, model_request

    async def _resolve(self, request: Any, ref: R.PromptReference) -> CompiledVersion:
        """The version the reference names: a prompt of the key's project by id, or the target of
        the prompt deployment the gateway resolved its name to (`deployment`; an omitted version
        is the one it pins or the label it follows)."""
        asked = ref.version if ref.HasField("version") else None
        target = request.deployment
        if not target.deployment_id:
            return await self.store.resolve_fetching(request.project_id, ref.id, asked)
        own = (
            asked if asked is not None else (str(target.version) if target.version else target.label or None)
        )
        compiled = await self.store.resolve_fetching(None, target.prompt_id, own)
        if compiled.prompt.project_id != request.project_id and (
            not target.version or compiled.version.version != target.version
        ):
            # Another project's prompt runs only at the version the deployment pinned.
            raise not_found(
                f"Version {echo(asked or '')} of prompt deployment {echo(ref.id)} is not available.",
                param="prompt.version",
            )
        return compiled

    def _metadata(self, request: Any, context: Any, compiled: CompiledVersion) -> tuple[tuple[str, str], ...]:
        """The model call's metadata: the caller's credentials and request id, and the signed
        claim naming the prompt run (its usage record and the prompt deployment's limits)."""
        forwarded = _forward(context)
        if not self.run_secret:
            return forwarded
        run = PromptRun(
            request.project_id,
            compiled.prompt.id,
            compiled.version.version,
            request.deployment.deployment_id,
        )
        return (*forwarded, (PROMPT_RUN_KEY, sign(run, self.run_secret)))

    def _stub(self) -> Any:
        stub = self.openai()
        if stub is None:
            raise unavailable("The gateway's model service is not running here.", reason=Reason.NOT_READY)
        return stub

    # ---- RPCs -------------------------------------------------------------------------------
    async def ExecutePrompt(self, request: P.ExecutePromptRequest, context: Any) -> P.ExecutePromptResponse:
        compiled, model_request, values = await self._prepare(request)
        return await self._run(request, context, compiled, model_request, values)

    async def StreamExecutePrompt(
        self, request: P.StreamExecutePromptRequest, context: Any
    ) -> AsyncIterator[P.StreamExecutePromptResponse]:
        """The Responses event sequence of a run. A text output streams as the model writes it
        (the gateway's own events, the prompt named in them); a checked output (structured, or
        with a custom validation) is validated (and repaired), and a run with integration tools
        finished, before any of it is released, then sent as the events of the finished response."""
        compiled, model_request, values = await self._prepare(request)
        if compiled.checked or Toolbox(compiled.version):
            done = await self._run(request, context, compiled, model_request, values)
            for index, event in enumerate(events_of(done.response)):
                item = P.StreamExecutePromptResponse(event=event)
                if index == 0:
                    item.model_request.CopyFrom(done.model_request)
                yield item
            return
        asked = R.ResponseRequest()
        asked.CopyFrom(model_request)
        call = self._stub().StreamResponse(model_request, metadata=self._metadata(request, context, compiled))
        try:
            first = True
            async for event in _stream(call):
                if event.HasField("response"):
                    _name_prompt(event.response, request.request.prompt, compiled)
                item = P.StreamExecutePromptResponse(event=event)
                if first:  # the gateway admitted the call before its first event
                    first = False
                    item.model_request.CopyFrom(asked)
                    await pass_answer_headers(call, context)
                yield item
        finally:
            await end_call(call)

    # ---- the prompt studio's runs (the app calls them; prompt/studio.py) ----------------------
    async def RunPromptBody(self, request: P.RunPromptBodyRequest, context: Any) -> P.RunPromptBodyResponse:
        return await studio.run_body(self, request, context)

    async def StreamRunPromptBody(
        self, request: P.StreamRunPromptBodyRequest, context: Any
    ) -> AsyncIterator[P.StreamRunPromptBodyResponse]:
        async for event in studio.stream_body(self, request, context):
            yield event

    async def GenerateValidationDocument(
        self, request: P.GenerateValidationDocumentRequest, context: Any
    ) -> P.GenerateValidationDocumentResponse:
        return await studio.generate_validation(self, request, context)

    async def _run(
        self,
        request: Any,
        context: Any,
        compiled: CompiledVersion,
        model_request: R.ResponseRequest,
        values: dict[str, Any],
    ) -> P.ExecutePromptResponse:
        out = await self.call_model(
            compiled, model_request, values, self._metadata(request, context, compiled), context
        )
        _name_prompt(out.response, request.request.prompt, compiled)
        return out

    async def call_model(
        self,
        compiled: CompiledVersion,
        model_request: R.ResponseRequest,
        values: dict[str, Any],
        metadata: tuple[tuple[str, str], ...],
        context: Any = None,
    ) -> P.ExecutePromptResponse:
        """The model call(s) of a run: the answer checked (output schema, custom validation)
        and, when the version allows multiple calls, repaired; every call's usage summed.
        `context` (the caller's): given the last model call's rate-limit headers."""
        stub = self._stub()
        spec = compiled.output
        attempts = self.max_attempts if compiled.version.allow_multiple_calls else 1
        usage = R.ResponseUsage()
        failures: list[tuple[str, list[tuple[str, str]]]] = []
        parsed: dict[str, Any] | None = None
        calls = 0
        last_call: Any = None
        asked = R.ResponseRequest()
        asked.CopyFrom(model_request)  # the run's input, before any tool or repair turn

        async def one_call(request: R.ResponseRequest) -> R.Response:
            nonlocal last_call
            call = stub.CreateResponse(request, metadata=metadata)
            answer = await _call(call)
            last_call = call
            _add_usage(usage, answer.usage)
            return answer

        toolbox = Toolbox(compiled.version)
        for _ in range(attempts if compiled.checked else 1):
            if toolbox:
                response, made = await run_tools(
                    one_call,
                    model_request,
                    toolbox,
                    self.connectors,
                    max_steps=self.max_tool_steps,
                    multiple=compiled.version.allow_multiple_calls,
                )
            else:
                response, made = await one_call(model_request), 1
            calls += made
            if not compiled.checked:
                break
            raw = output_text(response)
            with tracing.span("bud.prompt.validate", {"bud.prompt.attempt": len(failures) + 1}) as span:
                checked = check_answer(spec, compiled.validation, raw, values)
                span.set_attribute("bud.prompt.valid", not checked.problems)
            if not checked.problems:
                parsed = checked.parsed
                break
            failures.append((raw, checked.problems))
            for turn in repair_messages(raw, checked.problems, structured=spec is not None):
                model_request.input_items.values.add(role=turn["role"], content_text=turn["content"])
        else:
            raise invalid_output(failures)
        response.usage.CopyFrom(usage)
        if context is not None:
            await pass_answer_headers(last_call, context)  # the last model call's: the freshest counts
        out = P.ExecutePromptResponse(
            text=output_text(response), model_calls=calls, response=response, model_request=asked
        )
        if parsed is not None:
            out.output = out.response.output_parsed = orjson.dumps(parsed).decode()
        out.usage.prompt_tokens = usage.input_tokens
        out.usage.completion_tokens = usage.output_tokens
        out.usage.total_tokens = usage.total_tokens
        return out


def events_of(response: R.Response) -> list[R.ResponseStreamEvent]:
    """The Responses stream events of a finished response (one text delta per message)."""
    events: list[R.ResponseStreamEvent] = []

    def add(kind: str, **fields: Any) -> None:
        event = R.ResponseStreamEvent(type=kind, sequence_number=len(events))
        for name, value in fields.items():
            if isinstance(value, R.Response | R.ResponseOutputItem | R.ResponseContent):
                getattr(event, name).CopyFrom(value)
            else:
                setattr(event, name, value)
        events.append(event)

    start = R.Response()
    start.CopyFrom(response)
    start.status = "in_progress"
    start.ClearField("output")
    start.ClearField("usage")
    add("response.created", response=start)
    add("response.in_progress", response=start)
    for index, item in enumerate(response.output):
        pending = R.ResponseOutputItem()
        pending.CopyFrom(item)
        pending.status = "in_progress"
        pending.ClearField("content")
        if item.type == "function_call":
            pending.arguments = ""  # then streamed as deltas, as OpenAI does
        add("response.output_item.added", output_index=index, item=pending)
        if item.type == "message":
            for c, part in enumerate(item.content):
                empty = R.ResponseContent(type=part.type, text="")
                add(
                    "response.content_part.added",
                    output_index=index,
                    content_index=c,
                    item_id=item.id,
                    part=empty,
                )
                if part.text:
                    add(
                        "response.output_text.delta",
                        output_index=index,
                        content_index=c,
                        item_id=item.id,
                        delta=part.text,
                    )
                add(
                    "response.output_text.done",
                    output_index=index,
                    content_index=c,
                    item_id=item.id,
                    text=part.text,
                )
                add(
                    "response.content_part.done",
                    output_index=index,
                    content_index=c,
                    item_id=item.id,
                    part=part,
                )
        elif item.type == "function_call":
            if item.arguments:
                add(
                    "response.function_call_arguments.delta",
                    output_index=index,
                    item_id=item.id,
                    delta=item.arguments,
                )
            add(
                "response.function_call_arguments.done",
                output_index=index,
                item_id=item.id,
                arguments=item.arguments,
            )
        add("response.output_item.done", output_index=index, item=item)
    add("response.incomplete" if response.status == "incomplete" else "response.completed", response=response)
    return events


async def _stream(call: Any) -> AsyncIterator[Any]:
    """The events of a streamed call to the gateway; its failure is the caller's."""
    try:
        async for event in call:
            yield event
    except grpc.aio.AioRpcError as err:
        raise ServiceError.from_rpc_error(err) from None


def output_text(response: R.Response) -> str:
    """The text of a Response's message items (the SDKs' `output_text`)."""
    return "".join(
        part.text
        for item in response.output
        if item.type == "message"
        for part in item.content
        if part.type == "output_text"
    )


def _variables_json(ref: R.PromptReference, types: dict[str, int]) -> str:
    """The reference's variables as the JSON object the input model validates. OpenAI's variables
    are strings (or input content parts): the text of a variable declared with a non-string type
    is read as JSON ("3" → 3, "true" → true); a text that is not JSON stays a string and fails
    its type."""
    values: dict[str, Any] = {}
    for name, variable in ref.variables.items():
        which = variable.WhichOneof("value")
        if which == "content":
            if variable.content.type not in ("input_text", "output_text"):
                raise invalid_argument(
                    f"prompt.variables.{name}: only text values are supported",
                    param=f"prompt.variables.{name}",
                )
            text = variable.content.text
        else:
            text = variable.text
        if types.get(name, P.VARIABLE_TYPE_STRING) in _STRING_TYPES:
            values[name] = text
        else:
            try:
                values[name] = orjson.loads(text)
            except orjson.JSONDecodeError:
                values[name] = text
    return orjson.dumps(values).decode()


def _answers_tool_calls(caller: R.ResponseRequest) -> bool:
    """Whether the caller continues a conversation with the outputs of the model's tool calls."""
    return caller.HasField("previous_response_id") and any(
        item.type == "function_call_output"
        for item in (caller.input_items.values if caller.WhichOneof("input") == "input_items" else ())
    )


def _model_request(
    compiled: CompiledVersion, caller: R.ResponseRequest, roles: list[str], rendered: list[str]
) -> R.ResponseRequest:
    """The Responses request of the model call (see the module's docstring)."""
    version = compiled.version
    params = version.parameters
    out = R.ResponseRequest(
        model=caller.model if caller.HasField("model") and caller.model else version.model,
        store=False,  # the gateway stores the prompt's response (the run's input), not this call's
    )
    if caller.HasField("previous_response_id"):
        # The gateway puts the earlier turns first.
        out.previous_response_id = caller.previous_response_id
    if not _answers_tool_calls(caller):
        # A tool continuation is not rendered again: the turn whose calls it answers already holds
        # the rendered prompt, and its outputs must follow those calls. Any other call (a first
        # call, or a new turn on a conversation) renders the prompt's messages for this turn.
        for role, text in zip(roles, rendered, strict=True):
            out.input_items.values.add(role=_ROLES.get(role, "user"), content_text=text)
    which = caller.WhichOneof("input")
    if which == "input_text":
        out.input_items.values.add(role="user", content_text=caller.input_text)
    elif which == "input_items":
        out.input_items.values.extend(caller.input_items.values)
    if caller.HasField("instructions"):
        out.instructions = caller.instructions
    for name, mine in (
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("max_output_tokens", "max_tokens"),
    ):
        if caller.HasField(name):
            setattr(out, name, getattr(caller, name))
        elif params.HasField(mine):
            setattr(out, name, getattr(params, mine))
    for tool in version.tools:
        added = out.tools.add(type="function", name=tool.function.name)
        for field in ("description", "parameters", "strict"):
            if tool.function.HasField(field):
                setattr(added, field, getattr(tool.function, field))
    out.tools.extend(caller.tools)
    choice = caller.WhichOneof("tool_choice")
    if choice == "tool_choice_mode":
        out.tool_choice_mode = caller.tool_choice_mode
    elif choice == "tool_choice_named":
        out.tool_choice_named.CopyFrom(caller.tool_choice_named)
    if compiled.output is not None:
        out.text.format.type = "json_schema"
        out.text.format.name = "output"
        out.text.format.schema = orjson.dumps(compiled.output.schema).decode()
        out.text.format.strict = True
    else:
        out.text.CopyFrom(caller.text)
    for name in ("parallel_tool_calls", "user"):
        if caller.HasField(name):
            setattr(out, name, getattr(caller, name))
    out.metadata.update(caller.metadata)
    return out


def _forward(context: Any) -> tuple[tuple[str, str], ...]:
    return tuple((k, v) for k, v in context.invocation_metadata() if k in _FORWARDED)


async def _call(awaitable: Any) -> Any:
    """A call to the gateway; its failure is the caller's (the same status)."""
    try:
        return await awaitable
    except grpc.aio.AioRpcError as err:
        raise ServiceError.from_rpc_error(err) from None


# Response metadata of a model call passed on to the prompt's caller: its rate-limit headers.


def _add_usage(total: R.ResponseUsage, usage: R.ResponseUsage) -> None:
    total.input_tokens += usage.input_tokens
    total.output_tokens += usage.output_tokens
    total.total_tokens += usage.total_tokens
    total.input_tokens_details.cached_tokens += usage.input_tokens_details.cached_tokens
    total.output_tokens_details.reasoning_tokens += usage.output_tokens_details.reasoning_tokens


def _name_prompt(response: R.Response, ref: R.PromptReference, compiled: CompiledVersion) -> None:
    """The Response names the prompt it ran, the version resolved."""
    response.prompt.CopyFrom(ref)
    response.prompt.version = str(compiled.version.version)
