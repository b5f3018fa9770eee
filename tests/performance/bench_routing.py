"""Routing watch benchmark: what idle WatchRouting streams cost the app, and how long a change
takes to reach all of them — the routing feed (one loader per process) against the previous
design (each stream polls the revision every 100 ms and reloads every table on each change),
measured in the same run, on SQLite and on PostgreSQL.

    python -m tests.performance.bench_routing                    # 100 watchers, 10,000 keys
    python -m tests.performance.bench_routing --quick            # shorter idle window, fewer changes
    python -m tests.performance.bench_routing --databases sqlite --designs feed --watchers 20

For each database × design: a fresh database; the app (`app.server.start_app`, no default
deployments, so the reconciler has nothing to do) in its own process; 10,000 API keys in one
project written straight into the database; `--watchers` streams from this process (10 per gRPC
channel), opened 10 at a time, each batch once the previous one holds every key (all at once, the
per-stream design's 100 concurrent loads exhaust the database pool: streams fail and retry for
minutes). Streams reconnect and resume after an error, as `gateway/tables.py` does, and the
errors are counted. Then:

- **idle CPU**: user + system CPU of the app process over `--idle` seconds with nothing changing,
  as % of one core, with the watchers connected — and, before they connect, with none (the
  app's own idle cost: reconciler passes, gRPC's threads);
- **change latency**: `--changes` times, UpdateApiKey through the app's gRPC API, timed from the
  call to the moment the *last* watcher has the new value (p50 and max), and the app's CPU per
  change (the idle rate over the pauses between changes subtracted). The per-stream design runs
  `--legacy-changes` of them; a change that has not reached every watcher after
  `--change-timeout` s is reported as such and ends the series.

Numbers are printed (and written with `--json`), never asserted: this is not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import field_mask_pb2

from budrt.grpc_server import service_channel
from tests.support.procs import tree_cpu_seconds

REPO = Path(__file__).resolve().parents[2]
LOG_DIR = REPO / ".bench" / "logs"
ADMIN_PASSWORD = "bench-admin-password"
STREAMS_PER_CHANNEL = 10
LEGACY_POLL_INTERVAL_S = 0.1


# ==== the app process (hidden --role app) =========================================================


def _legacy_servicer() -> type:
    """The previous WatchRouting (before the routing feed), kept here to measure against: each
    stream polls the revision every 100 ms (or wakes on this process's commits) and reloads every
    table when it moved, through ORM objects (the load as it was)."""
    from sqlalchemy import or_, select

    from app.convert import route_deployment, route_key, route_project
    from app.db import models
    from app.db.models import utcnow
    from app.db.session import current_revision
    from app.routing_feed import RoutingTables, has_changes
    from bud.auth.v1 import routing_pb2, routing_pb2_grpc

    async def load_tables(db: Any) -> RoutingTables:
        async with db.snapshot() as session:
            revision = await current_revision(session)
            now = utcnow()
            keys = await session.scalars(
                select(models.ApiKey).where(
                    models.ApiKey.revoke_time.is_(None),
                    or_(models.ApiKey.expire_time.is_(None), models.ApiKey.expire_time > now),
                )
            )
            tables = RoutingTables(revision=revision, keys={k.id: route_key(k) for k in keys})
            for deployment in await session.scalars(select(models.Deployment)):
                tables.deployments[deployment.id] = route_deployment(deployment)
            for project in await session.scalars(select(models.Project)):
                tables.projects[project.id] = route_project(project)
        return tables

    class PerStreamRoutingServicer(routing_pb2_grpc.RoutingServiceServicer):
        def __init__(self, feed: Any) -> None:
            self._db = feed.db

        async def WatchRouting(self, request: Any, context: Any) -> AsyncIterator[Any]:
            wake = self._db.changes.current()
            sent = await load_tables(self._db)
            resumed = request.since_revision > 0 and request.since_revision == sent.revision
            yield sent.snapshot() if not resumed else routing_pb2.WatchRoutingResponse(revision=sent.revision)
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), LEGACY_POLL_INTERVAL_S)
                wake = self._db.changes.current()
                if await self._db.revision() == sent.revision:
                    continue
                tables = await load_tables(self._db)
                message = tables.changes_since(sent)
                if has_changes(message):
                    yield message
                sent = tables

    return PerStreamRoutingServicer


def _use_local_ca(data_dir: Path, identity: str) -> None:
    """Mutual TLS as the mesh speaks it: the app and the watchers (as gateways) hold
    certificates of one local CA in the app's data directory."""
    from budrt import tls

    tls.configure(tls.LocalCa(data_dir / "tls").material(identity))


async def _serve_app(database_url: str, design: str, port_file: Path, data_dir: Path) -> None:
    import app.services.routing as routing
    from app.server import start_app
    from app.settings import AppSettings

    if design == "per-stream":
        routing.RoutingServicer = _legacy_servicer()  # type: ignore[misc]
    _use_local_ca(data_dir, "app")
    settings = AppSettings(
        data_dir=data_dir,
        database_url=database_url,
        app_address="127.0.0.1:0",
        key_hash_secret="bench-key-hash-secret",
        jwt_secret="bench-jwt-secret-of-at-least-32-bytes",
        admin_password=ADMIN_PASSWORD,
        default_model_name="",
        default_embedding_model_name="",
        default_image_model_name="",
    )
    app = await start_app(settings)
    port_file.write_text(str(app.port))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await app.stop(grace=1)


# ==== the benchmark ===============================================================================


@dataclass
class Result:
    database: str
    design: str
    watchers: int
    keys: int
    connect_s: float
    idle_s: float
    idle_cpu_pct: float
    no_watcher_cpu_pct: float
    changes: int
    latency_p50_ms: float
    latency_max_ms: float
    cpu_per_change_ms: float
    stream_errors: dict[str, int]


@contextlib.contextmanager
def _database(kind: str) -> Iterator[str]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="bench-routing-") as tmp:
            yield f"sqlite:///{tmp}/bud.db"
        return
    from tests.support.postgres import running_postgres

    with running_postgres() as cluster:
        yield cluster.url(cluster.create_database())


