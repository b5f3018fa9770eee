"""`budrt cost` (app/cost_report.py): the report's arithmetic (exact decimals, cost per million
tokens, the month's projection against a budget), and the command end to end against the app
behind the gateway's REST face, as an admin: tables and JSON."""

from __future__ import annotations

import argparse
import io
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest
from google.protobuf import timestamp_pb2

from app.component import component
from app.cost_report import CostError, build_report, render, run
from app.server import RunningApp
from bud.app.v1 import budget_pb2, budget_pb2_grpc, deployment_pb2, project_pb2, usage_pb2
from budrt.grpc_server import service_channel
from gateway.backends import RemoteBackend
from gateway.engines import EnginePool
from gateway.openai_service import OpenAiServicer
from gateway.server import build_transcoder
from gateway.tables import RoutingTables
from tests.app.conftest import ADMIN_PASSWORD, ADMIN_USERNAME, HASH_SECRET
from tests.gateway.conftest import http_server


def _bucket(
    day: str, dep: str, cost: str, prompt: int = 1000, completion: int = 1000, key: str = ""
) -> dict[str, Any]:
    return {
        "date": day,
        "deployment_id": dep,
        "api_key_id": key,
        "requests": "2",
        "prompt_tokens": str(prompt),
        "completion_tokens": str(completion),
        "cost_usd": cost,
    }


def test_the_report_adds_exactly_and_projects_the_month() -> None:
    today = date(2026, 11, 30)  # 30 days in November
    projects = [{"id": "p1", "name": "alpha"}, {"id": "p2", "name": "beta"}]
    usage = {
        # 0.1 + 0.2 is 0.3 exactly (floats would say 0.30000000000000004)
        "p1": [_bucket("2026-11-29", "d1", "0.100000000"), _bucket("2026-11-30", "d1", "0.200000000")],
        "p2": [_bucket("2026-11-30", "d2", "0.000000001", prompt=1, completion=0)],
    }
    budgets = {
        "p1": [
            {"id": "b1", "period": "BUDGET_PERIOD_DAILY", "limit_usd": "0.1", "spent_usd": "0.2"},
            {
                "id": "bk",
                "api_key_id": "k",
                "period": "BUDGET_PERIOD_MONTHLY",
                "limit_usd": "1",
            },  # a key's: not the project's
        ]
    }
    report = build_report(7, today, projects, {"d1": "chat", "d2": "embed"}, usage, budgets, detailed=True)
    assert report["window"] == {"days": 7, "start": "2026-11-24", "end": "2026-11-30"}
    assert report["total"]["cost_usd"] == "0.300000001"
    assert [d["cost_usd"] for d in report["by_day"]][-2:] == ["0.100000000", "0.200000001"]
    assert len(report["by_day"]) == 7 and report["by_day"][0]["cost_usd"] == "0"
    chat = next(d for d in report["by_deployment"] if d["deployment"] == "chat")
    assert chat["cost_per_million_tokens_usd"] == "75.000000"  # $0.30 for 4000 tokens
    alpha = report["by_project"][0]
    assert alpha["project"] == "alpha" and alpha["cost_usd"] == "0.300000000"
    # $0.30 over 7 days x 30 days = $1.285714; the daily $0.10 budget is $3 a month.
    assert alpha["projected_month_usd"] == "1.285714" and alpha["monthly_budget_usd"] == "3.0"
    assert alpha["budget_used_percent"] == "42.9"
    assert report["projection"]["budget_usd"] == "3.0" and report["projection"]["over_budget"] is False
    assert [r["deployment"] for r in report["detailed"]] == ["chat", "chat", "embed"]
    over = build_report(1, today, projects, {}, usage, {}, budget=Decimal("5"))
    assert over["projection"]["projected_month_usd"] == "9.000000"  # today's $0.30 x 30
    assert over["projection"]["over_budget"] is True and over["projection"]["budget_used_percent"] == "180.0"
    text = render(over)
    assert "Projection: $0.3/day x 30 days = $9 this month, 180.0% of the $5 budget (OVER)" in text


