"""budrt/admin_api.py: the admin REST client of `budrt cost` and `budrt bench` — login, the bearer
token on each request (not on the caller's client), paging, and error answers' messages."""

from __future__ import annotations

import httpx
import pytest

from budrt.admin_api import PAGE_SIZE, AdminApi, AdminApiError, NoCredentials, error_message

ITEMS = [{"id": f"p{i}"} for i in range(5)]


def _platform(seen: list[httpx.Request]) -> httpx.MockTransport:
    """A gateway: a login for admin/right, `/v1/projects` two items a page, an error answer elsewhere."""

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/v1/auth/login":
            if request.content == b'{"username":"admin","password":"right"}':
                return httpx.Response(200, json={"access_token": "tok"})
            return httpx.Response(401, json={"code": 16, "message": "bad credentials", "details": []})
        if request.headers.get("authorization") != "Bearer tok":
            return httpx.Response(401, json={"code": 16, "message": "no token"})
        if request.url.path == "/v1/projects":
            start = int(request.url.params["page_token"] or 0)
            page = {"projects": ITEMS[start : start + 2]}
            if start + 2 < len(ITEMS):
                page["next_page_token"] = str(start + 2)
            return httpx.Response(200, json=page)
        if request.url.path == "/v1/echo":
            return httpx.Response(200, json={"got": request.content.decode()})
        return httpx.Response(404, json={"code": 5, "message": f"no {request.url.path}"})

    return httpx.MockTransport(answer)


async def test_login_pages_and_the_token_on_each_request() -> None:
    seen: list[httpx.Request] = []
    async with httpx.AsyncClient(base_url="http://gw", transport=_platform(seen)) as client:
        api = await AdminApi.login(client, "", "admin", "right")
        assert await api.pages("/v1/projects", "projects") == ITEMS
        # Three pages, each asked with the page size and the previous page's token.
        pages = [r for r in seen if r.url.path == "/v1/projects"]
        assert [r.url.params["page_token"] for r in pages] == ["", "2", "4"]
        assert {r.url.params["page_size"] for r in pages} == {str(PAGE_SIZE)}
        assert (await api.post("/v1/echo", {"a": 1}))["got"] == '{"a":1}'
        # The caller's client is left as it was: the token travels per request.
        assert "authorization" not in client.headers
        with pytest.raises(AdminApiError, match=r"^GET /v1/nothing: no /v1/nothing$") as caught:
            await api.get("/v1/nothing")
        assert (caught.value.status_code, caught.value.message) == (404, "no /v1/nothing")
        # A token given is used as is: no login.
        seen.clear()
        assert await AdminApi.login(client, "tok", "admin", "") is not None and seen == []
        assert len(await AdminApi(client, "tok").pages("/v1/projects", "projects")) == len(ITEMS)
        with pytest.raises(AdminApiError, match="no token"):
            await AdminApi(client, "wrong").get("/v1/projects")


async def test_a_refused_login_and_no_credentials() -> None:
    async with httpx.AsyncClient(base_url="http://gw", transport=_platform([])) as client:
        with pytest.raises(AdminApiError, match=r"^login as 'admin' refused: bad credentials$") as caught:
            await AdminApi.login(client, "", "admin", "wrong")
        assert caught.value.status_code == 401
        with pytest.raises(NoCredentials):
            await AdminApi.login(client, "", "admin", "")


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (httpx.Response(400, json={"code": 3, "message": "bad page_size", "details": []}), "bad page_size"),
        (httpx.Response(429, json={"error": {"message": "slow down", "type": "rate_limit"}}), "slow down"),
        (httpx.Response(502, text="<html>bad gateway</html>"), None),
        (httpx.Response(500, json=["not", "an", "object"]), None),
        (httpx.Response(500, json={"error": "a bare string"}), None),
        (httpx.Response(500, json={"code": 13}), None),
    ],
)
def test_error_messages(answer: httpx.Response, message: str | None) -> None:
    assert error_message(answer) == message
    # Without a message, the text says the status.
    expected = message or f"HTTP {answer.status_code}"
    assert str(AdminApiError.of("GET /x", answer)) == f"GET /x: {expected}"
