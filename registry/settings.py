"""The registry's settings (shared ones, such as addresses and secrets, come from
`budrt.settings.RuntimeSettings`).

Its database defaults to its host's (the app's): the registry never imports the app, it asks the
host component's settings model, found through the launcher's components, for its
`resolved_database_url()`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from croniter import croniter
from pydantic import Field, field_validator, model_validator

from budrt.settings import ModelRoots, RuntimeSettings
from registry.scanning.settings import ScanSettings

# The leaderboard's default refresh schedule: every six hours, on the hour.
DEFAULT_LEADERBOARD_INTERVAL = "0 */6 * * *"
# The plain variable that sets the schedule too (BUD_LEADERBOARD_UPDATE_INTERVAL wins over it).
LEADERBOARD_ENV = "LEADERBOARD_UPDATE_INTERVAL"

# The folder of the data dir that is always a model root (the engine's `MODELS_FOLDER`).
MODELS_FOLDER = "models"


class RegistrySettings(RuntimeSettings, ScanSettings):
    """The runtime's settings plus the registry's knobs (`BUD_<FIELD>`, or the BUD_CONFIG file),
    the scanner's (`clamav_*`, `scan_*`: `registry.scanning.ScanSettings`) among them."""

    # The registry's own database; empty: the app's (`database_url`, default SQLite in data_dir),
    # where its tables sit beside the app's under their own alembic version table.
    registry_database_url: str = Field(default="", repr=False, json_schema_extra={"secret": True})
    # Directories, besides `<data_dir>/models`, under which a model registered or imported from a
    # local directory may lie (on the registry's machine; give it the engines' allowed_model_roots
    # when they share the files). Absolute paths; a YAML list, or PATH-like in the environment.
    registry_model_roots: ModelRoots = []
    # Where Hugging Face imports are downloaded (empty: huggingface_hub's cache, HF_HUB_CACHE).
    # HF_TOKEN and HF_HUB_OFFLINE are read by huggingface_hub itself.
    registry_hf_cache_dir: str = ""
    # When the leaderboard is recomputed (model cards' evaluation results and the recorded
    # benchmarks): a cron expression (5 fields, UTC; `croniter`). LEADERBOARD_UPDATE_INTERVAL in
    # the environment is honoured too.
    leaderboard_update_interval: str = DEFAULT_LEADERBOARD_INTERVAL

    @model_validator(mode="before")
    @classmethod
    def _plain_leaderboard_env(cls, data: Any) -> Any:
        """LEADERBOARD_UPDATE_INTERVAL (without the BUD_ prefix) when nothing else set it."""
        if isinstance(data, dict) and "leaderboard_update_interval" not in data:
            if value := os.environ.get(LEADERBOARD_ENV, "").strip():
                data = {**data, "leaderboard_update_interval": value}
        return data

    @field_validator("leaderboard_update_interval")
    @classmethod
    def _cron(cls, value: str) -> str:
        """A valid five-field cron expression (a bad one stops the start with this message)."""
        value = " ".join(value.split())
        if len(value.split()) != 5 or not croniter.is_valid(value):
            raise ValueError(
                f"leaderboard_update_interval {value!r} is not a cron expression of 5 fields "
                "(minute hour day-of-month month day-of-week), e.g. '0 */6 * * *'"
            )
        return value

    # Scan a model in the background as soon as it is registered or imported (ScanModel rescans).
    registry_scan_on_register: bool = True
    # Catalogue the built-in models of the default deployments (`registry.builtins`): entries
    # for information (the defaults deploy their builtin sources, with or without clamd).
    registry_register_builtin_models: bool = True

    def scan_settings(self) -> ScanSettings:
        """The scanner's part of these settings."""
        return ScanSettings.model_validate({k: getattr(self, k) for k in ScanSettings.model_fields})

    def model_roots(self) -> tuple[Path, ...]:
        """Where local models may come from: `<data_dir>/models` and the `registry_model_roots`."""
        return (self.data_dir / MODELS_FOLDER, *self.registry_model_roots)

    def resolved_database_url(self, host_settings: object | None = None) -> str:
        """The registry's database: its own URL, else its host's (`host_settings`, the app's
        settings, answer `resolved_database_url()`), else the default SQLite file in data_dir
        (the app's default too)."""
        if self.registry_database_url:
            return self.registry_database_url
        resolve = getattr(host_settings, "resolved_database_url", None)
        if callable(resolve):
            return str(resolve())
        return f"sqlite:///{(self.data_dir / 'bud.db').resolve()}"
