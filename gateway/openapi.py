"""The OpenAPI 3.1 document of the gateway's HTTP face, generated from what the transcoder serves:
the services' `google.api.http` routes (gateway/http_rules.py, as grpc-gateway's
`protoc-gen-openapiv2` reads them) and the JSON face of their messages (budrt/json_face.py: proto
field names, int64 as numbers, enums as their names, inline oneofs as one key of several kinds,
`unwrap` messages as bare arrays/objects, `raw` fields as any JSON, Struct/Value as free JSON).

Per route: path parameters from the template (`{model=**}` becomes `{model}`, a dotted
`{project.id}` is named `{project_id}`, its field path in `x-field-path`), query parameters for the leaf fields the path and body leave
unbound (dotted names, repeated keys for repeated fields), the request body (`body: "*"`: the
request less its path fields; `body: "field"`: that field), the answer (`response_body` honoured;
JSON, or server-sent events described per event for streaming routes and `sse` switches), the
credentials (a project key on OpenAI routes, a JWT on the others, none for Login) and the error
answers in the
service's dialect (gateway/errors.py): OpenAI error JSON on OpenAI routes, google.rpc.Status JSON on
management routes. Built once per gateway (`OpenApiDocument`), served at `GET /openapi.json`
without authentication (it describes the routes, never data)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor, ServiceDescriptor

from bud.api.v1 import json_pb2
from budrt.json_face import STRING_FORM_TYPES
from gateway.http_rules import Route, routes_for_service
from gateway.transcoder import _framing

_FD = FieldDescriptor
OPENAPI_VERSION = "3.1.0"
_VARIABLE = re.compile(r"\{([^}=]+)(?:=[^}]*)?\}")
# RPCs a caller reaches without credentials (every other route needs a bearer token).
PUBLIC_METHODS = frozenset({"bud.auth.v1.UserService.Login"})
# Methods a credential of their own in the request (a signed link's `token`) lets in without the
# API key: the key is optional.
KEY_OPTIONAL_METHODS = frozenset({"bud.openai.v1.OpenAiService.GetImageContent"})
# Answers of this type are raw bytes of their own media type (the transcoder's HttpBody).
HTTP_BODY = "google.api.HttpBody"
OPENAI_ERROR_SCHEMA = "OpenAIError"
STATUS_ERROR_SCHEMA = "google.rpc.Status"
OPENAI_STREAM_ERROR_SCHEMA = "OpenAIStreamError"
# A client's request id (gateway: replaced by a generated one when too long or odd).
REQUEST_ID_HEADER = {
    "name": "X-Request-Id",
    "in": "header",
    "required": False,
    "description": "The caller's request id, echoed in the answer's X-Request-Id (replaced when "
    "longer than 128 characters or outside [A-Za-z0-9._:-]).",
    "schema": {"type": "string"},
}

_INT_RANGES = {
    _FD.TYPE_INT32: (-(2**31), 2**31 - 1, "int32"),
    _FD.TYPE_SINT32: (-(2**31), 2**31 - 1, "int32"),
    _FD.TYPE_SFIXED32: (-(2**31), 2**31 - 1, "int32"),
    _FD.TYPE_UINT32: (0, 2**32 - 1, "int64"),
    _FD.TYPE_FIXED32: (0, 2**32 - 1, "int64"),
    _FD.TYPE_INT64: (-(2**63), 2**63 - 1, "int64"),
    _FD.TYPE_SINT64: (-(2**63), 2**63 - 1, "int64"),
    _FD.TYPE_SFIXED64: (-(2**63), 2**63 - 1, "int64"),
    _FD.TYPE_UINT64: (0, 2**64 - 1, "int64"),
    _FD.TYPE_FIXED64: (0, 2**64 - 1, "int64"),
}
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]{1,9})?s$"},
    "google.protobuf.FieldMask": {"type": "string", "description": "Comma-separated field paths."},
    "google.protobuf.Struct": {"type": "object"},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array"},
    "google.protobuf.Empty": {"type": "object"},
}
_WRAPPER_SCALARS = {
    "google.protobuf.DoubleValue": {"type": "number"},
    "google.protobuf.FloatValue": {"type": "number"},
    "google.protobuf.Int64Value": {"type": "integer", "format": "int64"},
    "google.protobuf.UInt64Value": {"type": "integer", "format": "int64", "minimum": 0},
    "google.protobuf.Int32Value": {"type": "integer", "format": "int32"},
    "google.protobuf.UInt32Value": {"type": "integer", "format": "int64", "minimum": 0},
    "google.protobuf.BoolValue": {"type": "boolean"},
    "google.protobuf.StringValue": {"type": "string"},
    "google.protobuf.BytesValue": {"type": "string", "contentEncoding": "base64"},
}
# The two error bodies (gateway/errors.py).
_ERROR_SCHEMAS: dict[str, dict[str, Any]] = {
    OPENAI_ERROR_SCHEMA: {
        "type": "object",
        "description": "OpenAI's error body.",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["message", "type", "param", "code"],
                "properties": {
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                    "param": {"type": ["string", "null"]},
                    "code": {"type": ["string", "null"]},
                },
            }
        },
    },
    OPENAI_STREAM_ERROR_SCHEMA: {
        "type": "object",
        "description": "The Responses API's `error` event.",
        "required": ["type", "code", "message", "param", "sequence_number"],
        "properties": {
            "type": {"const": "error"},
            "code": {"type": ["string", "null"]},
            "message": {"type": "string"},
            "param": {"type": ["string", "null"]},
            "sequence_number": {"type": "integer"},
        },
    },
    STATUS_ERROR_SCHEMA: {
        "type": "object",
        "description": "A google.rpc.Status, as grpc-gateway writes it (code: the gRPC status number).",
        "required": ["code", "message", "details"],
        "properties": {
            "code": {"type": "integer", "minimum": 1, "maximum": 16},
            "message": {"type": "string"},
            "details": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["@type"],
                    "properties": {"@type": {"type": "string"}},
                },
            },
        },
    },
}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def openapi_path(template: str) -> str:
    """The OpenAPI path of a route template: variables lose their `=pattern` part and a dotted
    field path is named with underscores (`{project.id}` becomes `{project_id}`: OpenAPI tools
    format paths with the names, where a dot means an attribute)."""
    return _VARIABLE.sub(lambda m: "{" + parameter_name(m.group(1)) + "}", template)


def parameter_name(field_path: str) -> str:
    """The OpenAPI name of a path variable bound to `field_path`."""
    return field_path.replace(".", "_")


@dataclass(frozen=True)
class DocumentedService:
    """A service in the document: its descriptor and whether it speaks the OpenAI dialect
    (lenient JSON, OpenAI errors) or the management one (strict JSON, Status errors)."""

    descriptor: ServiceDescriptor
    openai_dialect: bool


class _Schemas:
    """The components/schemas of the messages the routes reach, named by full name. A message
    takes the dialect (`strict`: unknown fields refused) of the first route reaching it; the
    OpenAI and management services share no messages."""

    def __init__(self) -> None:
        self.schemas: dict[str, dict[str, Any]] = dict(_ERROR_SCHEMAS)

    def message(self, descriptor: Descriptor, strict: bool) -> dict[str, Any]:
        """A reference to (or the inline schema of) a message type, defined on first use."""
        name = descriptor.full_name
        if name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[name])
        if name in _WRAPPER_SCALARS:
            return dict(_WRAPPER_SCALARS[name])
        if name not in self.schemas:
            self.schemas[name] = {}  # a placeholder first: messages may be recursive
            self.schemas[name] = self._define(descriptor, strict)
        return _ref(name)

    def _define(self, descriptor: Descriptor, strict: bool) -> dict[str, Any]:
        opts = descriptor.GetOptions()
        inline_oneofs = [
            o for o in descriptor.oneofs if o.GetOptions().Extensions[json_pb2.oneof_json].inline
        ]
        inlined = {fd.name for o in inline_oneofs for fd in o.fields}
        members: dict[str, dict[str, Any]] = {}
        for oneof in inline_oneofs:
            kinds = [self.field(fd, strict, nullable=False) for fd in oneof.fields]
            # null: read as unset, and written for an unset `null_if_unset` oneof.
            members[oneof.name] = {"anyOf": [*kinds, {"type": "null"}]}
        for fd in descriptor.fields:
            if fd.name not in inlined:
                members[fd.name] = self.field(fd, strict)
        if opts.Extensions[json_pb2.message_json].unwrap:
            (only,) = members.values()  # json_face enforces exactly one member
            return only
        schema = {"type": "object", "properties": members}
        if strict:  # management services refuse unknown fields; OpenAI ones ignore them
            schema["additionalProperties"] = False
        return schema

    def field(self, fd: FieldDescriptor, strict: bool, nullable: bool = True) -> dict[str, Any]:
        """The schema of one field's JSON value (arrays for repeated, objects for maps); null
        too where the field has presence, unless not `nullable` (an inline oneof's member: the
        oneof's key takes null)."""
        opts = fd.GetOptions().Extensions[json_pb2.field_json]
        if fd.type == _FD.TYPE_MESSAGE and fd.message_type.GetOptions().map_entry:
            value_fd = fd.message_type.fields_by_name["value"]
            return {"type": "object", "additionalProperties": self.single(value_fd, strict, opts.raw)}
        if fd.is_repeated:
            return {"type": "array", "items": self.single(fd, strict, opts.raw)}
        schema = self.single(fd, strict, opts.raw)
        # null: written for an unset `null_if_unset` field, and read as unset for any field with
        # presence (OpenAI clients send `"temperature": null`).
        if nullable and (opts.null_if_unset or fd.has_presence):
            return {"anyOf": [schema, {"type": "null"}]}
        return schema

    def single(self, fd: FieldDescriptor, strict: bool, raw: bool = False) -> dict[str, Any]:
        """The schema of one value of a field."""
        if raw:
            return {"description": "Any JSON value (kept as JSON text)."}
        t = fd.type
        if t == _FD.TYPE_MESSAGE:
            return self.message(fd.message_type, strict)
        if t in _INT_RANGES:
            low, high, fmt = _INT_RANGES[t]
            return {"type": "integer", "format": fmt, "minimum": low, "maximum": high}
        if t in (_FD.TYPE_FLOAT, _FD.TYPE_DOUBLE):
            return {"type": "number"}
        if t == _FD.TYPE_BOOL:
            return {"type": "boolean"}
        if t == _FD.TYPE_ENUM:
            return {"type": "string", "enum": [v.name for v in fd.enum_type.values]}
        if t == _FD.TYPE_BYTES:
            return {"type": "string", "contentEncoding": "base64"}
        return {"type": "string"}


def _query_parameters(
    descriptor: Descriptor,
    bound: set[str],
    schemas: _Schemas,
    prefix: str = "",
    seen: frozenset[str] = frozenset(),
) -> list[dict[str, Any]]:
    """Query parameters of a message's leaf fields not bound elsewhere (dotted names), as the
    transcoder reads them (`_set_path`): scalars, enums, wrappers and the string-form
    well-known types; repeated scalars as repeated keys. Maps, Struct and repeated messages
    cannot travel in a query string."""
    params: list[dict[str, Any]] = []
    for fd in descriptor.fields:
        name = prefix + fd.name
        if name in bound:
            continue
        if fd.type == _FD.TYPE_MESSAGE:
            full = fd.message_type.full_name
            if fd.message_type.GetOptions().map_entry or fd.is_repeated:
                continue
            if full in STRING_FORM_TYPES:
                schema = dict(_WELL_KNOWN[full])
            elif full in _WRAPPER_SCALARS:
                schema = dict(_WRAPPER_SCALARS[full])
            elif full.startswith("google.protobuf.") or full in seen:
                continue
            else:
                params += _query_parameters(fd.message_type, bound, schemas, name + ".", seen | {full})
                continue
        else:
            schema = schemas.single(fd, strict=True)
            if fd.is_repeated:
                schema = {"type": "array", "items": schema}
        param: dict[str, Any] = {"name": name, "in": "query", "required": False, "schema": schema}
        if fd.is_repeated:
            param.update(style="form", explode=True)
        params.append(param)
    return params


def _path_parameter(
    descriptor: Descriptor, dotted: str, multi_segment: bool, schemas: _Schemas
) -> dict[str, Any]:
    target = descriptor
    fd: FieldDescriptor | None = None
    for part in dotted.split("."):
        fd = target.fields_by_name[part]
        if fd.type == _FD.TYPE_MESSAGE:
            target = fd.message_type
    assert fd is not None
    schema = schemas.single(fd, strict=True)
    if schema.get("type") == "string" and "enum" not in schema:
        # One segment at least (`[^/]+`); a `**` variable may span several.
        schema = {**schema, "minLength": 1}
    return {
        "name": parameter_name(dotted),
        "in": "path",
        "required": True,
        "schema": schema,
        "x-field-path": dotted,  # the request field it binds
        **({"description": "May contain '/'."} if multi_segment else {}),
    }


def _event_stream(
    route: Route, method: MethodDescriptor, service: DocumentedService, schemas: _Schemas
) -> dict[str, Any]:
    """An SSE answer, its `schema` describing one event (what OpenAPI 3.2 calls `itemSchema`; 3.1
    tools such as schemathesis read an event stream's `schema` so): `event` (named events) and
    `data`, the JSON of one streamed message, an error in the route's dialect, or the closing
    `done_data`."""
    done_data, event_field = _framing(route, method)
    if service.openai_dialect:
        error = _ref(OPENAI_STREAM_ERROR_SCHEMA if event_field else OPENAI_ERROR_SCHEMA)
    else:
        error = {"type": "object", "required": ["error"], "properties": {"error": _ref(STATUS_ERROR_SCHEMA)}}
    json_data = {
        "contentMediaType": "application/json",
        "contentSchema": {"anyOf": [schemas.message(method.output_type, not service.openai_dialect), error]},
    }
    data: dict[str, Any] = {"type": "string", "anyOf": [json_data]}
    if done_data:
        data["anyOf"] = [{"const": done_data}, json_data]
    when = f" when the body's `{route.sse.when_field}` is true" if route.sse and route.sse.when_field else ""
    event = {
        "type": "object",
        "description": f"One server-sent event{when}; an error after the stream started is its last event.",
        "required": ["data"],
        "properties": {"data": data, **({"event": {"type": "string"}} if event_field else {})},
    }
    return {"schema": event}


def _operation(
    route: Route, service: DocumentedService, schemas: _Schemas, operation_id: str
) -> dict[str, Any]:
    strict = not service.openai_dialect
    request = route.method.input_type
    bound = {v.field_path for v in route.variables}
    params: list[dict[str, Any]] = [
        _path_parameter(request, v.field_path, v.multi_segment, schemas) for v in route.variables
    ]
    if route.body != "*":
        body_bound = bound | ({route.body} if route.body else set())
        params += _query_parameters(request, body_bound, schemas)
    params.append(dict(REQUEST_ID_HEADER))
    op: dict[str, Any] = {
        "operationId": operation_id,
        "tags": [route.service.name],
        "summary": f"{route.method.full_name}",
        "parameters": params,
    }
    if route.body == "*":
        full = schemas.message(request, strict)
        resolved = schemas.schemas[request.full_name]
        top_bound = {b for b in bound if "." not in b}
        if top_bound and "properties" in resolved:  # the path's fields are not in the body
            body_schema = {
                **resolved,
                "properties": {k: v for k, v in resolved["properties"].items() if k not in top_bound},
            }
        else:
            body_schema = full
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body_schema}}}
    elif route.body:
        fd = request.fields_by_name[route.body]
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schemas.single(fd, strict)}},
        }
    response = route.method.output_type
    if route.response_body:
        answer = schemas.field(response.fields_by_name[route.response_body], strict)
    else:
        answer = schemas.message(response, strict)
    content: dict[str, Any] = {}
    if response.full_name == HTTP_BODY:
        content["*/*"] = {"schema": {"type": "string", "format": "binary"}}
    elif not route.server_streaming:
        content["application/json"] = {"schema": answer}
    stream_method = route.method if route.server_streaming else (route.sse.method if route.sse else None)
    if stream_method is not None:
        content["text/event-stream"] = _event_stream(route, stream_method, service, schemas)
    error = _ref(OPENAI_ERROR_SCHEMA if service.openai_dialect else STATUS_ERROR_SCHEMA)
    op["responses"] = {
        "200": {"description": "OK", "content": content},
        "default": {
            "description": "An error, with the HTTP status of its gRPC code.",
            "content": {"application/json": {"schema": error}},
        },
    }
    if route.method.full_name in PUBLIC_METHODS:
        op["security"] = []
    elif route.method.full_name in KEY_OPTIONAL_METHODS:
        op["security"] = [{"apiKey": []}, {}]
    elif service.openai_dialect:
        op["security"] = [{"apiKey": []}]
    else:
        op["security"] = [{"accessToken": []}]
    return op


