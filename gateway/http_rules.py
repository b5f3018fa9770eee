"""Reads `google.api.http` (and `bud.api.v1.sse`) annotations from service descriptors and builds
the routes the transcoder serves: path templates with variables (`{name}`, `{a.b=prefix/*}`,
`{name=**}`), a `:verb` suffix, `body`, `response_body` and `additional_bindings`."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote

from google.api import annotations_pb2, http_pb2
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor

from bud.api.v1 import json_pb2


@dataclass(frozen=True)
class PathVariable:
    """A template variable: the dotted request field it binds and whether it spans segments."""

    field_path: str
    multi_segment: bool  # `**` keeps %2F encoded, per the google.api.http rules


@dataclass(frozen=True)
class SseOptions:
    """How a route is framed as server-sent events (see bud.api.v1.ServerSentEvents)."""

    method: MethodDescriptor | None
    when_field: str
    done_data: str
    event_field: str


@dataclass
class Route:
    """One HTTP binding of one RPC."""

    http_method: str
    template: str
    method: MethodDescriptor
    service: ServiceDescriptor
    body: str
    response_body: str
    variables: list[PathVariable] = field(default_factory=list)
    regex: re.Pattern[str] | None = None  # None: a literal path, matched by dict lookup
    literal_segments: int = 0
    sse: SseOptions | None = None

    @property
    def server_streaming(self) -> bool:
        """Whether the RPC itself streams (served as SSE)."""
        return self.method.server_streaming

    def match(self, raw_path: str) -> dict[str, str] | None:
        """Variable values (decoded) when `raw_path` (still percent-encoded) fits the template."""
        if self.regex is None:
            return {} if raw_path == self.template else None
        m = self.regex.fullmatch(raw_path)
        if m is None:
            return None
        values: dict[str, str] = {}
        for i, var in enumerate(self.variables):
            raw = m.group(f"v{i}")
            values[var.field_path] = (
                unquote(raw.replace("%2F", "%252F").replace("%2f", "%252f"))
                if var.multi_segment
                else unquote(raw)
            )
        return values


_VAR = re.compile(r"\{([a-zA-Z_][\w.]*)(?:=([^}]*))?\}")


def _segment_regex(pattern: str) -> str:
    parts = []
    for seg in pattern.split("/"):
        if seg == "**":
            parts.append(r".+")
        elif seg == "*":
            parts.append(r"[^/]+")
        else:
            parts.append(re.escape(seg))
    return "/".join(parts)


def compile_template(template: str) -> tuple[re.Pattern[str] | None, list[PathVariable], int]:
    """Regex, variables and literal-segment count of a path template (None regex: literal)."""
    if not template.startswith("/"):
        raise ValueError(f"path template must start with '/': {template!r}")
    verb = ""
    last_slash = template.rfind("/")
    colon = template.find(":", last_slash)
    if colon != -1 and "}" not in template[colon:]:
        template, verb = template[:colon], template[colon:]
    variables: list[PathVariable] = []
    out: list[str] = []
    pos = 0
    for m in _VAR.finditer(template):
        out.append(_segment_regex(template[pos : m.start()]))
        pattern = m.group(2) or "*"
        variables.append(PathVariable(m.group(1), "**" in pattern))
        out.append(f"(?P<v{len(variables) - 1}>{_segment_regex(pattern)})")
        pos = m.end()
    out.append(_segment_regex(template[pos:]))
    literal_segments = sum(1 for s in _VAR.sub("", template).split("/") if s and s not in ("*", "**"))
    if verb:  # `/x/{id}:verb` must be tried before `/x/{id}`, whose variable would swallow ":verb"
        literal_segments += 1
    if not variables and "*" not in template:
        return None, [], literal_segments
    return re.compile("".join(out) + re.escape(verb)), variables, literal_segments


def _binding(rule: http_pb2.HttpRule) -> tuple[str, str]:
    kind = rule.WhichOneof("pattern")
    if kind is None:
        raise ValueError("HttpRule without a pattern")
    if kind == "custom":
        return rule.custom.kind.upper(), rule.custom.path
    return kind.upper(), getattr(rule, kind)


def routes_for_service(service: ServiceDescriptor) -> list[Route]:
    """The routes of every annotated method of a service."""
    routes: list[Route] = []
    for method in service.methods:
        options = method.GetOptions()
        if not options.HasExtension(annotations_pb2.http):
            continue
        rule = options.Extensions[annotations_pb2.http]
        sse = None
        if options.HasExtension(json_pb2.sse):
            opts = options.Extensions[json_pb2.sse]
            target = service.methods_by_name.get(opts.method) if opts.method else None
            if opts.method and (target is None or not target.server_streaming):
                raise ValueError(
                    f"{method.full_name}: sse.method {opts.method!r} is not a server-streaming method"
                )
            sse = SseOptions(target, opts.when_field, opts.done_data, opts.event_field)
        for r in [rule, *rule.additional_bindings]:
            http_method, template = _binding(r)
            regex, variables, literals = compile_template(template)
            body = r.body or (rule.body if r is not rule else "")
            routes.append(
                Route(
                    http_method,
                    template,
                    method,
                    service,
                    body,
                    r.response_body,
                    variables,
                    regex,
                    literals,
                    sse,
                )
            )
    return routes


class Router:
    """Finds the route of a request: literal paths by dict lookup, templates by regex, the most
    specific (most literal segments) first."""

    def __init__(self, routes: list[Route]) -> None:
        self.literal: dict[tuple[str, str], Route] = {}
        self.templated: dict[str, list[Route]] = {}
        for route in routes:
            if route.regex is None:
                key = (route.http_method, route.template)
                if key in self.literal:
                    raise ValueError(f"two RPCs bind {route.http_method} {route.template}")
                self.literal[key] = route
            else:
                self.templated.setdefault(route.http_method, []).append(route)
        for group in self.templated.values():
            group.sort(key=lambda r: -r.literal_segments)
        self.paths = {r.template for r in routes}

    def find(self, http_method: str, raw_path: str) -> tuple[Route, dict[str, str]] | None:
        """The matching route and its variable values."""
        route = self.literal.get((http_method, raw_path))
        if route is not None:
            return route, {}
        for candidate in self.templated.get(http_method, ()):
            values = candidate.match(raw_path)
            if values is not None:
                return candidate, values
        return None

    def allows(self, raw_path: str) -> list[str]:
        """HTTP methods that have a route for this path (for 405 answers)."""
        methods = {m for (m, p) in self.literal if p == raw_path}
        for m, group in self.templated.items():
            if any(r.match(raw_path) is not None for r in group):
                methods.add(m)
        return sorted(methods)
