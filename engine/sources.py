"""Where a model's weights come from: a LoadModel `ModelSource` as what vLLM loads.

A builtin model (made by `engine.builtin_models`), a local directory, or a Hugging Face id
(fetched by vLLM through huggingface_hub, at a revision when one is given). Registry models
cannot be loaded yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format

from bud.engine.v1 import engine_service_pb2 as pb
from budrt.errors import Reason, invalid_argument, unimplemented
from engine import builtin_models


@dataclass(frozen=True)
class ResolvedSource:
    """What vLLM gets: `--model` (a directory or a Hugging Face id) and `--revision`."""

    model: str
    revision: str = ""


def describe(source: pb.ModelSource) -> str:
    """The source in one line for logs and messages: `builtin: "tiny-llama"`."""
    return text_format.MessageToString(source, as_one_line=True)


def check_source(source: pb.ModelSource) -> None:
    """Refuses a source without a kind or value before anything is loaded."""
    kind = source.WhichOneof("kind")
    if kind is None:
        raise invalid_argument("source is required", param="source")
    if kind == "hugging_face" and not source.hugging_face.id:
        raise invalid_argument("source.hugging_face.id is required", param="source.hugging_face.id")
    if kind != "hugging_face" and not getattr(source, kind):
        raise invalid_argument(f"source.{kind} is required", param=f"source.{kind}")


def resolve_source(source: pb.ModelSource, data_dir: Path) -> ResolvedSource:
    """A path or Hugging Face id vLLM can load. Builds a builtin model on first use (blocks)."""
    check_source(source)
    kind = source.WhichOneof("kind")
    if kind == "builtin":
        return ResolvedSource(str(builtin_models.builder(source.builtin).locate(data_dir)))
    if kind == "local_path":
        path = Path(source.local_path).expanduser()
        if not (path / "config.json").exists():
            raise invalid_argument(
                f"{source.local_path} is not a model directory (no config.json)", param="source.local_path"
            )
        return ResolvedSource(str(path.resolve()))
    if kind == "hugging_face":
        return ResolvedSource(source.hugging_face.id, source.hugging_face.revision)
    raise unimplemented(
        "registry models cannot be loaded yet (the registry service is not built)",
        reason=Reason.UNIMPLEMENTED,
        param="source.registry_model_id",
    )


def default_dtype(source: pb.ModelSource) -> str:
    """The dtype a source loads with when the request names none ("" for vLLM's default)."""
    if source.WhichOneof("kind") == "builtin" and source.builtin in builtin_models.BUILDERS:
        return builtin_models.BUILDERS[source.builtin].dtype
    return ""
