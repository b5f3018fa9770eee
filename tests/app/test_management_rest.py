"""Management over REST through the gateway's transcoding, end to end: admin login → project →
deployment (the engine loads it) → API key → chat with the key → revoke → refused within 1 s;
and one project's key never reaches another project's deployment."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from tests.support.mesh import Mesh

pytestmark = pytest.mark.mesh


def _login(mesh: Mesh) -> httpx.Client:
    assert mesh.admin_password, "the mesh printed no BUD_ADMIN_PASSWORD on first start"
    r = httpx.post(
        f"{mesh.http_url}/v1/auth/login", json={"username": "admin", "password": mesh.admin_password}
    )
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    return httpx.Client(base_url=mesh.http_url, headers={"authorization": f"Bearer {token}"}, timeout=60)


def test_management_needs_a_login(mesh: Mesh) -> None:
    r = httpx.get(f"{mesh.http_url}/v1/projects")
    # Management routes answer google.rpc.Status JSON (grpc-gateway's shape), not OpenAI's.
    assert r.status_code == 401 and set(r.json()) == {"code", "message", "details"} and r.json()["code"] == 16
    r = httpx.post(f"{mesh.http_url}/v1/auth/login", json={"username": "admin", "password": "wrong"})
    assert r.status_code == 401


def test_lifecycle_project_deployment_key_call_revoke(mesh: Mesh) -> None:
    with _login(mesh) as admin:
        project = admin.post("/v1/projects", json={"name": "team-a", "description": "REST lifecycle"})
        assert project.status_code == 200, project.text
        project_id = project.json()["project"]["id"]
        assert admin.post("/v1/projects", json={"name": "team-a"}).status_code == 409
        bad = admin.post(
            f"/v1/projects/{project_id}/deployments", json={"name": "", "model": {"builtin": "tiny-llama"}}
        )
        assert bad.status_code == 400 and [
            v["field"]
            for d in bad.json()["details"]
            if d["@type"].endswith(".BadRequest")
            for v in d["fieldViolations"]
        ] == ["deployment.name"], bad.text
        # Engines are the platform's: listed for the admin, never given by address.
        engines = admin.get("/v1/engines")
        assert engines.status_code == 200, engines.text
        engine_id = next(e["id"] for e in engines.json()["engines"] if e["address"] == mesh.engine_grpc)
        by_address = admin.post(
            f"/v1/projects/{project_id}/deployments",
            json={
                "name": "chat-a",
                "model": {"builtin": "tiny-llama"},
                "endpoints": [{"address": mesh.engine_grpc}],
            },
        )
        assert by_address.status_code == 400 and "deployment.endpoints[0].address" in by_address.text
        created = admin.post(
            f"/v1/projects/{project_id}/deployments",
            json={
                "name": "chat-a",
                "model": {"builtin": "tiny-llama"},
                "runner": "RUNNER_GENERATE",
                "endpoints": [{"engine_id": engine_id}],
                "engine_args": {"max_model_len": 512, "kv_cache_space_gib": 0.25},
            },
        )
        assert created.status_code == 200, created.text
        deployment_id = created.json()["deployment"]["id"]
        deadline = time.monotonic() + 300
        while True:
            status = admin.get(f"/v1/projects/{project_id}/deployments/{deployment_id}").json()["deployment"][
                "status"
            ]
            if status == "DEPLOYMENT_STATUS_READY":
                break
            assert status != "DEPLOYMENT_STATUS_FAILED" and time.monotonic() < deadline, status
            time.sleep(1)
        minted = admin.post(f"/v1/projects/{project_id}/api_keys", json={"name": "app"})
        assert minted.status_code == 200, minted.text
        secret, key_id = minted.json()["secret"], minted.json()["api_key"]["id"]
        listed = admin.get(f"/v1/projects/{project_id}/api_keys").json()["api_keys"]
        assert [k["id"] for k in listed] == [key_id] and secret not in str(listed)

        client = openai.OpenAI(base_url=mesh.openai_base_url, api_key=secret, max_retries=0, timeout=60)
        deadline = time.monotonic() + 10  # the gateway learns of the key through its watch stream
        while True:
            try:
                reply = client.chat.completions.create(
                    model="chat-a", messages=[{"role": "user", "content": "hi"}], max_tokens=3
                )
                break
            except (openai.AuthenticationError, openai.NotFoundError, openai.APIStatusError):
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert reply.choices[0].message.role == "assistant"
        # Isolation: each project's key sees only its own project's deployments.
        assert [m.id for m in client.models.list().data] == ["chat-a"]
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="tiny-llama", messages=[{"role": "user", "content": "hi"}])
        default_client = openai.OpenAI(base_url=mesh.openai_base_url, api_key=mesh.api_key, max_retries=0)
        with pytest.raises(openai.NotFoundError):
            default_client.chat.completions.create(
                model="chat-a", messages=[{"role": "user", "content": "hi"}]
            )

        # Per-key limit, set after the fact: one request a minute. Fixed windows let at most two
        # calls through across a window boundary; a third is refused with Retry-After.
        limited = admin.patch(
            f"/v1/projects/{project_id}/api_keys/{key_id}",
            params={"update_mask": "requests_per_minute"},
            json={"requests_per_minute": 1},
        )
        assert limited.status_code == 200 and limited.json()["api_key"]["requests_per_minute"] == 1, (
            limited.text
        )
        deadline = time.monotonic() + 10  # the change reaches the gateway through its watch stream
        raw = httpx.Client(
            base_url=mesh.openai_base_url, headers={"authorization": f"Bearer {secret}"}, timeout=60
        )
        while True:
            r = raw.post(
                "/chat/completions",
                json={"model": "chat-a", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]},
            )
            if r.status_code == 429:
                break
            assert r.status_code == 200 and time.monotonic() < deadline, r.text
            time.sleep(0.2)
        assert int(r.headers["retry-after"]) >= 1 and r.json()["error"]["type"]
        assert r.headers["x-ratelimit-limit-requests"] == "1"

        revoked = admin.post(f"/v1/projects/{project_id}/api_keys/{key_id}:revoke", json={})
        assert revoked.status_code == 200 and revoked.json()["api_key"]["state"] == "API_KEY_STATE_REVOKED"
        started = time.monotonic()
        while True:
            try:
                client.models.list()
            except openai.AuthenticationError:
                break
            assert time.monotonic() - started < 1.0, "a revoked key still worked after 1 s"
            time.sleep(0.02)

        usage = admin.get(f"/v1/projects/{project_id}/usage")
        assert usage.status_code == 200, usage.text
        deadline = time.monotonic() + 10  # usage is flushed in batches, off the request path
        while not any(b["deployment_id"] == deployment_id for b in usage.json().get("buckets", [])):
            assert time.monotonic() < deadline, usage.text
            time.sleep(0.5)
            usage = admin.get(f"/v1/projects/{project_id}/usage")
