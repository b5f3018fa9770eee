"""BudgetService: spending budgets of a project, or of one of its keys, per UTC day or month.

Owners of the project (and platform admins) create, change and delete budgets; viewers read them.
A budget reaches the gateways with the project in the routing feed (`RouteProject.budgets`),
which enforce it (`gateway/budgets.py`): alerts at its thresholds (a log line and, with a
`webhook_url`, one POST per threshold crossing), and with `hard_stop` a 429 `budget_exceeded` for
inference calls once the period's spend reaches the limit. A changed limit takes effect on the
next request. `spent_usd` is read from the usage records stored so far.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import grpc
from google.protobuf import field_mask_pb2
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from app import ids
from app.authz import Access
from app.budgets import DAY, DEFAULT_THRESHOLDS, MONTH, period_start, spent_nanos
from app.convert import to_timestamp
from app.db import models
from app.db.models import utcnow
from app.db.session import Database, discard
from app.services.common import get_api_key, get_project
from app.validation import check_update_mask
from auth.roles import OWNER, VIEWER
from auth.tokens import Authenticator
from bud.app.v1 import budget_pb2, budget_pb2_grpc
from budrt.errors import invalid_argument, not_found
from budrt.grpc_server import ServiceBinding
from budrt.money import MoneyError, format_micros, format_nanos, parse_micros

WRITABLE_FIELDS = ("api_key_id", "period", "limit_usd", "alert_thresholds", "hard_stop", "webhook_url")
MAX_THRESHOLDS = 10
MAX_WEBHOOK_URL = 2048
_PERIODS = {
    budget_pb2.BUDGET_PERIOD_UNSPECIFIED: MONTH,
    budget_pb2.BUDGET_PERIOD_MONTHLY: MONTH,
    budget_pb2.BUDGET_PERIOD_DAILY: DAY,
}


def _check(budget: budget_pb2.Budget, param: str) -> dict[str, object]:
    """The row values of a budget message; INVALID_ARGUMENT naming the field otherwise."""
    if budget.period not in _PERIODS:
        raise invalid_argument(f"{param}.period: unknown period {budget.period}", param=f"{param}.period")
    try:
        limit = parse_micros(budget.limit_usd)
    except MoneyError as err:
        raise invalid_argument(f"{param}.limit_usd: {err}", param=f"{param}.limit_usd") from None
    if limit <= 0:
        raise invalid_argument(
            f"{param}.limit_usd: a budget's limit must be more than 0 US dollars", param=f"{param}.limit_usd"
        )
    thresholds = list(budget.alert_thresholds) or list(DEFAULT_THRESHOLDS)
    if (
        len(thresholds) > MAX_THRESHOLDS
        or any(not 1 <= t <= 1000 for t in thresholds)
        or thresholds != sorted(set(thresholds))
    ):
        raise invalid_argument(
            f"{param}.alert_thresholds: at most {MAX_THRESHOLDS} percentages from 1 to 1000, ascending",
            param=f"{param}.alert_thresholds",
        )
    url = budget.webhook_url
    if url:
        parts = urlsplit(url)
        if len(url) > MAX_WEBHOOK_URL or parts.scheme not in ("http", "https") or not parts.hostname:
            raise invalid_argument(
                f"{param}.webhook_url: an http(s) URL of at most {MAX_WEBHOOK_URL} characters",
                param=f"{param}.webhook_url",
            )
    return {
        "api_key_id": budget.api_key_id,
        "period": _PERIODS[budget.period],
        "limit_micros": limit,
        "alert_thresholds": thresholds,
        "hard_stop": budget.hard_stop,
        "webhook_url": url,
    }


def _message(row: models.Budget) -> budget_pb2.Budget:
    return budget_pb2.Budget(
        id=row.id,
        project_id=row.project_id,
        api_key_id=row.api_key_id,
        period=budget_pb2.BUDGET_PERIOD_DAILY if row.period == DAY else budget_pb2.BUDGET_PERIOD_MONTHLY,
        limit_usd=format_micros(row.limit_micros),
        alert_thresholds=list(row.alert_thresholds),
        hard_stop=row.hard_stop,
        webhook_url=row.webhook_url,
        create_time=to_timestamp(row.create_time),
        update_time=to_timestamp(row.update_time),
    )


async def _with_spend(session: AsyncSession, row: models.Budget) -> budget_pb2.Budget:
    """The budget's message with its current period and what the period has spent."""
    now = utcnow()
    message = _message(row)
    message.spent_usd = format_nanos(await spent_nanos(session, row, now))
    message.period_start_time.CopyFrom(to_timestamp(period_start(row.period, now)))
    return message


async def _get(session: AsyncSession, project_id: str, budget_id: str, param: str) -> models.Budget:
    await get_project(session, project_id)
    row = await session.scalar(
        select(models.Budget).where(models.Budget.id == budget_id, models.Budget.project_id == project_id)
    )
    if row is None:
        raise not_found(f"budget {budget_id!r} not found in project {project_id!r}", param=param)
    return row


