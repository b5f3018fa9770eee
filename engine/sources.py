"""Where a model's weights come from: a LoadModel `ModelSource` as what vLLM loads, and the rules
for everything in a LoadModel request that names something on the engine's machine.

A builtin model (made by `engine.builtin_models`), a local directory, or a Hugging Face id
(fetched by vLLM through huggingface_hub, at a revision when one is given). Registry models
cannot be loaded yet.

Paths: a `local_path` source and a path-valued `tokenizer` argument are resolved (symlinks
followed, `..` applied) and must then lie under one of the engine's model roots
(`EngineSettings.model_roots`), else INVALID_ARGUMENT — the same answer whether or not the path
exists, never saying where a symlink points. vLLM also looks a Hugging Face id up as a path
relative to the engine's working directory before it asks the hub, so an id that exists there is
held to the same rule. A `chat_template` is the template's text, never a path (see
`engine.vllm_model.chat_template_file`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format

from bud.engine.v1 import engine_service_pb2 as pb
from budrt.errors import Reason, echo, invalid_argument, unimplemented
from engine import builtin_models
from engine.registry_files import check_files
from engine.settings import MODELS_FOLDER

# Longer paths are refused before they are resolved (Linux's PATH_MAX).
MAX_PATH_CHARS = 4096
# A Hugging Face repository id, `name` or `namespace/name`: the hub's characters, no part starting
# with '-' or '.', and (checked apart) no "..", so never a path that leaves where it is looked up.
HUGGING_FACE_ID_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,95}(/[A-Za-z0-9_][A-Za-z0-9_.-]{0,95})?$")
# What makes a chat template a Jinja template rather than a file name or a builtin template's name.
JINJA_MARKERS = ("{{", "{%")


@dataclass(frozen=True)
class ResolvedSource:
    """What vLLM gets: `--model` (a directory or a Hugging Face id) and `--revision`."""

    model: str
    revision: str = ""


def describe(source: pb.ModelSource) -> str:
    """The source in one line for logs and messages: `builtin: "tiny-llama"`."""
    return text_format.MessageToString(source, as_one_line=True)


def default_roots(data_dir: Path) -> tuple[Path, ...]:
    """The model roots of an engine whose settings add none: the builtin models' folder."""
    return (data_dir / MODELS_FOLDER,)


def check_source(source: pb.ModelSource) -> None:
    """Refuses a source without a kind or value before anything is loaded."""
    kind = source.WhichOneof("kind")
    if kind is None:
        raise invalid_argument("source is required", param="source")
    if kind == "hugging_face" and not source.hugging_face.id:
        raise invalid_argument("source.hugging_face.id is required", param="source.hugging_face.id")
    if kind == "registry":
        if not source.registry.local_path:
            raise invalid_argument(
                "source.registry.local_path is required", param="source.registry.local_path"
            )
        if not source.registry.sha256:
            raise invalid_argument("source.registry.sha256 is required", param="source.registry.sha256")
        return
    if kind != "hugging_face" and not getattr(source, kind):
        raise invalid_argument(f"source.{kind} is required", param=f"source.{kind}")


def check_load(source: pb.ModelSource, args: pb.EngineArgs, roots: Sequence[Path]) -> None:
    """Everything of a LoadModel request that is refused before a slot is made for it: the
    source's shape, and every path it or its engine arguments name (see the module's rules)."""
    check_source(source)
    kind = source.WhichOneof("kind")
    if kind == "local_path":
        allowed_path(source.local_path, roots, "source.local_path")
    elif kind == "registry":
        allowed_path(source.registry.local_path, roots, "source.registry.local_path")
    elif kind == "hugging_face":
        hugging_face_id(source.hugging_face.id, roots, "source.hugging_face.id")
    if args.HasField("tokenizer"):
        tokenizer_location(args.tokenizer, roots, "args.tokenizer")
    if args.HasField("chat_template"):
        check_chat_template(args.chat_template, "args.chat_template")


def is_hugging_face_id(value: str) -> bool:
    """Whether `value` has the shape of a Hugging Face repository id (`name`, `org/name`)."""
    return HUGGING_FACE_ID_RE.match(value) is not None and ".." not in value