def build_document(services: Iterable[DocumentedService], title: str = "Bud Runtime") -> dict[str, Any]:
    """The OpenAPI document of every annotated route of `services`."""
    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    used_ids: set[str] = set()
    for service in services:
        for route in routes_for_service(service.descriptor):
            base = f"{route.service.name}_{route.method.name}"
            operation_id, n = base, 1
            while operation_id in used_ids:  # additional_bindings: Service_Method2, ...
                n += 1
                operation_id = f"{base}{n}"
            used_ids.add(operation_id)
            item = paths.setdefault(openapi_path(route.template), {})
            item[route.http_method.lower()] = _operation(route, service, schemas, operation_id)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": title,
            "version": "v1",
            "description": "Generated from the services' google.api.http annotations.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas.schemas,
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer", "description": "A project API key."},
                "accessToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "An access token from POST /v1/auth/login.",
                },
            },
        },
    }


class OpenApiDocument:
    """The document of a gateway's HTTP face, built once and kept as JSON bytes."""

    def __init__(self, services: Iterable[DocumentedService]) -> None:
        self.json = orjson.dumps(build_document(services))

    async def handler(self, scope: dict[str, Any]) -> tuple[int, bytes]:
        """A plain route of the transcoder: `GET /openapi.json`."""
        return 200, self.json
