"""The README's "Prompts" walk-through (grpcurl and curl) runs as written against an app (SQLite
and PostgreSQL) and the gateway's REST face in front of it."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from app.server import RunningApp
from budrt.tls import OPERATOR, LocalCa
from tests.app.conftest import ADMIN_PASSWORD
from tests.app.test_prompts_rest import rest  # noqa: F401  (fixture)

REPO = Path(__file__).resolve().parents[2]
TOOLS = Path(sys.executable).parent


def _block() -> str:
    readme = (REPO / "README.md").read_text()
    match = re.search(
        r"<!-- prompt-examples -->\s*```bash\n(.*?)```\s*<!-- /prompt-examples -->", readme, re.DOTALL
    )
    assert match, "README lost its prompt-examples block"
    return match.group(1)


@pytest.mark.skipif(not (TOOLS / "grpcurl").exists(), reason="grpcurl is not installed in the venv")
async def test_readme_prompt_walkthrough(app: RunningApp, rest: Any, process_tls: LocalCa) -> None:  # noqa: F811
    script = _block()
    script = script.replace("APP=127.0.0.1:50061", f"APP={app.address}")
    script = script.replace("API=http://127.0.0.1:8000", f"API={str(rest.base_url).rstrip('/')}")
    process_tls.material(OPERATOR)  # grpcurl calls the app as the operator, with the test CA
    script = script.replace("TLS_DIR=.bud/tls", f"TLS_DIR={process_tls.directory}")
    env = {
        **os.environ,
        "BUD_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "PATH": f"{TOOLS}{os.pathsep}{os.environ['PATH']}",
    }
    process = await asyncio.create_subprocess_exec(
        "bash", "-euo", "pipefail", "-c", script, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    stdout = out.decode()
    assert process.returncode == 0, stdout + err.decode()
    assert '"version": 2' in stdout and '"production"' in stdout
    assert '{"version":2,"note":"shorter answers","labels":["latest","production"]}' in stdout
    assert '"system_prompt"' in stdout and '"parameters.temperature"' in stdout
    assert '{"name":"support-reply","prompt":{"prompt_id":' in stdout and '"label":"production"' in stdout
    assert '{"name":"reply","latest_version":2}' in stdout
