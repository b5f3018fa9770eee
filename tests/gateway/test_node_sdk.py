"""The official `openai` package for Node works against the gateway unchanged."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.mesh import Mesh

pytestmark = pytest.mark.mesh
NODE_DIR = Path(__file__).parent / "node"


@pytest.fixture(scope="module")
def node_sdk() -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        if os.environ.get("CI"):
            pytest.fail("node and npm are required for the Node SDK tests")
        pytest.skip("node/npm not installed")
    if not (NODE_DIR / "node_modules" / "openai").exists():
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--silent"], cwd=NODE_DIR, check=True, timeout=300
        )
    return NODE_DIR


def test_node_sdk_chat_stream_models_embeddings_errors(mesh: Mesh, node_sdk: Path) -> None:
    result = subprocess.run(
        ["node", "sdk_check.mjs"],
        cwd=node_sdk,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "BASE_URL": mesh.openai_base_url, "API_KEY": mesh.api_key},
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    plain = out["plain"]
    assert plain["object"] == "chat.completion" and plain["role"] == "assistant"
    assert plain["usage"]["completion_tokens"] <= 6
    assert out["stream"]["text"] == plain["content"]  # greedy: the same text streamed and not
    assert (
        out["stream"]["last_choices"] == 0
        and out["stream"]["usage"]["completion_tokens"] == plain["usage"]["completion_tokens"]
    )
    assert {"tiny-llama", "all-minilm-l6-v2"} <= set(out["models"])
    assert out["embeddings"] == {"count": 2, "dims": 384}
    assert out["bad_key"] == {"status": 401, "code": "invalid_api_key"}
