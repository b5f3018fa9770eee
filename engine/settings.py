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

    # Self-registration (`engine.announcer`): the host:port the app and gateways should dial to
    # reach this engine (its host must be one of the names or IPs of the engine's certificate:
    # announcing needs mutual TLS, `tls` on, and the `engine` identity).
    # Set: the engine announces itself to the app (`app_address`) at start and every
    # `announce_interval_seconds` (sooner when the app's lease is shorter), so the control plane
    # places replicas on it and moves them away when it stops. Empty (the default): no
    # announcing; a platform admin registers the engine (the one-machine mesh registers its
    # configured engine by itself).
    announce_address: str = ""
    # The engine's name in the registry (empty: the first DNS label of announce_address's host,
    # e.g. the pod's name, or the address itself for an IP); an engine already registered at the
    # address keeps its name.
    announce_name: str = ""
    # How many deployment replicas the control plane may place on it; 0 for no limit.
    announce_max_models: int = Field(default=0, ge=0)
    announce_interval_seconds: float = Field(default=30.0, gt=0)
    # How long a vLLM model's start may take (its engine core and workers up, its serving objects
    # made; a download before it is not counted), in seconds. Past it the load fails (FAILED, with
    # the reason: the control plane retries it after its failed-load backoff) and the processes
    # vLLM started are killed: vLLM itself waits for them without a limit, so a core or worker
    # stuck while starting would hold the load, and every load after it, for good.
    model_start_timeout_seconds: float = Field(default=1800.0, gt=0)
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
