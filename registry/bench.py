"""`budrt bench --deployment NAME`: a serving benchmark of one deployment through the gateway,
recorded in the registry.

Everything goes over the gateway's REST face, as any client of the platform would: the load with
a project API key (`--api-key`, else OPENAI_API_KEY: what the bootstrap prints), the rest with a
platform admin's token (`--token`, else BUDRT_ADMIN_TOKEN, else a login as `--username` with
BUD_ADMIN_PASSWORD): finding the deployment (ListProjects, ListDeployments) for its model and
engine configuration, the registry entry of its model (ListModels), and recording the result
(`POST /v1/registry/benchmarks`, CreateBenchmarkResult). REST rather than the service channel:
the command then needs no service certificate, runs from any machine that reaches the gateway,
and is authorized as the admin it runs for.

The hardware profile is this machine's (`registry.hardware`): run it on the engine's machine, as
`budrt up` does on one. Per concurrency level it prints and records TTFT, TPOT and end-to-end
latency percentiles and throughput (`registry.loadgen`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from google.protobuf.json_format import MessageToDict

from bud.registry.v1 import registry_pb2
from budrt.admin_api import AdminApi, AdminApiError, NoCredentials
from registry import hardware
from registry.benchmarks import SERVING
from registry.loadgen import ChatLoad, Level

DEFAULT_CONCURRENCY = (1, 4, 16)
SOURCE = "budrt-bench"


class BenchError(Exception):
    """Why the benchmark cannot run or be recorded (printed, exit status 1)."""


@dataclass(frozen=True)
class Options:
    """What `budrt bench` was asked."""

    deployment: str
    url: str
    api_key: str
    token: str = ""
    username: str = "admin"
    password: str = ""
    project: str = ""
    concurrency: Sequence[int] = DEFAULT_CONCURRENCY
    requests: int = 0  # per level; 0: 4 x concurrency, at least 8
    input_tokens: int = 64
    output_tokens: int = 64
    warmup: int = 1
    timeout: float = 300.0
    record: bool = True
    notes: str = ""


def parse_concurrency(value: str) -> tuple[int, ...]:
    """``"1,4,16"`` → (1, 4, 16): distinct positive levels, in order."""
    try:
        levels = sorted({int(part) for part in value.split(",") if part.strip()})
    except ValueError:
        raise ValueError(f"--concurrency {value!r}: comma-separated positive integers") from None
    if not levels or levels[0] < 1 or levels[-1] > 4096:
        raise ValueError(f"--concurrency {value!r}: levels between 1 and 4096")
    return tuple(levels)


class Platform:
    """The gateway's management REST face, as a platform admin: the deployment, its registry
    entry, and recording the result (`budrt.admin_api.AdminApi` underneath)."""

    def __init__(self, api: AdminApi) -> None:
        self._api = api

    @classmethod
    async def login(cls, client: httpx.AsyncClient, options: Options) -> Platform:
        try:
            return cls(await AdminApi.login(client, options.token, options.username, options.password))
        except NoCredentials:
            raise BenchError(
                "an admin token is needed to find the deployment and record the result: "
                "--token (or BUDRT_ADMIN_TOKEN), or BUD_ADMIN_PASSWORD for --username"
            ) from None
        except AdminApiError as err:
            raise BenchError(_describe(err)) from None

    async def pages(self, path: str, key: str) -> list[dict[str, Any]]:
        try:
            return await self._api.pages(path, key)
        except AdminApiError as err:
            raise BenchError(_describe(err)) from None

    async def deployment(self, name: str, project: str) -> dict[str, Any]:
        """The deployment called `name` (in `project`, else in any project the admin sees)."""
        projects = [project] if project else [p["id"] for p in await self.pages("/v1/projects", "projects")]
        found = [
            d
            for pid in projects
            for d in await self.pages(f"/v1/projects/{pid}/deployments", "deployments")
            if d.get("name") == name
        ]
        if not found:
            raise BenchError(f"no deployment named {name!r}" + (f" in project {project}" if project else ""))
        if len(found) > 1:
            where = ", ".join(d["project_id"] for d in found)
            raise BenchError(f"deployments named {name!r} in several projects ({where}): pass --project")
        if "model" not in found[0]:
            raise BenchError(f"{name!r} deploys a prompt, not a model: benchmark its model's deployment")
        return found[0]

    async def registry_model(self, source: dict[str, Any]) -> tuple[str, str]:
        """(registry id, name) of the deployment's model: its registry id, else the entry with its
        Hugging Face id or directory; ("", the source's own name) when the catalogue lacks it."""
        if source.get("registry_model_id"):
            return source["registry_model_id"], ""
        hf, path = source.get("hugging_face_id", ""), source.get("local_path", "")
        if hf or path:
            for entry in await self.pages("/v1/registry/models", "models"):
                if (hf and entry.get("hugging_face_id") == hf) or (path and entry.get("local_path") == path):
                    return entry["id"], entry.get("name", "")
        return "", source.get("builtin") or hf or path

    async def record(self, result: registry_pb2.BenchmarkResult) -> dict[str, Any]:
        body = MessageToDict(result, preserving_proto_field_name=True)
        try:
            return (await self._api.post("/v1/registry/benchmarks", body))["result"]
        except AdminApiError as err:
            refused = AdminApiError("recording the result was refused", err.status_code, err.message)
            raise BenchError(_describe(refused)) from None


def _describe(err: AdminApiError) -> str:
    """This command's wording of an error answer: the action, the HTTP status, the message."""
    return f"{err.action}: HTTP {err.status_code}" + (f": {err.message}" if err.message else "")


def engine_config(deployment: dict[str, Any]) -> dict[str, str]:
    """The deployment's engine configuration, flattened to strings: the model source, the engine
    arguments, the runner, caching, replicas and scaling."""
    config: dict[str, str] = {}
    for kind, value in (deployment.get("model") or {}).items():
        config[f"model.{kind}"] = str(value)
    for key, value in (deployment.get("engine_args") or {}).items():
        config[f"engine_args.{key}"] = str(value)
    if deployment.get("runner"):
        config["runner"] = str(deployment["runner"])
    config["caching"] = str(bool(deployment.get("caching"))).lower()
    config["replicas"] = str(len(deployment.get("endpoints") or []))
    for key, value in (deployment.get("scaling") or {}).items():
        config[f"scaling.{key}"] = str(value)
    return config


def table(points: Sequence[registry_pb2.BenchmarkLoadPoint]) -> str:
    """The levels as a plain-text table."""
    head = (
        "conc", "ok", "err", "req/s", "out tok/s", "TTFT p50", "TTFT p99", "TPOT p50", "TPOT p99", "E2E p50", "E2E p99"
    )  # fmt: skip
    rows = [head]
    for p in points:
        rows.append(
            (
                str(p.concurrency),
                str(p.requests),
                str(p.errors),
                f"{p.requests_per_s:.2f}",
                f"{p.output_tokens_per_s:.1f}",
                *(f"{v:.1f} ms" for v in (p.ttft_p50_ms, p.ttft_p99_ms, p.tpot_p50_ms, p.tpot_p99_ms)),
                *(f"{v:.1f} ms" for v in (p.e2e_p50_ms, p.e2e_p99_ms)),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


async def run(options: Options, out: Any = sys.stdout) -> registry_pb2.BenchmarkResult:
    """Runs the benchmark; prints the table (and the recorded id) to `out`; the result."""
    async with httpx.AsyncClient(base_url=options.url, timeout=60.0) as client:
        admin = (
            await Platform.login(client, options)
            if (options.record or options.token or options.password)
            else None
        )
        model_id, model_name, config = "", options.deployment, {}
        if admin is not None:
            deployment = await admin.deployment(options.deployment, options.project)
            config = engine_config(deployment)
            if deployment.get("runner") == "RUNNER_POOLING":
                raise BenchError(
                    f"{options.deployment!r} is a pooling (embedding) model: bench measures generation"
                )
            model_id, model_name = await admin.registry_model(deployment["model"])
        load = ChatLoad(
            options.url,
            options.api_key,
            options.deployment,
            input_tokens=options.input_tokens,
            output_tokens=options.output_tokens,
            timeout=options.timeout,
        )
        if options.warmup:
            warm = await load.level(1, options.warmup)
            if not warm.samples:
                raise BenchError(f"the warm-up request failed: {warm.errors[0]}")
        levels: list[Level] = []
        for concurrency in options.concurrency:
            requests = options.requests or max(8, 4 * concurrency)
            levels.append(await load.level(concurrency, requests))
        if not any(level.samples for level in levels):
            raise BenchError(f"every request failed: {levels[0].errors[0]}")
        result = registry_pb2.BenchmarkResult(
            model_id=model_id,
            model_name=model_name,
            deployment_name=options.deployment,
            benchmark=SERVING,
            hardware=hardware.capture(),
            engine_config=config,
            load_points=[level.point() for level in levels],
            source=SOURCE,
            notes=options.notes,
        )
        result.engine_config["input_tokens"] = str(options.input_tokens)
        result.engine_config["output_tokens"] = str(options.output_tokens)
        print(
            f"deployment {options.deployment} ({model_name or model_id}) on {result.hardware.key}", file=out
        )
        print(table(result.load_points), file=out)
        for level in levels:
            if level.errors:
                print(
                    f"  concurrency {level.concurrency}: {len(level.errors)} failed, e.g. {level.errors[0]}",
                    file=out,
                )
        if options.record and admin is not None:
            recorded = await admin.record(result)
            result.id = recorded["id"]
            print(f"recorded {result.id} in the registry", file=out)
        return result


def options_from(args: Any) -> Options:
    """Options from `budrt bench`'s parsed arguments and the environment."""
    url = args.url or _default_url()
    api_key = args.api_key or os.environ.get("OPENAI_API_KEY", "")
    if not api_key:
        raise BenchError("a project API key is needed for the load: --api-key, or OPENAI_API_KEY")
    return Options(
        deployment=args.deployment,
        url=url,
        api_key=api_key,
        token=args.token or os.environ.get("BUDRT_ADMIN_TOKEN", ""),
        username=args.username,
        password=os.environ.get("BUD_ADMIN_PASSWORD", ""),
        project=args.project,
        concurrency=parse_concurrency(args.concurrency),
        requests=args.requests,
        input_tokens=args.input_tokens,
        output_tokens=args.output_tokens,
        warmup=args.warmup,
        timeout=args.timeout,
        record=not args.no_record,
        notes=args.notes,
    )


def _default_url() -> str:
    """The gateway of this machine: its HTTP port from the gateway component's settings (found
    through the installed components, never imported), else 8000."""
    from budrt.components import discover
    from budrt.settings import load

    gateway = discover().get("gateway")
    port = getattr(load(gateway.settings), "gateway_http_port", 8000) if gateway is not None else 8000
    return f"http://127.0.0.1:{port}"
