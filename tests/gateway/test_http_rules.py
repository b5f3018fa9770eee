"""Unit tests of gateway/http_rules.py (google.api.http rules → routes) and of how the
transcoder applies a route to a request (path variables, query parameters, `body`,
`response_body`, 404/405), over services described in the test itself and driven in process."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import orjson
import pytest
from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2, descriptor_pool, wrappers_pb2  # noqa: F401  (a test-proto import)
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message

from bud.api.v1 import json_pb2
from bud.openai.v1 import openai_service_pb2
from gateway.http_rules import Route, Router, compile_template, routes_for_service
from gateway.transcoder import FrontedService, Transcoder

_files = itertools.count()

Rule = http_pb2.HttpRule


def make_service(
    methods: dict[str, Rule | None],
    sse: dict[str, json_pb2.ServerSentEvents] | None = None,
    streaming: Sequence[str] = (),
) -> ServiceDescriptor:
    """A service `S` of a fresh proto package whose methods take and return `Msg`:

    message Msg { string name = 1; int64 id = 2; bool flag = 3; repeated string tags = 4;
                  Kind kind = 5; Parent parent = 6; Payload payload = 7;
                  google.protobuf.Int32Value count = 8; }
    message Parent { string child = 1; }   message Payload { string text = 1; }
    enum Kind { KIND_UNSPECIFIED = 0; KIND_BIG = 1; }
    """
    package = f"bud.testing.rules{next(_files)}"
    fdp = descriptor_pb2.FileDescriptorProto(
        name=f"{package.replace('.', '/')}.proto",
        package=package,
        syntax="proto3",
        dependency=[
            "google/api/annotations.proto",
            "bud/api/v1/json.proto",
            "google/protobuf/wrappers.proto",
        ],
    )
    F = descriptor_pb2.FieldDescriptorProto
    kind = fdp.enum_type.add(name="Kind")
    kind.value.add(name="KIND_UNSPECIFIED", number=0)
    kind.value.add(name="KIND_BIG", number=1)
    fdp.message_type.add(name="Parent").field.add(
        name="child", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL
    )
    fdp.message_type.add(name="Payload").field.add(
        name="text", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL
    )
    msg = fdp.message_type.add(name="Msg")
    for number, (name, type_, type_name, label) in enumerate(
        [
            ("name", F.TYPE_STRING, "", F.LABEL_OPTIONAL),
            ("id", F.TYPE_INT64, "", F.LABEL_OPTIONAL),
            ("flag", F.TYPE_BOOL, "", F.LABEL_OPTIONAL),
            ("tags", F.TYPE_STRING, "", F.LABEL_REPEATED),
            ("kind", F.TYPE_ENUM, f".{package}.Kind", F.LABEL_OPTIONAL),
            ("parent", F.TYPE_MESSAGE, f".{package}.Parent", F.LABEL_OPTIONAL),
            ("payload", F.TYPE_MESSAGE, f".{package}.Payload", F.LABEL_OPTIONAL),
            ("count", F.TYPE_MESSAGE, ".google.protobuf.Int32Value", F.LABEL_OPTIONAL),
        ],
        start=1,
    ):
        field = msg.field.add(name=name, number=number, type=type_, label=label, json_name=name)
        if type_name:
            field.type_name = type_name
    service = fdp.service.add(name="S")
    for name, rule in methods.items():
        method = service.method.add(
            name=name,
            input_type=f".{package}.Msg",
            output_type=f".{package}.Msg",
            server_streaming=name in streaming,
        )
        if rule is not None:
            method.options.Extensions[annotations_pb2.http].CopyFrom(rule)
        if sse and name in sse:
            method.options.Extensions[json_pb2.sse].CopyFrom(sse[name])
    pool = descriptor_pool.Default()
    pool.AddSerializedFile(fdp.SerializeToString())
    return pool.FindServiceByName(f"{package}.S")


def route_of(template: str, verb: str = "get") -> Route:
    """The one route of a service whose method `M` binds `verb template`."""
    (route,) = routes_for_service(make_service({"M": Rule(**{verb: template})}))
    return route


# ---- templates ------------------------------------------------------------------------------------
def test_literal_template_is_matched_by_lookup_not_regex() -> None:
    regex, variables, literals = compile_template("/v1/chat/completions")
    assert (regex, variables, literals) == (None, [], 3)
    route = route_of("/v1/chat/completions")
    assert route.match("/v1/chat/completions") == {}
    assert route.match("/v1/chat/completions/") is None


def test_template_must_start_with_a_slash() -> None:
    with pytest.raises(ValueError, match="must start with '/'"):
        compile_template("v1/things")


def test_single_segment_variable_binds_one_decoded_segment() -> None:
    route = route_of("/v1/things/{name}")
    assert [(v.field_path, v.multi_segment) for v in route.variables] == [("name", False)]
    assert route.literal_segments == 2
    assert route.match("/v1/things/abc") == {"name": "abc"}
    assert route.match("/v1/things/a%20b") == {"name": "a b"}
    assert route.match("/v1/things/a%2Fb") == {"name": "a/b"}  # one segment, decoded in full
    assert route.match("/v1/things/a/b") is None
    assert route.match("/v1/things/") is None


def test_variable_with_a_pattern_binds_a_nested_field() -> None:
    route = route_of("/v1/{parent.child=shelves/*/books/*}")
    assert [v.field_path for v in route.variables] == ["parent.child"]
    assert route.match("/v1/shelves/s1/books/b2") == {"parent.child": "shelves/s1/books/b2"}
    assert route.match("/v1/shelves/s1") is None
    assert route.match("/v1/shelves/s1/books/b2/pages/3") is None


def test_double_star_spans_segments_and_keeps_encoded_slashes() -> None:
    route = route_of("/v1/models/{name=**}")
    assert [(v.field_path, v.multi_segment) for v in route.variables] == [("name", True)]
    assert route.match("/v1/models/org/model-7") == {"name": "org/model-7"}
    # `**` values keep %2F encoded (google.api.http), other escapes are decoded.
    assert route.match("/v1/models/a%2Fb%20c") == {"name": "a%2Fb c"}
    assert route.match("/v1/models/a%2fb") == {"name": "a%2fb"}
    assert route.match("/v1/models") is None


def test_wildcards_without_a_variable_make_a_pattern() -> None:
    regex, variables, literals = compile_template("/v1/*/items")
    assert regex is not None and variables == [] and literals == 2
    assert regex.fullmatch("/v1/anything/items") is not None
    assert regex.fullmatch("/v1/a/b/items") is None


def test_verb_suffix_is_literal_and_counts_as_a_literal_segment() -> None:
    route = route_of("/v1/things/{name}:cancel", "post")
    assert route.literal_segments == 3
    assert route.match("/v1/things/t1:cancel") == {"name": "t1"}
    assert route.match("/v1/things/t1") is None
    assert route.match("/v1/things/t1:other") is None
    # A literal path with a verb stays a literal (its verb still counts).
    assert compile_template("/v1/things:batchGet") == (None, [], 3)


def test_colon_inside_a_variable_pattern_is_not_a_verb() -> None:
    route = route_of("/v1/{name=things/a:b}")
    assert route.match("/v1/things/a:b") == {"name": "things/a:b"}
    assert route.literal_segments == 1


def test_several_variables_in_one_template() -> None:
    route = route_of("/v1/projects/{parent.child}/things/{name}:run", "post")
    assert route.match("/v1/projects/p%201/things/t:run") == {"parent.child": "p 1", "name": "t"}


# ---- rules of a service ---------------------------------------------------------------------------
def test_each_http_verb_and_custom_kinds() -> None:
    service = make_service(
        {
            "Get": Rule(get="/a"),
            "Post": Rule(post="/b", body="*"),
            "Put": Rule(put="/c", body="payload"),
            "Patch": Rule(patch="/d", body="*"),
            "Delete": Rule(delete="/e"),
            "Custom": Rule(custom=http_pb2.CustomHttpPattern(kind="head", path="/f")),
            "NotAnnotated": None,
        }
    )
    routes = {r.method.name: r for r in routes_for_service(service)}
    assert {name: (r.http_method, r.template, r.body) for name, r in routes.items()} == {
        "Get": ("GET", "/a", ""),
        "Post": ("POST", "/b", "*"),
        "Put": ("PUT", "/c", "payload"),
        "Patch": ("PATCH", "/d", "*"),
        "Delete": ("DELETE", "/e", ""),
        "Custom": ("HEAD", "/f", ""),
    }
    assert all(r.service is service and r.sse is None for r in routes.values())


def test_additional_bindings_inherit_the_body_unless_they_name_one() -> None:
    rule = Rule(post="/v1/things", body="*", response_body="payload")
    rule.additional_bindings.add(post="/v1/other-things")
    rule.additional_bindings.add(put="/v1/things/{name}", body="payload")
    rule.additional_bindings.add(get="/v1/things/{name}")
    routes = routes_for_service(make_service({"M": rule}))
    assert [(r.http_method, r.template, r.body, r.response_body) for r in routes] == [
        ("POST", "/v1/things", "*", "payload"),
        ("POST", "/v1/other-things", "*", ""),
        ("PUT", "/v1/things/{name}", "payload", ""),
        ("GET", "/v1/things/{name}", "*", ""),
    ]


def test_rule_without_a_pattern_is_refused() -> None:
    with pytest.raises(ValueError, match="without a pattern"):
        routes_for_service(make_service({"M": Rule(body="*")}))


def test_sse_options_resolve_their_streaming_method() -> None:
    service = make_service(
        {"Create": Rule(post="/v1/create", body="*"), "Stream": None},
        sse={"Create": json_pb2.ServerSentEvents(method="Stream", when_field="stream", done_data="[DONE]")},
        streaming=["Stream"],
    )
    (route,) = routes_for_service(service)
    assert route.sse is not None and route.sse.method is service.methods_by_name["Stream"]
    assert (route.sse.when_field, route.sse.done_data, route.sse.event_field) == ("stream", "[DONE]", "")
    assert not route.server_streaming


@pytest.mark.parametrize("target", ["Unary", "Missing"])
def test_sse_method_must_be_a_server_streaming_method(target: str) -> None:
    service = make_service(
        {"Create": Rule(post="/v1/create", body="*"), "Unary": None},
        sse={"Create": json_pb2.ServerSentEvents(method=target, when_field="stream")},
    )
    with pytest.raises(ValueError, match=f"sse.method '{target}' is not a server-streaming method"):
        routes_for_service(service)


def test_openai_routes_name_response_events_by_their_type() -> None:
    service = openai_service_pb2.DESCRIPTOR.services_by_name["OpenAiService"]
    routes = {(r.http_method, r.template): r for r in routes_for_service(service)}
    responses = routes[("POST", "/v1/responses")]
    assert responses.sse is not None and responses.sse.method is not None
    assert (
        responses.sse.method.name,
        responses.sse.when_field,
        responses.sse.event_field,
        responses.sse.done_data,
    ) == ("StreamResponse", "stream", "type", "")
    chat = routes[("POST", "/v1/chat/completions")]
    assert chat.sse is not None and (chat.sse.event_field, chat.sse.done_data) == ("", "[DONE]")
    assert routes[("GET", "/v1/models/{model=**}")].match("/v1/models/org/m") == {"model": "org/m"}


# ---- the router -----------------------------------------------------------------------------------
def _router(methods: dict[str, Rule]) -> tuple[Router, ServiceDescriptor]:
    service = make_service(dict(methods))
    return Router(routes_for_service(service)), service


def test_router_prefers_the_most_literal_template() -> None:
    router, _ = _router(
        {
            "Any": Rule(get="/v1/{name=**}"),
            "Items": Rule(get="/v1/items/{name}"),
            "Exact": Rule(get="/v1/items/special"),
        }
    )

    def found(path: str) -> tuple[str, dict[str, str]] | None:
        hit = router.find("GET", path)
        return (hit[0].method.name, hit[1]) if hit else None

    assert found("/v1/items/special") == ("Exact", {})
    assert found("/v1/items/7") == ("Items", {"name": "7"})
    assert found("/v1/other/7") == ("Any", {"name": "other/7"})
    assert found("/elsewhere") is None
    assert router.paths == {"/v1/{name=**}", "/v1/items/{name}", "/v1/items/special"}


def test_router_tries_the_verb_before_the_bare_variable() -> None:
    router, _ = _router(
        {"Get": Rule(post="/v1/things/{name}", body="*"), "Cancel": Rule(post="/v1/things/{name}:cancel")}
    )
    hit = router.find("POST", "/v1/things/t1:cancel")
    assert hit is not None and (hit[0].method.name, hit[1]) == ("Cancel", {"name": "t1"})
    hit = router.find("POST", "/v1/things/t1")
    assert hit is not None and (hit[0].method.name, hit[1]) == ("Get", {"name": "t1"})


def test_router_refuses_two_rpcs_on_one_literal_path() -> None:
    service = make_service({"A": Rule(get="/v1/same"), "B": Rule(get="/v1/same")})
    with pytest.raises(ValueError, match="two RPCs bind GET /v1/same"):
        Router(routes_for_service(service))


def test_router_allows_lists_the_methods_of_a_path() -> None:
    router, _ = _router(
        {
            "Get": Rule(get="/v1/things/{name}"),
            "Del": Rule(delete="/v1/things/{name}"),
            "List": Rule(get="/v1/things"),
            "Make": Rule(post="/v1/things", body="*"),
        }
    )
    assert router.find("PUT", "/v1/things/x") is None
    assert router.allows("/v1/things/x") == ["DELETE", "GET"]
    assert router.allows("/v1/things") == ["GET", "POST"]
    assert router.allows("/v1/nothing") == []


# ---- the rules applied to requests (the transcoder, in process) ------------------------------------
class EchoBackend:
    """Answers every unary call with its request (methods here take and return `Msg`)."""

    def __init__(self) -> None:
        self.requests: list[Message] = []

    async def unary(
        self, method: MethodDescriptor, request: Message, metadata: Any, response_metadata: Any
    ) -> Message:
        self.requests.append(request)
        return request


async def call(app: Transcoder, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """One HTTP request through the ASGI app: status and decoded JSON."""
    raw_path, _, query = path.partition("?")
    scope = {
        "type": "http",
        "method": method,
        "path": raw_path,
        "raw_path": raw_path.encode(),
        "query_string": query.encode(),
        "headers": [],
    }
    payload = b"" if body is None else orjson.dumps(body)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": payload, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    status = sent[0]["status"]
    data = b"".join(m.get("body", b"") for m in sent[1:])
    return status, orjson.loads(data)


@pytest.fixture
def echo() -> tuple[Transcoder, EchoBackend]:
    service = make_service(
        {
            "Get": Rule(get="/v1/things/{name}"),
            "Create": Rule(
                post="/v1/{parent.child=shelves/*}/things", body="payload", response_body="payload"
            ),
            "Replace": Rule(put="/v1/things/{name}", body="*"),
        }
    )
    backend = EchoBackend()
    return Transcoder([FrontedService(service, backend)]), backend  # type: ignore[arg-type]


async def test_query_parameters_fill_scalars_repeated_enums_wrappers_and_nested_fields(echo: Any) -> None:
    app, backend = echo
    status, body = await call(
        app, "GET", "/v1/things/t%201?id=42&flag&tags=a&tags=b&kind=KIND_BIG&parent.child=c&count=3"
    )
    assert status == 200
    assert body == {
        "name": "t 1",
        "id": 42,
        "flag": True,
        "tags": ["a", "b"],
        "kind": "KIND_BIG",
        "parent": {"child": "c"},
        "count": 3,
    }
    assert backend.requests[-1].kind == 1


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("nope=1", "nope"),
        ("id=x", "id"),
        ("flag=maybe", "flag"),
        ("payload=x", "payload"),
        ("tags.x=1", "tags.x"),
    ],
)
async def test_bad_query_parameters_are_invalid_arguments(echo: Any, query: str, param: str) -> None:
    app, backend = echo
    status, body = await call(app, "GET", f"/v1/things/t?{query}")
    assert status == 400
    # A management-dialect service: google.rpc.Status JSON with the field in BadRequest.
    assert body["code"] == 3  # INVALID_ARGUMENT
    violations = [
        v
        for d in body["details"]
        if d["@type"].endswith("google.rpc.BadRequest")
        for v in d["fieldViolations"]
    ]
    assert [v["field"] for v in violations] == [param]
    assert backend.requests == []


async def test_body_field_and_response_body(echo: Any) -> None:
    app, backend = echo
    status, body = await call(app, "POST", "/v1/shelves/s1/things?name=q", {"text": "hello"})
    assert status == 200
    assert body == {"text": "hello"}  # response_body: only the payload field
    request = backend.requests[-1]
    assert (request.parent.child, request.payload.text, request.name) == ("shelves/s1", "hello", "q")


async def test_star_body_ignores_the_query_and_the_path_wins(echo: Any) -> None:
    app, backend = echo
    status, body = await call(app, "PUT", "/v1/things/from-path?id=9&tags=q", {"name": "from-body", "id": 5})
    assert status == 200
    assert (body["name"], body["id"]) == ("from-path", 5)
    assert not backend.requests[-1].tags  # nothing of the query was read


async def test_unknown_path_is_404_and_wrong_method_is_405(echo: Any) -> None:
    app, _ = echo
    status, body = await call(app, "GET", "/v1/elsewhere")
    assert status == 404 and "Unknown request URL: GET /v1/elsewhere" in body["error"]["message"]
    status, body = await call(app, "DELETE", "/v1/things/t")
    assert status == 405 and "Method DELETE not allowed" in body["error"]["message"]
