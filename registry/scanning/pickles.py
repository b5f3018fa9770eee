"""Pickle-based files checked with `picklescan`, which disassembles the pickle opcodes and lists
the globals a load would import, without unpickling anything.

Which files: every file with a pickle or PyTorch extension (``.bin .pt .pth .ckpt .pkl .pickle
.joblib .dat .data .npy .npz .zip``) and every other file whose first bytes are a pickle protocol
header or a zip header (a pickle renamed ``weights.txt`` is still a pickle to `pickle.load`).
Zip files (PyTorch's format since 1.6, ``.npz``) are opened here and each member that is a pickle
(by name or header) or a ``.npy`` is scanned; the raw tensor members are not read.

Memory stays bounded on huge files: picklescan reads a pickle's byte-string arguments whole, so
files are handed to it through :class:`BoundedReader`, which skips (seeks past) any single read
larger than `MAX_READ` and returns a placeholder of the right length instead: a 2 GB array inside
a pickle costs no memory, and the opcodes around it are still all seen.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
from typing import IO

from picklescan import scanner as ps

from registry.scanning.report import Engine, Finding

PICKLE_EXTENSIONS = frozenset({".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".joblib", ".dat", ".data"})
TORCH_EXTENSIONS = frozenset({".bin", ".pt", ".pth", ".ckpt"})
NUMPY_EXTENSIONS = frozenset({".npy"})
ZIP_EXTENSIONS = frozenset({".zip", ".npz"})
ZIP_MAGIC = b"PK\x03\x04"
NUMPY_MAGIC = b"\x93NUMPY"
# Reads larger than this are skipped by BoundedReader (a pickle's opcodes and names are small).
MAX_READ = 8 * 1024 * 1024


def is_pickle_header(head: bytes) -> bool:
    """Whether `head` starts like a pickle of protocol 2–5 (PROTO opcode)."""
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


# Formats with their own header check whose loaders never unpickle: their first bytes may look
# like a pickle by chance (a safetensors header of 640 bytes starts with 80 02).
NON_PICKLE_FORMATS = frozenset({".safetensors", ".gguf"})


def wants_pickle_scan(name: str, head: bytes) -> bool:
    """Whether a file (its name and first bytes) is scanned as a pickle or a zip of pickles."""
    ext = os.path.splitext(name)[1].lower()
    if ext in NON_PICKLE_FORMATS:
        return False
    return (
        ext in PICKLE_EXTENSIONS | NUMPY_EXTENSIONS | ZIP_EXTENSIONS
        or is_pickle_header(head)
        or head.startswith(ZIP_MAGIC)
    )


class _Skipped(bytes):
    """What BoundedReader returns for a read it skipped: empty bytes reporting the length that
    was skipped (so pickletools' length checks pass and parsing goes on after it)."""

    def __new__(cls, length: int) -> _Skipped:
        obj = super().__new__(cls, b"")
        obj._length = length
        return obj

    def __len__(self) -> int:
        return self._length

    def decode(self, *args: object, **kwargs: object) -> str:
        return f"<{self._length} bytes skipped>"


class BoundedReader(io.RawIOBase):
    """A read-only view of a binary file whose single reads never allocate more than MAX_READ."""

    def __init__(self, raw: IO[bytes], size: int) -> None:
        super().__init__()
        self._raw, self._size = raw, size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._raw.tell()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def read(self, n: int = -1) -> bytes:
        remaining = max(0, self._size - self._raw.tell())
        n = remaining if n is None or n < 0 else min(n, remaining)
        if n <= MAX_READ:
            return self._raw.read(n)
        self._raw.seek(n, io.SEEK_CUR)
        return _Skipped(n)

    def readline(self, size: int | None = -1) -> bytes:
        # Text opcodes end at a newline; a "line" longer than MAX_READ is cut (parsing then fails).
        limit = MAX_READ if size is None or size < 0 else min(size, MAX_READ)
        return self._raw.readline(limit)


def scan_pickle_file(path: Path, name: str, *, strict: bool) -> list[Finding]:
    """The picklescan findings of one file (dangerous globals as errors; suspicious ones as
    warnings, or errors when `strict`); OSError and zip errors propagate."""
    ext = os.path.splitext(name)[1].lower()
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(8)
        f.seek(0)
        if head.startswith(ZIP_MAGIC):
            result = _scan_zip(f, name, strict=strict)
        else:
            data = BoundedReader(f, size)
            result = _scan_stream(data, name, ext, strict=strict)
    return _findings(result, strict=strict)


def _scan_stream(data: IO[bytes], name: str, ext: str, *, strict: bool) -> ps.ScanResult:
    if ext in TORCH_EXTENSIONS:
        try:
            return ps.scan_pytorch(data, name, strict=strict)
        except ps.InvalidMagicError:
            data.seek(0)  # not a legacy torch file: a plain pickle (or not a pickle at all)
    if ext in NUMPY_EXTENSIONS or data.read(len(NUMPY_MAGIC)) == NUMPY_MAGIC:
        data.seek(0)
        return ps.scan_numpy(data, name, strict=strict)
    data.seek(0)
    # Not picklescan's scan_bytes: it takes any file with a zip directory at its END for a zip
    # and scans only the members, while pickle.load reads from the start.
    return ps.scan_pickle_bytes(data, name, strict=strict)


def _scan_zip(f: IO[bytes], name: str, *, strict: bool) -> ps.ScanResult:
    result = ps.ScanResult([])
    with zipfile.ZipFile(f) as archive:
        for member in archive.infolist():
            if member.is_dir():
                continue
            ext = os.path.splitext(member.filename)[1].lower()
            with archive.open(member) as entry:
                head = entry.read(8)
            if not (
                ext in PICKLE_EXTENSIONS
                or ext in NUMPY_EXTENSIONS
                or is_pickle_header(head)
                or head.startswith(NUMPY_MAGIC)
            ):
                continue  # a tensor's raw bytes, a version file, ...
            with archive.open(member) as entry:
                data = BoundedReader(entry, member.file_size)
                member_id = f"{name}:{member.filename}"
                if ext in NUMPY_EXTENSIONS or head.startswith(NUMPY_MAGIC):
                    result.merge(ps.scan_numpy(data, member_id, strict=strict))
                else:
                    result.merge(ps.scan_pickle_bytes(data, member_id, strict=strict))
    return result


def _findings(result: ps.ScanResult, *, strict: bool) -> list[Finding]:
    findings = []
    for g in sorted(result.globals, key=lambda g: (g.module, g.name)):
        if g.safety is ps.SafetyLevel.Dangerous:
            findings.append(
                Finding(
                    engine=Engine.PICKLESCAN,
                    signature=f"{g.module}.{g.name}",
                    detail="dangerous import: loading this pickle would import and may call it",
                )
            )
        elif g.safety is ps.SafetyLevel.Suspicious:
            findings.append(
                Finding(
                    engine=Engine.PICKLESCAN,
                    signature=f"{g.module}.{g.name}",
                    severity="error" if strict else "warning",
                    detail="import not known to be safe",
                )
            )
    if result.scan_err:
        # Globals were found and then the stream broke off: pickle.load executes what comes
        # before the break, so a scanner that cannot parse all of it cannot vouch for it.
        findings.append(
            Finding(
                engine=Engine.PICKLESCAN,
                signature="pickle.malformed",
                detail="the pickle stream could not be fully parsed after imports were found",
            )
        )
    return findings
