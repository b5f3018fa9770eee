"""The transcoder serves any annotated service without gateway code: a proto compiled only by the
tests gets its REST routes (path variables, `**`, `:verb`, custom verbs, body field, query
parameters, response_body, additional_bindings, SSE) both in-process and over real gRPC. Its errors
are google.rpc.Status JSON (a management-dialect service); fronted as an OpenAI-dialect service,
OpenAI error JSON."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import orjson
import pytest

from budrt.errors import ERROR_DOMAIN, ServiceError, not_found
from budrt.grpc_server import GrpcServer, ServiceBinding, service_channel
from gateway.backends import LocalBackend, RemoteBackend
from gateway.transcoder import FrontedService, Transcoder
from tests.gateway.conftest import http_server
from tests.support.mesh import free_port


def make_servicer(pb2: Any, pb2_grpc: Any) -> Any:
    class Library(pb2_grpc.LibraryServiceServicer):
        async def GetShelf(self, request: Any, context: Any) -> Any:
            if request.shelf_id == "missing":
                raise not_found("no such shelf", reason="SHELF_NOT_FOUND", param="shelf_id")
            shelf = pb2.Shelf(id=request.shelf_id, theme="sea", book_count=0)
            shelf.create_time.FromSeconds(1_700_000_000)
            return shelf

        async def ListBooks(self, request: Any, context: Any) -> Any:
            books = [
                pb2.Book(
                    id=f"b{i}",
                    title=f"t{i}",
                    authors=list(request.author),
                    genre=request.genre,
                    shelf_id=request.shelf_id,
                )
                for i in range(request.page_size)
            ]
            if request.HasField("read_mask"):  # echo the well-known query parameters
                token = f"{','.join(request.read_mask.paths)}@{request.since.seconds}"
            else:
                token = "yes" if request.include_archived else ""
            return pb2.ListBooksResponse(books=books, next_page_token=token)

        async def CreateBook(self, request: Any, context: Any) -> Any:
            book = pb2.Book()
            book.CopyFrom(request.book)
            book.shelf_id = request.shelf_id
            md = dict(context.invocation_metadata())
            book.id = md.get("x-request-id", "")
            return book

        async def GetBookTitle(self, request: Any, context: Any) -> Any:
            return pb2.Book(id=request.name, title=f"title of {request.name}")

        async def MoveBook(self, request: Any, context: Any) -> Any:
            return pb2.Book(id=request.book.id, shelf_id=request.to_shelf, isbn="123")

        async def WatchShelf(self, request: Any, context: Any) -> AsyncIterator[Any]:
            for i in range(request.count):
                yield pb2.Book(id=f"{request.shelf_id}-{i}")
            if request.fail_after:
                raise ServiceError(grpc.StatusCode.UNAVAILABLE, "shelf went away", reason="SHELF_GONE")

        async def Search(self, request: Any, context: Any) -> Any:
            return pb2.ListBooksResponse(books=[pb2.Book(id="found", title=request.query)])

        async def StreamSearch(self, request: Any, context: Any) -> AsyncIterator[Any]:
            yield pb2.SearchEvent(type="search.started")
            yield pb2.SearchEvent(type="search.hit", book=pb2.Book(id="found", title=request.query))

    return Library()


ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"


def field_at_fault(body: dict[str, Any]) -> str:
    """The field of a google.rpc.Status body's BadRequest detail."""
    [bad] = [d for d in body["details"] if d["@type"] == BAD_REQUEST]
    return bad["fieldViolations"][0]["field"]


@contextlib.asynccontextmanager
async def serve_library(
    library: tuple[Any, Any], remote: bool, openai_dialect: bool = False
) -> AsyncIterator[str]:
    pb2, pb2_grpc = library
    descriptor = pb2.DESCRIPTOR.services_by_name["LibraryService"]
    servicer = make_servicer(pb2, pb2_grpc)
    binding = ServiceBinding(servicer, pb2_grpc.add_LibraryServiceServicer_to_server, descriptor)
    if remote:
        server = GrpcServer(f"127.0.0.1:{free_port()}", [binding])
        await server.start()
        channel = service_channel(server.address)
        backend: Any = RemoteBackend(channel)
    else:
        backend = LocalBackend(servicer, descriptor)  # through the interceptors the gRPC face applies
    try:
        async with http_server(
            Transcoder([FrontedService(descriptor, backend, lenient=openai_dialect)])
        ) as url:
            yield url
    finally:
        if remote:
            await channel.close()
            await server.stop(0)


