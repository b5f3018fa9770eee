"""engine/manager.py over the fake vLLM: the load/unload lifecycle of model slots, one start at a
time, health per model, the errors callers get, and the dead-engine-core watchdog."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import grpc
import psutil
import pytest
from grpc_health.v1 import health, health_pb2

from bud.engine.v1 import engine_service_pb2 as pb
from budrt.errors import ServiceError
from engine.manager import ModelManager
from engine.settings import EngineSettings
from engine.vllm_model import CPU_THREADS_BIND, OMP_THREADS, auto_binding_threads
from tests.engine.fake_vllm import FakeVllm
from tests.engine.loading import load

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def health_of(servicer: health.aio.HealthServicer, name: str) -> int:
    reply = await servicer.Check(health_pb2.HealthCheckRequest(service=name), None)
    return int(reply.status)


async def test_load_makes_a_ready_model_with_its_arguments(
    manager: ModelManager,
    fake: FakeVllm,
    model_dir: Path,
    frozen: list[int],
    health_servicer: health.aio.HealthServicer,
) -> None:
    served = await load(manager, "m", model_dir, max_model_len=96, seed=7)
    assert (served.name, served.state, served.error) == ("m", pb.MODEL_STATE_READY, "")
    assert served.runner == pb.RUNNER_GENERATE  # resolved from what the engine supports
    assert served.max_model_len == 96  # the engine argument reached vLLM's engine config
    assert served.args == pb.EngineArgs(max_model_len=96, seed=7)
    (engine,) = fake.engines
    assert engine.vllm_config.engine_args.served_model_name == ["m"]
    assert engine.vllm_config.engine_args.model == str(model_dir)
    assert await health_of(health_servicer, "m") == SERVING
    assert frozen == [1]  # the heap is frozen after each successful load


async def test_pooling_model_is_described_as_pooling(
    manager: ModelManager, fake: FakeVllm, model_dir: Path
) -> None:
    fake.tasks = ("embed",)
    served = await load(manager, "emb", model_dir)
    assert (served.state, served.runner) == (pb.MODEL_STATE_READY, pb.RUNNER_POOLING)
    assert manager.ready("emb").handler("serving_embedding") is not None
    assert manager.ready("emb").handler("openai_serving_chat") is None


async def test_health_is_not_serving_while_loading(
    manager: ModelManager,
    fake: FakeVllm,
    model_dir: Path,
    health_servicer: health.aio.HealthServicer,
) -> None:
    fake.start_delay = 0.3
    loading = asyncio.create_task(load(manager, "m", model_dir))
    await asyncio.sleep(0.1)
    assert manager.slots["m"].state == pb.MODEL_STATE_LOADING
    assert await health_of(health_servicer, "m") == NOT_SERVING
    with pytest.raises(ServiceError) as info:
        manager.ready("m")
    assert (info.value.code, info.value.reason) == (grpc.StatusCode.UNAVAILABLE, "MODEL_NOT_READY")
    assert "MODEL_STATE_LOADING" in info.value.message
    assert (await loading).state == pb.MODEL_STATE_READY
    assert await health_of(health_servicer, "m") == SERVING


async def test_loading_the_same_again_is_a_no_op(
    manager: ModelManager, fake: FakeVllm, model_dir: Path
) -> None:
    fake.start_delay = 0.2
    first, second = await asyncio.gather(
        load(manager, "m", model_dir, pb.RUNNER_GENERATE), load(manager, "m", model_dir, pb.RUNNER_GENERATE)
    )
    again = await load(manager, "m", model_dir)  # no runner named: whichever it runs
    assert first == second == again
    assert first.state == pb.MODEL_STATE_READY
    assert len(fake.engines) == 1


async def test_a_different_model_under_a_taken_name_is_refused(
    manager: ModelManager,
    fake: FakeVllm,
    model_dir: Path,
    tmp_path: Path,
) -> None:
    await load(manager, "m", model_dir)
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text("{}")
    for attempt in (
        load(manager, "m", other),
        load(manager, "m", model_dir, max_model_len=64),
        load(manager, "m", model_dir, pb.RUNNER_POOLING),
    ):
        with pytest.raises(ServiceError) as info:
            await attempt
        err = info.value
        assert (err.code, err.reason, err.param) == (
            grpc.StatusCode.ALREADY_EXISTS,
            "MODEL_NAME_TAKEN",
            "name",
        )
        assert "unload it first" in err.message
    assert len(fake.engines) == 1 and manager.slots["m"].state == pb.MODEL_STATE_READY


async def test_name_is_required(manager: ModelManager, model_dir: Path) -> None:
    with pytest.raises(ServiceError) as info:
        await load(manager, "", model_dir)
    assert (info.value.code, info.value.param) == (grpc.StatusCode.INVALID_ARGUMENT, "name")
    assert manager.slots == {}


async def test_loads_start_one_at_a_time(manager: ModelManager, fake: FakeVllm, model_dir: Path) -> None:
    fake.start_delay = 0.15
    served = await asyncio.gather(*(load(manager, f"m{i}", model_dir) for i in range(3)))
    assert [s.state for s in served] == [pb.MODEL_STATE_READY] * 3
    assert len(fake.engines) == 3
    assert fake.max_starting == 1  # the load lock: never two engine starts at once


async def test_a_source_that_is_not_a_model_fails_the_load(
    manager: ModelManager,
    fake: FakeVllm,
    tmp_path: Path,
    health_servicer: health.aio.HealthServicer,
) -> None:
    served = await load(manager, "m", tmp_path / "empty")
    assert served.state == pb.MODEL_STATE_FAILED
    assert "is not a model directory" in served.error
    assert fake.engines == []
    assert await health_of(health_servicer, "m") == NOT_SERVING


async def test_an_engine_that_fails_to_start_fails_the_load_and_may_be_retried(
    manager: ModelManager,
    fake: FakeVllm,
    model_dir: Path,
    frozen: list[int],
) -> None:
    fake.start_error = RuntimeError("CUDA out of memory")
    served = await load(manager, "m", model_dir)
    assert (served.state, served.error) == (pb.MODEL_STATE_FAILED, "RuntimeError: CUDA out of memory")
    assert manager.slots["m"].model is None and frozen == []
    with pytest.raises(ServiceError) as info:
        manager.ready("m")
    assert info.value.code == grpc.StatusCode.UNAVAILABLE and "CUDA out of memory" in info.value.message
    # A failed name may be loaded again, even with other arguments.
    served = await load(manager, "m", model_dir, max_model_len=32)
    assert (served.state, served.max_model_len) == (pb.MODEL_STATE_READY, 32)


async def test_a_start_past_its_deadline_fails_the_load_kills_what_it_started_and_may_be_retried(
    fake: FakeVllm, frozen: list[int], tmp_path: Path, model_dir: Path
) -> None:
    # vLLM waits for its engine core without a limit: a core stuck while starting held the load,
    # and the engine's load lock, for good. The engine's own deadline ends it.
    settings = EngineSettings(
        data_dir=tmp_path / "data", allowed_model_roots=[tmp_path], model_start_timeout_seconds=3.0
    )
    manager = ModelManager(settings)
    try:
        fake.start_hangs = True
        started = time.monotonic()
        served = await load(manager, "m", model_dir)
        assert time.monotonic() - started < 3.0 + 15  # the deadline, then the kill and the reap
        assert served.state == pb.MODEL_STATE_FAILED
        assert served.error == "TimeoutError: vLLM did not start within 3 s; its processes were stopped"
        [core] = fake.hung_cores
        assert core.exitcode == -signal.SIGKILL  # killed and reaped (no zombie left)
        assert not psutil.pid_exists(core.pid)
        with pytest.raises(ServiceError) as info:
            manager.ready("m")
        assert (
            info.value.code == grpc.StatusCode.UNAVAILABLE
            and "did not start within 3 s" in info.value.message
        )
        # The lock is free and the name may be loaded again.
        served = await load(manager, "m", model_dir)
        assert served.state == pb.MODEL_STATE_READY
    finally:
        await manager.close()


async def test_vllm_cpu_threads_are_left_unbound_unless_the_operator_chose(
    manager: ModelManager, fake: FakeVllm, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # vLLM's auto binding pins every model's worker to the same cores, where a starting one
    # starved beside a busy one: unbound, with as many threads as auto binding would make.
    monkeypatch.delenv(CPU_THREADS_BIND, raising=False)
    monkeypatch.delenv(OMP_THREADS, raising=False)
    assert (await load(manager, "a", model_dir)).state == pb.MODEL_STATE_READY
    threads = str(auto_binding_threads())
    # An operator's own choice stands: a binding, or a thread count (then unbound).
    monkeypatch.setenv(CPU_THREADS_BIND, "0-3|4-7")
    monkeypatch.delenv(OMP_THREADS, raising=False)
    assert (await load(manager, "b", model_dir)).state == pb.MODEL_STATE_READY
    monkeypatch.delenv(CPU_THREADS_BIND, raising=False)
    monkeypatch.setenv(OMP_THREADS, "3")
    assert (await load(manager, "c", model_dir)).state == pb.MODEL_STATE_READY
    assert fake.threads_seen == [("nobind", threads), ("0-3|4-7", None), (None, "3")]


def test_auto_binding_threads_are_one_per_core_of_the_first_node_less_the_reserved_one() -> None:
    from vllm.utils import cpu_resource_utils

    cpus = cpu_resource_utils.get_allowed_cpu_list()
    first_node = cpu_resource_utils.get_visible_memory_node()[0]
    cores = {cpu.physical_core for cpu in cpus if cpu.numa_node == first_node}
    assert auto_binding_threads() == max(1, len(cores) - 1) >= 1
    assert auto_binding_threads() <= len(os.sched_getaffinity(0))


async def test_unload_stops_the_engine_and_forgets_the_model(
    manager: ModelManager,
    fake: FakeVllm,
    model_dir: Path,
    health_servicer: health.aio.HealthServicer,
) -> None:
    await load(manager, "m", model_dir)
    (engine,) = fake.engines
    await manager.unload("m")
    assert engine.is_shut_down and "m" not in manager.slots
    assert await health_of(health_servicer, "m") == NOT_SERVING
    with pytest.raises(ServiceError) as info:
        manager.ready("m")
    assert (info.value.code, info.value.reason, info.value.param) == (
        grpc.StatusCode.NOT_FOUND,
        "MODEL_NOT_FOUND",
        "model",
    )


async def test_unloading_an_unknown_model_is_not_found(manager: ModelManager) -> None:
    with pytest.raises(ServiceError) as info:
        await manager.unload("nope")
    assert (info.value.code, info.value.reason, info.value.param) == (
        grpc.StatusCode.NOT_FOUND,
        "MODEL_NOT_FOUND",
        "name",
    )


async def test_unload_during_a_load_waits_for_it_then_stops_it(
    manager: ModelManager,
    fake: FakeVllm,
    model_dir: Path,
) -> None:
    fake.start_delay = 0.2
    loading = asyncio.create_task(load(manager, "m", model_dir))
    await asyncio.sleep(0.05)
    await manager.unload("m")
    assert "m" not in manager.slots
    (engine,) = fake.engines
    assert engine.is_shut_down
    await loading


async def test_unload_during_a_load_leaves_the_model_not_serving(
    manager: ModelManager,
    fake: FakeVllm,
    model_dir: Path,
    health_servicer: health.aio.HealthServicer,
) -> None:
    fake.start_delay = 0.2
    loading = asyncio.create_task(load(manager, "m", model_dir))
    await asyncio.sleep(0.05)
    await manager.unload("m")
    served = await loading
    assert await health_of(health_servicer, "m") == NOT_SERVING
    assert served.state != pb.MODEL_STATE_READY


async def test_a_dead_engine_core_is_refused_before_the_watchdog_runs(
    manager: ModelManager,
    fake: FakeVllm,
    model_dir: Path,
) -> None:
    await load(manager, "m", model_dir)
    fake.engines[0].die()
    with pytest.raises(ServiceError) as info:
        manager.ready("m")
    assert (info.value.code, info.value.reason) == (grpc.StatusCode.UNAVAILABLE, "MODEL_NOT_READY")
    assert "engine core stopped" in info.value.message
    assert manager.slots["m"].state == pb.MODEL_STATE_FAILED


async def test_watchdog_fails_and_frees_models_whose_engine_core_died(
    manager: ModelManager,
    fake: FakeVllm,
    model_dir: Path,
    health_servicer: health.aio.HealthServicer,
) -> None:
    await load(manager, "dies", model_dir)
    await load(manager, "lives", model_dir)
    dying, living = fake.engines
    watchdog = asyncio.create_task(manager.watch(interval=0.02))
    try:
        dying.die()
        for _ in range(100):
            if manager.slots["dies"].model is None:
                break
            await asyncio.sleep(0.02)
    finally:
        watchdog.cancel()
    slot = manager.slots["dies"]
    assert (slot.state, slot.model) == (pb.MODEL_STATE_FAILED, None)
    assert "engine core stopped" in slot.describe().error
    assert dying.is_shut_down and not living.is_shut_down
    assert await health_of(health_servicer, "dies") == NOT_SERVING
    assert await health_of(health_servicer, "lives") == SERVING
    assert manager.ready("lives") is manager.slots["lives"].model
    # The app's reconciler then loads it again under the same name.
    assert (await load(manager, "dies", model_dir)).state == pb.MODEL_STATE_READY


async def test_close_unloads_everything(manager: ModelManager, fake: FakeVllm, model_dir: Path) -> None:
    await load(manager, "a", model_dir)
    await load(manager, "b", model_dir)
    await manager.close()
    assert manager.slots == {} and all(e.is_shut_down for e in fake.engines)
