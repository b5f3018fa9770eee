"""Settings: per-service models over the runtime's, read from BUD_* variables and the BUD_CONFIG
YAML file; unknown names are errors; `budrt config` shows them with secrets redacted."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.settings import AppSettings
from budrt.components import discover
from budrt.settings import RuntimeSettings, SettingsError, check_known, load
from engine.settings import EngineSettings
from gateway.settings import GatewaySettings

REPO = Path(__file__).resolve().parents[2]
MODELS = [RuntimeSettings, AppSettings, EngineSettings, GatewaySettings]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No BUD_* variable from outside; the process-wide settings cache emptied around the test."""
    for key in list(os.environ):
        if key.upper().startswith("BUD_"):
            monkeypatch.delenv(key)
    load.cache_clear()
    yield
    load.cache_clear()


def test_every_setting_keeps_its_environment_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BUD_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("BUD_APP_ADDRESS", "10.0.0.1:1")
    monkeypatch.setenv("BUD_KV_CACHE_SPACE_GIB", "0.5")
    monkeypatch.setenv("BUD_DEFAULT_MODEL_NAME", "")
    monkeypatch.setenv("BUD_ENGINE_IN_GATEWAY", "false")
    monkeypatch.setenv("BUD_GATEWAY_HTTP_PORT", "8123")
    monkeypatch.setenv("BUD_REDIS_URL", "redis://r:6379/0")
    app, engine, gateway = AppSettings(), EngineSettings(), GatewaySettings()
    assert (app.data_dir, app.app_address, app.kv_cache_space_gib, app.default_model_name) == (
        tmp_path,
        "10.0.0.1:1",
        0.5,
        "",
    )
    assert engine.engine_in_gateway is False and engine.app_address == "10.0.0.1:1"
    assert (gateway.gateway_http_port, gateway.redis_url) == (8123, "redis://r:6379/0")


def test_the_yaml_file_is_one_flat_mapping_and_variables_win(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "bud.yaml"
    config.write_text("engine_address: 10.0.0.2:2\ndefault_project: team\ngateway_http_port: 9000\n")
    monkeypatch.setenv("BUD_CONFIG", str(config))
    monkeypatch.setenv("BUD_GATEWAY_HTTP_PORT", "9001")
    assert AppSettings().default_project == "team"
    assert AppSettings().engine_address == GatewaySettings().engine_address == "10.0.0.2:2"
    assert GatewaySettings().gateway_http_port == 9001
    check_known(MODELS)  # every key belongs to some component


def test_unknown_names_are_errors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="extra_forbidden|Extra inputs"):
        AppSettings(redis_url="x")  # the gateway's, not the app's
    monkeypatch.setenv("BUD_KV_CACHE_SPACE_GB", "1")
    with pytest.raises(SettingsError, match="BUD_KV_CACHE_SPACE_GB"):
        check_known(MODELS)
    monkeypatch.delenv("BUD_KV_CACHE_SPACE_GB")
    config = tmp_path / "bud.yaml"
    config.write_text("gateway_http_prot: 1\n")
    monkeypatch.setenv("BUD_CONFIG", str(config))
    with pytest.raises(SettingsError, match="gateway_http_prot"):
        check_known(MODELS)
    config.write_text("- a list\n")
    with pytest.raises(SettingsError, match="mapping"):
        check_known(MODELS)


def test_field_names_mean_one_thing_across_components() -> None:
    """The flat namespace: a name two models share is the runtime's, so it means one setting."""
    shared = set(RuntimeSettings.model_fields)
    seen: dict[str, str] = {}
    for component in discover().values():
        for name in set(component.settings.model_fields) - shared:
            assert name not in seen, f"{name} is both {seen[name]}'s and {component.name}'s"
            seen[name] = component.name


def test_secrets_are_generated_once_into_the_data_dir(tmp_path: Path) -> None:
    settings = RuntimeSettings(data_dir=tmp_path)
    first = settings.secret("jwt_secret")
    assert len(first) >= 32 and RuntimeSettings(data_dir=tmp_path).secret("jwt_secret") == first
    assert (tmp_path / "secrets" / "jwt_secret").stat().st_mode & 0o777 == 0o600
    assert RuntimeSettings(data_dir=tmp_path, jwt_secret="set").secret("jwt_secret") == "set"


def _budrt(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.upper().startswith("BUD_")}
    return subprocess.run(
        [sys.executable, "-m", "budrt", *args],
        cwd=REPO,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_budrt_config_prints_every_component_with_secrets_redacted(tmp_path: Path) -> None:
    secrets = {
        "BUD_JWT_SECRET": "jwt-value-e1f0",
        "BUD_KEY_HASH_SECRET": "hash-value-77aa",
        "BUD_ADMIN_PASSWORD": "admin-pw-31c9",
        "BUD_REDIS_URL": "redis://:redis-pw-5d2b@r:6379",
        "BUD_DATABASE_URL": "postgresql+psycopg://u:db-pw-9e9e@h/db",
    }
    result = _budrt(
        "config", env={**secrets, "BUD_DATA_DIR": str(tmp_path), "BUD_KV_CACHE_SPACE_GIB": "0.75"}
    )
    assert result.returncode == 0, result.stderr
    for value in secrets.values():
        assert value not in result.stdout and value.split("@")[0] not in result.stdout
    for section in ("# runtime", "# app ", "# engine ", "# gateway ", "# prompt ", "# registry "):
        assert section in result.stdout
    assert "kv_cache_space_gib: 0.75" in result.stdout and "jwt_secret: '***'" in result.stdout
    assert f"data_dir: {tmp_path}" in result.stdout

    only = _budrt("config", "gateway", env={"BUD_DATA_DIR": str(tmp_path)})
    assert "# gateway " in only.stdout and "# app " not in only.stdout and "redis_url: ''" in only.stdout


def test_budrt_refuses_an_unknown_setting() -> None:
    result = _budrt("config", env={"BUD_ENGINE_IN_GATEWY": "false"})
    assert result.returncode == 2 and "BUD_ENGINE_IN_GATEWY" in result.stderr
