"""Settings: the runtime's shared ones here, each service's own knobs in its package.

Every settings model derives from :class:`RuntimeSettings` (data dir, log level, the gRPC
addresses of the services, the shared secrets) and adds the knobs of its service
(`app.settings.AppSettings`, `gateway.settings.GatewaySettings`, ...). Values come from the
field defaults, then an optional YAML file named by `BUD_CONFIG`, then environment variables
`BUD_<FIELD>` (upper case); arguments given to the constructor win over all of them.

The names are one flat namespace: a field name means the same setting in every model that has it
(the runtime's fields are in all of them), and the YAML file is one flat mapping for the whole
mesh. Each model reads only its own keys from it; :func:`check_known` rejects a YAML key or a
`BUD_` variable that no discovered component's model knows (a typo is an error, never ignored).
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import AfterValidator, BeforeValidator, Field
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)


def _path_list(value: Any) -> Any:
    """A string (an environment variable) is a PATH-like list; empty parts are dropped."""
    if isinstance(value, str):
        return [part for part in value.split(os.pathsep) if part.strip()]
    return value


def _absolute_paths(paths: list[Path]) -> list[Path]:
    paths = [path.expanduser() for path in paths]
    relative = [str(path) for path in paths if not path.is_absolute()]
    if relative:
        raise ValueError(f"model roots must be absolute paths: {', '.join(relative)}")
    return paths


# Directories a setting names, absolute: a YAML list, or in the environment separated like PATH
# (`/models:/srv/weights`). The engine's `allowed_model_roots`, the registry's model roots.
ModelRoots = Annotated[list[Path], NoDecode, BeforeValidator(_path_list), AfterValidator(_absolute_paths)]

log = logging.getLogger(__name__)

ENV_PREFIX = "BUD_"
# The one `BUD_` variable that is not a setting: it names the YAML file.
CONFIG_VARIABLE = "BUD_CONFIG"


class SettingsError(ValueError):
    """The configuration names settings nobody knows, or is not a mapping."""


class _OwnKeysYaml(YamlConfigSettingsSource):
    """The YAML file named by BUD_CONFIG, restricted to the keys of one model: the file is shared
    by every service, and unknown keys are caught once, by :func:`check_known`."""

    def __call__(self) -> dict[str, Any]:
        if not isinstance(self.yaml_data, Mapping):
            raise SettingsError(f"{self.yaml_file_path}: expected a mapping of settings")
        fields = self.settings_cls.model_fields
        return {key: value for key, value in super().__call__().items() if key in fields}


class RuntimeSettings(BaseSettings):
    """What every service shares: where state lives, logging, the addresses of the services and
    the secrets the app and the gateways both need."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid")

    # Where embedded state lives: the SQLite database, generated secrets, the built tiny model.
    data_dir: Path = Path(".bud")
    log_level: str = "INFO"

    # gRPC addresses (host:port). The app process also hosts the registry service.
    app_address: str = "127.0.0.1:50061"
    engine_address: str = "127.0.0.1:50071"
    gateway_grpc_address: str = "127.0.0.1:50051"
    # The prompt executor run as a process of its own (`budrt serve prompt`); co-hosted in a
    # gateway's process (the default) it is called in process and serves no port.
    prompt_address: str = "127.0.0.1:50081"

    # Secret keying the API-key hashes (HMAC-SHA256), shared by the app and the gateways.
    # Generated into data_dir on first use when unset; set it explicitly in production.
    key_hash_secret: str = Field(default="", repr=False, json_schema_extra={"secret": True})
    # Secret signing management JWTs; generated like key_hash_secret when unset.
    jwt_secret: str = Field(default="", repr=False, json_schema_extra={"secret": True})

    # Mutual TLS between the services (budrt/tls.py). On: every gRPC server demands a client
    # certificate from the CA and every channel presents this process's. Without the three files
    # the local CA generated into <data_dir>/tls/ signs one certificate per service.
    tls: bool = True
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # Verify servers' certificates against this name instead of the dialled host (addresses by
    # IP whose certificates name DNS names only).
    tls_server_name: str = ""
    # Allows plaintext gRPC (tls off) on addresses other machines can reach; logged at WARNING
    # on every start. Without it such a server refuses to start.
    insecure: bool = False

    # Tracing (budrt/tracing.py): an OTLP/gRPC collector (`http://host:4317`: plaintext,
    # `https://`: TLS); empty: no tracer provider at all. The share of new traces kept; whether
    # message content may be recorded in spans (off: never prompts, answers or tool arguments).
    otlp_endpoint: str = ""
    trace_sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0)
    trace_capture_content: bool = False
    # Prometheus `/metrics` (budrt/metrics.py), one port per process, at its first component's
    # address (`budrt serve gateway engine`: the gateway's); empty: none. Loopback by default;
    # another address needs `metrics_token` (a bearer token the scraper sends) or `insecure`.
    gateway_metrics_address: str = "127.0.0.1:9464"
    engine_metrics_address: str = "127.0.0.1:9465"
    app_metrics_address: str = "127.0.0.1:9466"
    prompt_metrics_address: str = "127.0.0.1:9467"
    metrics_token: str = Field(default="", repr=False, json_schema_extra={"secret": True})

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Constructor arguments, then BUD_* variables, then the BUD_CONFIG file, then defaults."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get(CONFIG_VARIABLE)
        if config_file:
            sources.append(_OwnKeysYaml(settings_cls, yaml_file=Path(config_file)))
        return tuple(sources)

    def ensure_data_dir(self) -> Path:
        """The data dir, created (or tightened) to mode 0700: see :func:`private_dir`."""
        return private_dir(self.data_dir)

    def secret(self, name: str) -> str:
        """A secret setting, or one generated once and kept (mode 0600) in data_dir."""
        value = getattr(self, name)
        if value:
            return value
        path = self.data_dir / "secrets" / name
        if not path.exists():
            self.ensure_data_dir()
            private_dir(path.parent)
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


