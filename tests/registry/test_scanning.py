"""scan_model against a real clamd (tests/support/clamd.py: loopback, a signature database the
tests write, StreamMaxLength 1 MiB so a 3 MB file is "larger than clamd's stream limit")."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import struct
import threading
import time
from pathlib import Path

import pytest

from registry.scanning import ScanProgress, ScanReport, ScanSettings, Verdict, scan_model, verify_hashes
from tests.registry.test_scanning_formats import evil_pickle, make_model, torch_zip
from tests.support import clamd as clamd_support
from tests.support.clamd import (
    CUSTOM_MARKER,
    CUSTOM_SIGNATURE,
    EICAR,
    EICAR_SIGNATURE,
    MAX_FILE_BYTES,
    STREAM_MAX_BYTES,
    ClamdServer,
    running_clamd,
)

pytestmark = pytest.mark.integration

clamd_server = clamd_support.clamd_server  # the session fixture

CUSTOM_FOUND = f"{CUSTOM_SIGNATURE}.UNOFFICIAL"  # clamd's name for a signature of a local database
BIG = 3 * 1024 * 1024  # three times the test clamd's StreamMaxLength


def settings_for(server: ClamdServer, **changes: object) -> ScanSettings:
    """Scan settings pointing at the test clamd, with its stream limit."""
    values = {
        "clamav_host": server.host,
        "clamav_port": server.port,
        "clamav_stream_max_bytes": STREAM_MAX_BYTES,
        "clamav_segment_overlap_bytes": 64 * 1024,
        "scan_chunk_bytes": 256 * 1024,
        **changes,
    }
    return ScanSettings(**values)


def scan(root: Path, settings: ScanSettings, files: list[str] | None = None) -> ScanReport:
    return asyncio.run(scan_model(root, files, settings))


def by_file(report: ScanReport) -> dict:
    return {f.file: f for f in report.files}


def big_file(path: Path, markers: dict[int, bytes] | None = None) -> bytes:
    """A BIG-byte file of pseudo-random-ish filler with `markers` written at their offsets."""
    data = bytearray(hashlib.sha256(b"seed").digest() * (BIG // 32))
    for offset, marker in (markers or {}).items():
        data[offset : offset + len(marker)] = marker
    path.write_bytes(data)
    return bytes(data)


def test_clean_model_is_clean_with_hashes_and_progress(clamd_server: ClamdServer, tmp_path: Path) -> None:
    root = make_model(tmp_path / "m")
    seen: list[ScanProgress] = []
    report = asyncio.run(scan_model(root, None, settings_for(clamd_server), seen.append))
    assert report.status is Verdict.CLEAN, report.summary()
    assert report.clamav_version.startswith("ClamAV")
    assert sorted(by_file(report)) == ["README.md", "config.json", "model.safetensors", "tokenizer.json"]
    for entry in report.files:
        content = (root / entry.file).read_bytes()
        assert (entry.sha256, entry.size, entry.verdict) == (
            hashlib.sha256(content).hexdigest(),
            len(content),
            Verdict.CLEAN,
        )
    assert seen[-1].phase == "done" and seen[-1].files_done == 4
    assert seen[-1].bytes_done == seen[-1].bytes_total == sum(f.size for f in report.files)
    assert {p.file for p in seen if p.phase == "scanning"} == set(by_file(report))
    assert asyncio.run(verify_hashes(root, report.hashes())).unchanged


def test_eicar_is_infected(clamd_server: ClamdServer, tmp_path: Path) -> None:
    root = make_model(tmp_path / "m")
    (root / "extras").mkdir()
    (root / "extras" / "eicar.com").write_bytes(EICAR)
    report = scan(root, settings_for(clamd_server))
    assert report.status is Verdict.INFECTED
    infected = by_file(report)["extras/eicar.com"]
    assert infected.verdict is Verdict.INFECTED
    assert [(f.engine, f.signature) for f in infected.findings] == [("clamav", EICAR_SIGNATURE)]
    assert by_file(report)["config.json"].verdict is Verdict.CLEAN
    assert "extras/eicar.com: clamav eicar.com.UNOFFICIAL" in report.summary()


def test_malicious_pickle_in_a_valid_model_is_unsafe_and_never_unpickled(
    clamd_server: ClamdServer, tmp_path: Path
) -> None:
    root = make_model(tmp_path / "m")
    marker = tmp_path / "pwned"
    (root / "pytorch_model.bin").write_bytes(torch_zip(evil_pickle(marker)))
    (root / "optimizer.pt").write_bytes(evil_pickle(marker))
    (root / "notes.txt").write_bytes(evil_pickle(marker))  # a pickle whatever its name
    report = scan(root, settings_for(clamd_server))
    assert report.status is Verdict.UNSAFE
    files = by_file(report)
    for name in ("pytorch_model.bin", "optimizer.pt", "notes.txt"):
        assert files[name].verdict is Verdict.UNSAFE, files[name]
        assert ("picklescan", "posix.system") in {(f.engine, f.signature) for f in files[name].findings}
    assert files["model.safetensors"].verdict is Verdict.CLEAN
    assert ("pytorch_model.bin", "posix.system") in {(file, f.signature) for file, f in report.findings}
    assert not marker.exists(), "the scan unpickled the payload"


def test_lying_safetensors_header_is_unsafe(clamd_server: ClamdServer, tmp_path: Path) -> None:
    root = make_model(tmp_path / "m")
    weights = root / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-5])  # truncated: the offsets run past the end
    report = scan(root, settings_for(clamd_server))
    assert report.status is Verdict.UNSAFE
    [finding] = by_file(report)["model.safetensors"].findings
    assert finding.signature == "header.offsets_out_of_bounds" and "data section" in finding.detail


def test_file_beyond_the_stream_limit_is_scanned_in_segments(
    clamd_server: ClamdServer, tmp_path: Path
) -> None:
    """A 3 MB file against clamd's 1 MiB StreamMaxLength: streamed as overlapping INSTREAM
    segments, so a signature past the first MiB, or straddling a segment boundary, is found;
    the hash covers the file exactly once."""
    s = settings_for(clamd_server)
    root = tmp_path / "m"
    root.mkdir()
    clean = big_file(root / "clean.bin")
    late = big_file(root / "late.bin", {BIG - 200_000: CUSTOM_MARKER})
    # Starts 10 bytes before the end of the first segment: in no single segment but the overlap.
    big_file(root / "straddling.bin", {STREAM_MAX_BYTES - 10: CUSTOM_MARKER})
    report = scan(root, s)
    files = by_file(report)
    assert files["clean.bin"].verdict is Verdict.CLEAN, files["clean.bin"]
    assert files["clean.bin"].sha256 == hashlib.sha256(clean).hexdigest()
    assert files["late.bin"].sha256 == hashlib.sha256(late).hexdigest()
    for name in ("late.bin", "straddling.bin"):
        assert files[name].verdict is Verdict.INFECTED, files[name]
        [finding] = files[name].findings
        assert finding.signature == CUSTOM_FOUND and "INSTREAM segment" in finding.detail
    assert report.status is Verdict.INFECTED


def test_one_stream_past_clamds_limit_is_an_error_never_clean(
    clamd_server: ClamdServer, tmp_path: Path
) -> None:
    """When the configured limit is larger than clamd's real one, clamd refuses the stream: the
    file is ERROR with clamd's reason (this is also what a naive whole-file INSTREAM gets)."""
    root = tmp_path / "m"
    root.mkdir()
    big_file(root / "big.bin")
    report = scan(root, settings_for(clamd_server, clamav_stream_max_bytes=8 * 1024 * 1024))
    assert report.status is Verdict.ERROR
    assert "INSTREAM size limit exceeded" in report.reason
    assert by_file(report)["big.bin"].verdict is Verdict.ERROR


