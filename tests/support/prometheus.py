"""A throwaway Prometheus server (Debian package `prometheus`) on a free loopback port, scraping
the targets a test names every second; :meth:`PrometheusServer.query` asks its HTTP API.

Missing binary: the test fails when the environment variable CI is set, and skips otherwise
(`make test-deps` installs it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.mesh import free_port


@dataclass
class PrometheusServer:
    url: str
    log: Path

    def query(self, expression: str) -> list[dict[str, Any]]:
        """The instant vector of a PromQL expression (`data.result`)."""
        reply = requests.get(f"{self.url}/api/v1/query", params={"query": expression}, timeout=10)
        reply.raise_for_status()
        body = reply.json()
        assert body["status"] == "success", body
        return body["data"]["result"]

    def wait_for(self, expression: str, predicate: Any, timeout: float = 60.0) -> list[dict[str, Any]]:
        """The result of `expression` once `predicate(result)` holds (scrapes come every second)."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(expression)
            if predicate(result):
                return result
            if time.monotonic() > deadline:
                targets = requests.get(f"{self.url}/api/v1/targets", timeout=10).json()
                raise AssertionError(f"{expression}: {result}; targets: {targets}")
            time.sleep(0.5)


@contextmanager
def prometheus_server(targets: Sequence[str], bearer_token: str = "") -> Iterator[PrometheusServer]:
    """Prometheus scraping `/metrics` of each `host:port` in `targets` every second."""
    exe = shutil.which("prometheus")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("prometheus is not installed (make test-deps installs it)")
        pytest.skip("prometheus is not installed")
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        auth = f"    authorization:\n      credentials: {bearer_token}\n" if bearer_token else ""
        listed = ", ".join(f"'{t}'" for t in targets)
        (root / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: bud\n    metrics_path: /metrics\n"
            f"{auth}    static_configs:\n      - targets: [{listed}]\n"
        )
        log = root / "prometheus.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [
                    exe,
                    f"--config.file={root / 'prometheus.yml'}",
                    f"--storage.tsdb.path={root / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--web.enable-lifecycle",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=root,
            )
            server = PrometheusServer(f"http://127.0.0.1:{port}", log)
            try:
                deadline = time.monotonic() + 60
                while True:
                    try:
                        if requests.get(f"{server.url}/-/ready", timeout=1).status_code == 200:
                            break
                    except requests.ConnectionError:
                        pass
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"prometheus did not start:\n{log.read_text()[-4000:]}")
                    time.sleep(0.2)
                yield server
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


@pytest.fixture
def prometheus() -> Any:
    """`prometheus(targets, bearer_token="")`: a context manager starting a server (a process
    fixture: the test is an integration test)."""
    return prometheus_server