class BudgetServicer(budget_pb2_grpc.BudgetServiceServicer):
    """Implements bud.app.v1.BudgetService."""

    def __init__(self, db: Database, auth: Authenticator) -> None:
        self._access = Access(db, auth)

    async def CreateBudget(
        self, request: budget_pb2.CreateBudgetRequest, context: grpc.aio.ServicerContext
    ) -> budget_pb2.CreateBudgetResponse:
        """Creates a budget. Owner."""
        caller = await self._access.caller(context, request, "project_id")
        values = _check(request.budget, "budget")
        async with self._access.project(caller, request.project_id, OWNER, kind="mutation") as session:
            if values["api_key_id"]:
                await get_api_key(session, request.project_id, str(values["api_key_id"]), "budget.api_key_id")
            now = utcnow()
            row = models.Budget(
                id=ids.new_id(ids.BUDGET),
                project_id=request.project_id,
                create_time=now,
                update_time=now,
                **values,
            )
            session.add(row)
            await session.flush()
            return budget_pb2.CreateBudgetResponse(budget=await _with_spend(session, row))

    async def GetBudget(
        self, request: budget_pb2.GetBudgetRequest, context: grpc.aio.ServicerContext
    ) -> budget_pb2.GetBudgetResponse:
        """One budget with its period's spend. Viewer."""
        caller = await self._access.caller(context, request, "project_id", "budget_id")
        async with self._access.project(caller, request.project_id, VIEWER) as session:
            row = await _get(session, request.project_id, request.budget_id, "budget_id")
            return budget_pb2.GetBudgetResponse(budget=await _with_spend(session, row))

    async def ListBudgets(
        self, request: budget_pb2.ListBudgetsRequest, context: grpc.aio.ServicerContext
    ) -> budget_pb2.ListBudgetsResponse:
        """The project's budgets in creation order, with their periods' spend. Viewer."""
        caller = await self._access.caller(context, request, "project_id")
        async with self._access.project(caller, request.project_id, VIEWER) as session:
            rows = await session.scalars(
                select(models.Budget)
                .where(models.Budget.project_id == request.project_id)
                .order_by(models.Budget.create_time, models.Budget.id)
            )
            return budget_pb2.ListBudgetsResponse(budgets=[await _with_spend(session, r) for r in rows.all()])

    async def UpdateBudget(
        self, request: budget_pb2.UpdateBudgetRequest, context: grpc.aio.ServicerContext
    ) -> budget_pb2.UpdateBudgetResponse:
        """Changes the fields named in update_mask (all writable fields when empty). Owner."""
        caller = await self._access.caller(context, request, "budget.id", "budget.project_id")
        patch = request.budget
        paths = check_update_mask(request.update_mask, budget_pb2.Budget.DESCRIPTOR, WRITABLE_FIELDS)
        async with self._access.project(
            caller, patch.project_id, OWNER, kind="mutation", param="budget.project_id"
        ) as session:
            row = await _get(session, patch.project_id, patch.id, "budget.id")
            merged = _message(row)
            field_mask_pb2.FieldMask(paths=paths).MergeMessage(
                patch, merged, replace_message_field=True, replace_repeated_field=True
            )
            values = _check(merged, "budget")
            if values["api_key_id"] and values["api_key_id"] != row.api_key_id:
                await get_api_key(session, patch.project_id, str(values["api_key_id"]), "budget.api_key_id")
            if all(getattr(row, name) == value for name, value in values.items()):
                discard(session)  # nothing changed: the routing revision stays
                return budget_pb2.UpdateBudgetResponse(budget=await _with_spend(session, row))
            for name, value in values.items():
                setattr(row, name, value)
            row.update_time = utcnow()
            await session.flush()
            return budget_pb2.UpdateBudgetResponse(budget=await _with_spend(session, row))

    async def DeleteBudget(
        self, request: budget_pb2.DeleteBudgetRequest, context: grpc.aio.ServicerContext
    ) -> budget_pb2.DeleteBudgetResponse:
        """Deletes a budget (its stop, if any, is lifted on the next request). Owner."""
        caller = await self._access.caller(context, request, "project_id", "budget_id")
        async with self._access.project(caller, request.project_id, OWNER, kind="mutation") as session:
            row = await _get(session, request.project_id, request.budget_id, "budget_id")
            await session.execute(delete(models.Budget).where(models.Budget.id == row.id))
        return budget_pb2.DeleteBudgetResponse()


def binding(db: Database, auth: Authenticator) -> ServiceBinding:
    """BudgetService, ready for `GrpcServer`."""
    return ServiceBinding(
        servicer=BudgetServicer(db, auth),
        add_to_server=budget_pb2_grpc.add_BudgetServiceServicer_to_server,
        descriptor=budget_pb2.DESCRIPTOR.services_by_name["BudgetService"],
    )