@pytest.fixture
async def rest(app: RunningApp) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway's HTTP face fronting the app's management services over gRPC."""
    channel = service_channel(app.address)
    backend = RemoteBackend(channel)
    tables = RoutingTables()
    pool = EnginePool()
    servicer = OpenAiServicer(tables, pool, HASH_SECRET, usage=None, limiter=None)
    transcoder = build_transcoder(servicer, tables, [(s, backend) for s in component.rest_services])
    async with http_server(transcoder) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        yield client
    await pool.close()
    await channel.close()


def _args(**kw: Any) -> argparse.Namespace:
    values = {
        "days": 7,
        "project": "",
        "budget": "",
        "detailed": False,
        "json": False,
        "url": "",
        "token": "",
        "username": ADMIN_USERNAME,
    }
    return argparse.Namespace(**{**values, **kw})


async def test_budrt_cost_against_the_app(
    app: RunningApp, stubs: Any, helpers: Any, rest: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    project_id = (
        await stubs.projects.CreateProject(
            project_pb2.CreateProjectRequest(project=project_pb2.Project(name="costly"))
        )
    ).project.id
    dep = (
        await stubs.deployments.CreateDeployment(
            deployment_pb2.CreateDeploymentRequest(
                project_id=project_id,
                deployment=helpers.model_deployment(
                    "chat",
                    pricing=deployment_pb2.Pricing(input_per_million_usd="2", output_per_million_usd="6"),
                ),
            )
        )
    ).deployment
    await budget_pb2_grpc.BudgetServiceStub(stubs.channel).CreateBudget(
        budget_pb2.CreateBudgetRequest(project_id=project_id, budget=budget_pb2.Budget(limit_usd="50"))
    )
    now = datetime.now(UTC)
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(now)
    await stubs.usage.RecordUsage(
        usage_pb2.RecordUsageRequest(
            records=[
                usage_pb2.UsageRecord(
                    request_id=f"r{i}",
                    project_id=project_id,
                    deployment_id=dep.id,
                    prompt_tokens=500_000,
                    completion_tokens=100_000,
                    status_code=200,
                    time=ts,
                )
                for i in range(2)
            ]
        )
    )
    monkeypatch.setenv("BUD_ADMIN_PASSWORD", ADMIN_PASSWORD)
    out = io.StringIO()
    assert await run(_args(project="costly", json=True, detailed=True), out, client=rest) == 0
    report = orjson.loads(out.getvalue())
    # Each call: 500k x $2/M + 100k x $6/M = $1.60.
    assert report["total"]["cost_usd"] == "3.200000000"
    assert report["by_day"][-1]["date"] == now.date().isoformat()
    (by_dep,) = report["by_deployment"]
    assert (by_dep["deployment"], by_dep["cost_usd"], by_dep["cost_per_million_tokens_usd"]) == (
        "chat",
        "3.200000000",
        "2.666667",
    )
    (project,) = report["by_project"]
    assert project["monthly_budget_usd"] == "50" and project["budgets"][0]["spent_usd"] == "3.200000000"
    assert report["detailed"][0]["deployment"] == "chat"
    table = io.StringIO()
    assert await run(_args(days=30, budget="10"), table, client=rest) == 0
    text = table.getvalue()
    assert "costly" in text and "chat" in text and "$3.2" in text and "of the $10 budget" in text
    with pytest.raises(CostError, match="no project"):
        await run(_args(project="nope"), io.StringIO(), client=rest)
    monkeypatch.setenv("BUD_ADMIN_PASSWORD", "wrong")
    rest.headers.pop("authorization", None)
    with pytest.raises(CostError, match="refused"):
        await run(_args(), io.StringIO(), client=rest)
    with pytest.raises(CostError, match="--budget"):
        await run(_args(budget="-3"), io.StringIO(), client=rest)
