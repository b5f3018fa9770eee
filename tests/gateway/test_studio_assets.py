"""The gateway's `/studio/` route (gateway/studio.py) on a build directory made here: the page
no-cache with an ETag, hashed assets immutable, the security headers on every answer, nothing
outside the build served, the not-built page until a build appears, other paths passed on."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gateway.studio import CSP, StudioRoute

pytestmark = pytest.mark.unit

PAGE = b'<!doctype html><script type="module" src="/studio/assets/main-ABC123.js"></script>'


def build(root: Path) -> Path:
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_bytes(PAGE)
    (root / "assets" / "main-ABC123.js").write_bytes(b"console.log(1)")
    (root / "assets" / "main-DEF456.css").write_bytes(b"body{}")
    (root.parent / "secret.txt").write_bytes(b"not for the web")
    return root


def call(
    app: Any, method: str, path: str, headers: list[tuple[bytes, bytes]] | None = None
) -> tuple[int, dict[bytes, bytes], bytes]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "method": method, "path": path, "headers": headers or []}
    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], dict(sent[0]["headers"]), sent[1]["body"]


async def inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 299, "headers": []})
    await send({"type": "http.response.body", "body": scope["path"].encode()})


def test_the_page_and_assets_carry_their_caching_and_security_headers(tmp_path: Path) -> None:
    app = StudioRoute(inner, build(tmp_path / "dist"))
    status, headers, body = call(app, "GET", "/studio/")
    assert (status, body) == (200, PAGE)
    assert headers[b"cache-control"] == b"no-cache"
    assert headers[b"content-type"] == b"text/html; charset=utf-8"
    assert headers[b"content-security-policy"] == CSP.encode()
    assert b"'unsafe-inline'" not in headers[b"content-security-policy"]
    assert headers[b"x-content-type-options"] == b"nosniff"
    assert headers[b"x-frame-options"] == b"DENY"
    # Revalidation: the same ETag answers 304 without the body.
    status, _, body = call(app, "GET", "/studio/", [(b"if-none-match", headers[b"etag"])])
    assert (status, body) == (304, b"")
    status, headers, body = call(app, "GET", "/studio/assets/main-ABC123.js")
    assert (status, body) == (200, b"console.log(1)")
    assert headers[b"cache-control"] == b"public, max-age=31536000, immutable"
    assert headers[b"content-type"].startswith(b"text/javascript")
    assert headers[b"content-security-policy"] == CSP.encode()
    # The app routes on the path: a deep link is the page; HEAD has no body.
    assert call(app, "GET", "/studio/projects/p1/prompts/new")[2] == PAGE
    assert call(app, "HEAD", "/studio/projects/p1")[:2][0] == 200
    assert call(app, "HEAD", "/studio/projects/p1")[2] == b""
    status, headers, _ = call(app, "GET", "/studio")
    assert (status, headers[b"location"]) == (308, b"/studio/")


@pytest.mark.parametrize(
    "path",
    [
        "/studio/assets/missing-123.js",
        "/studio/assets/../index.html",
        "/studio/assets/../../secret.txt",
        "/studio/assets/%2e%2e/%2e%2e/secret.txt",
        "/studio/assets/",
    ],
)
def test_nothing_but_the_built_assets_is_served(tmp_path: Path, path: str) -> None:
    app = StudioRoute(inner, build(tmp_path / "dist"))
    status, headers, body = call(app, "GET", path)
    assert status == 404 and b"not for the web" not in body
    assert headers[b"cache-control"] == b"no-store"


def test_writes_are_refused_and_other_paths_passed_on(tmp_path: Path) -> None:
    app = StudioRoute(inner, build(tmp_path / "dist"))
    status, headers, _ = call(app, "POST", "/studio/")
    assert (status, headers[b"allow"]) == (405, b"GET, HEAD")
    assert call(app, "GET", "/v1/models")[:1] == (299,)
    assert call(app, "GET", "/studiox")[2] == b"/studiox"


def test_an_unbuilt_studio_says_how_to_build_it_until_it_is_built(tmp_path: Path) -> None:
    app = StudioRoute(inner, tmp_path / "dist")
    status, headers, body = call(app, "GET", "/studio/")
    assert status == 503 and b"make studio" in body
    assert headers[b"cache-control"] == b"no-store"
    build(tmp_path / "dist")
    assert call(app, "GET", "/studio/")[:1] == (200,)
