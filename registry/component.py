"""The registry service as a component of the mesh: a guest of the app's process, fronted over
REST by gateways; `budrt models import SOURCE` on the command line."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from typing import Any

from bud.registry.v1 import registry_pb2, registry_pb2_grpc
from budrt.components import Component, Host, discover
from budrt.grpc_server import ServiceBinding
from budrt.settings import load
from registry.callers import AppClient, Callers
from registry.db.session import RegistryDatabase
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
    settings: RegistrySettings, app_address: Callable[[], str], database_url: str = ""
) -> RegistryServicer:
    """The servicer on the registry's database (`database_url`, else the settings' own URL, else
    the default SQLite file); `app_address` answers where the app's gRPC server listens (asked at
    the first call: a guest is bound before its host listens)."""
    callers = Callers(lambda: settings.secret("jwt_secret"), AppClient(app_address))
    return RegistryServicer(
        RegistryDatabase(database_url or settings.resolved_database_url()),
        callers,
        settings.model_roots(),
        settings.registry_hf_cache_dir,
        scan_settings=settings.scan_settings(),
        scan_on_register=settings.registry_scan_on_register,
        builtins_dir=settings.data_dir if settings.registry_register_builtin_models else None,
    )


def binding(servicer: RegistryServicer) -> ServiceBinding:
    """The servicer bound to its generated registration."""
    return ServiceBinding(servicer, registry_pb2_grpc.add_RegistryServiceServicer_to_server, REGISTRY_SERVICE)


def bindings(
    host: Host | None = None,
    *,
    settings: RegistrySettings | None = None,
    app_address: Callable[[], str] | None = None,
) -> list[ServiceBinding]:
    """RegistryService in its host's (the app's) server: the catalogue, licences, imports and
    scans; benchmarks and the leaderboard answer UNIMPLEMENTED (not built here)."""
    if settings is None:
        settings = host.settings(RegistrySettings) if host is not None else load(RegistrySettings)
    if app_address is None:
        app_address = (
            (lambda: host.address("registry")) if host is not None else (lambda: settings.app_address)
        )
    return [binding(make_servicer(settings, app_address))]


def _add_commands(commands: Any) -> None:
    """`budrt models import SOURCE`."""
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


def _import_command(args: argparse.Namespace) -> int:
    from registry.cli import import_command

    return asyncio.run(import_command(args.source, args.revision, args.name, args.tag, not args.no_scan))


component = Component(
    name="registry",
    settings=RegistrySettings,
    hosted_by="app",
    bindings=bindings,
    rest_services=(REGISTRY_SERVICE,),
    commands=_add_commands,
)
