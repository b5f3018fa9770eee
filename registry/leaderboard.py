"""The leaderboard: the catalogue models' card evaluation results (`registry_model_evals`) and the
recorded benchmarks (`registry_benchmarks`), ranked per board — a benchmark and metric, and for
serving benchmarks a hardware profile and a concurrency (a latency on one machine at one load is
not comparable with another's).

Computed by `refresh()` into `registry_leaderboard` (the whole board replaced in one transaction,
so every replica reads the same ranks), on the `leaderboard_update_interval` cron schedule
(`Schedule`, a background task of the registry's process), on demand (GetLeaderboard with
`refresh`), and on the first read when it was never computed.

Per board each model appears once: its best card value (a card may list a dataset twice), its
latest recorded benchmark. A benchmark of a model without a registry entry (a builtin, or an entry
deleted since) is ranked under its model name.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from croniter import croniter
from google.protobuf import timestamp_pb2
from sqlalchemy import delete, select

from bud.registry.v1 import registry_pb2
from registry.benchmarks import SERVING
from registry.convert import timestamp
from registry.db import models
from registry.db.models import now_ms
from registry.db.session import RegistryDatabase
from registry.evals import higher_is_better

log = logging.getLogger(__name__)

CARD = "model_card"
BENCHMARK = "benchmark"
DEFAULT_LIMIT = 20
MAX_LIMIT = 1000
# The serving metrics ranked per (hardware profile, concurrency), and whether higher is better.
SERVING_METRICS: dict[str, bool] = {
    "output_tokens_per_s": True,
    "requests_per_s": True,
    "ttft_p50_ms": False,
    "ttft_p99_ms": False,
    "tpot_p50_ms": False,
    "tpot_p99_ms": False,
    "e2e_p50_ms": False,
    "e2e_p99_ms": False,
}
STATE_ID = 1


@dataclass
class _Value:
    model_id: str
    model_name: str
    value: float
    result_id: str = ""
    task: str = ""


Board = tuple[str, str, str, int, bool, str]  # benchmark, metric, hardware key, concurrency, higher, source


async def compute(session: Any) -> list[models.LeaderboardEntry]:
    """The ranked rows from what the tables hold now."""
    boards: dict[Board, dict[tuple[str, str], _Value]] = {}
    names = dict((await session.execute(select(models.RegistryModel.id, models.RegistryModel.name))).all())

    evals = await session.scalars(select(models.ModelEvalResult).order_by(models.ModelEvalResult.position))
    for ev in evals:
        higher = higher_is_better(ev.metric) and higher_is_better(ev.metric_name)
        board = boards.setdefault((ev.dataset, ev.metric, "", 0, higher, CARD), {})
        key = (ev.model_id, "")
        best = board.get(key)
        if best is None or (ev.value > best.value if higher else ev.value < best.value):
            board[key] = _Value(ev.model_id, names.get(ev.model_id, ""), ev.value, task=ev.task)

    results = await session.scalars(select(models.BenchmarkResult).order_by(models.BenchmarkResult.id))
    for r in results:  # oldest first: a later result replaces an earlier one of the same model
        in_catalogue = r.model_id in names
        model_id = r.model_id if in_catalogue else ""
        name = names[r.model_id] if in_catalogue else (r.model_name or r.deployment_name)
        key = (model_id, "" if in_catalogue else name)
        if r.load_points:
            for point in r.load_points:
                if not point.get("requests"):
                    continue
                for metric, higher in SERVING_METRICS.items():
                    if metric in point:
                        board = boards.setdefault(
                            (SERVING, metric, r.hardware_key, int(point["concurrency"]), higher, BENCHMARK),
                            {},
                        )
                        board[key] = _Value(model_id, name, float(point[metric]), r.id)
        elif r.benchmark and r.metric:
            board = boards.setdefault(
                (r.benchmark, r.metric, r.hardware_key, 0, higher_is_better(r.metric), BENCHMARK), {}
            )
            board[key] = _Value(model_id, name, r.value, r.id)

    rows: list[models.LeaderboardEntry] = []
    for (benchmark, metric, hardware, concurrency, higher, source), values in sorted(boards.items()):
        ordered = sorted(values.values(), key=lambda v: (-v.value if higher else v.value, v.model_name))
        rank = 0
        for i, v in enumerate(ordered):
            if i == 0 or v.value != ordered[i - 1].value:
                rank = i + 1  # ties share a rank (1, 1, 3)
            rows.append(
                models.LeaderboardEntry(
                    benchmark=benchmark,
                    metric=metric,
                    hardware_key=hardware,
                    concurrency=concurrency,
                    rank=rank,
                    model_id=v.model_id,
                    model_name=v.model_name,
                    value=v.value,
                    higher_is_better=higher,
                    source=source,
                    result_id=v.result_id,
                    task=v.task,
                )
            )
    return rows


async def refresh(db: RegistryDatabase) -> int:
    """Recomputes the leaderboard; the rows written. Refreshes are serialized by the state row's
    lock (PostgreSQL) or the write transaction (SQLite), so two replicas never interleave."""
    async with db.transaction() as session:
        state = await session.scalar(
            select(models.LeaderboardState).where(models.LeaderboardState.id == STATE_ID).with_for_update()
        )
        if state is None:
            state = models.LeaderboardState(id=STATE_ID)
            session.add(state)
        rows = await compute(session)
        await session.execute(delete(models.LeaderboardEntry))
        session.add_all(rows)
        state.refresh_time_ms = now_ms()
    log.info("leaderboard refreshed: %d rows", len(rows))
    return len(rows)


async def refresh_time_ms(db: RegistryDatabase) -> int:
    """When it was last computed (0: never)."""
    async with db.transaction() as session:
        state = await session.get(models.LeaderboardState, STATE_ID)
        return state.refresh_time_ms if state is not None else 0


def entry_to_proto(row: models.LeaderboardEntry) -> registry_pb2.LeaderboardEntry:
    return registry_pb2.LeaderboardEntry(
        rank=row.rank,
        model_id=row.model_id,
        model_name=row.model_name,
        value=row.value,
        benchmark=row.benchmark,
        metric=row.metric,
        hardware_profile=row.hardware_key,
        concurrency=row.concurrency,
        source=row.source,
        higher_is_better=row.higher_is_better,
        result_id=row.result_id,
        task=row.task,
    )


async def read(
    db: RegistryDatabase, request: registry_pb2.GetLeaderboardRequest, limit: int
) -> tuple[list[registry_pb2.LeaderboardEntry], int]:
    """The boards the request selects, their first `limit` ranks; and the refresh time."""
    table = models.LeaderboardEntry
    stmt = select(table).where(table.rank <= limit)
    if request.benchmark:
        stmt = stmt.where(table.benchmark == request.benchmark)
    if request.metric:
        stmt = stmt.where(table.metric == request.metric)
    if request.hardware_profile:
        stmt = stmt.where(table.hardware_key == request.hardware_profile)
    stmt = stmt.order_by(
        table.benchmark, table.metric, table.hardware_key, table.concurrency, table.rank, table.id
    )
    async with db.transaction() as session:
        rows = (await session.scalars(stmt)).all()
        state = await session.get(models.LeaderboardState, STATE_ID)
        # Ties may share the last rank: keep at most `limit` rows per board.
        entries: list[registry_pb2.LeaderboardEntry] = []
        per_board: dict[tuple[str, str, str, int], int] = {}
        for row in rows:
            board = (row.benchmark, row.metric, row.hardware_key, row.concurrency)
            if per_board.get(board, 0) < limit:
                per_board[board] = per_board.get(board, 0) + 1
                entries.append(entry_to_proto(row))
        return entries, state.refresh_time_ms if state is not None else 0


class Schedule:
    """The refresh schedule: a cron expression (UTC), checked by the settings' validator."""

    def __init__(self, expression: str) -> None:
        self.expression = expression

    def next_after(self, moment: datetime) -> datetime:
        """The first run strictly after `moment` (aware, UTC)."""
        return croniter(self.expression, moment.astimezone(UTC)).get_next(datetime)

    def next_time(self) -> timestamp_pb2.Timestamp:
        """The next run as a Timestamp."""
        return timestamp(int(self.next_after(datetime.now(UTC)).timestamp() * 1000))

    async def run(self, stop: asyncio.Event, job: Callable[[], Awaitable[Any]]) -> None:
        """Runs `job` at each scheduled time until `stop` is set; a failing run is logged and the
        next one still comes."""
        while not stop.is_set():
            delay = (self.next_after(datetime.now(UTC)) - datetime.now(UTC)).total_seconds()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=max(0.0, delay))
                return
            try:
                await job()
            except Exception:  # noqa: BLE001  (the schedule outlives one bad run)
                log.exception("scheduled leaderboard refresh failed")
