"""Where the registry's tables live: its own URL, else its host's (the app's) database, found
through the installed components; and its model roots."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from app.settings import AppSettings
from registry.component import host_settings
from registry.settings import RegistrySettings


def test_the_apps_database_by_default(tmp_path: Path) -> None:
    app = AppSettings(data_dir=tmp_path, database_url="postgresql+psycopg://u@db/bud")
    registry = RegistrySettings(data_dir=tmp_path)
    assert registry.resolved_database_url(app) == "postgresql+psycopg://u@db/bud"
    assert (
        registry.resolved_database_url(AppSettings(data_dir=tmp_path))
        == AppSettings(data_dir=tmp_path).resolved_database_url()
    )
    own = RegistrySettings(data_dir=tmp_path, registry_database_url="postgresql+psycopg://u@reg/registry")
    assert own.resolved_database_url(app) == "postgresql+psycopg://u@reg/registry"
    assert registry.resolved_database_url(None) == f"sqlite:///{(tmp_path / 'bud.db').resolve()}"


def test_the_host_is_found_through_the_components() -> None:
    assert isinstance(host_settings(), AppSettings)


def test_model_roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUD_REGISTRY_MODEL_ROOTS", f"/models:{tmp_path}:")
    settings = RegistrySettings(data_dir=tmp_path / "data")
    assert settings.model_roots() == (tmp_path / "data" / "models", Path("/models"), tmp_path)
    with pytest.raises(ValidationError, match="absolute"):
        RegistrySettings(registry_model_roots=["relative"])
