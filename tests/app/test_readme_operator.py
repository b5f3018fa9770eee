"""The README's grpcurl operator examples run as written against a live mesh."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.mesh import REPO, Mesh

pytestmark = pytest.mark.mesh


def _operator_block() -> str:
    readme = (REPO / "README.md").read_text()
    match = re.search(
        r"<!-- operator-examples -->\s*```bash\n(.*?)```\s*<!-- /operator-examples -->", readme, re.DOTALL
    )
    assert match, "README lost its operator-examples block"
    return match.group(1)


def test_readme_operator_examples(mesh: Mesh) -> None:
    script = _operator_block()
    # The block's defaults are the embedded addresses; point them at this mesh's ports.
    script = script.replace("APP=127.0.0.1:50061", f"APP={mesh.app_grpc}")
    script = script.replace("ENGINE=127.0.0.1:50071", f"ENGINE={mesh.engine_grpc}")
    script = script.replace("TLS_DIR=.bud/tls", f"TLS_DIR={mesh.data_dir / 'tls'}")
    env = {
        **os.environ,
        "BUD_ADMIN_PASSWORD": mesh.admin_password,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "API_KEY_STATE_REVOKED" in result.stdout
    assert '"name": "embedder"' in result.stdout
    assert re.search(r'"secret": "bud-', result.stderr)  # shown once, at creation
