"""The integration-tool loop of one prompt run: call the model; run the calls it makes of the
version's integration tools (in parallel, server-side, with the stored keys); give it the calls
and their outputs; call it again — until it answers without calling one, or the step limit.

`multiple` (the version's `allow_multiple_calls`) off: one model call; its integration calls are
still run (the key is the platform's, the caller cannot run them) and their outputs returned,
but the model is not called again. A step that also calls one of the caller's function tools
ends the loop: those calls are the caller's to answer (`function_call_output` +
`previous_response_id`).

The response returned is the last model call's, its `output` the transcript: every step's
items in order, each integration `function_call` followed by its `function_call_output` (status
"incomplete" and `{"error": ...}` when the connector failed). Past the step limit the last step's
calls are not run and the response is `incomplete` (reason `max_tool_steps`)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import httpx

from bud.openai.v1 import response_pb2
from prompt.tools.base import ConnectorConfig
from prompt.tools.toolbox import Toolbox

R = response_pb2
# incomplete_details.reason of a run stopped by the step limit.
MAX_TOOL_STEPS = "max_tool_steps"


async def run_tools(
    call_model: Callable[[R.ResponseRequest], Awaitable[R.Response]],
    request: R.ResponseRequest,
    toolbox: Toolbox,
    config: ConnectorConfig,
    *,
    max_steps: int,
    multiple: bool,
) -> tuple[R.Response, int]:
    """The final response (its output the transcript) and the number of model calls made.
    `request` grows by each step's items (what the next call, or a repair, sees)."""
    transcript: list[R.ResponseOutputItem] = []
    calls = steps = 0
    http: httpx.AsyncClient | None = None
    try:
        while True:
            response = await call_model(request)
            calls += 1
            mine = [i for i in response.output if i.type == "function_call" and i.name in toolbox]
            if not mine:
                transcript.extend(response.output)
                break
            if steps >= max_steps:
                transcript.extend(response.output)
                response.status = "incomplete"
                response.incomplete_details.reason = MAX_TOOL_STEPS
                break
            steps += 1
            if http is None:
                http = httpx.AsyncClient(timeout=config.timeout_s, follow_redirects=False)
            client = http
            for item in mine:
                if not item.call_id:
                    item.call_id = f"call_{uuid.uuid4().hex}"
            results = await asyncio.gather(
                *(toolbox.run(client, config, item.name, item.arguments) for item in mine)
            )
            outputs = {item.call_id: result for item, result in zip(mine, results, strict=True)}
            for item in response.output:
                transcript.append(item)
                result = outputs.get(item.call_id) if item.type == "function_call" else None
                if item.type == "message":
                    text = "".join(p.text for p in item.content if p.type == "output_text")
                    request.input_items.values.add(type="message", role="assistant", content_text=text)
                elif result is not None:
                    transcript.append(
                        R.ResponseOutputItem(
                            type="function_call_output",
                            id=f"fco_{uuid.uuid4().hex}",
                            call_id=item.call_id,
                            output=result.output,
                            status="incomplete" if result.failed else "completed",
                        )
                    )
                    request.input_items.values.add(
                        type="function_call", call_id=item.call_id, name=item.name, arguments=item.arguments
                    )
                    request.input_items.values.add(
                        type="function_call_output", call_id=item.call_id, output=result.output
                    )
            theirs = any(i.type == "function_call" and i.name not in toolbox for i in response.output)
            if theirs or not multiple:
                break
    finally:
        if http is not None:
            await http.aclose()
    del response.output[:]
    response.output.extend(transcript)
    return response, calls
