"""Notion (catalogue name "notion", access key "api_key"): create a page under a parent page
(`POST /v1/pages`) and search pages and databases shared with the integration
(`POST /v1/search`)."""

from __future__ import annotations

from typing import Any

import httpx

from prompt.tools.base import ConnectorConfig, ConnectorError, ToolSpec, call_api, optional, require

INTEGRATION = "notion"
KEY = "api_key"
SERVICE = "Notion"
# The API version the requests are written for.
NOTION_VERSION = "2022-06-28"

CREATE_PAGE = "notion_create_page"
SEARCH = "notion_search"

TOOLS = (
    ToolSpec(
        CREATE_PAGE,
        "Create a Notion page under a parent page.",
        {
            "type": "object",
            "properties": {
                "parent_page_id": {"type": "string", "description": "Id of the parent page."},
                "title": {"type": "string", "description": "Title of the new page."},
                "content": {"type": "string", "description": "Body text; one paragraph per line."},
            },
            "required": ["parent_page_id", "title"],
            "additionalProperties": False,
        },
    ),
    ToolSpec(
        SEARCH,
        "Search the Notion pages and databases shared with the integration by title.",
        {
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "Text to look for in titles."},
                "page_size": {"type": "integer", "minimum": 1, "maximum": 100},
            },
            "required": ["query"],
            "additionalProperties": False,
        },
    ),
)
# A paragraph block's text is at most this long (Notion's limit per rich text).
_MAX_BLOCK = 2000


async def call(
    http: httpx.AsyncClient, config: ConnectorConfig, token: str, name: str, args: dict[str, Any]
) -> dict[str, Any]:
    """Runs one Notion tool; the part of Notion's answer the model needs."""
    base = config.notion_base_url.rstrip("/")
    headers = {"notion-version": NOTION_VERSION}
    if name == CREATE_PAGE:
        content = optional(args, "content", str, "") or ""
        body: dict[str, Any] = {
            "parent": {"page_id": require(args, "parent_page_id")},
            "properties": {"title": {"title": [{"text": {"content": require(args, "title")}}]}},
            "children": [_paragraph(line) for line in content.splitlines() if line.strip()][:100],
        }
        page = await call_api(http, SERVICE, "POST", f"{base}/v1/pages", token, json=body, headers=headers)
        return {"id": page.get("id"), "url": page.get("url")}
    if name == SEARCH:
        body = {"query": require(args, "query"), "page_size": optional(args, "page_size", int, 10)}
        found = await call_api(http, SERVICE, "POST", f"{base}/v1/search", token, json=body, headers=headers)
        results = [
            {"id": r.get("id"), "object": r.get("object"), "url": r.get("url"), "title": _title(r)}
            for r in found.get("results") or []
            if isinstance(r, dict)
        ]
        return {"results": results, "next_cursor": found.get("next_cursor")}
    raise ConnectorError(f"unknown Notion tool {name!r}")


def _paragraph(text: str) -> dict[str, Any]:
    return {
        "object": "block",
        "type": "paragraph",
        "paragraph": {"rich_text": [{"type": "text", "text": {"content": text[:_MAX_BLOCK]}}]},
    }


def _title(result: dict[str, Any]) -> str:
    """The plain title of a page (its title property) or a database (its `title`)."""
    parts: Any = result.get("title")
    if not isinstance(parts, list):
        properties = result.get("properties") or {}
        parts = next(
            (p.get("title") for p in properties.values() if isinstance(p, dict) and p.get("type") == "title"),
            [],
        )
    return "".join(p.get("plain_text") or (p.get("text") or {}).get("content", "") for p in parts or [])
