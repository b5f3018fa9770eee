"""The compose stack (deploy/compose/compose.yaml), checked without Docker (`docker compose
config` is not available here): the file is parsed with its anchors and `${...}` filled from
.env.example, every Bud container's environment is read by the services' own settings models
(only real settings), and the addresses line up — each service dialled where another listens,
the same secrets on both sides, the database and Redis the ones the stack runs, mutual TLS
with one certificate per identity, migrations in a one-shot service before the app."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from budrt.components import standalone
from tests.deploy.services import COMPONENTS, address_setting, bind_address, host, port, service_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "deploy" / "compose"


def _dotenv(path: Path) -> dict[str, str]:
    pairs = (
        line.split("=", 1)
        for line in path.read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    return {k.strip(): v.strip() for k, v in pairs}


def _interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's `${VAR}`, `${VAR:-default}`, `${VAR:?error}` and `$$`."""
    if isinstance(value, dict):
        return {k: _interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group(1), match.group(2) or "", match.group(3) or ""
        if name in env and (env[name] or op != ":-"):
            return env[name]
        if op == ":?":
            raise AssertionError(f"${{{name}}} is required: {arg}")
        return arg

    return re.sub(r"\$\$|\$\{(\w+)(:-|:\?)?([^}]*)\}", one, value)


def load_compose(env: dict[str, str] | None = None) -> dict[str, Any]:
    raw = yaml.safe_load((COMPOSE_DIR / "compose.yaml").read_text())
    return _interpolate(raw, env if env is not None else _dotenv(COMPOSE_DIR / ".env.example"))


COMPOSE = load_compose()
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
BUD = {name: s for name, s in SERVICES.items() if str(s.get("image", "")).startswith("bud-runtime/")}


def _runs(service: dict[str, Any]) -> list[str]:
    """The components a Bud container runs (`budrt serve` + its command); [] for one-shot jobs."""
    entry = service.get("entrypoint")
    return [] if entry else list(service["command"])


def _names(name: str) -> set[str]:
    """The names a service answers to on the compose network."""
    aliases = ((SERVICES[name].get("networks") or {}).get("default") or {}).get("aliases", [])
    return {name, *aliases}


def _settings() -> dict[str, dict[str, Any]]:
    return {
        name: service_settings(_runs(s), s.get("environment") or {}) for name, s in BUD.items() if _runs(s)
    }


SETTINGS = _settings()


def test_a_missing_secret_is_refused() -> None:
    with pytest.raises(AssertionError, match="KEY_HASH_SECRET"):
        load_compose({})


def test_the_stack_has_what_production_runs() -> None:
    assert {"postgres", "redis", "clamd", "prometheus", "migrate", "app", "engine", "engine-cpu"} <= set(
        SERVICES
    )
    gateways = [n for n, s in BUD.items() if "gateway" in _runs(s)]
    assert len(gateways) == 2
    assert all("prompt" in _runs(BUD[g]) for g in gateways)  # the executor in each gateway's process
    for name, service in BUD.items():
        assert set(_runs(service)) <= set(standalone(COMPONENTS)), name
    for name, service in SERVICES.items():
        image = str(service["image"])
        assert ":" in image and not image.endswith(":latest"), f"{name}: {image} is not pinned"


def test_every_bud_variable_is_a_real_setting() -> None:
    # service_settings reads each environment with the settings models (check_known on top): a
    # misspelt name fails here as `budrt: unknown settings` would at start.
    assert set(SETTINGS) == {n for n, s in BUD.items() if _runs(s)}
    with pytest.raises(Exception, match="BUD_GATEWAY_HTTP_PROT"):
        service_settings(["gateway"], {"BUD_GATEWAY_HTTP_PROT": "1"})
    migrate = BUD["migrate"]
    assert migrate["entrypoint"] == ["budrt", "migrate"]
    service_settings(["app"], migrate["environment"])


def test_addresses_line_up() -> None:
    listeners: dict[str, tuple[set[str], int]] = {}  # component → (names it answers to, port)
    for name, service in BUD.items():
        for component in _runs(service):
            settings = SETTINGS[name][component]
            if not COMPONENTS[component].address_setting:
                continue
            bound = bind_address(component, settings)
            assert host(bound) == "0.0.0.0", f"{name} {component} must listen on the network: {bound}"
            names, _ = listeners.get(component, (set(), 0))
            listeners[component] = (names | _names(name), port(bound))
    assert {"app", "gateway", "engine", "prompt"} <= set(listeners)
    for name, per_component in SETTINGS.items():
        runs = _runs(BUD[name])
        for component, settings in per_component.items():
            for target, (names, listen_port) in listeners.items():
                if target in runs or COMPONENTS[target].hosted_by:
                    continue  # its own (bound) address
                dialled = getattr(settings, address_setting(target))
                if target == "gateway":
                    continue  # nobody dials a gateway's gRPC face inside the stack
                assert host(dialled) in names and port(dialled) == listen_port, (
                    f"{name}/{component} dials {target} at {dialled}; it listens as {sorted(names)}:{listen_port}"
                )


def test_secrets_database_and_redis_are_shared_and_real() -> None:
    env = _dotenv(COMPOSE_DIR / ".env.example")
    app = SETTINGS["app"]["app"]
    gateways = [SETTINGS[n]["gateway"] for n in SETTINGS if "gateway" in SETTINGS[n]]
    for gateway in gateways:
        assert (gateway.key_hash_secret, gateway.jwt_secret) == (app.key_hash_secret, app.jwt_secret)
        assert gateway.redis_url == gateways[0].redis_url  # one Redis: shared limits, leases, cache
    redis = urlsplit(gateways[0].redis_url)
    assert redis.hostname == "redis" and redis.port == 6379 and redis.password == env["REDIS_PASSWORD"]
    postgres = SERVICES["postgres"]["environment"]
    db = urlsplit(app.database_url)
    assert db.scheme == "postgresql+psycopg" and db.hostname == "postgres"
    assert (db.username, db.password, db.path.lstrip("/")) == (
        postgres["POSTGRES_USER"],
        postgres["POSTGRES_PASSWORD"],
        postgres["POSTGRES_DB"],
    )
    assert BUD["migrate"]["environment"]["BUD_DATABASE_URL"] == app.database_url
    registry = SETTINGS["app"]["registry"]
    assert registry.clamav_host == "clamd" and registry.clamav_port == 3310


def test_migrations_run_once_before_the_app() -> None:
    assert SETTINGS["app"]["app"].migrate_on_start is False
    depends = BUD["app"]["depends_on"]
    assert depends["migrate"]["condition"] == "service_completed_successfully"
    assert BUD["migrate"].get("restart") == "no"


def test_mutual_tls_with_one_certificate_per_identity() -> None:
    issued = BUD["certs"]["command"][0]
    identities, hosts = (eval(part) for part in re.findall(r"\[[^\]]*\]", issued))  # noqa: S307 - our literal
    for name, per_component in SETTINGS.items():
        first = _runs(BUD[name])[0]
        settings = per_component[first]
        assert settings.tls is True
        assert Path(settings.tls_cert_file).name == f"{first}.pem" and first in identities
        assert Path(settings.tls_key_file).name == f"{first}.key"
        assert settings.tls_server_name in hosts
        mounts = [v for v in BUD[name].get("volumes", []) if v.startswith("tls:")]
        assert mounts and mounts[0].endswith(":ro")


def test_only_authenticated_ports_are_published() -> None:
    for name, service in SERVICES.items():
        for mapping in service.get("ports", []):
            if name in BUD:
                assert "gateway" in _runs(BUD[name]), f"{name} publishes {mapping}"
                assert mapping.endswith(f":{SETTINGS[name]['gateway'].gateway_http_port}")
            else:
                assert mapping.startswith("127.0.0.1:"), f"{name} publishes {mapping} beyond this host"


def test_one_engine_with_a_gpu_and_a_cpu_profile_without() -> None:
    gpu, cpu = SERVICES["engine"], SERVICES["engine-cpu"]
    assert gpu["profiles"] == ["gpu"] and cpu["profiles"] == ["cpu"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert "deploy" not in cpu
    assert "engine" in _names("engine-cpu")  # the address the app registers, either profile
    assert "gpu" in gpu["image"] and "cpu" in cpu["image"]
