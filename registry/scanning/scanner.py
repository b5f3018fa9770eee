"""`scan_model`: every file of a model through ClamAV, the pickle scanner and the weight-format
header checks, hashed (sha256) in the same read that feeds clamd.

How a file reaches clamd (decided here, documented in registry/README.md "Scanning"):

- **INSTREAM (default)**: the file is read in `scan_chunk_bytes` chunks and streamed; clamd may
  be anywhere. A file longer than clamd's StreamMaxLength (`clamav_stream_max_bytes`) is sent as
  several INSTREAM sessions ("segments") of at most that length, consecutive segments
  overlapping by `clamav_segment_overlap_bytes`, so no byte goes unscanned and a body signature
  shorter than the overlap is found wherever it lies. A single stream past clamd's limit is
  refused by clamd (``INSTREAM size limit exceeded``), which makes the file ERROR, never CLEAN.
- **By path** (`clamav_scan_by_path`): clamd reads the file itself (`SCAN`); it needs the same
  filesystem. The file is still hashed here.

The memory used does not grow with the file: one chunk at a time, plus the pickle scanner's
bounded reads (pickles.py) and at most a 100 MB safetensors header.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from registry.scanning.clamd import LIMITS_EXCEEDED_PREFIX, ClamdClient, ClamdError
from registry.scanning.formats import GGUF_MAGIC, check_gguf, check_safetensors
from registry.scanning.hashing import model_files, resolve_file
from registry.scanning.pickles import scan_pickle_file, wants_pickle_scan
from registry.scanning.report import (
    Engine,
    FileReport,
    Finding,
    ScanProgress,
    ScanReport,
    Verdict,
    combine,
)
from registry.scanning.settings import ScanSettings

log = logging.getLogger(__name__)

ProgressCallback = Callable[[ScanProgress], None]


class _Progress:
    """Counts bytes and files and tells the caller's callback (whose errors never stop a scan)."""

    def __init__(self, callback: ProgressCallback | None, files_total: int, bytes_total: int) -> None:
        self._callback = callback
        self.state = ScanProgress(phase="connecting", files_total=files_total, bytes_total=bytes_total)

    def emit(self, **changes: object) -> None:
        self.state = self.state.model_copy(update=changes)
        if self._callback is None:
            return
        try:
            self._callback(self.state)
        except Exception:  # a broken progress display must not fail or falsify the scan
            log.exception("scan progress callback failed")

    def advance(self, nbytes: int) -> None:
        self.emit(bytes_done=self.state.bytes_done + nbytes)


async def scan_model(
    root: Path | str,
    files: Sequence[str] | None = None,
    settings: ScanSettings | None = None,
    progress: ProgressCallback | None = None,
) -> ScanReport:
    """Scans the model under `root`: the relative paths `files`, or every file under it.

    Returns the report; its status is CLEAN only when every file was scanned by every engine that
    applies and nothing was found. clamd unreachable → ERROR with the reason. Raises ValueError
    for a file name outside `root` (``..``, absolute). `progress` is called on the event loop.
    """
    settings = settings or ScanSettings.from_env()
    root = Path(root)
    started = time.time()
    names = list(files) if files is not None else await asyncio.to_thread(model_files, root)
    paths = [(name, resolve_file(root, name)) for name in names]
    sizes = await asyncio.to_thread(lambda: [_size(p) for _, p in paths])
    ticker = _Progress(progress, len(paths), sum(s for s in sizes if s is not None))
    ticker.emit()

    clamd = ClamdClient(settings)
    try:
        version = await clamd.version()
    except ClamdError as err:
        reason = str(err)
        reports = [
            FileReport(file=name, size=size or 0, verdict=Verdict.ERROR, error=reason)
            for (name, _), size in zip(paths, sizes, strict=True)
        ]
        ticker.emit(phase="done")
        return ScanReport(
            status=Verdict.ERROR, files=reports, reason=reason, started_at=started, finished_at=time.time()
        )

    reports = []
    for index, ((name, path), size) in enumerate(zip(paths, sizes, strict=True)):
        ticker.emit(phase="scanning", file=name, files_done=index)
        if size is None:
            reports.append(
                FileReport(file=name, verdict=Verdict.ERROR, error=f"{name}: not a readable regular file")
            )
            continue
        reports.append(await _scan_file(name, path, size, clamd, settings, ticker))
    ticker.emit(phase="done", file="", files_done=len(paths))

    status = combine([r.verdict for r in reports])
    errors = [r.error for r in reports if r.verdict is Verdict.ERROR]
    return ScanReport(
        status=status,
        files=reports,
        reason=errors[0] if status is Verdict.ERROR else "",
        clamav_version=version,
        started_at=started,
        finished_at=time.time(),
    )


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size if path.is_file() else None
    except OSError:
        return None


