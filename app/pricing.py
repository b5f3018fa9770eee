"""Deployments' prices and their history, and the cost of usage records.

A deployment's current price sits on its row (micro-dollars per million input and output tokens,
per request and per generated image: `budrt.money.Price`); each change also adds a
`deployment_prices` row stamped with when it took effect, so usage is costed with the price in
force when it was served, whatever changed since. Usage records are costed when they are stored
(RecordUsage), in nano-dollars.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from google.protobuf import timestamp_pb2
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import models
from bud.app.v1 import deployment_pb2
from bud.auth.v1 import routing_pb2
from budrt.errors import invalid_argument
from budrt.money import MoneyError, Price, format_micros, parse_micros, parse_nanos

# Pricing fields and the row columns they are stored in.
_FIELDS = (
    ("input_per_million_usd", "input_micros_per_million"),
    ("output_per_million_usd", "output_micros_per_million"),
    ("per_request_usd", "request_micros"),
    ("per_image_usd", "image_micros"),
)


def _timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    # app.convert's, which imports this module
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value.astimezone(UTC))
    return ts


def parse_pricing(pricing: deployment_pb2.Pricing, param: str) -> Price:
    """The exact price of a Pricing message; INVALID_ARGUMENT naming the field otherwise."""
    values: dict[str, int] = {}
    for field, column in _FIELDS:
        try:
            values[column] = parse_micros(getattr(pricing, field))
        except MoneyError as err:
            raise invalid_argument(f"{param}.{field}: {err}", param=f"{param}.{field}") from None
    return Price(**values)


def pricing_message(price: Price, effective: datetime | None = None) -> deployment_pb2.Pricing:
    """The Pricing message of a price."""
    return deployment_pb2.Pricing(
        input_per_million_usd=format_micros(price.input_micros_per_million),
        output_per_million_usd=format_micros(price.output_micros_per_million),
        per_request_usd=format_micros(price.request_micros),
        per_image_usd=format_micros(price.image_micros),
        effective_time=_timestamp(effective),
    )


def row_price(row: models.Deployment | models.DeploymentPrice) -> Price:
    """The price stored on a deployment or price-history row."""
    return Price(
        row.input_micros_per_million or 0,
        row.output_micros_per_million or 0,
        row.request_micros or 0,
        row.image_micros or 0,
    )


def route_pricing(row: models.Deployment) -> routing_pb2.RoutePricing:
    """What the gateways need of a deployment's price (micro-dollars, as stored)."""
    price = row_price(row)
    return routing_pb2.RoutePricing(
        input_micros_per_million=price.input_micros_per_million,
        output_micros_per_million=price.output_micros_per_million,
        request_micros=price.request_micros,
        image_micros=price.image_micros,
    )


def default_pricing(settings: Any) -> deployment_pb2.Pricing:
    """The price a deployment created without one gets (AppSettings' `default_*_usd`)."""
    return deployment_pb2.Pricing(
        input_per_million_usd=settings.default_input_usd_per_million,
        output_per_million_usd=settings.default_output_usd_per_million,
        per_request_usd=settings.default_request_usd,
        per_image_usd=settings.default_image_usd,
    )


def apply_pricing(row: models.Deployment, pricing: deployment_pb2.Pricing, param: str) -> None:
    """Writes a validated Pricing onto a deployment row (its history: `record_price`)."""
    price = parse_pricing(pricing, param)
    row.input_micros_per_million = price.input_micros_per_million
    row.output_micros_per_million = price.output_micros_per_million
    row.request_micros = price.request_micros
    row.image_micros = price.image_micros


async def record_price(session: AsyncSession, row: models.Deployment, now: datetime) -> None:
    """Adds the row's price to its history when it differs from the last one recorded (or none
    is): in force from `now`."""
    last = await session.scalar(
        select(models.DeploymentPrice)
        .where(models.DeploymentPrice.deployment_id == row.id)
        .order_by(models.DeploymentPrice.effective_time.desc(), models.DeploymentPrice.id.desc())
        .limit(1)
    )
    price = row_price(row)
    if last is not None and row_price(last) == price:
        return
    session.add(
        models.DeploymentPrice(
            deployment_id=row.id,
            effective_time=now,
            input_micros_per_million=price.input_micros_per_million,
            output_micros_per_million=price.output_micros_per_million,
            request_micros=price.request_micros,
            image_micros=price.image_micros,
        )
    )


async def price_history(session: AsyncSession, deployment_id: str) -> list[deployment_pb2.Pricing]:
    """Every price the deployment has had, oldest first."""
    rows = await session.scalars(
        select(models.DeploymentPrice)
        .where(models.DeploymentPrice.deployment_id == deployment_id)
        .order_by(models.DeploymentPrice.effective_time, models.DeploymentPrice.id)
    )
    return [pricing_message(row_price(r), r.effective_time) for r in rows]


class PriceBook:
    """The price histories of some deployments, for costing usage at the price of its time."""

    def __init__(self, rows: Iterable[models.DeploymentPrice]) -> None:
        self._times: dict[str, list[datetime]] = {}
        self._prices: dict[str, list[Price]] = {}
        for r in rows:  # ordered by time
            self._times.setdefault(r.deployment_id, []).append(r.effective_time)
            self._prices.setdefault(r.deployment_id, []).append(row_price(r))

    @classmethod
    async def load(cls, session: AsyncSession, deployment_ids: Iterable[str]) -> PriceBook:
        """The histories of these deployments."""
        wanted = sorted({d for d in deployment_ids if d})
        if not wanted:
            return cls(())
        rows = await session.scalars(
            select(models.DeploymentPrice)
            .where(models.DeploymentPrice.deployment_id.in_(wanted))
            .order_by(models.DeploymentPrice.effective_time, models.DeploymentPrice.id)
        )
        return cls(rows)

    def price_at(self, deployment_id: str, when: datetime) -> Price | None:
        """The price in force at `when` (before the first one: the first); None: never priced."""
        times = self._times.get(deployment_id)
        if not times:
            return None
        index = bisect.bisect_right(times, when) - 1
        return self._prices[deployment_id][max(index, 0)]


def cost_usage_rows(book: PriceBook, rows: Sequence[dict[str, Any]], reported: Sequence[str]) -> None:
    """Sets each usage row's `cost_nanos`: its tokens at the price in force at its time (the
    per-request price, and the per-image price for each of its images, for a successful, uncached
    call); for a deployment never priced here, the cost the gateway reported (`reported`, decimal
    strings, same order)."""
    for row, gateway_cost in zip(rows, reported, strict=True):
        price = book.price_at(row["deployment_id"], row["time"])
        if row.get("cached"):
            row["cost_nanos"] = 0  # no engine ran
        elif price is None:
            try:
                row["cost_nanos"] = max(0, parse_nanos(gateway_cost))
            except MoneyError:
                row["cost_nanos"] = 0
        else:
            row["cost_nanos"] = price.cost_nanos(
                row["prompt_tokens"],
                row["completion_tokens"],
                per_request=row["status_code"] < 400,
                images=row.get("images", 0),
            )
