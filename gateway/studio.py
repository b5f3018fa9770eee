"""The prompt studio's web app at `/studio/`: the files `studio/` builds (`make studio`: index.html
and content-hashed assets), served from memory with their caching and security headers.

- `index.html` (and every other `/studio/...` path but `assets/`: the app routes on the path)
  is `no-cache` with an ETag, so a new build is picked up on the next load; the hashed assets are
  `immutable` for a year (a new build has new names).
- A strict Content-Security-Policy: the page's own scripts, styles and API calls only, nothing
  inline, no frames, no form submissions (the app sends JSON with `fetch`).
- Only the files found in the build directory are served (a table read at start, never a path
  joined from the URL); an unknown asset is a 404, not the page.
- Before the assets are built, `/studio/` answers 503 with a page saying how to build them; the
  directory is looked at again on each such request, so a build after start is picked up.
"""

from __future__ import annotations

import hashlib
import mimetypes
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from gateway.transcoder import Receive, Scope, Send

ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
PREFIX = "/studio"
# Where `make studio` writes the build in a checkout (GatewaySettings.studio_dir overrides it).
DEFAULT_DIR = Path(__file__).resolve().parents[1] / "studio" / "dist"

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
IMMUTABLE = b"public, max-age=31536000, immutable"
NOT_BUILT = (
    b"<!doctype html><html lang=en><meta charset=utf-8><title>Bud Studio: not built</title>"
    b"<h1>The studio is not built</h1><p>Its web assets were not found on this gateway. Build them "
    b"with <code>make studio</code> (Node.js and npm are needed; <code>make up</code> runs it when "
    b"npm is installed), then reload this page.</p></html>"
)


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: bytes
    etag: bytes


def _asset(path: Path) -> Asset:
    body = path.read_bytes()
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if kind.startswith("text/") or kind in {"application/javascript", "image/svg+xml"}:
        kind += "; charset=utf-8"
    return Asset(body, kind.encode(), b'"' + hashlib.sha256(body).hexdigest()[:32].encode() + b'"')


class StudioRoute:
    """ASGI app: `/studio` and below from the build directory, everything else to `inner`."""

    def __init__(self, inner: ASGIApp, directory: Path | None = None) -> None:
        self.inner = inner
        self.directory = directory or DEFAULT_DIR
        self.index: Asset | None = None
        self.assets: dict[str, Asset] = {}
        self._load()

    def _load(self) -> None:
        """Reads the build into memory: index.html and the files of assets/ (no subfolders)."""
        index = self.directory / "index.html"
        if not index.is_file():
            return
        folder = self.directory / "assets"
        files = sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
        self.assets = {p.name: _asset(p) for p in files}
        self.index = _asset(index)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path != PREFIX and not path.startswith(PREFIX + "/"):
            await self.inner(scope, receive, send)
            return
        status, headers, body = self.answer(scope["method"], path, _header(scope, b"if-none-match"))
        await send(
            {"type": "http.response.start", "status": status, "headers": [*headers, *SECURITY_HEADERS]}
        )
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})

    def answer(
        self, method: str, path: str, if_none_match: bytes | None = None
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """The status, headers (security headers aside) and body for a request under /studio."""
        if method not in ("GET", "HEAD"):
            return 405, [(b"allow", b"GET, HEAD"), (b"content-type", b"text/plain")], b"Method not allowed\n"
        if path == PREFIX:
            return 308, [(b"location", b"/studio/"), (b"content-type", b"text/plain")], b""
        if self.index is None:
            self._load()
        if self.index is None:
            html = [(b"content-type", b"text/html; charset=utf-8"), (b"cache-control", b"no-store")]
            return 503, html, NOT_BUILT
        rest = path[len(PREFIX) + 1 :]
        if rest.startswith("assets/"):
            asset = self.assets.get(rest[len("assets/") :])
            if asset is None:
                return (
                    404,
                    [(b"content-type", b"text/plain"), (b"cache-control", b"no-store")],
                    b"Not found\n",
                )
            return 200, [(b"content-type", asset.content_type), (b"cache-control", IMMUTABLE)], asset.body
        # Every other path is the app's: it routes on the path itself.
        index = self.index
        headers = [
            (b"content-type", index.content_type),
            (b"cache-control", b"no-cache"),
            (b"etag", index.etag),
        ]
        if if_none_match is not None and index.etag in [t.strip() for t in if_none_match.split(b",")]:
            return 304, headers, b""
        return 200, headers, index.body


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value
    return None