def test_scan_by_path(clamd_server: ClamdServer, tmp_path: Path) -> None:
    """clamd reads the files itself; beyond its MaxFileSize it says so (AlertExceedsMax) and the
    file is ERROR (not scanned), not CLEAN; the hash is still recorded."""
    root = make_model(tmp_path / "m")
    (root / "eicar.com").write_bytes(EICAR)
    big = big_file(root / "big.bin")
    assert len(big) > MAX_FILE_BYTES
    report = scan(root, settings_for(clamd_server, clamav_scan_by_path=True))
    files = by_file(report)
    assert files["eicar.com"].verdict is Verdict.INFECTED
    assert files["config.json"].verdict is Verdict.CLEAN
    assert (
        files["big.bin"].verdict is Verdict.ERROR and "Heuristics.Limits.Exceeded" in files["big.bin"].error
    )
    assert files["big.bin"].sha256 == hashlib.sha256(big).hexdigest()
    assert report.status is Verdict.INFECTED


def test_unix_socket(clamd_server: ClamdServer, tmp_path: Path) -> None:
    root = make_model(tmp_path / "m")
    (root / "eicar.com").write_bytes(EICAR)
    report = scan(
        root, settings_for(clamd_server, clamav_socket=str(clamd_server.unix_socket), clamav_port=1)
    )
    assert by_file(report)["eicar.com"].verdict is Verdict.INFECTED


