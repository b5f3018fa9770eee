"""The integration tools a prompt version offers the model: each active integration of the
catalogue (`CONNECTORS`) with its access key bound, as function tools; running one call of the
model's gives the JSON text the model reads next (a failure is `{"error": ...}`), with the
access key scrubbed from it whatever the API answered."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import httpx
import orjson

from bud.openai.v1 import response_pb2
from bud.prompt.v1 import prompt_pb2
from budrt import tracing
from prompt.tools import notion, slack
from prompt.tools.base import ConnectorConfig, ConnectorError, ToolSpec

log = logging.getLogger(__name__)

# The catalogue: integration name → its connector module (INTEGRATION, KEY, TOOLS, call).
CONNECTORS: dict[str, ModuleType] = {m.INTEGRATION: m for m in (slack, notion)}
# What a masked key read back looks like (app/prompts/cipher.py): not a usable key.
_MASK = "****"


@dataclass(frozen=True)
class BoundTool:
    spec: ToolSpec
    connector: ModuleType
    token: str  # empty when the prompt service did not get the key


@dataclass(frozen=True)
class ToolResult:
    """One call's output as the model reads it, and whether it failed."""

    output: str
    failed: bool


class Toolbox:
    """The integration tools of one version, by tool name."""

    def __init__(self, version: prompt_pb2.PromptVersion) -> None:
        self.tools: dict[str, BoundTool] = {}
        for integration in version.integration_tools:
            connector = CONNECTORS.get(integration.integration)
            if not integration.active or connector is None:
                continue
            token = integration.access_keys.get(connector.KEY, "")
            if token.startswith(_MASK):
                token = ""
            for spec in connector.TOOLS:
                self.tools[spec.name] = BoundTool(spec, connector, token)

    def __bool__(self) -> bool:
        return bool(self.tools)

    def __contains__(self, name: str) -> bool:
        return name in self.tools

    def offer(self, request: response_pb2.ResponseRequest) -> None:
        """Adds the tools to a model request as function tools (a declared function tool of the
        same name gives way: the names are the integrations')."""
        kept = [t for t in request.tools if t.name not in self.tools]
        del request.tools[:]
        request.tools.extend(kept)
        for bound in self.tools.values():
            request.tools.add(
                type="function",
                name=bound.spec.name,
                description=bound.spec.description,
                parameters=orjson.dumps(bound.spec.parameters).decode(),
            )

    async def run(
        self, http: httpx.AsyncClient, config: ConnectorConfig, name: str, arguments: str
    ) -> ToolResult:
        """Runs the model's call of tool `name` with its JSON `arguments`."""
        bound = self.tools[name]
        try:
            if not bound.token:
                raise ConnectorError(
                    f"{bound.connector.SERVICE}: no access key is available to the prompt service"
                )
            try:
                args = orjson.loads(arguments or "{}")
            except orjson.JSONDecodeError:
                raise ConnectorError("the arguments are not valid JSON") from None
            if not isinstance(args, dict):
                raise ConnectorError("the arguments must be a JSON object")
            try:
                # The whole call within the timeout (httpx's bounds each read, not the total).
                # Its span names the tool only: never the arguments, the result or the key.
                attributes = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name}
                with tracing.span(f"execute_tool {name}", attributes):
                    async with asyncio.timeout(config.timeout_s):
                        result: Any = await bound.connector.call(http, config, bound.token, name, args)
            except TimeoutError:
                raise ConnectorError(f"{bound.connector.SERVICE}: no answer within the timeout") from None
            output, failed = orjson.dumps(result).decode(), False
        except ConnectorError as err:
            # Logged by tool name and reason only; the message never holds the key (scrubbed
            # below all the same).
            output, failed = orjson.dumps({"error": str(err)}).decode(), True
        if bound.token:
            output = output.replace(bound.token, _MASK)
        if len(output) > config.max_output_chars:
            output = orjson.dumps({"truncated": True, "partial": output[: config.max_output_chars]}).decode()
        if failed:
            log.info("integration tool failed", extra={"tool": name, "error": output[:300]})
        return ToolResult(output, failed)
