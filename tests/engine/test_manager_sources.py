"""ModelManager with typed sources: what reaches vLLM, idempotent loads, refusals. vLLM itself is
replaced by a recording stand-in for `VllmModel`."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import grpc
import pytest

from bud.engine.v1 import engine_service_pb2 as pb
from budrt.errors import ServiceError
from engine import builtin_models, manager
from engine.settings import EngineSettings


class RecordingModel:
    """Stands in for `VllmModel`: records how it was started."""

    started: ClassVar[list[tuple[str, str, pb.EngineArgs]]] = []

    def __init__(self, name: str, source: pb.ModelSource, runner: int, args: pb.EngineArgs) -> None:
        self.name, self.source, self.runner, self.args = name, source, runner, args
        self.max_model_len = 64
        self.dead = False

    async def start(self, model_path: str, revision: str = "", timeout: float | None = None) -> None:
        RecordingModel.started.append((model_path, revision, self.args))

    async def stop(self) -> None:
        pass


@pytest.fixture
def models(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> manager.ModelManager:
    RecordingModel.started = []
    monkeypatch.setattr(manager, "VllmModel", RecordingModel)
    monkeypatch.setattr(manager, "_freeze_heap", lambda: None)
    monkeypatch.setitem(
        builtin_models.BUILDERS,
        "tiny-llama",
        builtin_models.Builder(lambda data_dir: data_dir / "tiny", dtype="float32"),
    )
    return manager.ModelManager(EngineSettings(data_dir=tmp_path, allowed_model_roots=[Path("/models")]))


async def test_a_hugging_face_source_loads_at_its_revision(models: manager.ModelManager) -> None:
    source = pb.ModelSource(hugging_face=pb.HuggingFaceModel(id="acme/chat", revision="v2"))
    served = await models.load("chat", source, pb.RUNNER_GENERATE, pb.EngineArgs())
    assert served.state == pb.MODEL_STATE_READY and served.source == source
    assert [(path, revision) for path, revision, _ in RecordingModel.started] == [("acme/chat", "v2")]


async def test_a_builtin_loads_its_directory_with_its_default_dtype(
    models: manager.ModelManager, tmp_path: Path
) -> None:
    await models.load("tiny", pb.ModelSource(builtin="tiny-llama"), pb.RUNNER_GENERATE, pb.EngineArgs())
    await models.load(
        "tiny16", pb.ModelSource(builtin="tiny-llama"), pb.RUNNER_GENERATE, pb.EngineArgs(dtype="bfloat16")
    )
    (path, _, args), (_, _, explicit) = RecordingModel.started
    assert path == str(tmp_path / "tiny") and args.dtype == "float32" and explicit.dtype == "bfloat16"


async def test_loading_the_same_source_again_is_a_no_op_and_another_is_refused(
    models: manager.ModelManager,
) -> None:
    source = pb.ModelSource(local_path="/models/x")
    first = await models.load("x", pb.ModelSource(builtin="tiny-llama"), 0, pb.EngineArgs())
    again = await models.load("x", pb.ModelSource(builtin="tiny-llama"), 0, pb.EngineArgs())
    assert first == again and len(RecordingModel.started) == 1
    with pytest.raises(ServiceError) as caught:
        await models.load("x", source, 0, pb.EngineArgs())
    assert (
        caught.value.code == grpc.StatusCode.ALREADY_EXISTS
        and 'builtin: "tiny-llama"' in caught.value.message
    )


async def test_a_request_without_a_source_is_refused_before_any_slot(models: manager.ModelManager) -> None:
    with pytest.raises(ServiceError) as caught:
        await models.load("x", pb.ModelSource(), 0, pb.EngineArgs())
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT and caught.value.param == "source"
    assert models.slots == {}


async def test_a_source_that_cannot_be_resolved_fails_the_load(models: manager.ModelManager) -> None:
    served = await models.load("r", pb.ModelSource(registry_model_id="mdl_1"), 0, pb.EngineArgs())
    assert served.state == pb.MODEL_STATE_FAILED and "registry" in served.error
    assert RecordingModel.started == []


def test_load_requests_no_longer_carry_a_source_string() -> None:
    """Field 2 (the old `string source`) is reserved: old clients' strings are dropped."""
    descriptor = pb.LoadModelRequest.DESCRIPTOR
    assert descriptor.fields_by_name["source"].message_type is pb.ModelSource.DESCRIPTOR
    assert 2 not in descriptor.fields_by_number
    assert pb.ServedModel.DESCRIPTOR.fields_by_name["source"].message_type is pb.ModelSource.DESCRIPTOR


def registry_source(root: Path, **overrides: str) -> pb.ModelSource:
    """A registry model's directory with the hashes of its files as they are now (`overrides`:
    other hashes for some)."""
    import hashlib

    hashes = {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }
    hashes.update(overrides)
    return pb.ModelSource(
        registry=pb.RegistryModelFiles(model_id="rm_1", local_path=str(root), sha256=hashes)
    )


def model_dir(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "config.json").write_text("{}")
    (root / "model.safetensors").write_bytes(b"weights")
    return root


@pytest.fixture
def registry_models(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> manager.ModelManager:
    RecordingModel.started = []
    monkeypatch.setattr(manager, "VllmModel", RecordingModel)
    monkeypatch.setattr(manager, "_freeze_heap", lambda: None)
    return manager.ModelManager(EngineSettings(data_dir=tmp_path, allowed_model_roots=[tmp_path / "mnt"]))


async def test_a_registry_model_loads_when_its_files_have_the_scanned_hashes(
    registry_models: manager.ModelManager, tmp_path: Path
) -> None:
    root = model_dir(tmp_path / "mnt" / "m")
    served = await registry_models.load("m", registry_source(root), 0, pb.EngineArgs())
    assert served.state == pb.MODEL_STATE_READY, served.error
    assert [path for path, _, _ in RecordingModel.started] == [str(root)]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("edit", "changed: model.safetensors"),
        ("remove", "missing: model.safetensors"),
        ("add", "added: evil.py"),
    ],
)
async def test_a_registry_model_whose_files_changed_is_not_loaded(
    registry_models: manager.ModelManager, tmp_path: Path, change: str, expected: str
) -> None:
    root = model_dir(tmp_path / "mnt" / "m")
    source = registry_source(root)
    if change == "edit":
        (root / "model.safetensors").write_bytes(b"swapped")
    elif change == "remove":
        (root / "model.safetensors").unlink()
    else:
        (root / "evil.py").write_text("import os\n")
    served = await registry_models.load("m", source, 0, pb.EngineArgs())
    assert served.state == pb.MODEL_STATE_FAILED and expected in served.error, served.error
    assert "differ from the scanned ones" in served.error and RecordingModel.started == []


async def test_a_registry_model_outside_the_roots_is_refused(
    registry_models: manager.ModelManager, tmp_path: Path
) -> None:
    root = model_dir(tmp_path / "elsewhere")
    with pytest.raises(ServiceError) as caught:
        await registry_models.load("m", registry_source(root), 0, pb.EngineArgs())
    assert caught.value.param == "source.registry.local_path"