async def _scan_file(
    name: str, path: Path, size: int, clamd: ClamdClient, s: ScanSettings, ticker: _Progress
) -> FileReport:
    findings: list[Finding] = []
    errors: list[str] = []
    digest = ""
    try:
        if s.clamav_scan_by_path:
            # clamd reads the file while it is hashed here (links resolved: clamd does not
            # follow them by default).
            hashing = asyncio.create_task(_read_and_stream(path, size, None, s, ticker))
            try:
                result = await clamd.scan_path(os.path.realpath(path))
                if result.signature:
                    findings.append(Finding(engine=Engine.CLAMAV, signature=result.signature))
            except ClamdError as err:
                errors.append(str(err))
            finally:
                digest, _ = await hashing
        else:
            digest, clam = await _read_and_stream(path, size, clamd, s, ticker)
            findings += clam
    except ClamdError as err:
        errors.append(str(err))
    except OSError as err:
        errors.append(f"{name}: cannot be read: {err}")

    # clamd stopped at one of its limits (AlertExceedsMax): not malware, not scanned either.
    for finding in [f for f in findings if f.signature.startswith(LIMITS_EXCEEDED_PREFIX)]:
        findings.remove(finding)
        errors.append(
            f"{name}: clamd did not scan all of it ({finding.signature}): raise its MaxFileSize/MaxScanSize"
        )

    try:
        findings += await asyncio.to_thread(_format_findings, path, name, s)
    except Exception as err:  # picklescan or zipfile failing on a crafted file: not clean
        errors.append(f"{name}: the format check failed: {type(err).__name__}: {err}")

    decisive = [f for f in findings if f.severity == "error"]
    if any(f.engine is Engine.CLAMAV for f in decisive):
        verdict = Verdict.INFECTED
    elif decisive:
        verdict = Verdict.UNSAFE
    elif errors:
        verdict = Verdict.ERROR
    else:
        verdict = Verdict.CLEAN
    return FileReport(
        file=name, sha256=digest, size=size, verdict=verdict, findings=findings, error="; ".join(errors)
    )


def _format_findings(path: Path, name: str, s: ScanSettings) -> list[Finding]:
    """The pickle scanner and header checks that apply to this file (blocking)."""
    with open(path, "rb") as f:
        head = f.read(8)
    findings = []
    lower = name.lower()
    if lower.endswith(".safetensors"):
        findings += check_safetensors(path)
    if lower.endswith(".gguf") or head.startswith(GGUF_MAGIC):
        findings += check_gguf(path)
    if wants_pickle_scan(name, head):
        findings += scan_pickle_file(path, name, strict=s.scan_pickle_strict)
    return findings


async def _read_and_stream(
    path: Path, size: int, clamd: ClamdClient | None, s: ScanSettings, ticker: _Progress
) -> tuple[str, list[Finding]]:
    """Reads the file once in chunks, hashing it and (with `clamd`) streaming it in segments of
    at most clamd's StreamMaxLength; returns (sha256, ClamAV findings)."""
    digest = hashlib.sha256()
    findings: dict[str, Finding] = {}
    segmented = clamd is not None and size > s.clamav_stream_max_bytes
    f = await asyncio.to_thread(open, path, "rb")
    try:
        start, hashed = 0, 0
        while True:
            end = min(start + s.clamav_stream_max_bytes, size) if clamd else size
            stream = await clamd.open_stream() if clamd else None
            try:
                await asyncio.to_thread(f.seek, start)
                pos = start
                while pos < end:
                    block = await asyncio.to_thread(f.read, min(s.scan_chunk_bytes, end - pos))
                    if not block:
                        raise OSError(f"it shrank to {pos} bytes while being scanned")
                    if pos + len(block) > hashed:  # overlapping bytes are hashed once
                        digest.update(memoryview(block)[hashed - pos :])
                        ticker.advance(pos + len(block) - hashed)
                        hashed = pos + len(block)
                    if stream:
                        await stream.send(block)
                    pos += len(block)
                if stream:
                    result, stream = await stream.finish(), None
                    if result.signature and result.signature not in findings:
                        where = f"in bytes {start}-{end} (INSTREAM segment)" if segmented else ""
                        findings[result.signature] = Finding(
                            engine=Engine.CLAMAV, signature=result.signature, detail=where
                        )
            finally:
                if stream:
                    await stream.close()
            if end >= size:
                break
            start = end - s.clamav_segment_overlap_bytes
        if await asyncio.to_thread(f.read, 1):
            raise OSError("it grew while being scanned")
    finally:
        await asyncio.to_thread(f.close)
    return digest.hexdigest(), list(findings.values())
