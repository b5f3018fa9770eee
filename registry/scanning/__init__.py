"""Model-file scanning for the registry: ClamAV (clamd), pickle globals (picklescan) and
safetensors/GGUF header sanity, with each file's sha256, gating deployment.

The public API (see registry/README.md "Scanning"):

- :func:`scan_model` (async) → :class:`ScanReport`
- :class:`ScanSettings` (clamd address, chunking, by-path scanning, timeouts)
- :func:`verify_hashes` (async) → :class:`HashCheck`: have the files changed since the scan?
- :class:`Verdict` (= :data:`ScanStatus`), :class:`FileReport`, :class:`Finding`,
  :class:`ScanProgress`, :func:`model_files`, :func:`sha256_file`
"""

from registry.scanning.hashing import HashCheck, model_files, sha256_file, verify_hashes
from registry.scanning.report import (
    Engine,
    FileReport,
    Finding,
    ScanProgress,
    ScanReport,
    ScanStatus,
    Verdict,
)
from registry.scanning.scanner import ProgressCallback, scan_model
from registry.scanning.settings import ScanSettings

__all__ = [
    "Engine",
    "FileReport",
    "Finding",
    "HashCheck",
    "ProgressCallback",
    "ScanProgress",
    "ScanReport",
    "ScanSettings",
    "ScanStatus",
    "Verdict",
    "model_files",
    "scan_model",
    "sha256_file",
    "verify_hashes",
]
