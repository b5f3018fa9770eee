"""UsageService: usage records written by gateways, and daily totals.

RecordUsage is idempotent: a record is stored once per `request_id`, the key the gateway made for
the request (a gateway may resend a batch it is unsure about); duplicates are skipped and not
counted in `stored`. The client's own X-Request-Id travels as `client_request_id`, an attribute
that several records may share. An invalid record never fails its batch: the valid records are
stored and each invalid one is answered in `refused` (index, key, reason, field), for the gateway
to quarantine — one bad record must not stop the usage of every project. It also moves the keys'
`last_used_time` forward. That is bookkeeping, not routing state, so it does not bump the routing
revision. QueryUsage groups by UTC day, key and deployment, and for the model calls of prompt
runs by prompt, version and prompt deployment too (each model call of a run, repairs included, is
a record of its own); the requests the gateways' response cache answered (`cached`, zero tokens)
are counted in `requests` and in `cached_requests`.

Each record is costed when it is stored: its tokens at its deployment's price in force at its
`time` (`app.pricing`: the price history), plus the per-request price and, for an image call, the
per-image price of each of its `images` for a successful call; a cached answer costs nothing; a deployment never priced here keeps the cost the gateway reported.
Costs are integers (nano-dollars) summed exactly, answered as decimal strings (`cost_usd`).

RecordUsage is internal — gateways call it on the internal network — and takes no user token;
QueryUsage needs the viewer role in the project (see `app.authz`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import grpc
from sqlalchemy import case, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app.authz import Access
from app.convert import from_timestamp
from app.db import models
from app.db.models import utcnow
from app.db.session import Database
from app.pricing import PriceBook, cost_usage_rows
from app.validation import require
from auth.roles import VIEWER
from auth.tokens import Authenticator
from bud.app.v1 import usage_pb2, usage_pb2_grpc
from budrt.errors import ServiceError, invalid_argument
from budrt.grpc_server import ServiceBinding
from budrt.money import format_nanos

# Rows per INSERT statement: keeps the bound parameters under SQLite's limit.
_CHUNK = 200
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MAX_ID = 64
_MAX_REQUEST_ID = 128
_MAX_IMAGE_SIZE = 32  # "WIDTHxHEIGHT"
# What QueryUsage groups (and orders) by.
_GROUPS = (
    models.UsageRecord.day,
    models.UsageRecord.api_key_id,
    models.UsageRecord.deployment_id,
    models.UsageRecord.prompt_id,
    models.UsageRecord.prompt_version,
    models.UsageRecord.prompt_deployment_id,
)


def _record_row(record: usage_pb2.UsageRecord, index: int, now: datetime) -> dict[str, Any]:
    param = f"records[{index}]"
    require(record.request_id, f"{param}.request_id")
    require(record.project_id, f"{param}.project_id")
    for field in ("request_id", "client_request_id"):
        if len(getattr(record, field)) > _MAX_REQUEST_ID:
            raise invalid_argument(
                f"{param}.{field} is longer than {_MAX_REQUEST_ID} characters", param=f"{param}.{field}"
            )
    for field in (
        "project_id",
        "api_key_id",
        "deployment_id",
        "operation",
        "prompt_id",
        "prompt_deployment_id",
    ):
        if len(getattr(record, field)) > _MAX_ID:
            raise invalid_argument(
                f"{param}.{field} is longer than {_MAX_ID} characters", param=f"{param}.{field}"
            )
    for field in ("prompt_tokens", "completion_tokens", "prompt_version", "images", "image_steps"):
        if getattr(record, field) < 0:
            raise invalid_argument(f"{param}.{field} must not be negative", param=f"{param}.{field}")
    if len(record.image_size) > _MAX_IMAGE_SIZE:
        raise invalid_argument(
            f"{param}.image_size is longer than {_MAX_IMAGE_SIZE} characters", param=f"{param}.image_size"
        )
    when = from_timestamp(record.time) if record.HasField("time") else now
    return {
        "request_id": record.request_id,
        "client_request_id": record.client_request_id,
        "project_id": record.project_id,
        "api_key_id": record.api_key_id,
        "deployment_id": record.deployment_id,
        "operation": record.operation,
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
        "latency_ms": record.latency_ms,
        "status_code": record.status_code,
        "time": when,
        "day": when.date().isoformat(),
        "prompt_id": record.prompt_id,
        "prompt_version": record.prompt_version,
        "prompt_deployment_id": record.prompt_deployment_id,
        "cached": record.cached,
        "images": record.images,
        "image_size": record.image_size,
        "image_steps": record.image_steps,
        "reported_cost": record.cost_usd,  # the gateway's; replaced by `cost_nanos` before storing
    }


async def store_usage(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> int:
    """Inserts usage rows, skipping request ids already stored; returns how many were new."""
    dialect = session.bind.dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stored = 0
    # Sorted, so concurrent batches that overlap lock the same index entries in the same order.
    ordered = sorted(rows, key=lambda r: r["request_id"])
    for start in range(0, len(ordered), _CHUNK):
        stmt = (
            insert(models.UsageRecord)
            .values(ordered[start : start + _CHUNK])
            .on_conflict_do_nothing(index_elements=["request_id"])
            .returning(models.UsageRecord.request_id)
        )
        stored += len((await session.execute(stmt)).all())
    latest: dict[str, datetime] = {}
    for row in rows:
        key_id = row["api_key_id"]
        if key_id and (key_id not in latest or row["time"] > latest[key_id]):
            latest[key_id] = row["time"]
    for key_id, used in sorted(latest.items()):
        await session.execute(
            update(models.ApiKey)
            .where(
                models.ApiKey.id == key_id,
                or_(models.ApiKey.last_used_time.is_(None), models.ApiKey.last_used_time < used),
            )
            .values(last_used_time=used)
        )
    return stored


def _parse_day(value: str, param: str) -> str | None:
    if not value:
        return None
    try:
        if not _DATE_RE.match(value):
            raise ValueError(value)
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise invalid_argument(f"{param} must be a date YYYY-MM-DD, got {value!r}", param=param) from None


class UsageServicer(usage_pb2_grpc.UsageServiceServicer):
    """Implements bud.app.v1.UsageService."""

    def __init__(self, db: Database, auth: Authenticator) -> None:
        self._db = db
        self._access = Access(db, auth)

    async def RecordUsage(
        self, request: usage_pb2.RecordUsageRequest, context: grpc.aio.ServicerContext
    ) -> usage_pb2.RecordUsageResponse:
        """Stores the valid records of a batch (in one transaction) and answers the invalid ones
        in `refused`; records already stored are skipped. Internal: no user token."""
        now = utcnow()
        rows: dict[str, dict[str, Any]] = {}
        refused: list[usage_pb2.RefusedUsageRecord] = []
        for i, record in enumerate(request.records):
            try:
                row = _record_row(record, i, now)
            except ServiceError as err:
                refused.append(
                    usage_pb2.RefusedUsageRecord(
                        request_id=record.request_id,
                        index=i,
                        reason=err.reason,
                        field=err.param,
                        message=err.message,
                    )
                )
                continue
            rows.setdefault(row["request_id"], row)  # a batch may repeat a record
        stored = 0
        if rows:
            async with self._db.transaction() as session:
                batch = list(rows.values())
                book = await PriceBook.load(session, (r["deployment_id"] for r in batch))
                cost_usage_rows(book, batch, [r.pop("reported_cost") for r in batch])
                stored = await store_usage(session, batch)
        return usage_pb2.RecordUsageResponse(stored=stored, refused=refused)

    async def QueryUsage(
        self, request: usage_pb2.QueryUsageRequest, context: grpc.aio.ServicerContext
    ) -> usage_pb2.QueryUsageResponse:
        """Totals per UTC day, key, deployment and prompt run (prompt, version, prompt
        deployment), ordered by date. Empty start/end dates leave that side open; api_key_id,
        deployment_id, prompt_id and prompt_deployment_id narrow the records counted. Viewer."""
        caller = await self._access.caller(context, request, "project_id")
        start = _parse_day(request.start_date, "start_date")
        end = _parse_day(request.end_date, "end_date")
        if start and end and start > end:
            raise invalid_argument("start_date is after end_date", param="start_date")
        record = models.UsageRecord
        stmt = (
            select(
                record.day,
                record.api_key_id,
                record.deployment_id,
                func.count(),
                func.coalesce(func.sum(record.prompt_tokens), 0),
                func.coalesce(func.sum(record.completion_tokens), 0),
                func.coalesce(func.sum(case((record.status_code >= 400, 1), else_=0)), 0),
                record.prompt_id,
                record.prompt_version,
                record.prompt_deployment_id,
                func.coalesce(func.sum(case((record.cached, 1), else_=0)), 0),
                func.coalesce(func.sum(record.images), 0),
                func.coalesce(func.sum(record.cost_nanos), 0),
            )
            .where(record.project_id == request.project_id)
            .group_by(*_GROUPS)
            .order_by(*_GROUPS)
        )
        if start:
            stmt = stmt.where(record.day >= start)
        if end:
            stmt = stmt.where(record.day <= end)
        if request.api_key_id:
            stmt = stmt.where(record.api_key_id == request.api_key_id)
        if request.deployment_id:
            stmt = stmt.where(record.deployment_id == request.deployment_id)
        if request.prompt_id:
            stmt = stmt.where(record.prompt_id == request.prompt_id)
        if request.prompt_deployment_id:
            stmt = stmt.where(record.prompt_deployment_id == request.prompt_deployment_id)
        async with self._access.project(caller, request.project_id, VIEWER) as session:
            result = (await session.execute(stmt)).all()
        total = sum(int(row[-1]) for row in result)
        return usage_pb2.QueryUsageResponse(
            total_cost_usd=format_nanos(total),
            buckets=[
                usage_pb2.UsageBucket(
                    date=day,
                    api_key_id=key,
                    deployment_id=dep,
                    requests=int(n),
                    prompt_tokens=int(p),
                    completion_tokens=int(c),
                    errors=int(e),
                    prompt_id=prompt,
                    prompt_version=int(version),
                    prompt_deployment_id=via,
                    cached_requests=int(h),
                    images=int(images),
                    cost_usd=format_nanos(int(cost)),
                )
                for day, key, dep, n, p, c, e, prompt, version, via, h, images, cost in result
            ],
        )


def binding(db: Database, auth: Authenticator) -> ServiceBinding:
    """UsageService, ready for `GrpcServer`."""
    return ServiceBinding(
        servicer=UsageServicer(db, auth),
        add_to_server=usage_pb2_grpc.add_UsageServiceServicer_to_server,
        descriptor=usage_pb2.DESCRIPTOR.services_by_name["UsageService"],
    )
