"""The routing feed (`app/routing_feed.py`): one load per change for any number of watch streams,
idle streams that cost no database reads, resume, slow subscribers, and the two ways it learns of
changes — an in-process signal (SQLite, and this process on PostgreSQL) and PostgreSQL
LISTEN/NOTIFY from another process. Every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import app.routing_feed as routing_feed
from app.db.migrate import upgrade_database
from app.db.session import Database
from app.routing_feed import RoutingFeed, Subscription
from app.server import RunningApp
from app.services.projects import create_project
from bud.app.v1 import deployment_pb2, project_pb2
from bud.auth.v1 import routing_pb2
from tests.support.postgres import PostgresCluster

REPO = Path(__file__).resolve().parents[2]
WATCHERS = 20


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    """A migrated, empty database (no app running on it)."""
    database = Database(database_url)
    await upgrade_database(database)
    yield database
    await database.dispose()


async def _add_project(db: Database, name: str) -> str:
    async with db.mutation() as session:
        return (await create_project(session, name)).id


async def _next(subscription: Subscription, timeout: float = 5.0) -> routing_pb2.WatchRoutingResponse:
    return await asyncio.wait_for(anext(subscription), timeout)


class Counted:
    """Wraps a coroutine function and counts its calls."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn
        self.calls = 0

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return await self.fn(*args, **kwargs)


async def _settle(app: RunningApp, stubs: Any) -> None:
    """Waits until the bootstrap's deployments are READY, so the revision stops moving."""
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        listed = await stubs.deployments.ListDeployments(
            deployment_pb2.ListDeploymentsRequest(project_id=app.bootstrapped.project_id)
        )
        if all(d.status == deployment_pb2.DEPLOYMENT_STATUS_READY for d in listed.deployments):
            return
        assert asyncio.get_running_loop().time() < deadline, "bootstrap deployments never READY"
        await asyncio.sleep(0.05)


async def test_many_watchers_one_load_per_change(
    app: RunningApp, stubs: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """N streams get the same change from one read of the tables, and idle streams read nothing:
    with a load (or a revision poll) per stream, the counts below grow with N."""
    await _settle(app, stubs)
    loads = Counted(routing_feed.load_tables)
    monkeypatch.setattr(routing_feed, "load_tables", loads)
    revision_reads = Counted(app.db.revision)
    monkeypatch.setattr(app.db, "revision", revision_reads)

    calls = [stubs.routing.WatchRouting(routing_pb2.WatchRoutingRequest()) for _ in range(WATCHERS)]
    snapshots = await asyncio.gather(*(asyncio.wait_for(c.read(), 5) for c in calls))
    assert all(s.reset for s in snapshots) and len({s.revision for s in snapshots}) == 1
    assert loads.calls == 0  # every snapshot came from the tables already in memory

    # Idle: the streams are parked on their queues; only the feed's fallback poll reads (1 s on
    # SQLite, 5 s on PostgreSQL), whatever the number of streams.
    await asyncio.sleep(1.5)
    assert revision_reads.calls <= 3, revision_reads.calls
    assert loads.calls == 0

    before = await app.db.revision()
    project = (
        await stubs.projects.CreateProject(
            project_pb2.CreateProjectRequest(project=project_pb2.Project(name="fan-out"))
        )
    ).project
    messages = await asyncio.gather(*(asyncio.wait_for(c.read(), 5) for c in calls))
    for message in messages:
        assert not message.reset and message.revision > before
        assert [p.id for p in message.upsert_projects] == [project.id]
    assert len({m.SerializeToString() for m in messages}) == 1  # the very same change
    assert 1 <= loads.calls <= (await app.db.revision()) - before  # per revision, not per stream
    for call in calls:
        call.cancel()


async def test_resume_at_the_current_revision(db: Database) -> None:
    feed = RoutingFeed(db, poll_interval=60)
    await feed.start()
    try:
        await _add_project(db, "first")
        await feed.catch_up()
        async with feed.subscribe(feed.revision) as resumed:
            assert await _next(resumed) == routing_pb2.WatchRoutingResponse(revision=feed.revision)
            project_id = await _add_project(db, "second")
            change = await _next(resumed)
            assert not change.reset and [p.id for p in change.upsert_projects] == [project_id]
        # A revision this feed has not loaded yet (another replica's commit): it catches up
        # first and resumes instead of answering with a snapshot.
        other = Database(str(db.url.render_as_string(hide_password=False)))
        try:
            await _add_project(other, "elsewhere")
            latest = await other.revision()
        finally:
            await other.dispose()
        async with feed.subscribe(latest) as resumed:
            assert await _next(resumed) == routing_pb2.WatchRoutingResponse(revision=latest)
        # Anything else: a snapshot.
        for since in (1, latest + 1000):
            async with feed.subscribe(since) as stale:
                message = await _next(stale)
                assert message.reset and {p.name for p in message.upsert_projects} == {
                    "first",
                    "second",
                    "elsewhere",
                }
    finally:
        await feed.stop()


async def test_a_slow_subscriber_blocks_nobody(db: Database) -> None:
    """A subscriber that does not read falls behind alone: its queue is replaced by one fresh
    snapshot, while the others get every change as it comes."""
    feed = RoutingFeed(db, poll_interval=60, queue_size=3)
    await feed.start()
    try:
        async with feed.subscribe() as fast, feed.subscribe() as slow:
            assert (await _next(fast)).reset
            seen: set[str] = set()
            names = [f"p{i}" for i in range(10)]
            for name in names:
                project_id = await _add_project(db, name)
                while project_id not in seen:  # each change reaches the fast one in turn
                    message = await _next(fast, timeout=2)
                    assert not message.reset
                    seen.update(p.id for p in message.upsert_projects)
            assert slow.resyncs == 1
            first = await _next(slow)  # what it had before it fell behind is gone...
            assert first.reset and first.revision == feed.revision  # ...for the current snapshot
            assert {p.name for p in first.upsert_projects} == set(names)
            # Caught up, it follows the changes again.
            project_id = await _add_project(db, "after")
            for subscription in (fast, slow):
                message = await _next(subscription)
                assert [p.id for p in message.upsert_projects] == [project_id]
    finally:
        await feed.stop()


async def test_in_process_changes_arrive_without_polling(db: Database) -> None:
    feed = RoutingFeed(db, poll_interval=60)  # no poll within the test: the signal does it
    await feed.start()
    try:
        async with feed.subscribe() as subscription:
            await _next(subscription)
            project_id = await _add_project(db, "here")
            message = await _next(subscription, timeout=2)
            assert [p.id for p in message.upsert_projects] == [project_id]
    finally:
        await feed.stop()


async def test_other_writers_are_seen_by_the_fallback_poll(db: Database) -> None:
    feed = RoutingFeed(db, poll_interval=0.2)
    await feed.start()
    try:
        async with feed.subscribe() as subscription:
            await _next(subscription)
            other = Database(str(db.url.render_as_string(hide_password=False)))  # no shared signal
            try:
                project_id = await _add_project(other, "polled")
            finally:
                await other.dispose()
            message = await _next(subscription, timeout=3)
            assert [p.id for p in message.upsert_projects] == [project_id]
    finally:
        await feed.stop()


_WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from app.db.session import Database, discard
    from app.services.projects import create_project

    async def main():
        db = Database(sys.argv[1])
        async with db.mutation() as session:
            print((await create_project(session, sys.argv[2])).id)
        async with db.mutation() as session:  # rolled back: notifies nobody
            await create_project(session, "rolled-back")
            discard(session)
        await db.dispose()

    asyncio.run(main())
    """
)


@pytest.fixture
async def postgres_db(postgres_cluster: PostgresCluster) -> AsyncIterator[tuple[str, Database]]:
    """A migrated, empty PostgreSQL database and its URL."""
    name = postgres_cluster.create_database()
    database = Database(postgres_cluster.url(name))
    try:
        await upgrade_database(database)
        yield postgres_cluster.url(name), database
    finally:
        await database.dispose()
        postgres_cluster.drop_database(name)


@pytest.mark.postgres
async def test_postgres_notify_from_another_process(postgres_db: tuple[str, Database]) -> None:
    """A commit in another process reaches the stream through LISTEN/NOTIFY, long before the
    feed's poll (an hour here) would have found it."""
    database_url, db = postgres_db
    feed = RoutingFeed(db, poll_interval=3600)
    await feed.start()
    try:
        async with feed.subscribe() as subscription:
            await _next(subscription)
            await asyncio.sleep(0.2)  # the LISTEN connection is up
            env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'gen'}"}
            writer = await asyncio.create_subprocess_exec(
                sys.executable, "-c", _WRITER, database_url, "from-afar", env=env, stdout=subprocess.PIPE
            )
            out, _ = await writer.communicate()
            assert writer.returncode == 0
            project_id = out.decode().strip()
            message = await _next(subscription, timeout=5)
            assert [p.id for p in message.upsert_projects] == [project_id]
            assert message.revision == await db.revision()
    finally:
        await feed.stop()


