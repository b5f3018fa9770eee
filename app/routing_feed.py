"""The routing feed: one loader per app process for every WatchRouting stream.

The gateways' tables (active keys, deployments, projects) are read once per routing revision by
*this* module, whatever the number of streams, and each change is computed once — the delta from
the previous revision's tables, or the snapshot — and handed to every stream.

How the loader learns of a change:

- **In-process**: :meth:`Database.mutation` wakes it when it commits (``db.changes``).
- **PostgreSQL, other processes** (app replicas): every mutation runs ``pg_notify`` on
  :data:`~app.db.session.ROUTING_CHANNEL` inside its own transaction, so the notification is
  delivered on commit only; the feed ``LISTEN``s on a dedicated connection (reconnected with
  backoff; each (re)connection triggers a check, for what was missed meanwhile).
- **Fallback**: a check of the revision counter every ``poll_interval`` seconds (1 s on SQLite,
  where another process writing the same file has no other way to say so; 5 s on PostgreSQL, in
  case a notification is lost with its connection). A check is one indexed read; tables are
  loaded only when the revision moved.

Streams subscribe with :meth:`RoutingFeed.subscribe` and wait on their own bounded queue: an idle
stream costs no CPU at all. A subscriber whose queue is full (its gateway is not reading) has its
queue emptied and gets one fresh snapshot when it reads again, instead of the deltas it missed;
publishing never waits for anybody.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Final, cast

from sqlalchemy import or_, select

from app.budgets import route_budget
from app.convert import route_deployment, route_key, route_project
from app.db import models
from app.db.models import utcnow
from app.db.session import ROUTING_CHANNEL, Database, current_revision
from app.images import ImageDefaults
from bud.auth.v1 import routing_pb2

log = logging.getLogger(__name__)

SQLITE_POLL_INTERVAL_S = 1.0
POSTGRES_POLL_INTERVAL_S = 5.0
# Messages a subscriber may have waiting before it is switched to a snapshot.
QUEUE_SIZE = 64
LISTEN_MAX_BACKOFF_S = 5.0


@dataclass
class RoutingTables:
    """The gateway tables at one revision, by id."""

    revision: int
    keys: dict[str, routing_pb2.RouteKey] = field(default_factory=dict)
    deployments: dict[str, routing_pb2.RouteDeployment] = field(default_factory=dict)
    projects: dict[str, routing_pb2.RouteProject] = field(default_factory=dict)
    # The values each key's RouteKey was built from (see `load_tables`).
    key_rows: dict[str, tuple[Any, ...]] = field(default_factory=dict, repr=False)

    def snapshot(self) -> routing_pb2.WatchRoutingResponse:
        """All of it, as a reset message."""
        return routing_pb2.WatchRoutingResponse(
            revision=self.revision,
            reset=True,
            upsert_keys=list(self.keys.values()),
            upsert_deployments=list(self.deployments.values()),
            upsert_projects=list(self.projects.values()),
        )

    def changes_since(self, old: RoutingTables) -> routing_pb2.WatchRoutingResponse:
        """What turns `old` into these tables (an empty message when nothing differs)."""
        return routing_pb2.WatchRoutingResponse(
            revision=self.revision,
            upsert_keys=[
                m for i, m in self.keys.items() if old.keys.get(i) is not m and old.keys.get(i) != m
            ],
            delete_key_ids=[i for i in old.keys if i not in self.keys],
            upsert_deployments=[m for i, m in self.deployments.items() if old.deployments.get(i) != m],
            delete_deployment_ids=[i for i in old.deployments if i not in self.deployments],
            upsert_projects=[m for i, m in self.projects.items() if old.projects.get(i) != m],
            delete_project_ids=[i for i in old.projects if i not in self.projects],
        )


# What `route_key` reads of a key: two loads that read the same values make the same RouteKey.
_KEY_COLUMNS = (
    models.ApiKey.id,
    models.ApiKey.project_id,
    models.ApiKey.prefix,
    models.ApiKey.key_hash,
    models.ApiKey.deployment_ids,
    models.ApiKey.expire_time,
    models.ApiKey.requests_per_minute,
    models.ApiKey.tokens_per_minute,
)


async def load_tables(
    db: Database, previous: RoutingTables | None = None, image_defaults: ImageDefaults | None = None
) -> RoutingTables:
    """The tables and their revision, read in one consistent snapshot (image deployments'
    settings with `image_defaults`, the platform's, filled in).

    Keys are read as plain rows, not ORM objects, and a key whose row is the same as in
    `previous` keeps its RouteKey: with thousands of keys, building ORM instances and messages
    was nearly all of a load's CPU, and a change touches few keys.
    """
    async with db.snapshot() as session:
        revision = await current_revision(session)
        now = utcnow()
        rows = await session.execute(
            select(*_KEY_COLUMNS).where(
                models.ApiKey.revoke_time.is_(None),
                or_(models.ApiKey.expire_time.is_(None), models.ApiKey.expire_time > now),
            )
        )
        tables = RoutingTables(revision=revision)
        before = previous.key_rows if previous is not None else {}
        for row in rows:
            values = tuple(row)
            if before.get(row.id) == values:
                tables.keys[row.id] = previous.keys[row.id]  # type: ignore[union-attr]
            else:
                tables.keys[row.id] = route_key(cast(models.ApiKey, row))
            tables.key_rows[row.id] = values
        for deployment in await session.scalars(select(models.Deployment)):
            tables.deployments[deployment.id] = route_deployment(deployment, image_defaults)
        for project in await session.scalars(select(models.Project)):
            tables.projects[project.id] = route_project(project)
        budgets = select(models.Budget).order_by(models.Budget.create_time, models.Budget.id)
        for budget in await session.scalars(budgets):
            if budget.project_id in tables.projects:
                tables.projects[budget.project_id].budgets.append(route_budget(budget))
    return tables


def has_changes(message: routing_pb2.WatchRoutingResponse) -> bool:
    """Whether a delta carries anything a gateway would apply."""
    return any(
        len(getattr(message, name))
        for name in (
            "upsert_keys",
            "delete_key_ids",
            "upsert_deployments",
            "delete_deployment_ids",
            "upsert_projects",
            "delete_project_ids",
        )
    )


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


_RESYNC: Final = _Marker("RESYNC")  # the subscriber fell behind: send the current snapshot
_END: Final = _Marker("END")  # the feed stopped: end the stream

_Item = routing_pb2.WatchRoutingResponse | _Marker


class Subscription:
    """One stream's place in the feed: an async iterator of the messages to send."""

    def __init__(self, feed: RoutingFeed, first: routing_pb2.WatchRoutingResponse, size: int) -> None:
        self._feed = feed
        self._queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=size)
        self._queue.put_nowait(first)
        self._resync = False
        # How often this subscriber fell behind (tests, logs).
        self.resyncs = 0

    def offer(self, item: _Item) -> None:
        """Queues `item` without ever waiting: a full queue is replaced by a resync."""
        if item is _END:
            self._drain()
            self._queue.put_nowait(_END)
            return
        if self._resync:  # the snapshot it will get covers this change too
            return
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self._drain()
            self._queue.put_nowait(_RESYNC)
            self._resync = True
            self.resyncs += 1

    def _drain(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> routing_pb2.WatchRoutingResponse:
        item = await self._queue.get()
        if item is _END:
            self._queue.put_nowait(_END)  # stays ended
            raise StopAsyncIteration
        if item is _RESYNC:
            # Taken now, so it holds every change published since the queue overflowed.
            self._resync = False
            return self._feed.snapshot()
        assert isinstance(item, routing_pb2.WatchRoutingResponse)
        return item


class RoutingFeed:
    """Loads the routing tables once per revision and fans each change out to all subscribers.

    :meth:`start` loads the tables and starts the loader; :meth:`stop` ends every subscription.
    """

    def __init__(
        self,
        db: Database,
        *,
        poll_interval: float | None = None,
        queue_size: int = QUEUE_SIZE,
        image_defaults: ImageDefaults | None = None,
    ) -> None:
        self.db = db
        # The platform's image settings, filled into image deployments' routes.
        self._image_defaults = image_defaults or ImageDefaults()
        self._poll_interval = poll_interval or (
            POSTGRES_POLL_INTERVAL_S if db.dialect == "postgresql" else SQLITE_POLL_INTERVAL_S
        )
        self._queue_size = queue_size
        self._tables = RoutingTables(revision=0)
        self._snapshot: routing_pb2.WatchRoutingResponse | None = None
        self._subscribers: set[Subscription] = set()
        self._kick = asyncio.Event()
        self._published = asyncio.Condition()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = False
        self._checks = 0
        # How many times the tables were read from the database (tests, benchmark).
        self.loads = 0

    @property
    def revision(self) -> int:
        """The revision of the tables the feed holds."""
        return self._tables.revision

    @property
    def subscribers(self) -> int:
        """Streams subscribed now."""
        return len(self._subscribers)

    async def start(self) -> None:
        """Reads the tables, then follows the database's changes until :meth:`stop`."""
        self._tables = await self._load()
        self._tasks.append(asyncio.create_task(self._run(), name="routing-feed"))
        if self.db.dialect == "postgresql":
            self._tasks.append(asyncio.create_task(self._listen(), name="routing-feed-listen"))

    async def stop(self) -> None:
        """Stops loading and ends every subscription (their streams finish). Idempotent."""
        self._stopped = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for subscriber in self._subscribers:
            subscriber.offer(_END)
        async with self._published:  # releases anyone in catch_up
            self._published.notify_all()

    def snapshot(self) -> routing_pb2.WatchRoutingResponse:
        """The current tables as a reset message, built once per revision."""
        if self._snapshot is None:
            self._snapshot = self._tables.snapshot()
        return self._snapshot

    @contextlib.asynccontextmanager
    async def subscribe(self, since_revision: int = 0) -> AsyncIterator[Subscription]:
        """A subscription whose first message is a snapshot, or — when `since_revision` is the
        current revision — an empty message at that revision; then every change after it."""
        if since_revision > 0 and since_revision != self._tables.revision:
            # Maybe a revision another replica has already served: catch up before answering.
            await self.catch_up()
        if since_revision > 0 and since_revision == self._tables.revision:
            first = routing_pb2.WatchRoutingResponse(revision=since_revision)
        else:
            first = self.snapshot()
        # No await between the first message and joining: no change falls in between.
        subscription = Subscription(self, first, self._queue_size)
        if self._stopped:
            subscription.offer(_END)
        self._subscribers.add(subscription)
        try:
            yield subscription
        finally:
            self._subscribers.discard(subscription)

    async def catch_up(self) -> None:
        """Returns once the feed holds the database's current revision (or a later one)."""
        target = await self.db.revision()
        if target == self._tables.revision or self._stopped:
            return
        # Two checks after this point: the first may have begun before the revision was read.
        enough = self._checks + 2
        async with self._published:
            self._kick.set()
            await self._published.wait_for(
                lambda: self._tables.revision >= target or self._checks >= enough or self._stopped
            )

    async def refresh(self) -> None:
        """Checks the revision, and when it moved reads the tables and publishes the change
        (the loader's job; one at a time)."""
        try:
            await self._refresh()
        finally:
            self._checks += 1
            async with self._published:
                self._published.notify_all()

    async def _refresh(self) -> None:
        if await self.db.revision() == self._tables.revision:
            return
        tables = await self._load()
        old, self._tables, self._snapshot = self._tables, tables, None
        if tables.revision < old.revision:  # the database went back (restored): start over
            message = self.snapshot()
        else:
            message = tables.changes_since(old)
            if not has_changes(message):
                message = None  # nothing a gateway sees (e.g. PENDING → LOADING)
        if message is not None:
            for subscriber in self._subscribers:
                subscriber.offer(message)

    async def _load(self) -> RoutingTables:
        self.loads += 1
        return await load_tables(self.db, self._tables, self._image_defaults)

    async def _run(self) -> None:
        """The loader: waits for a reason to look, then refreshes; never dies of a database
        error (it logs, and tries again at the next reason)."""
        while True:
            # Taken before refreshing: a commit during the refresh wakes the next wait at once.
            committed = self.db.changes.current()
            self._kick.clear()
            try:
                await self.refresh()
            except Exception:
                log.exception("routing feed: reading the tables failed; retrying")
                await asyncio.sleep(self._poll_interval)
                continue
            waits = [asyncio.ensure_future(committed.wait()), asyncio.ensure_future(self._kick.wait())]
            try:
                await asyncio.wait(waits, timeout=self._poll_interval, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waits:
                    waiter.cancel()

    async def _listen(self) -> None:
        """PostgreSQL: LISTENs for the writers' notifications, reconnecting with backoff."""
        import psycopg  # only the PostgreSQL path needs it

        conninfo = self.db.url.set(drivername="postgresql").render_as_string(hide_password=False)
        backoff = 0.1
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {ROUTING_CHANNEL}")
                    backoff = 0.1
                    self._kick.set()  # whatever committed while nobody listened
                    async for _notify in conn.notifies():
                        self._kick.set()
            except (psycopg.Error, OSError) as err:
                log.warning(
                    "routing feed: LISTEN connection lost; polling every %.0f s until it is back: %s",
                    self._poll_interval,
                    err,
                )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, LISTEN_MAX_BACKOFF_S)