# Group and other permission bits: a private directory or file has none of them.
_SHARED_BITS = stat.S_IRWXG | stat.S_IRWXO


def private_dir(path: Path, *, tighten: bool = True) -> Path:
    """Creates `path` (and its missing parents) with mode 0700 and returns it.

    The data dir holds the database (password and key hashes) and the generated secrets, so only
    its owner may enter it. An existing directory that others can read or enter is tightened to
    0700, with a warning (it was created by an older version, or by hand); `tighten=False` leaves
    an existing directory alone (one this process did not choose, such as the parent of a
    database file named by its URL).
    """
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for directory in reversed(missing):
        try:
            # mode is masked by the umask, which can only take bits away: still at most 0700.
            directory.mkdir(mode=0o700)
        except FileExistsError:
            pass  # another process created it first
    if missing:
        return path
    mode = stat.S_IMODE(path.stat().st_mode)
    if tighten and mode & _SHARED_BITS:
        details = {"path": str(path), "was": oct(mode), "now": oct(mode & ~_SHARED_BITS)}
        try:
            path.chmod(mode & ~_SHARED_BITS)
        except PermissionError:  # someone else's directory: say so, and carry on
            log.warning("a private directory is readable by others and not ours to tighten", extra=details)
        else:
            log.warning("tightened a private directory to owner-only access", extra=details)
    return path


def is_secret(model: type[BaseSettings], name: str) -> bool:
    """Whether a field holds a secret (never printed: `Field(json_schema_extra={"secret": True})`)."""
    extra = model.model_fields[name].json_schema_extra
    return isinstance(extra, dict) and bool(extra.get("secret"))


def redacted(settings: BaseSettings) -> dict[str, Any]:
    """The settings' values as JSON-ready data, secrets that are set replaced by "***"."""
    values = settings.model_dump(mode="json")
    for name in values:
        if is_secret(type(settings), name) and values[name]:
            values[name] = "***"
    return values


def check_known(models: Iterable[type[BaseSettings]], environ: Mapping[str, str] | None = None) -> None:
    """Raises SettingsError naming every key of the BUD_CONFIG file and every BUD_* variable that
    none of `models` has a field for (extra=forbid, across the whole flat namespace)."""
    env = os.environ if environ is None else environ
    known = {name for model in models for name in model.model_fields}
    unknown = [
        key
        for key in env
        if key.upper().startswith(ENV_PREFIX)
        and key.upper() != CONFIG_VARIABLE
        and key[len(ENV_PREFIX) :].lower() not in known
    ]
    config_file = env.get(CONFIG_VARIABLE)
    if config_file:
        loaded = yaml.safe_load(Path(config_file).read_text()) or {}
        if not isinstance(loaded, dict):
            raise SettingsError(f"{config_file}: expected a mapping of settings")
        unknown += [f"{config_file}: {key}" for key in loaded if key not in known]
    if unknown:
        raise SettingsError("unknown settings (no component has them): " + ", ".join(sorted(unknown)))


SettingsT = TypeVar("SettingsT", bound=BaseSettings)


@cache
def load(model: type[SettingsT]) -> SettingsT:
    """The process-wide settings of one model (read once from the environment and BUD_CONFIG)."""
    return model()


def settings() -> RuntimeSettings:
    """The process-wide runtime settings (read once)."""
    return load(RuntimeSettings)
