"""What the connectors share: a tool's declaration, the settings of the HTTP calls, and the one
HTTP call (bearer token, timeout, no redirects) whose failures become a `ConnectorError` with a
message safe to show to the model and the caller: never the access key, never the request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class ToolSpec:
    """A function tool as the model sees it."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class ConnectorConfig:
    """Where the connectors call and how long they wait (`PromptSettings`)."""

    slack_base_url: str = "https://slack.com/api"
    notion_base_url: str = "https://api.notion.com"
    timeout_s: float = 10.0
    # A tool result longer than this (characters of its JSON) is cut before the model sees it.
    max_output_chars: int = 16_000


class ConnectorError(Exception):
    """A tool call that failed; its message is what the model (and the caller) read."""


def require(args: dict[str, Any], name: str, kind: type = str) -> Any:
    """The argument `name` of a call, of type `kind`; a ConnectorError names what is wrong."""
    value = args.get(name)
    if not isinstance(value, kind) or (kind is str and not value):
        raise ConnectorError(f"argument {name!r} is required ({kind.__name__})")
    return value


def optional(args: dict[str, Any], name: str, kind: type, default: Any = None) -> Any:
    value = args.get(name, default)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool) and kind is int):
        raise ConnectorError(f"argument {name!r} must be {kind.__name__}")
    return value


async def call_api(
    http: httpx.AsyncClient,
    service: str,
    method: str,
    url: str,
    token: str,
    *,
    json: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One call to a connector's API with `token` as the bearer; the JSON object it answers.
    Timeouts, unreachable servers, refused keys (401/403), rate limits and server errors raise
    ConnectorError naming the service and the HTTP status only."""
    sent = {"authorization": f"Bearer {token}", **(headers or {})}
    try:
        reply = await http.request(method, url, json=json, params=params, headers=sent)
    except httpx.TimeoutException:
        raise ConnectorError(f"{service}: no answer within the timeout") from None
    except httpx.HTTPError as err:
        raise ConnectorError(f"{service}: unreachable ({type(err).__name__})") from None
    status = reply.status_code
    if status in (401, 403):
        raise ConnectorError(f"{service}: the access key was refused (HTTP {status})")
    if status == 429:
        raise ConnectorError(f"{service}: rate limited (HTTP 429); try again later")
    if status >= 500:
        raise ConnectorError(f"{service}: server error (HTTP {status})")
    try:
        body = reply.json()
    except ValueError:
        raise ConnectorError(f"{service}: answered HTTP {status} with no JSON") from None
    if not isinstance(body, dict):
        raise ConnectorError(f"{service}: answered HTTP {status} with an unexpected body")
    if status >= 400:
        # The API's own error code and message (Notion: {"code", "message"}), cut short.
        detail = str(body.get("code") or "") + (f": {body['message']}" if body.get("message") else "")
        raise ConnectorError(f"{service}: HTTP {status} {detail[:300]}".rstrip())
    return body
