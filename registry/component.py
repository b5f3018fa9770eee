"""The registry service as a component of the mesh: a guest of the app's process, fronted over
REST by gateways; `budrt models import SOURCE` on the command line."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from typing import Any

from bud.registry.v1 import registry_pb2, registry_pb2_grpc
from budrt.components import Component, Host, discover
from budrt.grpc_server import ServiceBinding
from budrt.settings import load
from registry.callers import AppClient, Callers
from registry.db.session import RegistryDatabase
from registry.leaderboard import Schedule
from registry.service import RegistryServicer
from registry.settings import RegistrySettings

REGISTRY_SERVICE = registry_pb2.DESCRIPTOR.services_by_name["RegistryService"]


def host_settings(components: dict[str, Component] | None = None) -> Any:
    """The settings of the registry's host component (the app), found through the installed
    components (never imported): what its database defaults to."""
    found = discover() if components is None else components
    host = found.get(component.hosted_by)
    return load(host.settings) if host is not None else None


def make_servicer(
    settings: RegistrySettings,
    app_address: Callable[[], str],
    database_url: str = "",
    migrate: bool | None = None,
) -> RegistryServicer:
    """The servicer on the registry's database (`database_url`, else the settings' own URL, else
    the default SQLite file); `app_address` answers where the app's gRPC server listens (asked at
    the first call: a guest is bound before its host listens). `migrate`: whether it migrates
    its schema at first use or only checks it (default: its host's `migrate_on_start`)."""
    if migrate is None:
        migrate = bool(getattr(host_settings(), "migrate_on_start", True))
    callers = Callers(lambda: settings.secret("jwt_secret"), AppClient(app_address))
    return RegistryServicer(
        RegistryDatabase(database_url or settings.resolved_database_url()),
        callers,
        settings.model_roots(),
        settings.registry_hf_cache_dir,
        Schedule(settings.leaderboard_update_interval),
        scan_settings=settings.scan_settings(),
        scan_on_register=settings.registry_scan_on_register,
        builtins_dir=settings.data_dir if settings.registry_register_builtin_models else None,
        migrate=migrate,
    )


def start_schedule(servicer: RegistryServicer, stop: asyncio.Event) -> asyncio.Task[None] | None:
    """The leaderboard's refresh on its cron schedule, as a task of the running loop until `stop`
    (None outside a loop: nothing to run it on)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    task = loop.create_task(servicer.schedule.run(stop, servicer.refresh_leaderboard))
    _SCHEDULES.add(task)  # the loop keeps only a weak reference
    task.add_done_callback(_SCHEDULES.discard)
    return task


_SCHEDULES: set[asyncio.Task[None]] = set()


def binding(servicer: RegistryServicer) -> ServiceBinding:
    """The servicer bound to its generated registration."""
    return ServiceBinding(servicer, registry_pb2_grpc.add_RegistryServiceServicer_to_server, REGISTRY_SERVICE)


def bindings(
    host: Host | None = None,
    *,
    settings: RegistrySettings | None = None,
    app_address: Callable[[], str] | None = None,
) -> list[ServiceBinding]:
    """RegistryService in its host's (the app's) server: the catalogue, licences, imports, scans,
    benchmarks and the leaderboard (its scheduled refresh runs on the host's loop until the host
    stops)."""
    if settings is None:
        settings = host.settings(RegistrySettings) if host is not None else load(RegistrySettings)
    if app_address is None:
        app_address = (
            (lambda: host.address("registry")) if host is not None else (lambda: settings.app_address)
        )
    servicer = make_servicer(settings, app_address)
    if host is not None:  # the launcher builds its components inside the running loop
        start_schedule(servicer, host.stop)
    return [binding(servicer)]


def _add_commands(commands: Any) -> None:
    """`budrt models import SOURCE` and `budrt bench --deployment NAME`."""
    models = commands.add_parser("models", help="the model registry (catalogue, import)")
    sub = models.add_subparsers(dest="models_command", required=True)
    imp = sub.add_parser(
        "import",
        help="import a model (a local directory under the model roots, or a Hugging Face id) into the registry",
    )
    imp.add_argument("source", help="an absolute directory, or a Hugging Face id such as org/name")
    imp.add_argument("--revision", default="", help="Hugging Face branch, tag or commit")
    imp.add_argument("--name", default="", help="display name (default: the source)")
    imp.add_argument("--tag", action="append", default=[], help="a tag (repeatable)")
    imp.add_argument("--no-scan", action="store_true", help="do not scan it now (it stays PENDING)")
    imp.set_defaults(run=_import_command)

    bench = commands.add_parser(
        "bench",
        help="benchmark a deployment through the gateway (TTFT, TPOT, latency, throughput) and record it",
    )
    bench.add_argument(
        "--deployment", required=True, help="the deployment's name (what clients put in `model`)"
    )
    bench.add_argument("--project", default="", help="its project id (needed when several have one so named)")
    bench.add_argument(
        "--url", default="", help="the gateway's URL (default: this machine's, http://127.0.0.1:<port>)"
    )
    bench.add_argument(
        "--api-key", default="", help="a project API key for the load (default: OPENAI_API_KEY)"
    )
    bench.add_argument("--token", default="", help="a platform admin's token (default: BUDRT_ADMIN_TOKEN)")
    bench.add_argument(
        "--username", default="admin", help="without a token: log in as this admin with BUD_ADMIN_PASSWORD"
    )
    bench.add_argument("--concurrency", default="1,4,16", help="comma-separated levels (default 1,4,16)")
    bench.add_argument(
        "--requests", type=int, default=0, help="requests per level (default 4 x level, at least 8)"
    )
    bench.add_argument("--input-tokens", type=int, default=64, help="prompt length in words (about tokens)")
    bench.add_argument("--output-tokens", type=int, default=64, help="max_tokens of each request")
    bench.add_argument("--warmup", type=int, default=1, help="unmeasured requests first (default 1)")
    bench.add_argument("--timeout", type=float, default=300.0, help="seconds a request may take")
    bench.add_argument("--notes", default="", help="free text recorded with the result")
    bench.add_argument("--no-record", action="store_true", help="print the table only")
    bench.set_defaults(run=_bench_command)


async def _migrate(settings: RegistrySettings) -> None:
    """`budrt migrate`: the registry's tables (in its own database, else the app's) to the code's
    head."""
    from registry.db.migrate import upgrade_database

    db = RegistryDatabase(settings.resolved_database_url(host_settings()))
    try:
        await upgrade_database(db)
    finally:
        await db.dispose()


def _import_command(args: argparse.Namespace) -> int:
    from registry.cli import import_command

    return asyncio.run(import_command(args.source, args.revision, args.name, args.tag, not args.no_scan))


def _bench_command(args: argparse.Namespace) -> int:
    from registry.bench import BenchError, options_from, run

    try:
        if args.requests < 0 or args.input_tokens < 1 or args.output_tokens < 1 or args.warmup < 0:
            raise BenchError("--requests, --warmup: not negative; --input-tokens, --output-tokens: positive")
        asyncio.run(run(options_from(args)))
    except (BenchError, ValueError) as err:
        print(f"budrt bench: {err}", file=sys.stderr)
        return 1
    return 0


component = Component(
    name="registry",
    settings=RegistrySettings,
    hosted_by="app",
    bindings=bindings,
    rest_services=(REGISTRY_SERVICE,),
    commands=_add_commands,
    migrate=_migrate,
)
