"""Starts the whole mesh (`budrt up`) as real processes on free loopback ports, for tests."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Mesh:
    """A running mesh and how to reach it."""

    process: subprocess.Popen[bytes]
    data_dir: Path
    log_path: Path
    env: dict[str, str]
    http_url: str
    gateway_grpc: str
    app_grpc: str
    engine_grpc: str
    api_key: str
    admin_password: str

    @property
    def openai_base_url(self) -> str:
        return f"{self.http_url}/v1"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=150)  # budrt up stops its services one by one
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_mesh(data_dir: Path, extra_env: dict[str, str] | None = None, timeout: float = 900.0) -> Mesh:
    """Runs `python -m budrt up` with a fresh data dir and waits until it says it is up."""
    data_dir.mkdir(parents=True, exist_ok=True)
    ports = {name: free_port() for name in ("http", "gateway_grpc", "app", "engine")}
    env = {
        **os.environ,
        "BUD_DATA_DIR": str(data_dir),
        "BUD_GATEWAY_HTTP_PORT": str(ports["http"]),
        "BUD_GATEWAY_GRPC_ADDRESS": f"127.0.0.1:{ports['gateway_grpc']}",
        "BUD_APP_ADDRESS": f"127.0.0.1:{ports['app']}",
        "BUD_ENGINE_ADDRESS": f"127.0.0.1:{ports['engine']}",
        "BUD_KV_CACHE_SPACE_GIB": "0.5",
        "PYTHONUNBUFFERED": "1",
        **(extra_env or {}),
    }
    log_path = data_dir / "mesh.log"
    log_file = open(log_path, "wb")  # noqa: SIM115 - lives as long as the mesh
    process = subprocess.Popen(
        [sys.executable, "-m", "budrt", "up", "--timeout", str(timeout)],
        cwd=REPO,
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout + 30
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace")
        if "Bud Runtime is up." in text:
            match = re.search(r"^OPENAI_API_KEY=(bud-\S+)$", text, re.MULTILINE)
            if match is None:
                process.send_signal(signal.SIGTERM)
                raise RuntimeError(f"mesh started but printed no API key:\n{text[-5000:]}")
            admin = re.search(r"^BUD_ADMIN_PASSWORD=(\S+)$", text, re.MULTILINE)
            return Mesh(
                process,
                data_dir,
                log_path,
                env,
                f"http://127.0.0.1:{ports['http']}",
                env["BUD_GATEWAY_GRPC_ADDRESS"],
                env["BUD_APP_ADDRESS"],
                env["BUD_ENGINE_ADDRESS"],
                match.group(1),
                admin.group(1) if admin else "",
            )
        if process.poll() is not None:
            raise RuntimeError(f"budrt up exited with {process.returncode}:\n{text[-8000:]}")
        time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"mesh not up after {timeout}s:\n{log_path.read_text(errors='replace')[-8000:]}")
