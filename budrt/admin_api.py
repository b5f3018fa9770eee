"""A platform admin's client of the gateway's management REST face: what the `budrt` commands that
read or write the platform as an admin (`budrt cost`, `budrt bench`) share.

Over REST rather than the service channel, so that a command needs no service certificate and runs
from any machine that reaches the gateway, authorized as the admin it runs for. The bearer token
goes on each request, never onto the caller's `httpx.AsyncClient` (which a caller may share).
Error answers raise `AdminApiError`; each command words it as its own error.
"""

from __future__ import annotations

from typing import Any

import httpx

PAGE_SIZE = 1000


class AdminApiError(Exception):
    """An error answer (or no credentials to ask with).

    `action` says what was refused ("GET /v1/projects", "login as 'admin' refused"), `status_code`
    is the HTTP status (0: no request was made), `message` the answer's own message (None when it
    has none). The default text is `action: message` (`HTTP status` when no message)."""

    def __init__(self, action: str, status_code: int = 0, message: str | None = None) -> None:
        self.action = action
        self.status_code = status_code
        self.message = message
        super().__init__(f"{action}: {message or f'HTTP {status_code}'}")

    @classmethod
    def of(cls, action: str, answer: httpx.Response) -> AdminApiError:
        """The error of an error answer."""
        return cls(action, answer.status_code, error_message(answer))


class NoCredentials(AdminApiError):
    """Neither a token nor a password to log in with: each command says where to give one."""

    def __init__(self) -> None:
        super().__init__("no admin token nor password")


def error_message(answer: httpx.Response) -> str | None:
    """The message of an error answer: a google.rpc.Status body (`{"code", "message", "details"}`,
    the management routes) or OpenAI error JSON (`{"error": {"message", ...}}`); None when the body
    is not JSON or carries no message."""
    try:
        body = answer.json()
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    error = body["error"] if isinstance(body.get("error"), dict) else body
    message = error.get("message")
    return str(message) if message else None


class AdminApi:
    """The management REST API as a platform admin, over `client` (its `base_url` the gateway)."""

    def __init__(self, client: httpx.AsyncClient, token: str = "") -> None:
        self._client = client
        self._token = token

    @classmethod
    async def login(cls, client: httpx.AsyncClient, token: str, username: str, password: str) -> AdminApi:
        """With `token`, else logged in as `username` (`POST /v1/auth/login`). `NoCredentials`
        without either; `AdminApiError` ("login as 'name' refused") when the login is refused."""
        if not token:
            if not password:
                raise NoCredentials
            answer = await client.post("/v1/auth/login", json={"username": username, "password": password})
            if answer.status_code != 200:
                raise AdminApiError.of(f"login as {username!r} refused", answer)
            token = answer.json()["access_token"]
        return cls(client, token)

    @property
    def _auth(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self._token}"}

    async def get(self, path: str, **params: Any) -> Any:
        """One GET's JSON; `AdminApiError` ("GET path") on an error answer."""
        answer = await self._client.get(path, params=params, headers=self._auth)
        if answer.status_code != 200:
            raise AdminApiError.of(f"GET {path}", answer)
        return answer.json()

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        """One POST's JSON; `AdminApiError` ("POST path") on an error answer."""
        answer = await self._client.post(path, json=body, headers=self._auth)
        if answer.status_code != 200:
            raise AdminApiError.of(f"POST {path}", answer)
        return answer.json()

    async def pages(self, path: str, key: str) -> list[dict[str, Any]]:
        """Every item (under `key`) of a paginated list, following `next_page_token`."""
        items: list[dict[str, Any]] = []
        token = ""
        while True:
            page = await self.get(path, page_size=PAGE_SIZE, page_token=token)
            items += page.get(key, [])
            token = page.get("next_page_token", "")
            if not token:
                return items
