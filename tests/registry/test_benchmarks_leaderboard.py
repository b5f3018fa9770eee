"""Benchmark results and the leaderboard over gRPC, hosted in a real app's process (SQLite and
PostgreSQL): admins record, everyone reads; filters and pagination; hand-made cards' model-index
results stored at registration and ranked with the recorded benchmarks, per metric and per
hardware profile; refresh on demand; the cron schedule."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest

from bud.registry.v1 import registry_pb2 as R
from registry.db import models
from registry.hardware import profile_key
from registry.leaderboard import Schedule
from registry.settings import RegistrySettings
from tests.registry.conftest import RegistryStack
from tests.registry.models_on_disk import small_llama
from tests.registry.test_registry_service import expect, make_user, register

CPU = R.HardwareProfile(cpu_model="Test CPU 9000", cpu_cores=2, memory_bytes=8 * 1024**3)
GPU = R.HardwareProfile(
    cpu_model="Test CPU 9000", cpu_cores=16, gpu_name="NVIDIA H200", gpu_count=1, memory_bytes=128 * 1024**3
)


def card_with_results(name: str, mmlu: float, ppl: float) -> str:
    """A card with a model-index: MMLU accuracy (higher first), perplexity (lower first), a
    non-numeric value (dropped)."""
    return f"""---
license: apache-2.0
model-index:
- name: {name}
  results:
  - task:
      type: text-generation
    dataset:
      name: MMLU
      type: cais/mmlu
    metrics:
    - type: accuracy
      value: {mmlu}
    - type: accuracy
      value: {mmlu - 10}
    - type: perplexity
      value: {ppl}
    - type: bleu
      value: n/a
