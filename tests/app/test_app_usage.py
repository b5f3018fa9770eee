"""UsageService on SQLite and PostgreSQL: idempotent recording on the gateway's key, the client's
request id as a plain attribute, invalid records refused one by one (never the batch), daily
totals."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf import timestamp_pb2
from sqlalchemy import select

from app.db import models
from app.server import RunningApp
from bud.app.v1 import project_pb2, usage_pb2
from bud.auth.v1 import auth_pb2


def _ts(value: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


def _record(
    request_id: str, project_id: str, key_id: str, when: datetime, **fields: Any
) -> usage_pb2.UsageRecord:
    fields.setdefault("deployment_id", "dep_a")
    fields.setdefault("prompt_tokens", 10)
    fields.setdefault("completion_tokens", 5)
    fields.setdefault("status_code", 200)
    return usage_pb2.UsageRecord(
        request_id=request_id,
        project_id=project_id,
        api_key_id=key_id,
        time=_ts(when),
        operation="CreateChatCompletion",
        latency_ms=12.5,
        **fields,
    )


async def test_record_is_idempotent_and_queries_by_day(app: RunningApp, stubs: Any, helpers: Any) -> None:
    project_id = (
        await stubs.projects.CreateProject(
            project_pb2.CreateProjectRequest(project=project_pb2.Project(name="metered"))
        )
    ).project.id
    key_id = (
        await stubs.api_keys.CreateApiKey(auth_pb2.CreateApiKeyRequest(project_id=project_id))
    ).api_key.id
    day1 = datetime(2026, 3, 1, 23, 59, 59, tzinfo=UTC)
    day2 = datetime(2026, 3, 2, 0, 0, 1, tzinfo=UTC)
    batch = [
        _record("r1", project_id, key_id, day1),
        _record("r2", project_id, key_id, day1, status_code=500, completion_tokens=0),
        _record("r3", project_id, key_id, day2, deployment_id="dep_b", prompt_tokens=7),
        _record("r1", project_id, key_id, day1),  # repeated within the batch
    ]
    stored = await stubs.usage.RecordUsage(usage_pb2.RecordUsageRequest(records=batch))
    assert stored.stored == 3
    again = await stubs.usage.RecordUsage(usage_pb2.RecordUsageRequest(records=batch))
    assert again.stored == 0  # a resent batch stores nothing
    # Concurrent resends (two gateways) still store each request once.
    late = [_record(f"c{i}", project_id, key_id, day2) for i in range(20)]
    results = await asyncio.gather(
        *(stubs.usage.RecordUsage(usage_pb2.RecordUsageRequest(records=late)) for _ in range(3))
    )
    assert sum(r.stored for r in results) == 20

    key = (
        await stubs.api_keys.GetApiKey(auth_pb2.GetApiKeyRequest(project_id=project_id, api_key_id=key_id))
    ).api_key
    assert key.last_used_time.ToDatetime(tzinfo=UTC) == day2

    everything = (await stubs.usage.QueryUsage(usage_pb2.QueryUsageRequest(project_id=project_id))).buckets
    assert [
        (b.date, b.deployment_id, b.requests, b.prompt_tokens, b.completion_tokens, b.errors)
        for b in everything
    ] == [
        ("2026-03-01", "dep_a", 2, 20, 5, 1),
        ("2026-03-02", "dep_a", 20, 200, 100, 0),
        ("2026-03-02", "dep_b", 1, 7, 5, 0),
    ]
    assert all(b.api_key_id == key_id for b in everything)

    first_day = (
        await stubs.usage.QueryUsage(
            usage_pb2.QueryUsageRequest(project_id=project_id, start_date="2026-03-01", end_date="2026-03-01")
        )
    ).buckets
    assert [(b.date, b.requests) for b in first_day] == [("2026-03-01", 2)]
    only_b = (
        await stubs.usage.QueryUsage(
            usage_pb2.QueryUsageRequest(project_id=project_id, deployment_id="dep_b")
        )
    ).buckets
    assert [(b.date, b.deployment_id) for b in only_b] == [("2026-03-02", "dep_b")]
    from_day2 = (
        await stubs.usage.QueryUsage(
            usage_pb2.QueryUsageRequest(project_id=project_id, start_date="2026-03-02")
        )
    ).buckets
    assert {b.date for b in from_day2} == {"2026-03-02"}
    other_key = (
        await stubs.usage.QueryUsage(usage_pb2.QueryUsageRequest(project_id=project_id, api_key_id="key_x"))
    ).buckets
    assert list(other_key) == []

    # Older records do not move last_used_time back.
    await stubs.usage.RecordUsage(
        usage_pb2.RecordUsageRequest(
            records=[_record("old", project_id, key_id, datetime(2025, 1, 1, tzinfo=UTC))]
        )
    )
    key = (
        await stubs.api_keys.GetApiKey(auth_pb2.GetApiKeyRequest(project_id=project_id, api_key_id=key_id))
    ).api_key
    assert key.last_used_time.ToDatetime(tzinfo=UTC) == day2


async def _requests(stubs: Any, project_id: str) -> int:
    buckets = (await stubs.usage.QueryUsage(usage_pb2.QueryUsageRequest(project_id=project_id))).buckets
    return sum(b.requests for b in buckets)


async def test_same_client_request_id_is_one_record_per_request(stubs: Any, app: RunningApp) -> None:
    """Five requests sent with one X-Request-Id are five records (the attack recorded one)."""
    project_id = app.bootstrapped.project_id
    now = datetime.now(UTC)
    batch = [
        _record(f"gw{i}", project_id, "key_a", now, client_request_id="same-id-every-time") for i in range(5)
    ]
    assert (await stubs.usage.RecordUsage(usage_pb2.RecordUsageRequest(records=batch))).stored == 5
    assert (await stubs.usage.RecordUsage(usage_pb2.RecordUsageRequest(records=batch))).stored == 0
    assert await _requests(stubs, project_id) == 5
    async with app.db.snapshot() as session:
        rows = (
            await session.execute(select(models.UsageRecord.request_id, models.UsageRecord.client_request_id))
        ).all()
    assert sorted(rows) == [(f"gw{i}", "same-id-every-time") for i in range(5)]


async def test_cached_records_are_kept_and_counted_apart(stubs: Any, app: RunningApp) -> None:
    """A response-cache hit's record (zero tokens, `cached`) is stored with its flag, and the day's
    bucket counts it in `requests` and in `cached_requests`."""
    project_id = app.bootstrapped.project_id
    now = datetime.now(UTC)
    batch = [
        _record("miss", project_id, "key_c", now, deployment_id="dep_c"),
        _record(
            "hit1",
            project_id,
            "key_c",
            now,
            deployment_id="dep_c",
            prompt_tokens=0,
            completion_tokens=0,
            cached=True,
        ),
        _record(
            "hit2",
            project_id,
            "key_c",
            now,
            deployment_id="dep_c",
            prompt_tokens=0,
            completion_tokens=0,
            cached=True,
        ),
    ]
    assert (await stubs.usage.RecordUsage(usage_pb2.RecordUsageRequest(records=batch))).stored == 3
    async with app.db.snapshot() as session:
        rows = (
            await session.execute(
                select(models.UsageRecord.request_id, models.UsageRecord.cached).where(
                    models.UsageRecord.api_key_id == "key_c"
                )
            )
        ).all()
    assert sorted(rows) == [("hit1", True), ("hit2", True), ("miss", False)]
    query = usage_pb2.QueryUsageRequest(project_id=project_id, api_key_id="key_c")
    (bucket,) = (await stubs.usage.QueryUsage(query)).buckets
    assert (bucket.requests, bucket.cached_requests, bucket.prompt_tokens, bucket.completion_tokens) == (
        3,
        2,
        10,
        5,
    )


async def test_invalid_records_are_refused_alone(stubs: Any, app: RunningApp) -> None:
    """A 129-character id (key or client id) or a negative count refuses that record, reported
    by index, key, reason and field; the rest of the batch is stored (it used to fail whole)."""
    project_id = app.bootstrapped.project_id
    now = datetime.now(UTC)
    batch = [
        _record("ok1", project_id, "key_a", now, client_request_id="c" * 128),
        _record("long-client", project_id, "key_a", now, client_request_id="x" * 129),
        _record("k" * 129, project_id, "key_a", now),
        usage_pb2.UsageRecord(project_id=project_id),
        _record("neg", project_id, "key_a", now, prompt_tokens=-1),
        _record("no-project", "", "key_a", now),
        _record("ok2", project_id, "key_a", now),
    ]
    reply = await stubs.usage.RecordUsage(usage_pb2.RecordUsageRequest(records=batch))
    assert reply.stored == 2
    assert [(r.index, r.request_id, r.reason, r.field) for r in reply.refused] == [
        (1, "long-client", "INVALID_ARGUMENT", "records[1].client_request_id"),
        (2, "k" * 129, "INVALID_ARGUMENT", "records[2].request_id"),
        (3, "", "INVALID_ARGUMENT", "records[3].request_id"),
        (4, "neg", "INVALID_ARGUMENT", "records[4].prompt_tokens"),
        (5, "no-project", "INVALID_ARGUMENT", "records[5].project_id"),
    ]
    assert all(r.message for r in reply.refused)
    assert await _requests(stubs, project_id) == 2
    # Resent (the gateway was unsure): nothing is stored twice, the same records are refused.
    again = await stubs.usage.RecordUsage(usage_pb2.RecordUsageRequest(records=batch))
    assert (again.stored, len(again.refused)) == (0, 5)
    assert await _requests(stubs, project_id) == 2


async def test_errors(stubs: Any, helpers: Any, app: RunningApp) -> None:
    project_id = app.bootstrapped.project_id
    empty = await stubs.usage.RecordUsage(usage_pb2.RecordUsageRequest())
    assert (empty.stored, list(empty.refused)) == (0, [])
    await helpers.expect_error(
        stubs.usage.QueryUsage(usage_pb2.QueryUsageRequest(project_id=project_id, start_date="03/01/2026")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "start_date",
    )
    await helpers.expect_error(
        stubs.usage.QueryUsage(usage_pb2.QueryUsageRequest(project_id=project_id, end_date="2026-02-30")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "end_date",
    )
    await helpers.expect_error(
        stubs.usage.QueryUsage(
            usage_pb2.QueryUsageRequest(project_id=project_id, start_date="2026-03-02", end_date="2026-03-01")
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "start_date",
    )
    await helpers.expect_error(
        stubs.usage.QueryUsage(usage_pb2.QueryUsageRequest(project_id="prj_missing")),
        grpc.StatusCode.NOT_FOUND,
        "project_id",
    )


async def test_record_without_time_uses_now(stubs: Any, app: RunningApp) -> None:
    project_id = app.bootstrapped.project_id
    await stubs.usage.RecordUsage(
        usage_pb2.RecordUsageRequest(records=[usage_pb2.UsageRecord(request_id="now", project_id=project_id)])
    )
    today = datetime.now(UTC).date().isoformat()
    buckets = (await stubs.usage.QueryUsage(usage_pb2.QueryUsageRequest(project_id=project_id))).buckets
    assert [(b.date, b.requests) for b in buckets] == [(today, 1)]


async def test_prompt_runs_are_named_and_queried(stubs: Any, helpers: Any) -> None:
    """The model calls of prompt runs keep their prompt, version and prompt deployment, are counted
    apart from direct calls of the same model, and can be narrowed to; over-long ids and a
    negative version are refused one by one."""
    project_id = (
        await stubs.projects.CreateProject(
            project_pb2.CreateProjectRequest(project=project_pb2.Project(name="prompted"))
        )
    ).project.id
    now = datetime(2026, 4, 1, 12, tzinfo=UTC)
    run = {"prompt_id": "pmpt_1", "prompt_version": 2, "prompt_deployment_id": "dep_prompt"}
    batch = [
        _record("d1", project_id, "key_a", now),  # a direct call of dep_a
        _record("p1", project_id, "key_a", now, **run),  # a prompt run's first call
        _record("p2", project_id, "key_a", now, **run),  # its repair
        _record("p3", project_id, "key_a", now, prompt_id="pmpt_1", prompt_version=1),  # by id
        _record("bad1", project_id, "key_a", now, prompt_id="p" * 65),
        _record("bad2", project_id, "key_a", now, prompt_version=-1),
    ]
    answer = await stubs.usage.RecordUsage(usage_pb2.RecordUsageRequest(records=batch))
    assert answer.stored == 4
    assert [(r.index, r.field) for r in answer.refused] == [
        (4, "records[4].prompt_id"),
        (5, "records[5].prompt_version"),
    ]
    buckets = (await stubs.usage.QueryUsage(usage_pb2.QueryUsageRequest(project_id=project_id))).buckets
    assert sorted(
        (b.deployment_id, b.prompt_id, b.prompt_version, b.prompt_deployment_id, b.requests) for b in buckets
    ) == [
        ("dep_a", "", 0, "", 1),
        ("dep_a", "pmpt_1", 1, "", 1),
        ("dep_a", "pmpt_1", 2, "dep_prompt", 2),
    ]
    by_prompt = (
        await stubs.usage.QueryUsage(usage_pb2.QueryUsageRequest(project_id=project_id, prompt_id="pmpt_1"))
    ).buckets
    assert sum(b.requests for b in by_prompt) == 3
    by_deployment = (
        await stubs.usage.QueryUsage(
            usage_pb2.QueryUsageRequest(project_id=project_id, prompt_deployment_id="dep_prompt")
        )
    ).buckets
    assert [(b.prompt_version, b.requests) for b in by_deployment] == [(2, 2)]
