"""A throwaway clamd on loopback for tests, with a signature database the tests write.

No signature download is possible here (nor at an air-gapped site), so :func:`running_clamd`
writes its own database into a temporary directory, which is how such a site runs clamd too:

- ``test.hdb``: the EICAR test file's MD5 hash signature, made by ``sigtool --md5`` (clamd reports
  it as ``eicar.com.UNOFFICIAL``);
- ``bud-test.ndb``: a body signature (:data:`CUSTOM_SIGNATURE` matches :data:`CUSTOM_MARKER`
  anywhere in any file).

clamd listens on 127.0.0.1 at a free port and on a unix socket, ``Foreground yes``, with a small
``StreamMaxLength`` (:data:`STREAM_MAX_BYTES`, 1 MiB instead of clamd's 25 MiB) and
``MaxFileSize`` (:data:`MAX_FILE_BYTES`) with ``AlertExceedsMax yes``, so the large-file paths are
tested with files of a few MB. The binaries come from Debian's ``clamav-daemon`` (``make
test-deps``); when clamd is missing the fixture fails under CI and skips otherwise.

Use the session fixture :func:`clamd_server` (import it into the test module).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

CLAMD = os.environ.get("BUDTEST_CLAMD", shutil.which("clamd") or "/usr/sbin/clamd")
SIGTOOL = shutil.which("sigtool") or "/usr/bin/sigtool"
START_TIMEOUT_S = 60

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
EICAR_SIGNATURE = "eicar.com.UNOFFICIAL"
CUSTOM_MARKER = b"BUD-REGISTRY-TEST-MALWARE-MARKER-7f3a9c"
CUSTOM_SIGNATURE = "Bud.Test.CustomMarker"
STREAM_MAX_BYTES = 1024 * 1024
MAX_FILE_BYTES = 2 * 1024 * 1024


def clamd_available() -> bool:
    """Whether clamd and sigtool are installed."""
    return Path(CLAMD).is_file() and Path(SIGTOOL).is_file()


def require_clamd() -> None:
    """Fails (under CI) or skips (locally) the calling test when clamd is not installed."""
    if clamd_available():
        return
    message = f"clamd not found at {CLAMD} (Debian: apt-get install -y clamav-daemon; make test-deps does)"
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@dataclass
class ClamdServer:
    """A running clamd: TCP on 127.0.0.1:port and a unix socket."""

    root: Path
    port: int
    unix_socket: Path
    process: subprocess.Popen[bytes]

    @property
    def host(self) -> str:
        """Address clamd listens on."""
        return "127.0.0.1"

    def log_text(self) -> str:
        """clamd's log so far."""
        path = self.root / "clamd.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_signatures(db: Path) -> None:
    """The test signature database: EICAR by MD5 (sigtool) and the custom body signature."""
    db.mkdir(parents=True, exist_ok=True)
    sample = db.parent / "eicar.com"
    sample.write_bytes(EICAR)
    md5 = subprocess.run([SIGTOOL, "--md5", str(sample)], capture_output=True, check=True, timeout=60)
    (db / "test.hdb").write_bytes(md5.stdout)
    # .ndb: Name:TargetType(0 = any file):Offset(* = anywhere):HexSignature
    (db / "bud-test.ndb").write_text(f"{CUSTOM_SIGNATURE}:0:*:{CUSTOM_MARKER.hex()}\n")


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"zPING\0")
            return sock.recv(16).startswith(b"PONG")
    except OSError:
        return False


@contextmanager
def running_clamd(
    stream_max_bytes: int = STREAM_MAX_BYTES, max_file_bytes: int = MAX_FILE_BYTES
) -> Iterator[ClamdServer]:
    """Starts clamd on a fresh signature database (with these limits: the tests' small ones by
    default); stops it and deletes its files on exit."""
    root = Path(tempfile.mkdtemp(prefix="bud-clamd-"))
    process = None
    try:
        write_signatures(root / "db")
        port = _free_port()
        unix_socket = root / "clamd.sock"
        config = root / "clamd.conf"
        lines = [
            "Foreground yes",
            f"DatabaseDirectory {root / 'db'}",
            f"LogFile {root / 'clamd.log'}",
            "LogVerbose yes",
            f"TCPSocket {port}",
            "TCPAddr 127.0.0.1",
            f"LocalSocket {unix_socket}",
            f"StreamMaxLength {stream_max_bytes}",
            f"MaxFileSize {max_file_bytes}",
            f"MaxScanSize {max_file_bytes}",
            "AlertExceedsMax yes",
            "SelfCheck 0",
            "Bytecode no",
        ]
        if os.geteuid() == 0:
            lines.append("User root")  # Debian's clamd would otherwise drop to `clamav`
        config.write_text("\n".join(lines) + "\n")
        process = subprocess.Popen(
            [CLAMD, "--config-file", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _ping(port):
            if process.poll() is not None or time.monotonic() > deadline:
                log = (
                    (root / "clamd.log").read_text(errors="replace") if (root / "clamd.log").exists() else ""
                )
                raise RuntimeError(f"clamd did not start (exit {process.poll()}):\n{log}")
            time.sleep(0.1)
        yield ClamdServer(root=root, port=port, unix_socket=unix_socket, process=process)
    finally:
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def clamd_server() -> Iterator[ClamdServer]:
    """One clamd for the test session (skipped, or failed under CI, when clamd is missing)."""
    require_clamd()
    with running_clamd() as server:
        yield server