def test_clamd_unreachable_is_error_never_clean(tmp_path: Path) -> None:
    root = make_model(tmp_path / "m")
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    report = scan(root, ScanSettings(clamav_port=port, clamav_connect_timeout_s=2))
    assert report.status is Verdict.ERROR
    assert "unreachable" in report.reason and f"127.0.0.1:{port}" in report.reason
    assert all(f.verdict is Verdict.ERROR for f in report.files)


def test_clamd_stopped_is_error_never_clean(tmp_path: Path) -> None:
    root = make_model(tmp_path / "m")
    with running_clamd() as server:
        s = settings_for(server)
        assert scan(root, s).status is Verdict.CLEAN
        server.process.terminate()
        server.process.wait(timeout=15)
        report = scan(root, s)
    assert report.status is Verdict.ERROR and "unreachable" in report.reason


def test_changed_files_are_noticed(clamd_server: ClamdServer, tmp_path: Path) -> None:
    root = make_model(tmp_path / "m")
    report = scan(root, settings_for(clamd_server))
    (root / "model.safetensors").write_bytes((root / "model.safetensors").read_bytes()[:-1] + b"\1")
    check = asyncio.run(verify_hashes(root, report.hashes()))
    assert check.changed == ["model.safetensors"] and not check.unchanged


def test_named_files_only_and_never_outside_the_model(clamd_server: ClamdServer, tmp_path: Path) -> None:
    root = make_model(tmp_path / "m")
    report = scan(root, settings_for(clamd_server), ["config.json", "missing.bin"])
    assert [f.file for f in report.files] == ["config.json", "missing.bin"]
    assert report.status is Verdict.ERROR and "missing.bin" in report.reason
    with pytest.raises(ValueError):
        scan(root, settings_for(clamd_server), ["../m/config.json"])


class SlowClamd:
    """A clamd stand-in on its own thread that takes `delay` seconds over each INSTREAM verdict:
    a client that waited for it on the event loop would stall the loop that long."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.waits: list[tuple[float, float]] = []  # (start, end) of each verdict's delay
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                reader = conn.makefile("rb")
                command = b""
                while (byte := reader.read(1)) and byte not in b"\n\0":
                    command += byte
                if command[1:].startswith(b"PING"):
                    conn.sendall(b"PONG\n")
                elif command[1:].startswith(b"VERSION"):
                    conn.sendall(b"ClamAV slow-fake\n")
                elif command[1:].startswith(b"INSTREAM"):
                    while length := struct.unpack(">I", reader.read(4))[0]:
                        reader.read(length)
                    start = time.monotonic()
                    time.sleep(self.delay)
                    self.waits.append((start, time.monotonic()))
                    conn.sendall(b"stream: OK\0")


def test_the_event_loop_keeps_running_during_a_scan(tmp_path: Path) -> None:
    """While clamd takes its time over each verdict, the loop goes on ticking (a client blocking
    the loop on clamd's answer would let no tick through during those waits)."""
    root = make_model(tmp_path / "m")
    slow = SlowClamd(delay=0.6)

    async def main() -> list[float]:
        ticks = []
        scanning = asyncio.create_task(scan_model(root, None, ScanSettings(clamav_port=slow.port)))
        while not scanning.done():
            await asyncio.sleep(0.01)
            ticks.append(time.monotonic())
        assert (await scanning).status is Verdict.CLEAN
        return ticks

    try:
        ticks = asyncio.run(main())
    finally:
        slow.sock.close()
    assert len(slow.waits) == 4  # every file waited for its verdict...
    for start, end in slow.waits:  # ...and the loop ticked meanwhile
        assert any(start < tick < end for tick in ticks), (
            f"no tick of the event loop during {end - start:.2f} s"
        )
