"""Fuzzing as a standing check (issue 11): schemathesis generates requests from the gateway's own
`/openapi.json` (gateway/openapi.py) for every operation, OpenAI routes with a project key and
management routes with an admin's JWT, in both of its modes (positive: data that fits the
document; negative: data that does not), and every answer must be

- no server error (`not_a_server_error`: no 5xx; nor, in a stream that started, an error event
  whose status would be a 5xx),
- an error in the route's documented shape (`documented_error_shape`): OpenAI error JSON on the
  OpenAI routes, google.rpc.Status JSON on the management routes, validated against the
  document's own error schemas, and
- as documented (`content_type_conformance`, `response_schema_conformance`: each JSON answer and
  each server-sent event fits the document's schema).

Two runs: against an in-process stack (app on SQLite, the instant engine, the real gateway
`serve()`; 4 cases per operation and mode, 280 in all, about half a minute on two busy cores;
`integration`) and against the session's live mesh (vLLM; 10 per operation and mode, 700 in all,
1¾ to 4½ minutes here for the test alone, the mesh's start included, by the machine's load;
`mesh`). Each prints how many cases it ran per operation (with the commonest refusals) and in
all. Bounds: the number of examples per operation and mode (`FUZZ_EXAMPLES` /
`FUZZ_MESH_EXAMPLES` environment variables), no shrinking, a timeout per request; the seed is
printed (`FUZZ_SEED` replays it; `FUZZ_ONLY` keeps the operations whose label contains it).

What the document is narrowed to for the run (test-side only; the document stays true), so that
positive cases reach engines and real objects: `model` fields take the stack's real model names,
generation requests carry their model and input (chat messages a role and content), token counts
are capped (so the real engine answers quickly), and project-id path parameters take a project
the test itself created (never the default project the other mesh tests need). Negative cases
violate these as well: unknown models and projects, missing fields. The fuzzer connects from
127.0.0.2, its own client address, so its failed logins trip the per-address login throttle for
itself only.

Operations left out, with their reasons (printed with the report):
- the RPCs still answering UNIMPLEMENTED (none now: the registry's catalogue, licences, imports,
  scans, benchmarks and leaderboard are fuzzed, and deployments of registry models;
  `test_unbuilt_services_still_answer_501` fails as soon as one is built, so it joins the run). Prompt references (`prompt` of POST /v1/responses) are fuzzed: the
  in-process stack co-hosts the prompt executor with the gateway, as `budrt up` does (on the
  mesh too);
- on the mesh only, CreateDeployment and UpdateDeployment in the test's project: a deployment the
  fuzzer creates makes the real engine load a fuzzed model source (vLLM then tries the network
  while holding its load lock, stalling the other mesh tests); they still run with generated
  project ids there, and fully in process."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from requests.adapters import HTTPAdapter
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from app.component import component as app_component
from app.registry_models import RegistryModels
from app.server import start_app
from app.settings import AppSettings
from gateway.backends import LocalBackend
from gateway.openapi import DocumentedService, build_document
from gateway.server import OPENAI_SERVICE, serve
from gateway.settings import GatewaySettings
from prompt.component import PROMPT_EXECUTION_SERVICE, InProcessOpenAi
from prompt.execution import PromptExecutor
from prompt.store import PromptStore, PromptWatcher
from registry.component import bindings as registry_bindings
from registry.component import component as registry_component
from registry.settings import RegistrySettings
from tests.app.conftest import ADMIN_PASSWORD, ADMIN_USERNAME, FAST_RECONCILER, HASH_SECRET, JWT_SECRET
from tests.gateway.conftest import http_server
from tests.support.instant_engine import InstantEngine, serve_instant_engine
from tests.support.mesh import Mesh, free_port
from tests.support.tls import identity_material

# Services whose every RPC answers UNIMPLEMENTED (their component binds the generated base class).
UNBUILT_SERVICES: tuple[str, ...] = ()
# RPCs of built services that still answer UNIMPLEMENTED, left out of the run;
# `test_unbuilt_services_still_answer_501` probes them.
UNBUILT_RPCS: tuple[str, ...] = ()
# Request fields that need an unbuilt service (answered 501 by design), left out of the run.
UNBUILT_FIELDS: tuple[tuple[str, str], ...] = ()
# What positive generation requests carry (OpenAI's own document requires them too).
# A token cap too: the real engine generates up to the context's end without one.
_REQUIRED = {
    "bud.openai.v1.ChatCompletionRequest": ("model", "messages", "max_tokens"),
    "bud.openai.v1.CompletionRequest": ("model", "prompt", "max_tokens"),
    "bud.openai.v1.EmbeddingRequest": ("model", "input"),
    "bud.openai.v1.ImageGenerationRequest": ("model", "prompt"),
    "bud.openai.v1.ResponseRequest": ("model", "input", "max_output_tokens"),
    "bud.openai.v1.ChatMessage": ("role", "content"),
}
# The fuzzer's own client address (loopback: 127.0.0.0/8 all reaches this machine).
FUZZER_ADDRESS = "127.0.0.2"
REQUEST_TIMEOUT_S = 60.0  # a slower answer is reported (a negative case may ask for many tokens)
# schemathesis's checks run on every answer: no 5xx, and answers as documented (content type,
# and the body's schema: the document must describe what the gateway really answers).
CHECKS = [not_a_server_error, content_type_conformance, response_schema_conformance]
# Generation requests ask for at most this many tokens (positive cases; negative ones may not).
MAX_TOKENS = 16
_TOKEN_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
# Status codes a mid-stream error event stands for (gateway/errors.py writes gRPC's number in a
# Status and OpenAI's `type` in an OpenAI error).
_SERVER_GRPC_CODES = {
    2,
    4,
    12,
    13,
    14,
    15,
}  # UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS
_SERVER_OPENAI_TYPES = {"server_error", "not_implemented_error", "service_unavailable_error", "timeout_error"}


# The Responses API's `event: error` payload (gateway/errors.py, OpenAiErrors.stream_frame).
_NAMED_ERROR_EVENT = {
    "type": "object",
    "required": ["type", "code", "message", "param", "sequence_number"],
    "properties": {
        "type": {"const": "error"},
        "code": {"type": ["string", "null"]},
        "message": {"type": "string"},
        "param": {"type": ["string", "null"]},
        "sequence_number": {"type": "integer"},
    },
}


@dataclass
class Target:
    """A running gateway and what the fuzzer sends: a project key, an admin's JWT, the real
    model names, and a project the test created for the fuzzer."""

    url: str
    api_key: str
    token: str
    models: list[str]
    project_id: str
    # (method, path) whose project id stays generated, with the reason (see the module docstring).
    generated_project_only: dict[tuple[str, str], str] = field(default_factory=dict)


@dataclass
class Report:
    """What a run did: cases per operation, the operations left out and the failures."""

    operations: set[str] = field(default_factory=set)
    cases: Counter[str] = field(default_factory=Counter)
    statuses: dict[str, Counter[int]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)  # one per (operation, kind)
    refusals: dict[str, Counter[str]] = field(default_factory=dict)  # 4xx messages per operation

    def summary(self) -> str:
        lines = [f"fuzzed {sum(self.cases.values())} cases over {len(self.cases)} operations"]
        for op, n in sorted(self.cases.items()):
            lines.append(f"  {op}: {n} {dict(sorted(self.statuses[op].items()))}")
            top = self.refusals.get(op, Counter()).most_common(3)
            lines += [f"      {count} x {text}" for text, count in top]
        total: Counter[int] = sum(self.statuses.values(), Counter())
        lines.append(f"  statuses: {dict(sorted(total.items()))}")
        lines += [f"  left out {op}: {why}" for op, why in sorted(self.skipped.items())]
        return "\n".join(lines)


# ---- the checks ------------------------------------------------------------------------------
class _Dialect:
    """The error schema of each operation, from the document itself."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document

    def error_schema(self, method: str, path: str) -> dict[str, Any]:
        ref = self.document["paths"][path][method.lower()]["responses"]["default"]["content"][
            "application/json"
        ]["schema"]["$ref"]
        name = ref.rsplit("/", 1)[1]
        return {**self.document["components"]["schemas"][name], "$defs": {}}


