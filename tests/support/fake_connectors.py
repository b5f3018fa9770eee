"""Local fake Slack and Notion HTTP servers for the integration-tool tests: aiohttp on
127.0.0.1, in a thread of their own (any test's loop can call them). Each checks the bearer
token (`slack_token`, `notion_token`: anything else is Slack's `invalid_auth` / Notion's 401),
keeps every request it got (`requests`: (service, method, path, JSON body or query)), and can be
told to fail: `fail[service]` = "timeout" (answers after `delay` seconds), "500", or "401"."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

SLACK_TOKEN = "xoxb-fake-slack-token-0123456789"
NOTION_TOKEN = "secret_fake-notion-key-9876543210"


@dataclass
class FakeConnectors:
    """The running fakes (see the module's docstring)."""

    slack_url: str = ""
    notion_url: str = ""
    slack_token: str = SLACK_TOKEN
    notion_token: str = NOTION_TOKEN
    requests: list[tuple[str, str, str, Any]] = field(default_factory=list)
    fail: dict[str, str] = field(default_factory=dict)
    delay: float = 2.0
    channels: list[dict[str, Any]] = field(
        default_factory=lambda: [
            {"id": "C01", "name": "general", "is_private": False, "num_members": 12},
            {"id": "C02", "name": "random", "is_private": False, "num_members": 3},
        ]
    )

    def of(self, service: str) -> list[tuple[str, str, Any]]:
        return [(m, p, b) for s, m, p, b in self.requests if s == service]

    async def _failure(self, service: str) -> web.Response | None:
        mode = self.fail.get(service)
        if mode == "timeout":
            await asyncio.sleep(self.delay)
        elif mode == "500":
            return web.json_response({"message": "upstream broke"}, status=500)
        elif mode == "401":
            return web.json_response({"code": "unauthorized", "message": "API token is invalid."}, status=401)
        return None

    async def _slack(self, request: web.Request) -> web.Response:
        body = await request.json() if request.method == "POST" else dict(request.query)
        self.requests.append(("slack", request.method, request.path, body))
        failed = await self._failure("slack")
        if failed is not None:
            return failed
        if request.headers.get("authorization") != f"Bearer {self.slack_token}":
            return web.json_response({"ok": False, "error": "invalid_auth"})
        if request.path.endswith("/chat.postMessage"):
            return web.json_response({"ok": True, "channel": body["channel"], "ts": "1700000000.000100"})
        if request.path.endswith("/conversations.list"):
            return web.json_response(
                {"ok": True, "channels": self.channels, "response_metadata": {"next_cursor": ""}}
            )
        return web.json_response({"ok": False, "error": "unknown_method"})

    async def _notion(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(("notion", request.method, request.path, body))
        failed = await self._failure("notion")
        if failed is not None:
            return failed
        if request.headers.get("authorization") != f"Bearer {self.notion_token}":
            return web.json_response({"code": "unauthorized", "message": "API token is invalid."}, status=401)
        if not request.headers.get("notion-version"):
            return web.json_response({"code": "missing_version", "message": "Notion-Version"}, status=400)
        if request.path == "/v1/pages":
            return web.json_response(
                {"object": "page", "id": "page-1", "url": "https://www.notion.so/page-1"}
            )
        results = [
            {
                "object": "page",
                "id": "page-7",
                "url": "https://www.notion.so/page-7",
                "properties": {"Name": {"type": "title", "title": [{"plain_text": "Roadmap"}]}},
            }
        ]
        return web.json_response({"object": "list", "results": results, "next_cursor": None})


async def _serve(fakes: FakeConnectors, started: Future[None], stopping: asyncio.Event) -> None:
    app = web.Application()
    app.router.add_route("*", "/api/{method}", fakes._slack)
    app.router.add_post("/v1/pages", fakes._notion)
    app.router.add_post("/v1/search", fakes._notion)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    fakes.slack_url = f"http://127.0.0.1:{port}/api"
    fakes.notion_url = f"http://127.0.0.1:{port}"
    started.set_result(None)
    await stopping.wait()
    await runner.cleanup()


@contextlib.contextmanager
def fake_connectors() -> Iterator[FakeConnectors]:
    """Runs the fakes for the `with` block."""
    fakes = FakeConnectors()
    started: Future[None] = Future()
    loop = asyncio.new_event_loop()
    stopping = asyncio.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(_serve(fakes, started, stopping))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started.result(timeout=10)
    try:
        yield fakes
    finally:
        loop.call_soon_threadsafe(stopping.set)
        thread.join(timeout=10)
        loop.close()