@pytest.fixture(params=["local", "remote"])
async def base_url(request: pytest.FixtureRequest, library: tuple[Any, Any]) -> AsyncIterator[str]:
    async with serve_library(library, request.param == "remote") as url:
        yield url


async def test_path_variables_and_additional_bindings(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url) as client:
        for path in ("/v1/shelves/s%201", "/v1/legacy/shelf/s%201"):
            r = await client.get(path)
            assert r.status_code == 200, r.text
            assert r.json() == {
                "id": "s 1",
                "theme": "sea",
                "book_count": 0,
                "create_time": "2023-11-14T22:13:20Z",
            }


async def test_query_parameters_repeated_enum_bool(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url) as client:
        r = await client.get(
            "/v1/shelves/s1/books?page_size=2&author=ann&author=bob&genre=GENRE_SCIENCE&include_archived=true"
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert [b["authors"] for b in body["books"]] == [["ann", "bob"], ["ann", "bob"]]
        assert body["books"][0]["genre"] == "GENRE_SCIENCE"
        assert body["books"][0]["isbn"] is None  # null_if_unset
        assert body["next_page_token"] == "yes"
        r = await client.get("/v1/shelves/s1/books?page_size=many")
        assert r.status_code == 400
        assert field_at_fault(r.json()) == "page_size"
        r = await client.get("/v1/shelves/s1/books?nope=1")
        assert r.status_code == 400 and field_at_fault(r.json()) == "nope"
        # Well-known types with a string JSON form: FieldMask (comma-separated, or repeated) and Timestamp.
        r = await client.get(
            "/v1/shelves/s1/books?read_mask=title,authors&read_mask=genre&since=2023-11-14T22:13:20Z"
        )
        assert r.status_code == 200 and r.json()["next_page_token"] == "title,authors,genre@1700000000", (
            r.text
        )
        r = await client.get("/v1/shelves/s1/books?since=yesterday")
        assert r.status_code == 400 and field_at_fault(r.json()) == "since"


async def test_body_field_and_request_id_metadata(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url) as client:
        r = await client.post(
            "/v1/shelves/s9/books",
            json={"title": "Dune", "authors": ["Herbert"]},
            headers={"x-request-id": "req-42"},
        )
        assert r.status_code == 200, r.text
        assert r.headers["x-request-id"] == "req-42"
        assert r.json()["shelf_id"] == "s9" and r.json()["id"] == "req-42" and r.json()["title"] == "Dune"
        r = await client.post("/v1/shelves/s9/books", json={"title": 5})
        assert r.status_code == 400
        message = "'book.title' must be a string"
        assert r.json() == {
            "code": 3,
            "message": message,
            "details": [
                {"@type": ERROR_INFO, "reason": "INVALID_ARGUMENT", "domain": ERROR_DOMAIN, "metadata": {}},
                {
                    "@type": BAD_REQUEST,
                    "fieldViolations": [{"field": "book.title", "description": message, "reason": ""}],
                },
            ],
        }
        r = await client.post("/v1/shelves/s9/books", content=b"{not json")
        assert r.status_code == 400 and "JSON" in r.json()["message"]


async def test_multi_segment_variable_verb_and_response_body(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url) as client:
        r = await client.get("/v1/shelves/s1/books/a/b%2Fc:title")
        assert r.status_code == 200, r.text
        # `**` keeps %2F encoded; response_body answers only that field.
        assert r.json() == "title of shelves/s1/books/a/b%2Fc"


async def test_custom_verb_with_nested_path_field(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url) as client:
        r = await client.request("MOVE", "/v1/books/b7", json={"to_shelf": "s2"})
        assert r.status_code == 200, r.text
        assert r.json()["id"] == "b7" and r.json()["shelf_id"] == "s2" and r.json()["isbn"] == "123"


async def test_errors_map_to_http_status_and_google_rpc_status_shape(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url) as client:
        r = await client.get("/v1/shelves/missing")
        assert r.status_code == 404 and r.headers["content-type"] == "application/json"
        assert r.json() == {
            "code": 5,
            "message": "no such shelf",
            "details": [
                {"@type": ERROR_INFO, "reason": "SHELF_NOT_FOUND", "domain": ERROR_DOMAIN, "metadata": {}},
                {
                    "@type": BAD_REQUEST,
                    "fieldViolations": [{"field": "shelf_id", "description": "no such shelf", "reason": ""}],
                },
            ],
        }
        # A URL no service serves has no dialect of its own: OpenAI's.
        r = await client.get("/v1/nowhere")
        assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_url"
        r = await client.delete("/v1/shelves/s1")
        assert r.status_code == 405 and r.headers["allow"] == "GET"


async def test_server_streaming_is_sse_and_error_is_a_last_event(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url) as client:
        r = await client.get("/v1/shelves/s1:watch?count=2")
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.text.split("\n\n") if line]
        assert [orjson.loads(e.removeprefix("data: "))["id"] for e in events] == ["s1-0", "s1-1"]
        r = await client.get("/v1/shelves/s1:watch?count=1&fail_after=true")
        assert r.status_code == 200
        events = [line for line in r.text.split("\n\n") if line]
        assert len(events) == 2
        # grpc-gateway's error chunk: the Status under "error".
        assert orjson.loads(events[-1].removeprefix("data: ")) == {
            "error": {
                "code": 14,
                "message": "shelf went away",
                "details": [
                    {"@type": ERROR_INFO, "reason": "SHELF_GONE", "domain": ERROR_DOMAIN, "metadata": {}}
                ],
            }
        }
        # Failing before the first event: a plain HTTP error with the mapped status.
        r = await client.get("/v1/shelves/s1:watch?count=0&fail_after=true")
        assert r.status_code == 503 and r.json()["details"][0]["reason"] == "SHELF_GONE"


