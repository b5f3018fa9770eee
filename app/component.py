"""The app as a component of the mesh (`budrt serve app`): its process also hosts the guests that
name it (`hosted_by="app"`: registry); a gateway fronts its management services, prompt
authoring (PromptService: data the app owns) included."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from app.db.migrate import upgrade_database
from app.db.session import Database
from app.server import serve
from app.settings import AppSettings
from bud.app.v1 import budget_pb2, deployment_pb2, engine_registry_pb2, project_pb2, usage_pb2
from bud.auth.v1 import auth_pb2, user_pb2
from bud.prompt.v1 import prompt_pb2
from budrt.components import Component, Host


def _start(host: Host) -> Callable[[], Awaitable[None]]:
    settings = host.settings(AppSettings)
    return lambda: serve(settings, host.stop, extra_bindings=host.guest_bindings("app"))


async def _migrate(settings: AppSettings) -> None:
    """`budrt migrate`: the app's tables to the code's head."""
    db = Database(settings.resolved_database_url())
    try:
        await upgrade_database(db)
    finally:
        await db.dispose()


def _default_deployments(settings: AppSettings) -> int:
    return sum(1 for name in (settings.default_model_name, settings.default_embedding_model_name) if name)


def _announce(settings: AppSettings) -> list[str]:
    names = []
    if settings.default_model_name:
        noise = "" if settings.default_model_source else "; random weights: replies are noise"
        names.append(f"{settings.default_model_name} (chat{noise})")
    if settings.default_embedding_model_name:
        names.append(f"{settings.default_embedding_model_name} (embeddings)")
    return [
        f"  models: {', '.join(names) or 'none (no default deployments)'}",
        "  The API key and the admin password were printed once above on first start",
        "  (OPENAI_API_KEY=..., BUD_ADMIN_PASSWORD=...); log in with POST /v1/auth/login.",
    ]


def _add_commands(commands: Any) -> None:
    """`budrt cost`: spend per day, deployment and project, and the projection (app/cost_report.py)."""
    cost = commands.add_parser(
        "cost", help="spend per day, per deployment and per project, cost per 1M tokens, projection vs budget"
    )
    cost.add_argument(
        "--days", type=int, choices=(1, 7, 30), default=7, help="the window, ending today (UTC)"
    )
    cost.add_argument("--project", default="", help="one project (id or name); default: all")
    cost.add_argument(
        "--budget", default="", help="US dollars a month to project against (default: the budgets)"
    )
    cost.add_argument("--detailed", action="store_true", help="also a row per day, deployment and API key")
    cost.add_argument("--json", action="store_true", help="JSON instead of tables")
    cost.add_argument("--url", default="", help="the gateway's URL (default: this machine's)")
    cost.add_argument("--token", default="", help="a platform admin's token (default: BUDRT_ADMIN_TOKEN)")
    cost.add_argument(
        "--username", default="admin", help="without a token: log in as this admin with BUD_ADMIN_PASSWORD"
    )
    cost.set_defaults(run=_cost_command)


def _cost_command(args: argparse.Namespace) -> int:
    from app.cost_report import CostError, run

    try:
        return asyncio.run(run(args))
    except CostError as err:
        print(f"budrt cost: {err}", file=sys.stderr)
        return 1


component = Component(
    name="app",
    settings=AppSettings,
    address_setting="app_address",
    rest_services=(
        project_pb2.DESCRIPTOR.services_by_name["ProjectService"],
        deployment_pb2.DESCRIPTOR.services_by_name["DeploymentService"],
        engine_registry_pb2.DESCRIPTOR.services_by_name["EngineRegistryService"],
        usage_pb2.DESCRIPTOR.services_by_name["UsageService"],
        budget_pb2.DESCRIPTOR.services_by_name["BudgetService"],
        auth_pb2.DESCRIPTOR.services_by_name["ApiKeyService"],
        user_pb2.DESCRIPTOR.services_by_name["UserService"],
        prompt_pb2.DESCRIPTOR.services_by_name["PromptService"],
    ),
    start=_start,
    default_deployments=_default_deployments,
    announce=_announce,
    migrate=_migrate,
    commands=_add_commands,
)
