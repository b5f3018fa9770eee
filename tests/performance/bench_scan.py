"""Scanning a 2 GB model file: the scanning process's RSS growth and the throughput
(registry/scanning, issue 14: the RSS must grow by less than 100 MB).

    python -m tests.performance.bench_scan                 # 2 GiB files
    python -m tests.performance.bench_scan --gib 0.5       # smaller, quicker

Starts a clamd (tests/support/clamd.py, with clamd's default StreamMaxLength of 25 MiB, and
MaxFileSize/MaxScanSize raised to 4000 MB for the by-path row), writes sparse files (no 2 GB of
disk used), and scans each with `scan_model` in this process while a thread samples this
process's RSS every 20 ms. Rows:

- safetensors, INSTREAM: a valid safetensors file (one U8 tensor filling it): hashed, streamed to
  clamd in 25 MiB segments, header checked;
- pickle, INSTREAM: a raw pickle holding one 2 GB byte string (BINBYTES8) followed by a
  dangerous import: hashed, streamed, and picklescan, whose reads of the blob are skipped;
- safetensors, by path: clamd reads the file itself; the scanner only hashes it. clamd caps
  MaxFileSize at 2 GiB - 3 bytes whatever its configuration says, so at 2 GiB this row is ERROR
  (clamd answers Heuristics.Limits.Exceeded.MaxFileSize); the same row is repeated on a file
  64 MiB smaller.

Printed: RSS delta (peak during the scan minus before it), seconds, MB/s, status; clamd's own
RSS is printed beside for information (it is another process). The peer, measured in the same
run: ClamAV's own client, `clamdscan`, scanning the by-path file through the same clamd; the
ratio is our by-path scan's time (clamd's read plus our hashing) over clamdscan's. Numbers are
printed, not asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pickle
import shutil
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psutil

from registry.scanning import ScanSettings, scan_model
from tests.support.clamd import running_clamd

MIB = 1024 * 1024


def sparse_safetensors(path: Path, size: int) -> None:
    """A valid safetensors file of `size` bytes whose one tensor is all zeros (sparse)."""
    for _ in range(2):  # the header's length changes the data length, which changes the header
        header = json.dumps({"w": {"dtype": "U8", "shape": [size], "data_offsets": [0, size]}}).encode()
        data = size - 8 - len(header)
        header = json.dumps({"w": {"dtype": "U8", "shape": [data], "data_offsets": [0, data]}}).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        f.truncate(8 + len(header) + data)


def sparse_pickle(path: Path, size: int) -> None:
    """A pickle: PROTO 4, a BINBYTES8 of about `size` zero bytes (sparse), POP, then a
    `posix.system` import (a payload behind the blob), STOP."""
    tail = b"0" + pickle.dumps(Evil(), protocol=4)[2:]
    blob = size - 11 - len(tail)
    with open(path, "wb") as f:
        f.write(b"\x80\x04\x8e" + struct.pack("<Q", blob))
        f.seek(blob, os.SEEK_CUR)
        f.write(tail)


class Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("echo never-run",))


class RssSampler:
    """Samples this process's RSS on a thread; `peak` is the highest seen."""

    def __init__(self, interval: float = 0.02) -> None:
        self.proc = psutil.Process()
        self.interval, self.peak, self._stop = interval, self.proc.memory_info().rss, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def measure(root: Path, name: str, settings: ScanSettings, clamd_pid: int) -> dict[str, object]:
    before = psutil.Process().memory_info().rss
    clamd_peak = 0
    start = time.perf_counter()
    with RssSampler() as sampler:
        report = asyncio.run(scan_model(root, [name], settings))
        clamd_peak = psutil.Process(clamd_pid).memory_info().rss
    seconds = time.perf_counter() - start
    size = (root / name).stat().st_size
    entry = report.files[0]
    return {
        "rss_delta_mb": (sampler.peak - before) / MIB,
        "seconds": seconds,
        "mb_per_s": size / MIB / seconds,
        "status": report.status.value,
        "findings": [f.signature for f in entry.findings] or entry.error[:80],
        "clamd_rss_mb": clamd_peak / MIB,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gib", type=float, default=2.0, help="file size in GiB (default 2)")
    args = parser.parse_args()
    size = int(args.gib * 1024 * MIB)
    with (
        tempfile.TemporaryDirectory(prefix="bench-scan-") as tmp,
        running_clamd(25 * MIB, 4000 * MIB) as clamd,
    ):
        root = Path(tmp)
        sparse_safetensors(root / "model.safetensors", size)
        sparse_pickle(root / "weights.pkl", size)
        sparse_safetensors(root / "smaller.safetensors", size - 64 * MIB)
        (root / "warm.json").write_text("{}")
        base = ScanSettings(clamav_host=clamd.host, clamav_port=clamd.port, clamav_timeout_s=600)
        asyncio.run(scan_model(root, ["warm.json"], base))  # imports, thread pool, first connection
        by_path = base.model_copy(update={"clamav_scan_by_path": True})
        rows = [
            ("safetensors, INSTREAM", "model.safetensors", base),
            ("pickle, INSTREAM", "weights.pkl", base),
            ("safetensors, by path", "model.safetensors", by_path),
            ("-64 MiB, by path", "smaller.safetensors", by_path),
        ]
        print(
            f"file size {size / MIB:.0f} MiB; RSS before: {psutil.Process().memory_info().rss / MIB:.0f} MiB"
        )
        print(f"{'row':<24} {'RSS delta MB':>12} {'seconds':>8} {'MB/s':>7}  {'clamd RSS MB':>12}  status")
        seconds: dict[str, float] = {}
        for label, name, settings in rows:
            r = measure(root, name, settings, clamd.process.pid)
            seconds[label] = r["seconds"]
            print(
                f"{label:<24} {r['rss_delta_mb']:>12.1f} {r['seconds']:>8.1f} {r['mb_per_s']:>7.0f}  "
                f"{r['clamd_rss_mb']:>12.0f}  {r['status']} {r['findings']}"
            )
        peer = clamdscan_seconds(root, "smaller.safetensors", clamd.port)
        if peer is None:
            print("peer: clamdscan is not installed; no ratio")
        else:
            took, answer = peer
            print(
                f"peer: clamdscan, by path {took:.1f} s ({answer}); ours / clamdscan: "
                f"{seconds['-64 MiB, by path'] / took:.2f}x"
            )


def clamdscan_seconds(root: Path, name: str, port: int) -> tuple[float, str] | None:
    """How long ClamAV's own client takes to have the same clamd scan the file by path, and its
    answer (None when clamdscan is not installed)."""
    binary = shutil.which("clamdscan")
    if binary is None:
        return None
    config = root / "clamdscan.conf"
    config.write_text(f"TCPSocket {port}\nTCPAddr 127.0.0.1\n")
    start = time.perf_counter()
    done = subprocess.run(
        [binary, f"--config-file={config}", "--no-summary", str(root / name)],
        capture_output=True,
        check=False,
        text=True,
        timeout=900,
    )
    answer = (done.stdout.strip() or done.stderr.strip()).splitlines()
    return time.perf_counter() - start, answer[-1] if answer else f"exit {done.returncode}"


if __name__ == "__main__":
    main()