async def test_openai_dialect_errors_are_openai_json(library: tuple[Any, Any]) -> None:
    async with serve_library(library, remote=False, openai_dialect=True) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            r = await client.get("/v1/shelves/missing")
            assert r.status_code == 404
            assert r.json() == {
                "error": {
                    "message": "no such shelf",
                    "type": "not_found_error",
                    "param": "shelf_id",
                    "code": "shelf_not_found",
                }
            }
            r = await client.post("/v1/shelves/s9/books", json={"title": 5})
            assert r.status_code == 400
            assert r.json() == {
                "error": {
                    "message": "'book.title' must be a string",
                    "type": "invalid_request_error",
                    "param": "book.title",
                    "code": "invalid_argument",
                }
            }
            r = await client.get("/v1/shelves/s1:watch?count=1&fail_after=true")
            events = [line for line in r.text.split("\n\n") if line]
            assert orjson.loads(events[-1].removeprefix("data: ")) == {
                "error": {
                    "message": "shelf went away",
                    "type": "service_unavailable_error",
                    "param": None,
                    "code": "shelf_gone",
                }
            }
            r = await client.get("/v1/shelves/s1:watch?count=0&fail_after=true")
            assert r.status_code == 503 and r.json()["error"]["code"] == "shelf_gone"


async def test_sse_switch_on_body_field_with_named_events(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url) as client:
        r = await client.post("/v1/search", json={"query": "moby"})
        assert r.json() == {
            "books": [
                {
                    "id": "found",
                    "title": "moby",
                    "authors": [],
                    "isbn": None,
                    "genre": "GENRE_UNSPECIFIED",
                    "shelf_id": "",
                }
            ],
            "next_page_token": "",
        }
        r = await client.post("/v1/search", json={"query": "moby", "stream": True})
        assert r.headers["content-type"].startswith("text/event-stream")
        frames = [f for f in r.text.split("\n\n") if f]
        assert frames[0] == 'event: search.started\ndata: {"type":"search.started"}'
        assert frames[1].startswith("event: search.hit\ndata: ")
        assert frames[-1] == "data: [DONE]"