def _sse_errors(text: str) -> list[Any]:
    """The error payloads among a stream's events (`data: {"error": ...}` or a named error event)."""
    found = []
    event = ""
    for line in text.split("\n"):
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data = line[5:].strip()
            try:
                payload = orjson.loads(data)
            except orjson.JSONDecodeError:
                payload = None
            if event == "error" or (isinstance(payload, dict) and "error" in payload):
                found.append(payload)
            event = ""
    return found


def make_error_shape_check(dialect: _Dialect) -> Any:
    @schemathesis.check
    def documented_error_shape(ctx: Any, response: Any, case: Any) -> None:
        """Every 4xx (and any error) is JSON in the route's dialect; a stream's error event too,
        and none of them may stand for a server error."""
        op = case.operation
        schema = dialect.error_schema(op.method, op.path)
        status = response.status_code
        content_type = response.headers.get("content-type", [""])
        content_type = content_type[0] if isinstance(content_type, list) else content_type
        if status >= 400:
            assert content_type.startswith("application/json"), f"{status} answered as {content_type!r}"
            body = orjson.loads(response.content)
            try:
                jsonschema.validate(body, schema)
            except jsonschema.ValidationError as err:
                raise AssertionError(
                    f"{status} body not in the route's error shape: {err.message}: {body}"
                ) from None
        elif content_type.startswith("text/event-stream"):
            for payload in _sse_errors(response.content.decode(errors="replace")):
                error = payload.get("error") if isinstance(payload, dict) and "error" in payload else None
                if error is not None:
                    wrapped = error if "code" in schema["required"] else {"error": error}
                    jsonschema.validate(wrapped, schema)
                    server = (error.get("code") in _SERVER_GRPC_CODES) or (
                        error.get("type") in _SERVER_OPENAI_TYPES
                    )
                else:  # Responses API: a named error event (gateway/errors.py), no status in it
                    jsonschema.validate(payload, _NAMED_ERROR_EVENT)
                    # What the transcoder writes for an unexpected exception (a 500's body).
                    server = payload["message"] == "internal error"
                assert not server, f"a server error inside a stream: {payload}"

    return documented_error_shape


