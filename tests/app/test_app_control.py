"""The control plane's parts: desired state, status aggregation and the scaler hook (the loop
itself: test_app_reconciler.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from app.control.desired_state import DesiredModel, Endpoint, engine_source
from app.control.scaler import EngineLoad, StaticScaler
from app.control.status import FAILED, LOADING, PENDING, READY, Outcome, aggregate
from app.server import RunningApp
from bud.engine.v1 import engine_service_pb2 as engine_pb


@pytest.mark.parametrize(
    "kind, value, expected",
    [
        ("builtin", "tiny-llama", engine_pb.ModelSource(builtin="tiny-llama")),
        ("local_path", "/models/x", engine_pb.ModelSource(local_path="/models/x")),
        (
            "hugging_face_id",
            "acme/chat",
            engine_pb.ModelSource(hugging_face=engine_pb.HuggingFaceModel(id="acme/chat")),
        ),
        ("registry_model_id", "mdl_1", engine_pb.ModelSource(registry_model_id="mdl_1")),
    ],
)
def test_stored_sources_become_typed_load_sources(
    kind: str, value: str, expected: engine_pb.ModelSource
) -> None:
    assert engine_source(kind, value) == expected


def test_an_unknown_stored_source_kind_is_an_error() -> None:
    with pytest.raises(ValueError):
        engine_source("ftp", "x")


def _desired(source: engine_pb.ModelSource, runner: int = 0, **args: Any) -> DesiredModel:
    return DesiredModel(
        "dep", 1, PENDING, "", source, runner, engine_pb.EngineArgs(**args), (Endpoint("e:1", "m"),)
    )


def test_the_fingerprint_follows_source_runner_and_args() -> None:
    base = _desired(engine_pb.ModelSource(builtin="tiny-llama"))
    assert base.fingerprint == _desired(engine_pb.ModelSource(builtin="tiny-llama")).fingerprint
    others = [
        _desired(engine_pb.ModelSource(local_path="tiny-llama")),
        _desired(engine_pb.ModelSource(builtin="tiny-llama"), runner=engine_pb.RUNNER_GENERATE),
        _desired(engine_pb.ModelSource(builtin="tiny-llama"), max_model_len=64),
    ]
    assert len({base.fingerprint, *(o.fingerprint for o in others)}) == 4


def test_aggregate() -> None:
    a, b = Endpoint("a:1", "m"), Endpoint("b:1", "m")
    assert aggregate([a, b], [Outcome("ready"), Outcome("ready")]) == (READY, "")
    assert aggregate([a, b], [Outcome("ready"), Outcome("loading", "loading")]) == (LOADING, "b:1: loading")
    assert aggregate([a, b], [Outcome("failed", "boom"), Outcome("loading", "loading")]) == (
        FAILED,
        "a:1: boom",
    )
    assert aggregate([a], [Outcome("unreachable", "down")]) == (PENDING, "a:1: down")


class RecordingScaler:
    """Asks for stats and keeps what each pass hands it."""

    needs_stats = True

    def __init__(self) -> None:
        self.passes: list[tuple[list[str], dict[str, EngineLoad]]] = []

    async def observe(self, desired: Sequence[DesiredModel], loads: Mapping[str, EngineLoad]) -> None:
        self.passes.append(([d.deployment_id for d in desired], dict(loads)))


async def test_the_default_scaler_asks_the_engines_nothing(
    app: RunningApp, engine_host: Any, helpers: Any
) -> None:
    assert isinstance(app.reconciler.scaler, StaticScaler)
    await helpers.eventually(lambda: _loaded(engine_host, 2), what="default deployments loaded")
    await asyncio.sleep(0.6)  # several passes
    assert engine_host.engine.stats_calls == 0


async def test_a_scaler_sees_every_pass_with_the_engines_stats(
    app: RunningApp, engine_host: Any, helpers: Any
) -> None:
    await helpers.eventually(lambda: _loaded(engine_host, 2), what="default deployments loaded")
    scaler = RecordingScaler()
    app.reconciler.scaler = scaler
    await helpers.eventually(lambda: _true(len(scaler.passes) >= 2), what="two passes")
    desired, loads = scaler.passes[-1]
    assert len(desired) == 2 and list(loads) == [engine_host.address]
    load = loads[engine_host.address]
    assert load.stats is not None and load.error == ""
    assert sorted(m.name for m in load.stats.models) == sorted(desired)
    assert engine_host.engine.stats_calls >= 2


async def test_a_failing_scaler_does_not_fail_the_pass(
    app: RunningApp, engine_host: Any, helpers: Any
) -> None:
    class Broken(RecordingScaler):
        async def observe(self, desired: Sequence[DesiredModel], loads: Mapping[str, EngineLoad]) -> None:
            await super().observe(desired, loads)
            raise RuntimeError("scaler bug")

    scaler = Broken()
    app.reconciler.scaler = scaler
    await app.reconciler.reconcile_once(wait=True)  # the scaler's error is logged, not raised
    assert scaler.passes
    await helpers.eventually(lambda: _loaded(engine_host, 2), what="default deployments loaded")


async def _true(value: bool) -> bool:
    return value


async def _loaded(engine_host: Any, count: int) -> bool:
    return len(engine_host.engine.models) == count and all(
        m.state == engine_pb.MODEL_STATE_READY for m in engine_host.engine.models.values()
    )
