"""The registry over REST through the gateway (the in-process stack of the fuzz test: app with the
registry in its process, the real gateway), and `budrt models import` on the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.app.conftest import ADMIN_PASSWORD
from tests.gateway.test_fuzz_openapi import in_process_stack, prepare
from tests.registry.models_on_disk import COMMIT, TINY_PARAMETERS, hf_cache, small_llama
from tests.support.mesh import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.integration  # the whole in-process stack, gateway included (~20 s)
def test_rest_routes(tmp_path: Path) -> None:
    with in_process_stack(tmp_path) as (url, api_key):
        target = prepare(url, api_key, ADMIN_PASSWORD)
        auth = {"authorization": f"Bearer {target.token}"}
        assert requests.get(f"{url}/v1/registry/models", timeout=30).status_code == 401
        listed = requests.get(f"{url}/v1/registry/models?page_size=5", headers=auth, timeout=30)
        assert listed.status_code == 200 and listed.json() == {"models": [], "next_page_token": ""}
        licences = requests.get(f"{url}/v1/registry/licenses", headers=auth, timeout=30).json()["licenses"]
        assert {"Apache-2.0", "llama3.1", "gemma", "CC-BY-NC-4.0", "unknown"} <= {x["id"] for x in licences}

        outside = small_llama(tmp_path / "outside")
        refused = requests.post(
            f"{url}/v1/registry/models", json={"local_path": str(outside)}, headers=auth, timeout=30
        )
        assert refused.status_code == 400, refused.text
        assert refused.json()["details"][1]["fieldViolations"][0]["field"] == "model.local_path"

        model_dir = small_llama(tmp_path / "models" / "llama-rest", "gemma")
        created = requests.post(
            f"{url}/v1/registry/models",
            json={"local_path": str(model_dir), "tags": ["rest"]},
            headers=auth,
            timeout=30,
        )
        assert created.status_code == 200, created.text
        model = created.json()["model"]
        assert model["license"]["id"] == "gemma" and model["scan_status"] == "SCAN_STATUS_PENDING"
        model_id = model["id"]
        put = requests.put(
            f"{url}/v1/registry/models/{model_id}?update_mask=description",
            json={"description": "via REST"},
            headers=auth,
            timeout=30,
        )
        assert put.status_code == 200 and put.json()["model"]["description"] == "via REST", put.text
        filtered = requests.get(
            f"{url}/v1/registry/models?license_id=gemma&max_parameters=100000", headers=auth, timeout=30
        )
        assert [m["id"] for m in filtered.json()["models"]] == [model_id]
        licence = requests.get(
            f"{url}/v1/registry/models/{model_id}/license", headers=auth, timeout=30
        ).json()
        assert licence["license"]["acceptable_use_policy_url"].startswith("https://ai.google.dev/")
        op = requests.post(
            f"{url}/v1/registry/models:import", json={"source": str(model_dir)}, headers=auth, timeout=30
        )
        assert op.status_code == 200 and op.json()["operation"]["state"] == "IMPORT_STATE_RUNNING", op.text
        for path in (f"{model_id}/scan", f"{model_id}:scan"):  # both bindings; no clamd here
            scan = requests.post(f"{url}/v1/registry/models/{path}", json={}, headers=auth, timeout=30)
            assert scan.status_code == 200 and scan.json()["operation"]["stage"] in ("scan", "done"), (
                scan.text
            )
        refused = requests.post(
            f"{url}/v1/projects/{target.project_id}/deployments",
            json={"name": "from-registry", "model": {"registry_model_id": model_id}},
            headers=auth,
            timeout=30,
        )
        assert refused.status_code == 400, refused.text  # PENDING while scanning, then ERROR
        assert refused.json()["details"][0]["reason"] == "MODEL_SCAN_NOT_CLEAN", refused.text
        assert (
            requests.delete(f"{url}/v1/registry/models/{model_id}", headers=auth, timeout=30).status_code
            == 200
        )
        missing = requests.get(f"{url}/v1/registry/models/{model_id}/license", headers=auth, timeout=30)
        assert missing.status_code == 404 and missing.json()["code"] == 5


@pytest.mark.integration  # `budrt` subprocesses
def test_budrt_models_import_prints_the_entry(tmp_path: Path, tiny_model_dir: Path) -> None:
    cache = tmp_path / "hf"
    hf_cache(cache, "bud-test/tiny-llama", tiny_model_dir)
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT}:{ROOT / 'gen'}",
        "BUD_DATA_DIR": str(tmp_path / "data"),
        "BUD_REGISTRY_HF_CACHE_DIR": str(cache),
        "BUD_REGISTRY_MODEL_ROOTS": str(tmp_path / "models"),
        "HF_HUB_OFFLINE": "1",
        "BUD_CLAMAV_PORT": str(free_port()),
    }
    run = subprocess.run(
        [sys.executable, "-m", "budrt", "models", "import", "bud-test/tiny-llama", "--tag", "cli"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    entry = json.loads(run.stdout)
    assert entry["hugging_face_id"] == "bud-test/tiny-llama" and entry["revision"] == COMMIT
    assert int(entry["parameter_count"]) == TINY_PARAMETERS and entry["tags"] == ["cli"]
    assert "hashing" in run.stderr and "scanning" in run.stderr  # the progress bars
    assert entry["scan_status"] == "SCAN_STATUS_ERROR"  # no clamd at BUD_CLAMAV_PORT: never CLEAN
    assert "unreachable" in entry["scan"]["reason"]

    small_llama(tmp_path / "models" / "m")
    local = subprocess.run(
        [sys.executable, "-m", "budrt", "models", "import", str(tmp_path / "models" / "m")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert local.returncode == 0 and json.loads(local.stdout)["provider"] == "MODEL_PROVIDER_CUSTOM", (
        local.stderr
    )
    refused = subprocess.run(
        [sys.executable, "-m", "budrt", "models", "import", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert refused.returncode == 1 and "not under the model roots" in refused.stderr