# ---- the run ---------------------------------------------------------------------------------
class _FromAddress(HTTPAdapter):
    """Connects from a given local address."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


def narrowed(document: dict[str, Any], target: Target) -> dict[str, Any]:
    """The document as the run uses it (see the module docstring): positive cases use the real
    model names and the test's project and carry what a generation request needs, with capped
    token counts; negative cases violate exactly these (unknown models and projects, missing
    fields) besides everything else."""
    doc = copy.deepcopy(document)
    schemas = doc["components"]["schemas"]
    for name, message in UNBUILT_FIELDS:
        schemas.get(name, {}).get("properties", {}).pop(message, None)  # when documented
    for name, needed in _REQUIRED.items():
        schemas[name]["required"] = list(needed)
        for prop in needed:  # present and not null
            options = schemas[name]["properties"][prop].get("anyOf")
            if options:
                kept = [_non_empty(o) for o in options if o != {"type": "null"}]
                schemas[name]["properties"][prop] = {"anyOf": kept}
            else:
                schemas[name]["properties"][prop] = _non_empty(schemas[name]["properties"][prop])
    schemas["bud.openai.v1.ChatMessage"]["properties"]["role"] = {
        "enum": ["system", "developer", "user", "assistant"]
    }
    for name, schema in schemas.items():
        props = schema.get("properties", {}) if name.startswith("bud.openai.v1.") else {}
        if props.get("model", {}).get("type") == "string":
            props["model"] = {"enum": target.models}
        for token_field in _TOKEN_FIELDS:
            if token_field in props and name.endswith("Request"):
                props[token_field] = {"type": "integer", "minimum": 1, "maximum": MAX_TOKENS}
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if (method.upper(), path) in target.generated_project_only:
                continue
            for param in op["parameters"]:
                if param["in"] == "path" and param["name"].endswith("project_id"):
                    param["schema"] = {"enum": [target.project_id]}
    return doc


def _non_empty(schema: dict[str, Any]) -> dict[str, Any]:
    """A string or array schema that needs one character or item."""
    if schema.get("type") == "string":
        return {**schema, "minLength": 1}
    if schema.get("type") == "array":
        return {**schema, "minItems": 1}
    return schema


def _order(op: Any) -> tuple[int, str]:
    # Deletions last (the test's project among them), so the others find their objects.
    return (1 if op.method.upper() == "DELETE" else 0, op.label)


def fuzz(target: Target, examples: int, report: Report) -> Report:
    """Runs `examples` cases per operation and generation mode; fills `report`."""
    document = requests.get(f"{target.url}/openapi.json", timeout=30).json()  # no credentials
    dialect = _Dialect(document)
    error_shape = make_error_shape_check(dialect)
    schema = schemathesis.openapi.from_dict(narrowed(document, target))
    schema.validate()
    session = requests.Session()
    session.mount("http://", _FromAddress(FUZZER_ADDRESS))
    run_seed = int(os.environ.get("FUZZ_SEED") or random.randrange(2**32))
    print(f"fuzz seed {run_seed} (FUZZ_SEED={run_seed} replays it)")
    operations = sorted((result.ok() for result in schema.get_all_operations()), key=_order)
    report.operations = {op.label for op in operations}
    only = os.environ.get("FUZZ_ONLY", "")  # to replay one operation: a substring of its label
    for op in operations:
        tag = document["paths"][op.path][op.method.lower()]["tags"][0]
        if only not in op.label:
            report.skipped[op.label] = f"FUZZ_ONLY={only}"
            continue
        if tag in UNBUILT_SERVICES:
            report.skipped[op.label] = f"{tag} answers UNIMPLEMENTED for every RPC (not built)"
            continue
        operation_id = document["paths"][op.path][op.method.lower()].get("operationId", "")
        if operation_id.split("_")[-1] in UNBUILT_RPCS:
            report.skipped[op.label] = f"{operation_id} answers UNIMPLEMENTED (not built)"
            continue
        openai = tag == "OpenAiService"
        secured = document["paths"][op.path][op.method.lower()]["security"]
        headers = (
            {} if not secured else {"authorization": f"Bearer {target.api_key if openai else target.token}"}
        )
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz_operation(
                op, mode, headers, target.url, session, examples, run_seed, CHECKS + [error_shape], report
            )
    return report


def _fuzz_operation(
    op: Any,
    mode: GenerationMode,
    headers: dict[str, str],
    url: str,
    session: requests.Session,
    examples: int,
    run_seed: int,
    checks: list[Any],
    report: Report,
) -> None:
    """`examples` cases of one operation in one generation mode; failures go to `report`."""

    @seed(run_seed)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: bounded time
        suppress_health_check=list(HealthCheck),
    )
    @given(case=op.as_strategy(generation_mode=mode))
    def one(case: Any) -> None:
        try:
            response = case.call(base_url=url, session=session, headers=headers, timeout=REQUEST_TIMEOUT_S)
        except requests.RequestException as err:  # a request the client cannot send, or a timeout
            report.failures.setdefault(f"{op.label} transport", f"{type(err).__name__}: {err}")
            return
        report.cases[op.label] += 1
        report.statuses.setdefault(op.label, Counter())[response.status_code] += 1
        if 400 <= response.status_code < 500:
            report.refusals.setdefault(op.label, Counter())[_refusal(response)] += 1
        try:
            case.validate_response(response, checks=checks)
        except (AssertionError, Exception, BaseExceptionGroup) as err:  # collected and reported
            request = case.as_curl_command(headers=headers)
            report.failures.setdefault(
                f"{op.label} {response.status_code}",
                f"{type(err).__name__}: {str(err)[:1500]}\n  request: {request[:3000]}\n  answer: {response.text[:500]}",
            )

    one()


def _refusal(response: requests.Response) -> str:
    """A 4xx's status and message, cut short (what the report shows of refusals)."""
    try:
        body = response.json()
        message = body["error"]["message"] if "error" in body else body["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text
    return f"{response.status_code} {str(message)[:100]}"


def assert_clean(report: Report) -> None:
    print(report.summary())
    assert not report.failures, "\n\n".join(f"{k}:\n{v}" for k, v in sorted(report.failures.items()))


# ---- the in-process stack --------------------------------------------------------------------
async def _serve_stack(tmp: Path, started: Future[tuple[str, str]], stopping: threading.Event) -> None:
    engine = await serve_instant_engine("127.0.0.1:0", InstantEngine())
    app_settings = AppSettings(
        data_dir=tmp / "app",
        database_url=f"sqlite:///{tmp / 'bud.db'}",
        app_address="127.0.0.1:0",
        engine_address=f"127.0.0.1:{engine.port}",
        key_hash_secret=HASH_SECRET,
        jwt_secret=JWT_SECRET,
        admin_username=ADMIN_USERNAME,
        admin_password=ADMIN_PASSWORD,
    )
    registry_settings = RegistrySettings(
        data_dir=app_settings.data_dir,
        registry_database_url=app_settings.database_url,
        jwt_secret=JWT_SECRET,
        registry_model_roots=[tmp / "models"],
        registry_hf_cache_dir=str(tmp / "hf"),
        registry_register_builtin_models=False,  # an empty catalogue to start from
    )
    running: list[Any] = []
    app = await start_app(
        app_settings,
        registry_bindings(settings=registry_settings, app_address=lambda: running[0].address),
        reconciler_options=FAST_RECONCILER,
        # The app's own identity, which the registry's ResolveModelForDeployment admits.
        registry_models=RegistryModels(lambda: running[0].address, tls=identity_material("app")),
    )
    running.append(app)
    port = free_port()
    gateway_settings = GatewaySettings(
        data_dir=tmp / "gateway",
        gateway_http_port=port,
        gateway_grpc_address="127.0.0.1:0",
        app_address=app.address,
        engine_address=app_settings.engine_address,
        key_hash_secret=HASH_SECRET,
        default_key_requests_per_minute=0,  # 280 cases with one key: no default rate limit
    )
    services = [*app_component.rest_services, *registry_component.rest_services]
    # The prompt executor co-hosted with the gateway, as `budrt up` runs it.
    openai: list[Any] = []
    store = PromptStore()
    executor = LocalBackend(
        PromptExecutor(store, lambda: openai[0] if openai else None), PROMPT_EXECUTION_SERVICE
    )
    watcher = asyncio.create_task(PromptWatcher(app.address, store, "fuzz").run())
    stop = asyncio.Event()
    gateway = asyncio.create_task(
        serve(
            gateway_settings,
            stop,
            None,
            [(s, app.address) for s in services],
            prompts=lambda: executor,
            offer=lambda servicer: openai.append(InProcessOpenAi(servicer)),
        )
    )
    assert app.bootstrapped is not None
    started.set_result((f"http://127.0.0.1:{port}", app.bootstrapped.secret))
    await asyncio.to_thread(stopping.wait)
    stop.set()
    await gateway
    watcher.cancel()
    await asyncio.gather(watcher, return_exceptions=True)
    await app.stop(grace=0)
    await engine.stop(0)


@contextlib.contextmanager
def in_process_stack(tmp: Path) -> Iterator[tuple[str, str]]:
    """App (SQLite, bootstrapped) + instant engine + the gateway's `serve()`, on an event loop of
    their own (schemathesis calls are blocking); yields the HTTP URL and the bootstrap key."""
    started: Future[tuple[str, str]] = Future()
    stopping = threading.Event()
    thread = threading.Thread(target=lambda: asyncio.run(_serve_stack(tmp, started, stopping)), daemon=True)
    thread.start()
    try:
        yield started.result(timeout=60)
    finally:
        stopping.set()
        thread.join(timeout=30)


def prepare(url: str, api_key: str, password: str, examples_note: str = "") -> Target:
    """Waits for the gateway to route both default models, logs in the admin and creates the
    fuzzer's project."""
    deadline = time.monotonic() + 120
    state = "not listening"
    while True:
        with contextlib.suppress(requests.ConnectionError):  # still starting
            ready = requests.get(f"{url}/readyz", timeout=10)
            if ready.status_code == 200 and ready.json()["deployments_ready"] >= 2:
                break
            state = ready.text
        assert time.monotonic() < deadline, state
        time.sleep(0.2)
    models = requests.get(f"{url}/v1/models", headers={"authorization": f"Bearer {api_key}"}, timeout=30)
    assert models.status_code == 200, models.text
    login = requests.post(
        f"{url}/v1/auth/login", json={"username": "admin", "password": password}, timeout=30
    )
    assert login.status_code == 200, login.text
    token = login.json()["access_token"]
    project = requests.post(
        f"{url}/v1/projects",
        json={"name": f"fuzz-{random.randrange(10**9)}"},
        headers={"authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert project.status_code == 200, project.text
    return Target(
        url, api_key, token, [m["id"] for m in models.json()["data"]], project.json()["project"]["id"]
    )


def cleanup(target: Target) -> None:
    """Deletes the fuzzer's project (and whatever the run created in it), if it still exists."""
    requests.delete(
        f"{target.url}/v1/projects/{target.project_id}?force=true",
        headers={"authorization": f"Bearer {target.token}"},
        timeout=60,
    )


# ---- the tests -------------------------------------------------------------------------------
@pytest.mark.integration  # half a minute on two cores: `make test`, not the fast unit run
def test_fuzz_in_process_stack(tmp_path: Path) -> None:
    """A few cases per operation and mode against the in-process stack."""
    examples = int(os.environ.get("FUZZ_EXAMPLES", "4"))
    with in_process_stack(tmp_path) as (url, api_key):
        target = prepare(url, api_key, ADMIN_PASSWORD)
        report = fuzz(target, examples, Report())
        cleanup(target)
    assert_clean(report)
    assert set(report.cases) | set(report.skipped) == report.operations  # every operation ran or is excused


def test_unbuilt_services_still_answer_501(tmp_path: Path) -> None:
    """The services the fuzz leaves out still answer UNIMPLEMENTED (501, Status JSON) for a call
    of theirs: when one is built this fails, and it must join the fuzzing (UNBUILT_SERVICES)."""
    with in_process_stack(tmp_path) as (url, api_key):
        target = prepare(url, api_key, ADMIN_PASSWORD)
        auth = {"authorization": f"Bearer {target.token}"}
        # An unbuilt RPC's (method, path, headers), when there is one: OpenAI routes take a key
        # ({"authorization": f"Bearer {api_key}"})
        # and answer OpenAI error JSON, management routes a token and google.rpc.Status JSON.
        probes: dict[str, tuple[str, str, dict[str, str]]] = {}
        assert set(probes) == set(UNBUILT_RPCS)
        for rpc, (method, path, headers) in probes.items():
            r = requests.request(method, f"{url}{path}", json={}, headers=headers, timeout=30)
            body = r.json()
            unimplemented = (
                body.get("code") == 12 or body.get("error", {}).get("type") == "not_implemented_error"
            )
            assert r.status_code == 501 and unimplemented, f"{rpc} is built now: fuzz it ({r.text})"
        r = requests.get(f"{url}/v1/registry/models", headers=auth, timeout=30)
        assert r.status_code == 200, r.text
        r = requests.post(
            f"{url}/v1/projects/{target.project_id}/deployments",
            json={"name": "d", "model": {"registry_model_id": "m"}},
            headers=auth,
            timeout=30,
        )
        assert r.status_code == 400, r.text  # registry models deploy now (an id of the wrong shape)


@pytest.mark.mesh
def test_fuzz_live_mesh(mesh: Mesh) -> None:
    """More cases per operation and mode against the session's mesh (vLLM), within a few
    minutes on two cores."""
    examples = int(os.environ.get("FUZZ_MESH_EXAMPLES", "10"))
    target = prepare(mesh.http_url, mesh.api_key, mesh.admin_password)
    reason = "a created deployment makes vLLM load a fuzzed model source (see the module docstring)"
    target.generated_project_only = {
        ("POST", "/v1/projects/{project_id}/deployments"): reason,
        ("PATCH", "/v1/projects/{deployment_project_id}/deployments/{deployment_id}"): reason,
    }
    report = Report()
    report.skipped.update(
        {f"{m} {p} (the test's project)": why for (m, p), why in target.generated_project_only.items()}
    )
    try:
        fuzz(target, examples, report)
    finally:
        cleanup(target)
    assert_clean(report)


@contextlib.contextmanager
def _served_in_thread(app: Any) -> Iterator[str]:
    """An ASGI app on uvicorn, on an event loop of its own; yields its URL."""
    started: Future[str] = Future()
    stopping = threading.Event()

    async def run() -> None:
        async with http_server(app) as url:
            started.set_result(url)
            await asyncio.to_thread(stopping.wait)

    thread = threading.Thread(target=lambda: asyncio.run(run()), daemon=True)
    thread.start()
    try:
        yield started.result(timeout=30)
    finally:
        stopping.set()
        thread.join(timeout=30)


def test_the_checks_catch_a_5xx_and_an_error_in_the_wrong_dialect() -> None:
    """The run's checks bite: against a server documenting the OpenAI routes that answers
    /v1/models with a Status body (the management dialect) and everything else with a 500."""
    document = orjson.dumps(build_document([DocumentedService(OPENAI_SERVICE, True)]))

    async def broken(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path == "/openapi.json":
            status, body = 200, document
        elif path == "/v1/models":
            status, body = 400, b'{"code": 3, "message": "bad", "details": []}'
        else:
            status, body = (
                500,
                b'{"error": {"message": "boom", "type": "server_error", "param": null, "code": null}}',
            )
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    with _served_in_thread(broken) as url:
        report = fuzz(Target(url, "key", "token", ["m"], "p"), 1, Report())
    failures = "\n".join(report.failures)
    assert "GET /v1/models 400" in failures  # the wrong dialect
    assert "POST /v1/chat/completions 500" in failures  # a server error
