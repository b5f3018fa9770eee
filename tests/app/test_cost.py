"""Cost in the app, on SQLite and PostgreSQL: deployments' prices (defaults, validation, history),
each usage record costed at the price in force at its time, QueryUsage's cost, budgets (CRUD,
roles, validation, spend) and the routing feed carrying prices and budgets to the gateways."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2, timestamp_pb2
from sqlalchemy import update

from app.db import models
from app.server import RunningApp
from bud.app.v1 import budget_pb2, budget_pb2_grpc, deployment_pb2, project_pb2, usage_pb2
from bud.auth.v1 import auth_pb2, routing_pb2, user_pb2

VIEWER, EDITOR, OWNER = (
    user_pb2.PROJECT_ROLE_VIEWER,
    user_pb2.PROJECT_ROLE_EDITOR,
    user_pb2.PROJECT_ROLE_OWNER,
)
D = deployment_pb2


def _ts(value: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


async def _project(stubs: Any, name: str) -> str:
    reply = await stubs.projects.CreateProject(
        project_pb2.CreateProjectRequest(project=project_pb2.Project(name=name))
    )
    return str(reply.project.id)


async def _deploy(stubs: Any, helpers: Any, project_id: str, name: str, **fields: Any) -> D.Deployment:
    reply = await stubs.deployments.CreateDeployment(
        D.CreateDeploymentRequest(project_id=project_id, deployment=helpers.model_deployment(name, **fields))
    )
    return reply.deployment


async def _set_price_time(app: RunningApp, deployment_id: str, when: datetime) -> None:
    """Moves a deployment's price history back in time (a price set `when`)."""
    async with app.db.transaction() as session:
        await session.execute(
            update(models.DeploymentPrice)
            .where(models.DeploymentPrice.deployment_id == deployment_id)
            .values(effective_time=when)
        )


async def _spec_version(app: RunningApp, deployment_id: str) -> int:
    async with app.db.transaction() as session:
        row = await session.get(models.Deployment, deployment_id)
        assert row is not None
        return row.spec_version