async def _seed_keys(database_url: str, count: int) -> tuple[str, str]:
    """A project with `count` keys, in one mutation; returns (project id, one key's id)."""
    from app import ids
    from app.db import models
    from app.db.models import utcnow
    from app.db.session import Database
    from app.services.projects import create_project

    db = Database(database_url)
    try:
        async with db.mutation() as session:
            project = await create_project(session, "bench")
            now = utcnow()
            rows = [
                {
                    "id": ids.new_id(ids.API_KEY),
                    "project_id": project.id,
                    "name": f"k{i}",
                    "prefix": secrets.token_hex(6),
                    "key_hash": secrets.token_bytes(32),
                    "deployment_ids": [],
                    "create_time": now,
                    "requests_per_minute": 0,
                    "tokens_per_minute": 0,
                }
                for i in range(count)
            ]
            await session.execute(models.ApiKey.__table__.insert(), rows)
        return project.id, rows[0]["id"]
    finally:
        await db.dispose()


class Watchers:
    """`n` WatchRouting streams; records when each sees key `probe` reach a value."""

    def __init__(self, address: str, n: int, probe: str) -> None:
        from bud.auth.v1 import routing_pb2_grpc

        self.probe = probe
        self.channels = [
            service_channel(address) for _ in range((n + STREAMS_PER_CHANNEL - 1) // STREAMS_PER_CHANNEL)
        ]
        self.stubs = [routing_pb2_grpc.RoutingServiceStub(c) for c in self.channels]
        self.n = n
        self.keys = [0] * n
        self.seen: list[dict[int, float]] = [{} for _ in range(n)]  # value → arrival time
        self.tasks: list[asyncio.Task[None]] = []
        self.errors: dict[str, int] = {}  # stream failures (then reconnected), by status

    async def connect(self, keys: int, batch: int, timeout: float) -> None:
        """Opens the streams `batch` at a time, each batch once the previous one has every key
        (all at once, the per-stream design's 100 concurrent loads run out of pooled database
        connections and the streams fail and retry for minutes)."""
        for first in range(0, self.n, batch):
            group = range(first, min(first + batch, self.n))
            self.tasks += [asyncio.create_task(self._watch(i)) for i in group]
            if not await self.wait(lambda g=group: min(self.keys[i] for i in g) >= keys, timeout):
                raise SystemExit("watchers did not get their snapshots in time")

    async def _watch(self, i: int) -> None:
        """One gateway's stream; like `gateway/tables.py`, it reconnects after an error and resumes
        from the last revision it applied."""
        from bud.auth.v1 import routing_pb2

        stub = self.stubs[i // STREAMS_PER_CHANNEL]
        revision = 0
        while True:
            try:
                request = routing_pb2.WatchRoutingRequest(gateway_id=f"w{i}", since_revision=revision)
                async for message in stub.WatchRouting(request):
                    now = time.perf_counter()
                    if message.reset:
                        self.keys[i] = len(message.upsert_keys)
                    else:
                        self.keys[i] += len(message.upsert_keys)  # only new keys, or the probe, here
                    for key in message.upsert_keys:
                        if key.id == self.probe:
                            self.seen[i].setdefault(key.tokens_per_minute, now)
                    revision = message.revision
            except grpc.aio.AioRpcError as err:
                self.errors[err.code().name] = self.errors.get(err.code().name, 0) + 1
            await asyncio.sleep(0.1)

    async def wait(self, check: Any, timeout: float) -> bool:
        """Whether `check()` came true within `timeout` seconds."""
        deadline = time.perf_counter() + timeout
        while not check():
            if time.perf_counter() > deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for channel in self.channels:
            await channel.close()


async def _measure(database: str, design: str, args: argparse.Namespace) -> Result:
    from bud.auth.v1 import auth_pb2, auth_pb2_grpc, user_pb2, user_pb2_grpc

    LOG_DIR.mkdir(parents=True, exist_ok=True)
    with _database(database) as url, tempfile.TemporaryDirectory(prefix="bench-routing-app-") as tmp:
        port_file = Path(tmp) / "port"
        log = (LOG_DIR / f"routing-{database}-{design}.log").open("wb")
        env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'gen'}"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.performance.bench_routing", "--role", "app", "--design", design,
             "--database-url", url, "--port-file", str(port_file), "--data-dir", str(Path(tmp) / "data")],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while not port_file.exists() or not port_file.read_text():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the app did not start; see {log.name}")
                await asyncio.sleep(0.1)
            address = f"127.0.0.1:{port_file.read_text()}"
            _use_local_ca(Path(tmp) / "data", "gateway")
            project_id, probe = await _seed_keys(url, args.keys)
            # The app's own idle cost, with the keys loaded and no watcher.
            await asyncio.sleep(args.settle)
            cpu0, wall0 = tree_cpu_seconds(proc.pid)[0], time.perf_counter()
            await asyncio.sleep(args.idle)
            baseline_pct = 100 * (tree_cpu_seconds(proc.pid)[0] - cpu0) / (time.perf_counter() - wall0)

            watchers = Watchers(address, args.watchers, probe)
            started = time.perf_counter()
            await watchers.connect(args.keys, args.connect_batch, timeout=300)
            connect_s = time.perf_counter() - started

            await asyncio.sleep(args.settle)
            cpu0, wall0 = tree_cpu_seconds(proc.pid)[0], time.perf_counter()
            await asyncio.sleep(args.idle)
            idle_cpu = tree_cpu_seconds(proc.pid)[0] - cpu0
            idle_wall = time.perf_counter() - wall0

            async with service_channel(address) as channel:
                token = (
                    await user_pb2_grpc.UserServiceStub(channel).Login(
                        user_pb2.LoginRequest(username="admin", password=ADMIN_PASSWORD)
                    )
                ).access_token
                keys = auth_pb2_grpc.ApiKeyServiceStub(channel)
                changes = args.changes if design == "feed" else args.legacy_changes
                latencies = []
                cpu0 = tree_cpu_seconds(proc.pid)[0]
                for value in range(1, changes + 1):
                    t0 = time.perf_counter()
                    await keys.UpdateApiKey(
                        auth_pb2.UpdateApiKeyRequest(
                            api_key=auth_pb2.ApiKey(id=probe, project_id=project_id, tokens_per_minute=value),
                            update_mask=field_mask_pb2.FieldMask(paths=["tokens_per_minute"]),
                        ),
                        metadata=(("authorization", f"Bearer {token}"),),
                    )
                    if not await watchers.wait(
                        lambda v=value: all(v in s for s in watchers.seen), timeout=args.change_timeout
                    ):
                        reached = sum(value in s for s in watchers.seen)
                        print(
                            f"  change {value}: {reached}/{args.watchers} watchers after {args.change_timeout} s"
                        )
                        latencies.append(float("inf"))
                        changes = value
                        break
                    latencies.append(max(s[value] for s in watchers.seen) - t0)
                    await asyncio.sleep(args.gap)
                change_cpu = tree_cpu_seconds(proc.pid)[0] - cpu0
            await watchers.close()
            return Result(
                stream_errors=watchers.errors,
                database=database,
                design=design,
                watchers=args.watchers,
                keys=args.keys,
                connect_s=round(connect_s, 2),
                idle_s=round(idle_wall, 1),
                idle_cpu_pct=round(100 * idle_cpu / idle_wall, 1),
                no_watcher_cpu_pct=round(baseline_pct, 1),
                changes=changes,
                latency_p50_ms=round(1000 * statistics.median(latencies), 1),
                latency_max_ms=round(1000 * max(latencies), 1),
                # The gaps between changes are idle time: subtract the idle rate over them.
                cpu_per_change_ms=round(
                    1000 * max(0.0, change_cpu - idle_cpu / idle_wall * args.gap * changes) / changes, 1
                ),
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()


def _print(results: list[Result]) -> None:
    print()
    print(
        "| database | design | watchers | keys | all snapshots s | idle app CPU, no watcher / watchers | change → all watchers p50 / max ms | app CPU per change ms | stream errors |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r.database} | {r.design} | {r.watchers} | {r.keys} | {r.connect_s} | {r.no_watcher_cpu_pct} / {r.idle_cpu_pct} % "
            f"(over {r.idle_s} s) | {r.latency_p50_ms} / {r.latency_max_ms} ({r.changes} changes) | {r.cpu_per_change_ms} | {r.stream_errors or 0} |"
        )  # fmt: skip
    by = {(r.database, r.design): r for r in results}
    for database in dict.fromkeys(r.database for r in results):
        feed, legacy = by.get((database, "feed")), by.get((database, "per-stream"))
        if not (feed and legacy):
            continue
        if legacy.latency_p50_ms == float("inf"):
            latency = "change latency: the per-stream design did not reach every watcher in time"
        else:
            latency = f"change latency p50 {legacy.latency_p50_ms / max(feed.latency_p50_ms, 0.1):.0f}×"
        print(
            f"{database}: per-stream / feed — idle CPU {legacy.idle_cpu_pct / max(feed.idle_cpu_pct, 0.1):.0f}×, "
            f"{latency}, CPU per change {legacy.cpu_per_change_ms / max(feed.cpu_per_change_ms, 0.1):.0f}×"
        )


async def _main(args: argparse.Namespace) -> None:
    results = []
    for database in args.databases.split(","):
        for design in args.designs.split(","):
            print(f"{database} / {design}: {args.watchers} watchers, {args.keys} keys ...", flush=True)
            result = await _measure(database, design, args)
            print(json.dumps(asdict(result)), flush=True)
            results.append(result)
    _print(results)
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in results], indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--role", choices=["bench", "app"], default="bench", help=argparse.SUPPRESS)
    parser.add_argument("--design", default="feed", help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    parser.add_argument("--port-file", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument("--designs", default="feed,per-stream")
    parser.add_argument("--watchers", type=int, default=100)
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle CPU measurement")
    parser.add_argument(
        "--settle", type=float, default=2.0, help="seconds after the snapshots, before measuring"
    )
    parser.add_argument("--changes", type=int, default=10, help="changes timed with the feed")
    parser.add_argument(
        "--legacy-changes", type=int, default=3, help="changes timed with the per-stream design"
    )
    parser.add_argument("--connect-batch", type=int, default=10, help="streams opened at a time")
    parser.add_argument(
        "--change-timeout", type=float, default=120.0, help="s a change may take to reach all"
    )
    parser.add_argument("--gap", type=float, default=0.2, help="seconds between changes")
    parser.add_argument("--quick", action="store_true", help="--idle 5 --changes 5 --legacy-changes 2")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    if args.role == "app":
        asyncio.run(_serve_app(args.database_url, args.design, Path(args.port_file), Path(args.data_dir)))
        return
    if args.quick:
        args.idle, args.changes, args.legacy_changes = 5.0, 5, 2
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()