---
# {name}
"""


def model_dir(root: Path, name: str, mmlu: float, ppl: float) -> Path:
    directory = small_llama(root / name)
    (directory / "README.md").write_text(card_with_results(name, mmlu, ppl))
    return directory


def serving(hw: R.HardwareProfile, ttft: float, tps: float, **fields: object) -> R.BenchmarkResult:
    points = [
        R.BenchmarkLoadPoint(
            concurrency=c,
            requests=8,
            duration_s=1.0,
            requests_per_s=8.0,
            output_tokens_per_s=tps * c,
            ttft_p50_ms=ttft * c,
            ttft_p99_ms=ttft * c * 2,
            tpot_p50_ms=1.0,
            e2e_p50_ms=ttft * c + 10,
        )
        for c in (1, 4)
    ]
    return R.BenchmarkResult(
        hardware=hw, load_points=points, engine_config={"max_model_len": "2048"}, source="test", **fields
    )


def board(
    entries: list[R.LeaderboardEntry], benchmark: str, metric: str, hw: str = "", conc: int = 0
) -> list:
    return [
        (e.rank, e.model_name, e.value)
        for e in entries
        if (e.benchmark, e.metric, e.hardware_profile, e.concurrency) == (benchmark, metric, hw, conc)
    ]


async def test_record_list_and_rank(registry_stack: RegistryStack) -> None:
    registry, users = await registry_stack.client()
    root = registry_stack.models_root
    a = await register(registry, model_dir(root, "llama-a", 61.5, 7.5))
    b = await register(registry, model_dir(root, "llama-b", 70.0, 9.0))

    # Admins record: by the path's model id, by the result's, and a model the catalogue lacks.
    ra = await registry.CreateBenchmarkResult(
        R.CreateBenchmarkResultRequest(
            model_id=a.id, result=serving(CPU, ttft=20, tps=100, deployment_name="d-a")
        )
    )
    assert ra.result.id.startswith("rbr_") and ra.result.model_name == "llama-a"
    assert ra.result.hardware.key == profile_key(CPU) == "cpu | Test CPU 9000 x2 | 8 GiB"
    assert [p.concurrency for p in ra.result.load_points] == [1, 4]
    assert ra.result.engine_config["max_model_len"] == "2048" and ra.result.create_time.seconds > 0
    await registry.CreateBenchmarkResult(
        R.CreateBenchmarkResultRequest(result=serving(CPU, ttft=10, tps=50, model_id=b.id))
    )
    await registry.CreateBenchmarkResult(
        R.CreateBenchmarkResultRequest(result=serving(GPU, ttft=2, tps=900, model_name="tiny-llama"))
    )
    await registry.CreateBenchmarkResult(
        R.CreateBenchmarkResultRequest(
            model_id=a.id, result=R.BenchmarkResult(benchmark="gsm8k", metric="accuracy", value=0.4)
        )
    )

    # Everyone reads; only admins write.
    await make_user(users)
    reader, _ = await registry_stack.client("alice", "password-of-alice")
    await expect(
        reader.CreateBenchmarkResult(
            R.CreateBenchmarkResultRequest(model_id=a.id, result=serving(CPU, 1, 1))
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    await expect(
        reader.GetLeaderboard(R.GetLeaderboardRequest(refresh=True)), grpc.StatusCode.PERMISSION_DENIED
    )
    await expect(
        registry_stack.anonymous().ListBenchmarkResults(R.ListBenchmarkResultsRequest()),
        grpc.StatusCode.UNAUTHENTICATED,
    )

    listed = await reader.ListBenchmarkResults(R.ListBenchmarkResultsRequest())
    assert [r.model_name for r in listed.results] == [
        "llama-a",
        "tiny-llama",
        "llama-b",
        "llama-a",
    ]  # newest first
    by_model = await reader.ListBenchmarkResults(R.ListBenchmarkResultsRequest(model_id=a.id))
    assert {r.benchmark or "serving" for r in by_model.results} == {"gsm8k", "serving"}
    on_gpu = await reader.ListBenchmarkResults(
        R.ListBenchmarkResultsRequest(hardware_profile=profile_key(GPU))
    )
    assert [r.model_name for r in on_gpu.results] == ["tiny-llama"]
    cpu_only = await reader.ListBenchmarkResults(R.ListBenchmarkResultsRequest(gpu_name="none"))
    assert len(cpu_only.results) == 3
    by_deployment = await reader.ListBenchmarkResults(R.ListBenchmarkResultsRequest(deployment_name="d-a"))
    assert [r.id for r in by_deployment.results] == [ra.result.id]
    seen, token = [], ""
    while True:
        page = await reader.ListBenchmarkResults(R.ListBenchmarkResultsRequest(page_size=3, page_token=token))
        seen += [r.id for r in page.results]
        token = page.next_page_token
        if not token:
            break
    assert seen == [r.id for r in listed.results]
    first = await reader.ListBenchmarkResults(R.ListBenchmarkResultsRequest(page_size=1))
    await expect(  # a token is bound to its filters
        reader.ListBenchmarkResults(
            R.ListBenchmarkResultsRequest(page_token=first.next_page_token, model_id=a.id)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "page_token",
    )

    # The first read computes the leaderboard; everyone reads it.
    lb = await reader.GetLeaderboard(R.GetLeaderboardRequest())
    assert lb.refresh_time.seconds > 0 and lb.next_refresh_time.ToDatetime() > lb.refresh_time.ToDatetime()
    entries = list(lb.entries)
    # Cards: best value per model (a card listing MMLU twice), higher accuracy first, lower perplexity first.
    assert board(entries, "cais/mmlu", "accuracy") == [(1, "llama-b", 70.0), (2, "llama-a", 61.5)]
    assert board(entries, "cais/mmlu", "perplexity") == [(1, "llama-a", 7.5), (2, "llama-b", 9.0)]
    assert not [e for e in entries if e.metric == "bleu"]
    mmlu = next(e for e in entries if e.metric == "accuracy" and e.benchmark == "cais/mmlu")
    assert mmlu.source == "model_card" and mmlu.task == "text-generation" and mmlu.higher_is_better
    # Serving: per hardware profile and concurrency; lower TTFT first, higher throughput first.
    cpu = profile_key(CPU)
    assert board(entries, "serving", "ttft_p50_ms", cpu, 1) == [(1, "llama-b", 10.0), (2, "llama-a", 20.0)]
    assert board(entries, "serving", "output_tokens_per_s", cpu, 4) == [
        (1, "llama-a", 400.0),
        (2, "llama-b", 200.0),
    ]
    assert board(entries, "serving", "ttft_p50_ms", profile_key(GPU), 1) == [(1, "tiny-llama", 2.0)]
    gpu_row = next(e for e in entries if e.model_name == "tiny-llama")
    assert gpu_row.model_id == "" and gpu_row.source == "benchmark" and gpu_row.result_id
    assert board(entries, "gsm8k", "accuracy") == [(1, "llama-a", 0.4)]  # no machine named: no profile

    # Filters and the limit per board.
    only = await reader.GetLeaderboard(
        R.GetLeaderboardRequest(benchmark="serving", metric="ttft_p50_ms", limit=1)
    )
    assert {(e.hardware_profile, e.concurrency, e.rank) for e in only.entries} == {
        (profile_key(CPU), 1, 1),
        (profile_key(CPU), 4, 1),
        (profile_key(GPU), 1, 1),
        (profile_key(GPU), 4, 1),
    }
    gpu_only = await reader.GetLeaderboard(R.GetLeaderboardRequest(hardware_profile=profile_key(GPU)))
    assert {e.model_name for e in gpu_only.entries} == {"tiny-llama"}

    # A new result shows at the next refresh (on demand here), the latest per model winning.
    await registry.CreateBenchmarkResult(
        R.CreateBenchmarkResultRequest(model_id=a.id, result=serving(CPU, ttft=5, tps=100))
    )
    stale = await reader.GetLeaderboard(R.GetLeaderboardRequest(benchmark="serving", metric="ttft_p50_ms"))
    assert board(list(stale.entries), "serving", "ttft_p50_ms", profile_key(CPU), 1)[0][1] == "llama-b"
    fresh = await registry.GetLeaderboard(R.GetLeaderboardRequest(metric="ttft_p50_ms", refresh=True))
    assert board(list(fresh.entries), "serving", "ttft_p50_ms", profile_key(CPU), 1) == [
        (1, "llama-a", 5.0),
        (2, "llama-b", 10.0),
    ]

    # Deleting an entry removes its card results; its benchmarks stay, ranked by name.
    await registry.DeleteModel(R.DeleteModelRequest(model_id=b.id))
    after = await registry.GetLeaderboard(R.GetLeaderboardRequest(refresh=True))
    assert board(list(after.entries), "cais/mmlu", "accuracy") == [(1, "llama-a", 61.5)]
    kept = board(list(after.entries), "serving", "ttft_p50_ms", profile_key(CPU), 1)
    assert kept == [(1, "llama-a", 5.0), (2, "llama-b", 10.0)]
    async with registry_stack.servicer._db.transaction() as session:  # noqa: SLF001
        from sqlalchemy import func, select

        assert (
            await session.scalar(select(func.count()).select_from(models.ModelEvalResult)) == 3
        )  # llama-a's


@pytest.mark.parametrize(
    ("result", "param"),
    [
        (R.BenchmarkResult(benchmark="mmlu"), "result.metric"),
        (R.BenchmarkResult(metric="acc", value=1), "result.benchmark"),
        (R.BenchmarkResult(benchmark="mmlu", metric="acc", value=float("nan")), "result.value"),
        (serving(CPU, 1, 1, metric="acc"), "result.metric"),
        (
            R.BenchmarkResult(load_points=[R.BenchmarkLoadPoint(concurrency=0)]),
            "result.load_points[0].concurrency",
        ),
        (
            R.BenchmarkResult(load_points=[R.BenchmarkLoadPoint(concurrency=1, ttft_p50_ms=-1)]),
            "result.load_points[0].ttft_p50_ms",
        ),
        (
            R.BenchmarkResult(load_points=[R.BenchmarkLoadPoint(concurrency=1, e2e_p99_ms=float("inf"))]),
            "result.load_points[0].e2e_p99_ms",
        ),
        (
            R.BenchmarkResult(
                load_points=[R.BenchmarkLoadPoint(concurrency=2), R.BenchmarkLoadPoint(concurrency=2)]
            ),
            "result.load_points[1].concurrency",
        ),
        (serving(R.HardwareProfile(gpu_name="X"), 1, 1), "result.hardware.gpu_count"),
        (serving(R.HardwareProfile(cpu_cores=-1), 1, 1), "result.hardware.cpu_cores"),
        (serving(CPU, 1, 1, notes="x" * 5000), "result.notes"),
        (serving(CPU, 1, 1, model_id="rm_other"), "result.model_id"),
        (serving(CPU, 1, 1), "model_id"),  # neither an entry nor a model name
    ],
)
async def test_bad_results_are_refused(
    registry_stack: RegistryStack, result: R.BenchmarkResult, param: str
) -> None:
    registry, _ = await registry_stack.client()
    model_id = "rm_000000000000000000000000" if param == "result.model_id" else ""
    await expect(
        registry.CreateBenchmarkResult(R.CreateBenchmarkResultRequest(model_id=model_id, result=result)),
        grpc.StatusCode.INVALID_ARGUMENT,
        param,
    )
    assert not (await registry.ListBenchmarkResults(R.ListBenchmarkResultsRequest())).results


async def test_unknown_model_and_bad_limit(registry_stack: RegistryStack) -> None:
    registry, _ = await registry_stack.client()
    await expect(
        registry.CreateBenchmarkResult(
            R.CreateBenchmarkResultRequest(model_id="rm_000000000000000000000000", result=serving(CPU, 1, 1))
        ),
        grpc.StatusCode.NOT_FOUND,
        "model_id",
    )
    await expect(
        registry.GetLeaderboard(R.GetLeaderboardRequest(limit=-1)), grpc.StatusCode.INVALID_ARGUMENT, "limit"
    )
    empty = await registry.GetLeaderboard(R.GetLeaderboardRequest())
    assert not empty.entries and empty.refresh_time.seconds > 0


# ---- the schedule ------------------------------------------------------------------------------
def test_cron_setting_parsed_and_next_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEADERBOARD_UPDATE_INTERVAL", raising=False)
    monkeypatch.delenv("BUD_LEADERBOARD_UPDATE_INTERVAL", raising=False)
    settings = RegistrySettings()
    assert settings.leaderboard_update_interval == "0 */6 * * *"
    at = datetime(2026, 11, 30, 7, 10, tzinfo=UTC)
    assert Schedule(settings.leaderboard_update_interval).next_after(at) == datetime(
        2026, 11, 30, 12, 0, tzinfo=UTC
    )
    assert (
        Schedule("0 */6 * * *").next_after(datetime(2026, 11, 30, 18, 0, tzinfo=UTC)).hour == 0
    )  # strictly after
    monkeypatch.setenv("LEADERBOARD_UPDATE_INTERVAL", "*/15  * * * *")  # the plain variable
    assert RegistrySettings().leaderboard_update_interval == "*/15 * * * *"
    assert Schedule("*/15 * * * *").next_after(at) == datetime(2026, 11, 30, 7, 15, tzinfo=UTC)
    monkeypatch.setenv("BUD_LEADERBOARD_UPDATE_INTERVAL", "30 2 * * 1")  # the BUD_ one wins
    assert RegistrySettings().leaderboard_update_interval == "30 2 * * 1"


@pytest.mark.parametrize("bad", ["every 6 hours", "61 * * * *", "0 */6 * *", "* * * * * * *", ""])
def test_bad_cron_refused_at_start(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    from pydantic import ValidationError

    from budrt.settings import load

    monkeypatch.setenv("BUD_LEADERBOARD_UPDATE_INTERVAL", bad)
    load.cache_clear()  # `load` reads the environment once per process: another test may have
    try:
        with pytest.raises(ValidationError, match="leaderboard_update_interval .* is not a cron expression"):
            load(RegistrySettings)
    finally:
        load.cache_clear()


async def test_schedule_runs_the_job_until_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    runs: list[datetime] = []
    schedule = Schedule("* * * * *")
    # Every 50 ms instead of every minute: the loop, not croniter, is under test here.
    monkeypatch.setattr(
        schedule, "next_after", lambda moment: moment + (datetime.now(UTC) - moment) + _ms(50)
    )

    async def job() -> None:
        runs.append(datetime.now(UTC))
        if len(runs) == 2:
            raise RuntimeError("a bad run is logged; the schedule goes on")

    stop = asyncio.Event()
    task = asyncio.create_task(schedule.run(stop, job))
    while len(runs) < 3:
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert len(runs) >= 3


def _ms(n: int) -> object:
    from datetime import timedelta

    return timedelta(milliseconds=n)


async def test_the_schedule_runs_on_the_hosts_loop_until_it_stops() -> None:
    from registry.component import start_schedule

    refreshed = asyncio.Event()

    class Servicer:
        schedule = Schedule("* * * * *")

        async def refresh_leaderboard(self) -> int:
            refreshed.set()
            return 0

    servicer = Servicer()
    servicer.schedule.next_after = lambda moment: moment  # type: ignore[method-assign]  (due at once)
    stop = asyncio.Event()
    task = start_schedule(servicer, stop)  # type: ignore[arg-type]
    assert task is not None
    await asyncio.wait_for(refreshed.wait(), 5)
    stop.set()
    await asyncio.wait_for(task, 5)


def test_no_schedule_without_a_running_loop() -> None:
    from registry.component import start_schedule

    assert start_schedule(object(), asyncio.Event()) is None  # type: ignore[arg-type]


@pytest.mark.integration  # a `budrt serve app` subprocess
def test_a_bad_cron_stops_the_start_with_a_clear_error(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("BUD_")},
        "PYTHONPATH": f"{root}{os.pathsep}{root / 'gen'}",
        "BUD_DATA_DIR": str(tmp_path),
        "LEADERBOARD_UPDATE_INTERVAL": "0 */6 * *",
    }
    run = subprocess.run(
        [sys.executable, "-m", "budrt", "serve", "app"], env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    assert "leaderboard_update_interval '0 */6 * *' is not a cron expression of 5 fields" in run.stderr


async def test_an_hf_import_stores_the_cards_results(tmp_path: Path, hub_offline: None) -> None:
    """The import (the CLI's and ImportModel's path) keeps the card's model-index results, which
    the leaderboard then ranks; a card without one gives none."""
    from registry import leaderboard, operations
    from registry.db.migrate import upgrade_database
    from registry.db.session import RegistryDatabase
    from tests.registry.models_on_disk import hf_cache

    cache = tmp_path / "hf"
    hf_cache(cache, "bud-test/carded", model_dir(tmp_path / "src", "carded", 42.0, 3.5))
    hf_cache(cache, "bud-test/plain", small_llama(tmp_path / "src" / "plain"))
    db = RegistryDatabase(f"sqlite:///{tmp_path / 'r.db'}")
    try:
        await upgrade_database(db)
        carded = await operations.run_import(db, "bud-test/carded", "", "", [], (), str(cache))
        await operations.run_import(db, "bud-test/plain", "", "", [], (), str(cache))
        await leaderboard.refresh(db)
        rows, _ = await leaderboard.read(db, R.GetLeaderboardRequest(), 20)
        assert [(e.benchmark, e.metric, e.model_id, e.value) for e in rows] == [
            ("cais/mmlu", "accuracy", carded.id, 42.0),
            ("cais/mmlu", "perplexity", carded.id, 3.5),
        ]
    finally:
        await db.dispose()
