"""The OpenAPI document of the gateway (gateway/openapi.py): every annotated route of every
fronted service is in it with its method, path and query parameters and body schema; it is valid
OpenAPI 3.1 (schemathesis's validator, which refuses a broken one); the JSON the gateway really
writes and reads validates against its schemas (responses, requests, both error dialects); and
it is served at GET /openapi.json without credentials."""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema
import orjson
import pytest
import schemathesis
from google.protobuf.descriptor import FieldDescriptor, ServiceDescriptor

from app.component import component as app_component
from bud.openai.v1 import chat_pb2, completion_pb2
from budrt.errors import Reason, invalid_argument, not_found
from budrt.json_face import from_python, to_python
from gateway.engines import EnginePool
from gateway.errors import OPENAI_ERRORS, STATUS_ERRORS
from gateway.http_rules import routes_for_service
from gateway.openai_service import OpenAiServicer
from gateway.openapi import (
    OPENAI_ERROR_SCHEMA,
    STATUS_ERROR_SCHEMA,
    DocumentedService,
    build_document,
    openapi_path,
)
from gateway.server import OPENAI_SERVICE, build_transcoder
from gateway.tables import RoutingTables
from prompt.component import component as prompt_component
from registry.component import component as registry_component
from tests.gateway.conftest import http_server

MANAGEMENT: list[ServiceDescriptor] = [
    *app_component.rest_services,
    *prompt_component.rest_services,
    *registry_component.rest_services,
]
SERVICES = [DocumentedService(OPENAI_SERVICE, True), *(DocumentedService(s, False) for s in MANAGEMENT)]


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return build_document(SERVICES)


def _validate(document: dict[str, Any], instance: Any, schema: dict[str, Any]) -> None:
    """Validates against a schema of the document (its $refs resolved in the document)."""
    jsonschema.Draft202012Validator({**schema, "components": document["components"]}).validate(instance)


