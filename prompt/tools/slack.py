"""Slack (catalogue name "slack", access key "bot_token"): post a message (`chat.postMessage`)
and list channels (`conversations.list`). Slack answers HTTP 200 with `{"ok": false, "error"}`
for most failures (a refused token is `invalid_auth`/`not_authed`): those are failures too."""

from __future__ import annotations

from typing import Any

import httpx

from prompt.tools.base import ConnectorConfig, ConnectorError, ToolSpec, call_api, optional, require

INTEGRATION = "slack"
KEY = "bot_token"
SERVICE = "Slack"

POST_MESSAGE = "slack_post_message"
LIST_CHANNELS = "slack_list_channels"

TOOLS = (
    ToolSpec(
        POST_MESSAGE,
        "Post a message to a Slack channel.",
        {
            "type": "object",
            "properties": {
                "channel": {"type": "string", "description": "Channel id (C…) or name (#general)."},
                "text": {"type": "string", "description": "The message text (Slack mrkdwn)."},
            },
            "required": ["channel", "text"],
            "additionalProperties": False,
        },
    ),
    ToolSpec(
        LIST_CHANNELS,
        "List the Slack channels the bot can see.",
        {
            "type": "object",
            "properties": {
                "limit": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 200,
                    "description": "At most this many.",
                },
                "cursor": {"type": "string", "description": "next_cursor of a previous page."},
            },
            "additionalProperties": False,
        },
    ),
)
# Slack's error codes that mean the token itself was refused.
_AUTH_ERRORS = frozenset({"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired"})


async def call(
    http: httpx.AsyncClient, config: ConnectorConfig, token: str, name: str, args: dict[str, Any]
) -> dict[str, Any]:
    """Runs one Slack tool; the part of Slack's answer the model needs."""
    base = config.slack_base_url.rstrip("/")
    if name == POST_MESSAGE:
        body = {"channel": require(args, "channel"), "text": require(args, "text")}
        answer = _ok(await call_api(http, SERVICE, "POST", f"{base}/chat.postMessage", token, json=body))
        return {"ok": True, "channel": answer.get("channel"), "ts": answer.get("ts")}
    if name == LIST_CHANNELS:
        params: dict[str, Any] = {"limit": optional(args, "limit", int, 100), "exclude_archived": "true"}
        cursor = optional(args, "cursor", str)
        if cursor:
            params["cursor"] = cursor
        answer = _ok(await call_api(http, SERVICE, "GET", f"{base}/conversations.list", token, params=params))
        channels = [
            {
                "id": c.get("id"),
                "name": c.get("name"),
                "is_private": c.get("is_private", False),
                "num_members": c.get("num_members"),
            }
            for c in answer.get("channels") or []
            if isinstance(c, dict)
        ]
        next_cursor = (answer.get("response_metadata") or {}).get("next_cursor") or None
        return {"channels": channels, "next_cursor": next_cursor}
    raise ConnectorError(f"unknown Slack tool {name!r}")


def _ok(answer: dict[str, Any]) -> dict[str, Any]:
    if answer.get("ok") is True:
        return answer
    error = str(answer.get("error") or "unknown_error")[:100]
    if error in _AUTH_ERRORS:
        raise ConnectorError(f"{SERVICE}: the access key was refused ({error})")
    raise ConnectorError(f"{SERVICE}: {error}")
