"""The engine's settings (shared ones come from `budrt.settings.RuntimeSettings`; the engine
arguments of each model arrive with LoadModel)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from budrt.settings import ModelRoots, RuntimeSettings

# The folder of the data dir that is always a model root: where the builtin models are built.
MODELS_FOLDER = "models"


class EngineSettings(RuntimeSettings):
    """The runtime's settings plus the engine's knobs (`BUD_<FIELD>`, or the BUD_CONFIG file)."""

    # `budrt up`: run the engine inside the gateway process (the gateway calls it directly, no
    # loopback gRPC hop on the inference path, one process fewer); false = a process of its own.
    engine_in_gateway: bool = True

    # Directories, besides `<data_dir>/models`, under which a LoadModel `local_path` or a
    # path-valued `tokenizer` may lie (after following symlinks): anything else on the engine's
    # machine is refused. Absolute paths; a YAML list, or `BUD_ALLOWED_MODEL_ROOTS=/models:/srv/m`
    # (separated like PATH). Only operators should be able to write into them.
    allowed_model_roots: ModelRoots = []

    # Diffusion models (engine.images): how long an idle model's worker waits for requests to
    # batch with the first one (milliseconds; 0: run it at once), the most images one pipeline
    # call makes, and torch's intra-op threads of each model's worker thread (0: torch's default).
    image_batch_window_ms: float = Field(default=5.0, ge=0, le=1000)
    image_max_batch: int = Field(default=8, ge=1, le=64)
    diffusion_threads: int = Field(default=0, ge=0, le=256)

    def model_roots(self) -> tuple[Path, ...]:
        """Where local models and tokenizers may come from: `<data_dir>/models` (the builtin
        models' folder) and the `allowed_model_roots`."""
        return (self.data_dir / MODELS_FOLDER, *self.allowed_model_roots)