def _message(document: dict[str, Any], full_name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{full_name}"}


def test_every_annotated_route_is_an_operation_with_its_parameters_and_body(document: dict[str, Any]) -> None:
    count = 0
    for service in SERVICES:
        for route in routes_for_service(service.descriptor):
            count += 1
            op = document["paths"][openapi_path(route.template)][route.http_method.lower()]
            params = {(p["in"], p["name"]): p for p in op["parameters"]}
            path_params = sorted(name for (where, name) in params if where == "path")
            assert path_params == sorted(v.field_path.replace(".", "_") for v in route.variables), (
                route.template
            )
            query = {name for (where, name) in params if where == "query"}
            request = route.method.input_type
            bound = {v.field_path for v in route.variables}
            if route.body == "*":
                assert not query  # body "*": every field comes from the body
                body = op["requestBody"]["content"]["application/json"]["schema"]
                resolved = document["components"]["schemas"][request.full_name]
                if "$ref" in body:  # nothing bound by the path: the message itself
                    assert not bound and body["$ref"].endswith(request.full_name)
                    body = resolved
                expected = set(resolved["properties"]) - bound
                assert set(body["properties"]) == expected, route.template
            elif route.body:
                body = op["requestBody"]["content"]["application/json"]["schema"]
                assert body == {
                    "$ref": f"#/components/schemas/{request.fields_by_name[route.body].message_type.full_name}"
                }
            else:
                assert "requestBody" not in op
                # Every scalar top-level field the path leaves unbound is a query parameter.
                scalars = {
                    fd.name
                    for fd in request.fields
                    if fd.type != FieldDescriptor.TYPE_MESSAGE and fd.name not in bound
                }
                assert scalars <= query, (route.template, scalars - query)
            error = op["responses"]["default"]["content"]["application/json"]["schema"]["$ref"]
            assert error.endswith(OPENAI_ERROR_SCHEMA if service.openai_dialect else STATUS_ERROR_SCHEMA)
            assert ("text/event-stream" in op["responses"]["200"]["content"]) == (
                route.server_streaming or route.sse is not None
            )
    operations = sum(len(item) for item in document["paths"].values())
    assert operations == count and count > 40


def test_specific_routes(document: dict[str, Any]) -> None:
    # `{model=**}` loses its pattern; a dotted variable is named with underscores.
    assert "/v1/models/{model}" in document["paths"]
    patch = document["paths"]["/v1/projects/{project_id}"]["patch"]
    (path_param,) = [p for p in patch["parameters"] if p["in"] == "path"]
    assert path_param["x-field-path"] == "project.id"
    assert {p["name"] for p in patch["parameters"] if p["in"] == "query"} >= {"update_mask"}
    # Paging parameters of a list route, typed, with the int32 range of the field.
    listing = document["paths"]["/v1/projects"]["get"]
    page_size = next(p for p in listing["parameters"] if p["name"] == "page_size")
    assert page_size["schema"]["type"] == "integer" and page_size["schema"]["maximum"] == 2**31 - 1
    # Login needs no credentials; OpenAI routes take a key, the others a JWT.
    assert document["paths"]["/v1/auth/login"]["post"]["security"] == []
    assert document["paths"]["/v1/chat/completions"]["post"]["security"] == [{"apiKey": []}]
    assert listing["security"] == [{"accessToken": []}]
    # OpenAI messages ignore unknown fields, management ones refuse them.
    schemas = document["components"]["schemas"]
    assert "additionalProperties" not in schemas["bud.openai.v1.ChatCompletionRequest"]
    assert schemas["bud.app.v1.Project"]["additionalProperties"] is False


def test_streams_are_described_per_event(document: dict[str, Any]) -> None:
    chat = document["paths"]["/v1/chat/completions"]["post"]["responses"]["200"]["content"]
    assert set(chat) == {"application/json", "text/event-stream"}  # `stream` picks one
    data = chat["text/event-stream"]["schema"]["properties"]["data"]
    done, json_data = data["anyOf"]
    assert done == {"const": "[DONE]"}
    assert json_data["contentSchema"]["anyOf"] == [
        {"$ref": "#/components/schemas/bud.openai.v1.ChatCompletionChunk"},
        {"$ref": f"#/components/schemas/{OPENAI_ERROR_SCHEMA}"},
    ]
    # The Responses API names its events; its error event has a shape of its own.
    responses = document["paths"]["/v1/responses"]["post"]["responses"]["200"]["content"]["text/event-stream"]
    assert "event" in responses["schema"]["properties"]
    assert responses["schema"]["properties"]["data"]["anyOf"][0]["contentSchema"]["anyOf"][1] == {
        "$ref": "#/components/schemas/OpenAIStreamError"
    }


def test_the_document_is_valid_openapi_and_a_broken_one_is_not(document: dict[str, Any]) -> None:
    schema = schemathesis.openapi.from_dict(document)
    schema.validate()
    operations = [result.ok() for result in schema.get_all_operations()]  # each one loads
    assert len(operations) == sum(len(item) for item in document["paths"].values())
    broken = {**document, "paths": {"/x": {"get": {"responses": "nope"}}}}
    with pytest.raises(Exception, match="nope|is not of type"):
        schemathesis.openapi.from_dict(broken).validate()


def test_the_json_the_gateway_writes_and_reads_fits_the_schemas(document: dict[str, Any]) -> None:
    # A request with the OpenAI dialect's shapes: content parts, a stop list, a named tool choice,
    # raw tool parameters, a null.
    request = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        ],
        "stop": ["\n", "END"],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "temperature": None,
        "max_tokens": 5,
    }
    from_python(request, chat_pb2.ChatCompletionRequest(), lenient=True)  # the gateway accepts it
    _validate(document, request, _message(document, "bud.openai.v1.ChatCompletionRequest"))
    # An answer as json_face writes it: every field, nulls where unset, int64 as numbers.
    answer = chat_pb2.ChatCompletion(id="c", created=1, model="m")
    choice = answer.choices.add(index=0, finish_reason="stop")
    choice.message.role = "assistant"
    choice.message.content = "hello"
    answer.usage.prompt_tokens = 1
    _validate(
        document,
        orjson.loads(orjson.dumps(to_python(answer))),
        _message(document, "bud.openai.v1.ChatCompletion"),
    )
    # A bare string prompt and a list of token ids both fit the completion request's `prompt`.
    for prompt in ("hi", [1, 2, 3]):
        body = {"model": "m", "prompt": prompt}
        from_python(body, completion_pb2.CompletionRequest(), lenient=True)
        _validate(document, body, _message(document, "bud.openai.v1.CompletionRequest"))
    with pytest.raises(jsonschema.ValidationError):
        _validate(
            document, {"model": "m", "stop": 5}, _message(document, "bud.openai.v1.ChatCompletionRequest")
        )


def test_both_error_dialects_fit_their_schemas(document: dict[str, Any]) -> None:
    err = invalid_argument("bad 'x'", param="x")
    _validate(document, orjson.loads(OPENAI_ERRORS.body(err)), _message(document, OPENAI_ERROR_SCHEMA))
    _validate(document, orjson.loads(STATUS_ERRORS.body(err)), _message(document, STATUS_ERROR_SCHEMA))
    gone = not_found("no such thing", reason=Reason.UNKNOWN_URL)
    _validate(document, orjson.loads(OPENAI_ERRORS.body(gone)), _message(document, OPENAI_ERROR_SCHEMA))
    with pytest.raises(jsonschema.ValidationError):  # one dialect is not the other
        _validate(document, orjson.loads(STATUS_ERRORS.body(err)), _message(document, OPENAI_ERROR_SCHEMA))


async def test_served_at_openapi_json_without_credentials() -> None:
    tables = RoutingTables()
    pool = EnginePool()
    servicer = OpenAiServicer(tables, pool, "secret", usage=None, limiter=None)
    transcoder = build_transcoder(servicer, tables)
    async with http_server(transcoder) as url, httpx.AsyncClient(base_url=url) as client:
        r = await client.get("/openapi.json")
    await pool.close()
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    served = r.json()
    assert served == orjson.loads(orjson.dumps(build_document([DocumentedService(OPENAI_SERVICE, True)])))
    assert served["openapi"].startswith("3.1") and "/v1/chat/completions" in served["paths"]