def allowed_path(value: str, roots: Sequence[Path], param: str) -> Path:
    """`value`, an absolute path, resolved (symlinks followed, `..` applied), when it lies under
    one of `roots` (themselves resolved); INVALID_ARGUMENT named `param` otherwise. The refusal
    depends on the text and the roots only: the same whether the path exists or not, and it
    quotes what the caller sent, never what a symlink resolved to."""
    if "\0" in value or len(value) > MAX_PATH_CHARS or not os.path.isabs(value):
        raise invalid_argument(
            f"{param} must be an absolute path on the engine's machine: {echo(value)}", param=param
        )
    resolved = Path(os.path.realpath(value))
    if any(resolved.is_relative_to(os.path.realpath(root)) for root in roots):
        return resolved
    raise invalid_argument(
        f"{param} {echo(value)} is not under the engine's model roots "
        "(<data_dir>/models and the allowed_model_roots setting)",
        param=param,
    )


def hugging_face_id(value: str, roots: Sequence[Path], param: str) -> str:
    """A Hugging Face id as vLLM gets it (unchanged). vLLM looks an id up as a path relative to
    the engine's working directory before it asks the hub: an id that exists there is that path,
    held to the roots like any other (and then given to vLLM resolved)."""
    if not is_hugging_face_id(value):
        raise invalid_argument(
            f"invalid Hugging Face id {echo(value)}: expected name or org/name", param=param
        )
    if os.path.lexists(value):
        return str(allowed_path(os.path.abspath(value), roots, param))
    return value


def tokenizer_location(value: str, roots: Sequence[Path], param: str) -> str:
    """What vLLM gets for a `tokenizer`: a Hugging Face id (see :func:`hugging_face_id`) or an
    absolute path under a root, resolved."""
    if is_hugging_face_id(value):
        return hugging_face_id(value, roots, param)
    if not os.path.isabs(value):
        raise invalid_argument(
            f"{param} must be a Hugging Face id (name or org/name) or an absolute path on the "
            f"engine's machine: {echo(value)}",
            param=param,
        )
    return str(allowed_path(value, roots, param))


def check_chat_template(text: str, param: str) -> None:
    """A chat template is its Jinja text; text without a Jinja tag is refused, since it would be
    a file name or the name of one of vLLM's templates, which the engine never opens."""
    if not any(marker in text for marker in JINJA_MARKERS):
        raise invalid_argument(
            f"{param} must be the template's Jinja text (with {{{{ }}}} or {{% %}} tags), "
            "not a path or a template's name",
            param=param,
        )


def resolve_args(args: pb.EngineArgs, roots: Sequence[Path]) -> pb.EngineArgs:
    """A copy of `args` as vLLM gets them: a path-valued tokenizer by its resolved path (what was
    checked is what vLLM opens, even if a symlink on the way changes later)."""
    resolved = pb.EngineArgs()
    resolved.CopyFrom(args)
    if args.HasField("tokenizer"):
        resolved.tokenizer = tokenizer_location(args.tokenizer, roots, "args.tokenizer")
    if args.HasField("chat_template"):
        check_chat_template(args.chat_template, "args.chat_template")
    return resolved


def resolve_source(
    source: pb.ModelSource, data_dir: Path, roots: Sequence[Path] | None = None
) -> ResolvedSource:
    """A path or Hugging Face id vLLM can load. Builds a builtin model on first use (blocks).
    `roots`: where a local path may lie (default: `default_roots(data_dir)`)."""
    check_source(source)
    roots = default_roots(data_dir) if roots is None else roots
    kind = source.WhichOneof("kind")
    if kind == "builtin":
        return ResolvedSource(str(builtin_models.builder(source.builtin).locate(data_dir)))
    if kind == "local_path":
        path = allowed_path(source.local_path, roots, "source.local_path")
        if not ((path / "config.json").exists() or (path / "model_index.json").exists()):
            raise invalid_argument(
                f"{echo(source.local_path)} is not a model directory "
                "(no config.json, nor a diffusers pipeline's model_index.json)",
                param="source.local_path",
            )
        return ResolvedSource(str(path))
    if kind == "hugging_face":
        model = hugging_face_id(source.hugging_face.id, roots, "source.hugging_face.id")
        return ResolvedSource(model, source.hugging_face.revision)
    if kind == "registry":
        path = allowed_path(source.registry.local_path, roots, "source.registry.local_path")
        check_files(path, source.registry.sha256, source.registry.model_id)
        return ResolvedSource(str(path))
    raise unimplemented(
        "a registry model is loaded by its files and hashes (source.registry, as the app sends it), "
        "not by its id alone",
        reason=Reason.UNIMPLEMENTED,
        param="source.registry_model_id",
    )


def default_dtype(source: pb.ModelSource) -> str:
    """The dtype a source loads with when the request names none ("" for vLLM's default)."""
    if source.WhichOneof("kind") == "builtin" and source.builtin in builtin_models.BUILDERS:
        return builtin_models.BUILDERS[source.builtin].dtype
    return ""
