"""The app going away, at mesh level: a gateway keeps serving from its last tables while the app
is down (killed, not stopped), and the restarted app has lost nothing — not what was written
before the kill, nor the usage of the calls made during the outage, which the gateway kept and
delivers once the app is back.

The app and gateway here run as separate processes (`budrt serve app|gateway`, the production
layout) with their own data dir and SQLite database; they put their model on the session mesh's
engine (a second served model there), so no second vLLM process is started.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from budrt.tls import LocalCa
from tests.support.mesh import REPO, Mesh, free_port
from tests.support.procs import wait_until
from tests.support.tls import share_ca

pytestmark = pytest.mark.mesh

START_TIMEOUT_S = 300.0


@dataclass
class Pair:
    """An app and a gateway sharing a data dir."""

    env: dict[str, str]
    data_dir: Path
    http_url: str
    app: subprocess.Popen[bytes] | None = None
    gateway: subprocess.Popen[bytes] | None = None

    def spawn(self, service: str) -> subprocess.Popen[bytes]:
        log = open(self.data_dir / f"{service}.log", "ab")  # noqa: SIM115 - lives as long as the process
        return subprocess.Popen(
            [sys.executable, "-m", "budrt", "serve", service],
            cwd=REPO,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self, service: str) -> str:
        return (self.data_dir / f"{service}.log").read_text(errors="replace")

    def stop(self) -> None:
        for process in (self.gateway, self.app):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()


def _ready(pair: Pair) -> dict[str, Any] | None:
    try:
        r = httpx.get(f"{pair.http_url}/readyz", timeout=2)
    except httpx.HTTPError:
        return None
    return r.json() if r.status_code == 200 else None


@pytest.fixture()
def pair(mesh: Mesh, tmp_path: Path) -> Iterator[Pair]:
    env = {
        **os.environ,
        "BUD_DATA_DIR": str(tmp_path),
        "BUD_APP_ADDRESS": f"127.0.0.1:{free_port()}",
        "BUD_ENGINE_ADDRESS": mesh.engine_grpc,  # the session mesh's engine
        "BUD_GATEWAY_HTTP_PORT": str(free_port()),
        "BUD_GATEWAY_GRPC_ADDRESS": f"127.0.0.1:{free_port()}",
        "BUD_DEFAULT_EMBEDDING_MODEL_NAME": "",  # the chat model alone
        "BUD_DEFAULT_IMAGE_MODEL_NAME": "",
        "BUD_KV_CACHE_SPACE_GIB": "0.25",
        "BUD_MAX_MODEL_LEN": "512",
        "PYTHONUNBUFFERED": "1",
    }
    share_ca(LocalCa(mesh.data_dir / "tls"), tmp_path)  # the pair and the mesh's engine trust each other
    running = Pair(env, tmp_path, f"http://127.0.0.1:{env['BUD_GATEWAY_HTTP_PORT']}")
    try:
        yield running
    finally:
        running.stop()


def _chat(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="tiny-llama", messages=[{"role": "user", "content": "hi"}], max_tokens=2
    )
    assert reply.choices[0].message.role == "assistant" and reply.usage is not None
    stream = client.chat.completions.create(
        model="tiny-llama", messages=[{"role": "user", "content": "hi"}], max_tokens=2, stream=True
    )
    assert any(chunk.choices for chunk in stream)


def test_gateway_serves_while_the_app_is_down_and_the_restarted_app_lost_nothing(pair: Pair) -> None:
    pair.app = pair.spawn("app")
    pair.gateway = pair.spawn("gateway")
    first_log = wait_until(
        "the app's bootstrap output",
        lambda: "BUD_ADMIN_PASSWORD=" in pair.log("app") and pair.log("app"),
        START_TIMEOUT_S,
        logs=lambda: pair.log("app"),
    )
    bootstrap_key = re.search(r"^OPENAI_API_KEY=(bud-\S+)$", first_log, re.MULTILINE).group(1)  # type: ignore[union-attr]
    password = re.search(r"^BUD_ADMIN_PASSWORD=(\S+)$", first_log, re.MULTILINE).group(1)  # type: ignore[union-attr]
    wait_until(
        "the deployment ready at the gateway",
        lambda: (state := _ready(pair)) and state["deployments"] == 1 and state["deployments_ready"] == 1,
        START_TIMEOUT_S,
        logs=lambda: pair.log("app") + pair.log("gateway"),
    )

    # Before the outage: a second key minted over REST, calls with both keys.
    token = httpx.post(
        f"{pair.http_url}/v1/auth/login", json={"username": "admin", "password": password}
    ).json()
    admin = httpx.Client(
        base_url=pair.http_url, headers={"authorization": f"Bearer {token['access_token']}"}, timeout=30
    )
    project_id = admin.get("/v1/projects").json()["projects"][0]["id"]
    minted = admin.post(f"/v1/projects/{project_id}/api_keys", json={"name": "before-outage"})
    assert minted.status_code == 200, minted.text
    clients = [
        openai.OpenAI(base_url=f"{pair.http_url}/v1", api_key=key, max_retries=0, timeout=60)
        for key in (bootstrap_key, minted.json()["secret"])
    ]
    wait_until("the new key at the gateway", lambda: _models_ok(clients[1]), timeout=10)
    for client in clients:
        _chat(client)
    revision = _ready(pair)["revision"]  # type: ignore[index]

    # The app dies without a chance to clean up.
    pair.app.send_signal(signal.SIGKILL)
    pair.app.wait(timeout=30)
    for _ in range(3):  # the gateway serves from its tables: keys, routes, the engine
        for client in clients:
            _chat(client)
    state = _ready(pair)
    assert state and state["revision"] == revision and state["deployments_ready"] == 1
    down = admin.get(f"/v1/projects/{project_id}")  # management needs the app: a clear 503
    assert down.status_code == 503 and down.json()["code"] == 14 and down.json()["message"], down.text
    with pytest.raises(openai.AuthenticationError):  # and unknown keys are still refused
        openai.OpenAI(base_url=f"{pair.http_url}/v1", api_key="bud-nokey000-x", max_retries=0).models.list()

    # The app comes back on the same database: nothing created before the kill is gone, the
    # model the engine serves is adopted (not reloaded), and the usage of every call — those of
    # the outage included, kept by the gateway — arrives.
    pair.app = pair.spawn("app")
    wait_until(
        "the restarted app answering",
        lambda: admin.get(f"/v1/projects/{project_id}").status_code == 200,
        timeout=120,
        logs=lambda: pair.log("app"),
    )
    assert pair.log("app").count("OPENAI_API_KEY=") == 1  # bootstrap ran once, on the first start
    keys = admin.get(f"/v1/projects/{project_id}/api_keys").json()["api_keys"]
    assert len(keys) == 2 and "before-outage" in {k["name"] for k in keys}
    assert all(k["state"] == "API_KEY_STATE_ACTIVE" for k in keys)
    deployments = admin.get(f"/v1/projects/{project_id}/deployments").json()["deployments"]
    assert [(d["name"], d["status"]) for d in deployments] == [("tiny-llama", "DEPLOYMENT_STATUS_READY")]

    calls = 2 * 2 * 4  # clients x (plain + stream) x (once before, three times during the outage)

    def usage_complete() -> bool:
        buckets = admin.get(f"/v1/projects/{project_id}/usage").json().get("buckets", [])
        return sum(int(b.get("requests", 0)) for b in buckets) >= calls

    wait_until(
        "the outage's usage at the app",
        usage_complete,
        timeout=30,
        logs=lambda: admin.get(f"/v1/projects/{project_id}/usage").text + pair.log("gateway")[-3000:],
    )
    buckets = admin.get(f"/v1/projects/{project_id}/usage").json()["buckets"]
    assert sum(int(b["requests"]) for b in buckets) == calls  # each exactly once

    # The gateway resumed its watch: a key minted now works, a key revoked now stops.
    late = admin.post(f"/v1/projects/{project_id}/api_keys", json={"name": "after-outage"}).json()
    wait_until(
        "the late key at the gateway",
        lambda: _models_ok(
            openai.OpenAI(base_url=f"{pair.http_url}/v1", api_key=late["secret"], max_retries=0)
        ),
        timeout=10,
    )
    admin.post(f"/v1/projects/{project_id}/api_keys/{minted.json()['api_key']['id']}:revoke", json={})
    wait_until("the revocation at the gateway", lambda: not _models_ok(clients[1]), timeout=5)

    # Leave the shared engine as it was: deleting the deployment unloads its model there.
    assert admin.delete(f"/v1/projects/{project_id}/deployments/{deployments[0]['id']}").status_code == 200


def _models_ok(client: openai.OpenAI) -> bool:
    try:
        client.models.list()
    except openai.AuthenticationError:
        return False
    return True