async def test_prices_default_validate_and_keep_their_history(start: Any, clients: Any, helpers: Any) -> None:
    app = await start(
        default_input_usd_per_million="0.5", default_output_usd_per_million="1.5", default_request_usd="0"
    )
    stubs = await clients(app).login()
    project_id = await _project(stubs, "priced")
    defaulted = await _deploy(stubs, helpers, project_id, "cheap")
    assert (defaulted.pricing.input_per_million_usd, defaulted.pricing.output_per_million_usd) == (
        "0.5",
        "1.5",
    )
    # The bootstrapped default deployments got the defaults too.
    default_project = (await stubs.projects.ListProjects(project_pb2.ListProjectsRequest())).projects[0]
    listed = await stubs.deployments.ListDeployments(D.ListDeploymentsRequest(project_id=default_project.id))
    assert {d.pricing.output_per_million_usd for d in listed.deployments} == {"1.5"}

    own = await _deploy(
        stubs,
        helpers,
        project_id,
        "own",
        pricing=D.Pricing(input_per_million_usd="2", per_request_usd="0.001"),
    )
    assert (own.pricing.input_per_million_usd, own.pricing.output_per_million_usd) == ("2", "0")
    assert own.pricing.per_request_usd == "0.001"
    for bad in ("-1", "0.0000001", "abc", "1e3", "NaN", "2000000000"):
        await helpers.expect_error(
            stubs.deployments.CreateDeployment(
                D.CreateDeploymentRequest(
                    project_id=project_id,
                    deployment=helpers.model_deployment("bad", pricing=D.Pricing(output_per_million_usd=bad)),
                )
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            param="deployment.pricing.output_per_million_usd",
        )

    spec_before = await _spec_version(app, own.id)
    changed = await stubs.deployments.UpdateDeployment(
        D.UpdateDeploymentRequest(
            deployment=D.Deployment(
                id=own.id, project_id=project_id, pricing=D.Pricing(input_per_million_usd="3")
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["pricing.input_per_million_usd"]),
        )
    )
    assert changed.deployment.pricing.input_per_million_usd == "3"
    assert changed.deployment.pricing.per_request_usd == "0.001"  # the rest kept
    # A price change is no new model: the deployment is not reloaded.
    assert await _spec_version(app, own.id) == spec_before
    got = (
        await stubs.deployments.GetDeployment(
            D.GetDeploymentRequest(project_id=project_id, deployment_id=own.id)
        )
    ).deployment
    assert [p.input_per_million_usd for p in got.pricing_history] == ["2", "3"]
    assert (
        got.pricing_history[0].effective_time.ToDatetime()
        <= got.pricing_history[1].effective_time.ToDatetime()
    )
    # The same price again adds no history.
    await stubs.deployments.UpdateDeployment(
        D.UpdateDeploymentRequest(
            deployment=D.Deployment(id=own.id, project_id=project_id, pricing=got.pricing),
            update_mask=field_mask_pb2.FieldMask(paths=["pricing"]),
        )
    )
    again = (
        await stubs.deployments.GetDeployment(
            D.GetDeploymentRequest(project_id=project_id, deployment_id=own.id)
        )
    ).deployment
    assert len(again.pricing_history) == 2


async def test_a_bad_default_price_stops_the_start() -> None:
    from app.settings import AppSettings

    with pytest.raises(ValueError, match="decimal places"):
        AppSettings(default_output_usd_per_million="0.0000001")


async def test_usage_is_costed_at_the_price_in_force_at_its_time(
    app: RunningApp, stubs: Any, helpers: Any
) -> None:
    project_id = await _project(stubs, "metered")
    key_id = (
        await stubs.api_keys.CreateApiKey(auth_pb2.CreateApiKeyRequest(project_id=project_id))
    ).api_key.id
    dep = await _deploy(
        stubs,
        helpers,
        project_id,
        "m",
        pricing=D.Pricing(input_per_million_usd="1", output_per_million_usd="2", per_request_usd="0.0001"),
    )
    march = datetime(2026, 3, 1, tzinfo=UTC)
    await _set_price_time(app, dep.id, march)
    changed_at = datetime.now(UTC)
    await stubs.deployments.UpdateDeployment(
        D.UpdateDeploymentRequest(
            deployment=D.Deployment(
                id=dep.id,
                project_id=project_id,
                pricing=D.Pricing(input_per_million_usd="10", output_per_million_usd="20"),
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["pricing"]),
        )
    )

    def record(rid: str, when: datetime, **fields: Any) -> usage_pb2.UsageRecord:
        fields.setdefault("prompt_tokens", 1000)
        fields.setdefault("completion_tokens", 500)
        fields.setdefault("status_code", 200)
        fields.setdefault("deployment_id", dep.id)
        fields.setdefault("cost_usd", "999")  # the gateway's figure: the app's price history wins
        return usage_pb2.UsageRecord(
            request_id=rid,
            project_id=project_id,
            api_key_id=key_id,
            time=_ts(when),
            operation="CreateChatCompletion",
            **fields,
        )

    old_day = datetime(2026, 3, 2, 12, tzinfo=UTC)
    new_time = changed_at + timedelta(seconds=5)
    await stubs.usage.RecordUsage(
        usage_pb2.RecordUsageRequest(
            records=[
                # 1000 x $1/M + 500 x $2/M + $0.0001 = $0.0021
                record("a", old_day),
                # failed: tokens only, no per-request price: $0.002
                record("b", old_day, status_code=500),
                # cached: no engine ran
                record("c", old_day, cached=True, prompt_tokens=0, completion_tokens=0),
                # at the new price: 1000 x $10/M + 500 x $20/M = $0.02
                record("d", new_time),
                # an unknown deployment: the gateway's cost
                record("e", old_day, deployment_id="dep_gone", cost_usd="0.000000123"),
                # 7 tokens at $1/M: $0.000007, exactly (no float)
                record("f", old_day, prompt_tokens=7, completion_tokens=0, status_code=499),
            ]
        )
    )
    answer = await stubs.usage.QueryUsage(usage_pb2.QueryUsageRequest(project_id=project_id))
    costs = {(b.date, b.deployment_id): b.cost_usd for b in answer.buckets}
    assert costs[("2026-03-02", dep.id)] == "0.004107000"
    assert costs[("2026-03-02", "dep_gone")] == "0.000000123"
    assert costs[(new_time.date().isoformat(), dep.id)] == "0.020000000"
    assert answer.total_cost_usd == "0.024107123"
    only_new = await stubs.usage.QueryUsage(
        usage_pb2.QueryUsageRequest(project_id=project_id, start_date=new_time.date().isoformat())
    )
    assert only_new.total_cost_usd == "0.020000000"


def _budgets(client: Any) -> budget_pb2_grpc.BudgetServiceStub:
    return budget_pb2_grpc.BudgetServiceStub(client.channel)


async def test_budget_crud_roles_and_validation(
    app: RunningApp, stubs: Any, clients: Any, helpers: Any
) -> None:
    admin = _budgets(stubs)
    project_id = await _project(stubs, "budgeted")
    users = {}
    for name, role in (("olga", OWNER), ("ed", EDITOR), ("vic", VIEWER)):
        user = (
            await stubs.users.CreateUser(
                user_pb2.CreateUserRequest(username=name, password=f"{name}-password")
            )
        ).user
        await stubs.users.SetProjectMember(
            user_pb2.SetProjectMemberRequest(project_id=project_id, user_id=user.id, role=role)
        )
        users[name] = _budgets(await clients(app).login(name, f"{name}-password"))
    created = (
        await users["olga"].CreateBudget(
            budget_pb2.CreateBudgetRequest(
                project_id=project_id,
                budget=budget_pb2.Budget(
                    limit_usd="100", hard_stop=True, webhook_url="https://hooks.example/x"
                ),
            )
        )
    ).budget
    assert created.id.startswith("bgt")
    assert (created.period, list(created.alert_thresholds), created.spent_usd) == (
        budget_pb2.BUDGET_PERIOD_MONTHLY,
        [50, 80, 100],
        "0.000000000",
    )
    assert created.period_start_time.ToDatetime(tzinfo=UTC).day == 1
    # Editors and viewers read; only owners (and platform admins) write.
    for reader in ("ed", "vic"):
        listed = await users[reader].ListBudgets(budget_pb2.ListBudgetsRequest(project_id=project_id))
        assert [b.id for b in listed.budgets] == [created.id]
        await helpers.expect_error(
            users[reader].CreateBudget(
                budget_pb2.CreateBudgetRequest(project_id=project_id, budget=budget_pb2.Budget(limit_usd="1"))
            ),
            grpc.StatusCode.PERMISSION_DENIED,
        )
        await helpers.expect_error(
            users[reader].DeleteBudget(
                budget_pb2.DeleteBudgetRequest(project_id=project_id, budget_id=created.id)
            ),
            grpc.StatusCode.PERMISSION_DENIED,
        )
    bad = [
        (budget_pb2.Budget(limit_usd="0"), "budget.limit_usd"),
        (budget_pb2.Budget(limit_usd="-5"), "budget.limit_usd"),
        (budget_pb2.Budget(limit_usd="1.0000001"), "budget.limit_usd"),
        (budget_pb2.Budget(limit_usd="1", alert_thresholds=[80, 50]), "budget.alert_thresholds"),
        (budget_pb2.Budget(limit_usd="1", alert_thresholds=[0]), "budget.alert_thresholds"),
        (budget_pb2.Budget(limit_usd="1", webhook_url="file:///etc/passwd"), "budget.webhook_url"),
        (budget_pb2.Budget(limit_usd="1", webhook_url="http://"), "budget.webhook_url"),
        (budget_pb2.Budget(limit_usd="1", period=7), "budget.period"),  # type: ignore[arg-type]
        (budget_pb2.Budget(limit_usd="1", api_key_id="key_missing"), "budget.api_key_id"),
    ]
    for budget, param in bad:
        expected = (
            grpc.StatusCode.NOT_FOUND if param == "budget.api_key_id" else grpc.StatusCode.INVALID_ARGUMENT
        )
        await helpers.expect_error(
            admin.CreateBudget(budget_pb2.CreateBudgetRequest(project_id=project_id, budget=budget)),
            expected,
            param=param,
        )
    raised = (
        await users["olga"].UpdateBudget(
            budget_pb2.UpdateBudgetRequest(
                budget=budget_pb2.Budget(
                    id=created.id,
                    project_id=project_id,
                    limit_usd="250.5",
                    period=budget_pb2.BUDGET_PERIOD_DAILY,
                ),
                update_mask=field_mask_pb2.FieldMask(paths=["limit_usd", "period"]),
            )
        )
    ).budget
    assert (raised.limit_usd, raised.period, raised.hard_stop) == (
        "250.5",
        budget_pb2.BUDGET_PERIOD_DAILY,
        True,
    )
    other = await _project(stubs, "elsewhere")
    await helpers.expect_error(
        admin.GetBudget(budget_pb2.GetBudgetRequest(project_id=other, budget_id=created.id)),
        grpc.StatusCode.NOT_FOUND,
    )
    await users["olga"].DeleteBudget(
        budget_pb2.DeleteBudgetRequest(project_id=project_id, budget_id=created.id)
    )
    assert not (await admin.ListBudgets(budget_pb2.ListBudgetsRequest(project_id=project_id))).budgets


async def test_budget_spend_and_the_routing_feed(app: RunningApp, stubs: Any, helpers: Any) -> None:
    project_id = await _project(stubs, "fed")
    key_id = (
        await stubs.api_keys.CreateApiKey(auth_pb2.CreateApiKeyRequest(project_id=project_id))
    ).api_key.id
    dep = await _deploy(
        stubs,
        helpers,
        project_id,
        "m",
        pricing=D.Pricing(input_per_million_usd="1", output_per_million_usd="4"),
    )
    budgets = _budgets(stubs)
    project_budget = (
        await budgets.CreateBudget(
            budget_pb2.CreateBudgetRequest(
                project_id=project_id,
                budget=budget_pb2.Budget(
                    limit_usd="10", period=budget_pb2.BUDGET_PERIOD_DAILY, hard_stop=True
                ),
            )
        )
    ).budget
    key_budget = (
        await budgets.CreateBudget(
            budget_pb2.CreateBudgetRequest(
                project_id=project_id,
                budget=budget_pb2.Budget(limit_usd="2", api_key_id=key_id, alert_thresholds=[90]),
            )
        )
    ).budget
    now = datetime.now(UTC)
    yesterday = now - timedelta(days=1, hours=1)
    await stubs.usage.RecordUsage(
        usage_pb2.RecordUsageRequest(
            records=[
                usage_pb2.UsageRecord(
                    request_id=f"u{i}",
                    project_id=project_id,
                    api_key_id=key_id if i else "",
                    deployment_id=dep.id,
                    prompt_tokens=1_000_000,
                    completion_tokens=0,
                    status_code=200,
                    time=_ts(when),
                )
                for i, when in enumerate((now, now, yesterday))
            ]
        )
    )
    got = {
        b.id: b
        for b in (await budgets.ListBudgets(budget_pb2.ListBudgetsRequest(project_id=project_id))).budgets
    }
    # The daily budget counts today's two records; the key's monthly one its own records this
    # month (yesterday's too, unless yesterday was last month).
    assert got[project_budget.id].spent_usd == "2.000000000"
    key_spent = "2.000000000" if yesterday.month == now.month else "1.000000000"
    assert got[key_budget.id].spent_usd == key_spent

    async def fed() -> routing_pb2.RouteProject:
        async for snapshot in stubs.routing.WatchRouting(routing_pb2.WatchRoutingRequest()):
            return next(p for p in snapshot.upsert_projects if p.id == project_id)
        raise AssertionError("no snapshot")

    project = await fed()
    assert [
        (b.id, b.period, b.limit_micros, b.hard_stop, list(b.alert_thresholds)) for b in project.budgets
    ] == [
        (project_budget.id, "day", 10_000_000, True, [50, 80, 100]),
        (key_budget.id, "month", 2_000_000, False, [90]),
    ]
    assert project.budgets[1].api_key_id == key_id
    async for snapshot in stubs.routing.WatchRouting(routing_pb2.WatchRoutingRequest()):
        route = next(d for d in snapshot.upsert_deployments if d.id == dep.id)
        assert (route.pricing.input_micros_per_million, route.pricing.output_micros_per_million) == (
            1_000_000,
            4_000_000,
        )
        break