async def test_stop_ends_every_subscription(db: Database) -> None:
    feed = RoutingFeed(db)
    await feed.start()
    async with feed.subscribe() as subscription:
        await _next(subscription)
        waiting = asyncio.ensure_future(anext(subscription))
        await asyncio.sleep(0.05)
        await feed.stop()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(waiting, 2)
    async with feed.subscribe() as late:  # subscribing after the stop ends at once
        with pytest.raises(StopAsyncIteration):
            await _next(late)


async def test_a_reload_rebuilds_only_the_keys_that_changed(db: Database) -> None:
    """`load_tables` reuses the RouteKey of a key whose row did not change, and rebuilds (and
    the delta carries) the ones that did — whatever field changed."""
    from sqlalchemy import update

    from app import ids
    from app.db import models
    from app.db.models import utcnow

    async with db.mutation() as session:
        project = await create_project(session, "keys")
        for i in range(4):
            session.add(
                models.ApiKey(
                    id=f"{ids.API_KEY}-{i}",
                    project_id=project.id,
                    prefix=f"prefix{i}",
                    key_hash=bytes([i]) * 32,
                    deployment_ids=[],
                    create_time=utcnow(),
                )
            )
    first = await routing_feed.load_tables(db)
    changes = {
        f"{ids.API_KEY}-0": {"deployment_ids": ["dep-a"]},
        f"{ids.API_KEY}-1": {"prefix": "rotated1", "key_hash": b"\x09" * 32},
        f"{ids.API_KEY}-2": {"expire_time": utcnow().replace(year=2100)},
    }
    async with db.mutation() as session:
        for key_id, values in changes.items():
            await session.execute(update(models.ApiKey).where(models.ApiKey.id == key_id).values(**values))
    second = await routing_feed.load_tables(db, first)
    assert second.keys[f"{ids.API_KEY}-3"] is first.keys[f"{ids.API_KEY}-3"]  # untouched: reused
    delta = second.changes_since(first)
    assert sorted(k.id for k in delta.upsert_keys) == sorted(changes)
    by_id = {k.id: k for k in delta.upsert_keys}
    assert list(by_id[f"{ids.API_KEY}-0"].deployment_ids) == ["dep-a"]
    assert by_id[f"{ids.API_KEY}-1"].prefix == "rotated1"
    assert by_id[f"{ids.API_KEY}-2"].expire_time.seconds > 0
    assert second == await routing_feed.load_tables(db)  # the same tables as a load from scratch
