"""Budget periods and spend: the UTC day or month a budget counts, and what it has spent.

The gateways count spend themselves (reserve-then-settle, `gateway/budgets.py`); the app's view is
the usage records stored so far (each priced when it was stored), used for the Budget resource's
`spent_usd` and the cost report.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import models
from bud.auth.v1 import routing_pb2

DAY = "day"
MONTH = "month"
DEFAULT_THRESHOLDS = (50, 80, 100)


def period_start(period: str, now: datetime) -> datetime:
    """When the period containing `now` began (UTC midnight of the day, or of the month's 1st)."""
    now = now.astimezone(UTC)
    start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return start if period == DAY else start.replace(day=1)


async def spent_nanos(session: AsyncSession, row: models.Budget, now: datetime) -> int:
    """What the budget's current period has spent, in nano-dollars, from the stored usage."""
    record = models.UsageRecord
    first_day = period_start(row.period, now).date().isoformat()
    stmt = select(func.coalesce(func.sum(record.cost_nanos), 0)).where(
        record.project_id == row.project_id, record.day >= first_day
    )
    if row.api_key_id:
        stmt = stmt.where(record.api_key_id == row.api_key_id)
    return int(await session.scalar(stmt) or 0)


def route_budget(row: models.Budget) -> routing_pb2.RouteBudget:
    """What a gateway needs of a budget."""
    return routing_pb2.RouteBudget(
        id=row.id,
        api_key_id=row.api_key_id,
        period=row.period,
        limit_micros=row.limit_micros,
        alert_thresholds=list(row.alert_thresholds),
        hard_stop=row.hard_stop,
        webhook_url=row.webhook_url,
    )
