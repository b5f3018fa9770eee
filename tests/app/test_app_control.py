"""The control plane's parts: desired state, status aggregation and the scaler hook (the loop
itself: test_app_reconciler.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from app.control.autoscaler import Autoscaler
from app.control.desired_state import DesiredModel, engine_source
from app.control.engines import EngineModel, served_model_name
from app.control.scaler import EngineLoad
from app.control.status import ENGINE_UNAVAILABLE, FAILED, LOADING, PENDING, READY, Outcome, aggregate
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
        "dep", 1, 1, PENDING, "", source, runner, engine_pb.EngineArgs(**args), (_replica("eng_1", "e:1"),)
    )


def _replica(engine_id: str, address: str) -> EngineModel:
    return EngineModel(engine_id, address, served_model_name("dep", 1), "dep", 1)


def test_served_names_and_owners_are_the_platforms() -> None:
    replica = _replica("eng_1", "e:1")
    assert replica.served_model_name == "dep-g1"
    assert replica.owner == engine_pb.ModelOwner(deployment_id="dep", generation=1)
    assert _desired(engine_pb.ModelSource(builtin="tiny-llama")).owner == replica.owner


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
    a, b = _replica("eng_a", "a:1"), _replica("eng_b", "b:1")
    assert aggregate([a, b], [Outcome("ready"), Outcome("ready")]) == (READY, "")
    assert aggregate([a, b], [Outcome("ready"), Outcome("loading", "loading")]) == (
        LOADING,
        "engine eng_b: loading",
    )
    assert aggregate([a, b], [Outcome("failed", "boom"), Outcome("loading", "loading")]) == (
        FAILED,
        "engine eng_a: boom",
    )
    # Engines are named by id, never by address.
    assert aggregate([a], [Outcome("unreachable", ENGINE_UNAVAILABLE)]) == (
        PENDING,
        f"engine eng_a: {ENGINE_UNAVAILABLE}",
    )


class RecordingScaler:
    """Asks for stats and keeps what each pass hands it."""

    needs_stats = True

    def __init__(self) -> None:
        self.passes: list[tuple[list[str], dict[str, EngineLoad]]] = []

    async def observe(self, desired: Sequence[DesiredModel], loads: Mapping[str, EngineLoad]) -> None:
        self.passes.append(([d.deployment_id for d in desired], dict(loads)))


async def test_the_apps_scaler_asks_no_stats_without_autoscale(
    app: RunningApp, engine_host: Any, helpers: Any
) -> None:
    # The app's scaler is the autoscaler; no deployment autoscales, so no engine sees GetStats.
    assert isinstance(app.reconciler.scaler, Autoscaler)
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
    assert sorted(m.name for m in load.stats.models) == sorted(f"{d}-g1" for d in desired)
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


def test_a_registry_pin_becomes_the_engines_registry_source() -> None:
    """A deployment of a registry model stores its files and scanned hashes (app/registry_models.py);
    the engine is asked to load that directory with those hashes, and the API shows the id only."""
    from app.convert import model_source_to_proto
    from app.registry_models import encode_pin
    from bud.registry.v1 import registry_pb2

    pin = encode_pin(
        registry_pb2.ResolveModelForDeploymentResponse(
            model_id="rm_1",
            local_path="/models/m",
            files=[registry_pb2.ModelFile(path="config.json", sha256="ab" * 32)],
        )
    )
    source = engine_source("registry_model_id", pin)
    assert source.WhichOneof("kind") == "registry"
    assert (source.registry.model_id, source.registry.local_path) == ("rm_1", "/models/m")
    assert dict(source.registry.sha256) == {"config.json": "ab" * 32}
    assert model_source_to_proto("registry_model_id", pin).registry_model_id == "rm_1"
