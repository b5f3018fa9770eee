"""The models an engine provides itself: for each name of the catalogue in
`budrt.builtin_models`, how to make its directory (build it, or find it in an installed package)
and the engine arguments it needs by default.

A new builtin model: add its name to `budrt/builtin_models.py`, its builder or locator as a module
here, and its entry to `BUILDERS` (a test checks that both lists hold the same names).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from budrt.builtin_models import ALL_MINILM_L6_V2, TINY_DIFFUSION, TINY_LLAMA, builtin_names
from budrt.errors import invalid_argument


@dataclass(frozen=True)
class Builder:
    """How the engine makes one builtin model."""

    # The model directory, given the engine's data directory (built there on first use, or found).
    locate: Callable[[Path], Path]
    # The dtype to load with when the request names none ("" for vLLM's default).
    dtype: str = ""


def _tiny_llama(data_dir: Path) -> Path:
    from engine.builtin_models.tiny_llama import build_tiny_model  # torch and tokenizers: lazily

    return build_tiny_model(data_dir.resolve() / "models" / TINY_LLAMA.name)


def _tiny_diffusion(data_dir: Path) -> Path:
    from engine.builtin_models.tiny_diffusion import build_tiny_diffusion  # torch, diffusers: lazily

    return build_tiny_diffusion(data_dir.resolve() / "models" / TINY_DIFFUSION.name)


def _minilm(data_dir: Path) -> Path:
    from engine.builtin_models.minilm import minilm_dir

    return minilm_dir()


BUILDERS: dict[str, Builder] = {
    # Its weights are float32; vLLM's "auto" would cast to bfloat16 on CPU, which this CPU
    # emulates (slow, and greedy tokens then differ from transformers').
    TINY_LLAMA.name: Builder(_tiny_llama, dtype="float32"),
    ALL_MINILM_L6_V2.name: Builder(_minilm),
    TINY_DIFFUSION.name: Builder(_tiny_diffusion, dtype="float32"),
}


def builder(name: str) -> Builder:
    """The builder of the builtin model `name`; INVALID_ARGUMENT when there is none."""
    found = BUILDERS.get(name)
    if found is None:
        raise invalid_argument(f"unknown builtin model {name!r}; known: {builtin_names()}", param="source")
    return found
