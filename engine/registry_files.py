"""A registry model's files, checked before the engine loads them: every file the registry's scan
recorded must be there with its SHA-256, and no other file may be (vLLM would read an added
weight or code file that nobody scanned). Blocking (it hashes every file): run it in a thread.

The app sends the hashes it was given by the registry when the deployment was created
(`bud.engine.v1.RegistryModelFiles`); the registry checked them then too. Checking here as well
closes the gap between that check and the load (files swapped on the engine's disk since).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

from budrt.errors import Reason, failed_precondition

CHUNK = 1024 * 1024
# Not the model's files: huggingface_hub's bookkeeping in a local directory (the registry's
# scanner skips it too).
SKIPPED_DIRS = frozenset({".cache"})


def sha256_of(path: Path) -> str:
    """The file's SHA-256, read 1 MiB at a time."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def present_files(root: Path) -> set[str]:
    """Every regular file under `root` (symlinks followed, as a loader reads them), relative,
    with "/" separators."""
    found: set[str] = set()
    for directory, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS]
        for name in files:
            path = Path(directory) / name
            if path.is_file():
                found.add(path.relative_to(root).as_posix())
    return found


def check_files(root: Path, expected: Mapping[str, str], model_id: str) -> None:
    """FAILED_PRECONDITION (MODEL_FILES_CHANGED) naming the files changed, missing or added
    since the registry's scan; nothing when they all match."""
    if not expected:
        raise failed_precondition(
            f"registry model {model_id}: no recorded files to check", reason=Reason.MODEL_FILES_CHANGED
        )
    present = present_files(root)
    changed, missing = [], []
    for name in sorted(expected):
        path = root / name
        if name not in present:
            missing.append(name)
        elif sha256_of(path) != expected[name]:
            changed.append(name)
    added = sorted(present - set(expected))
    parts = [
        f"{what}: {', '.join(names[:10])}{' ...' if len(names) > 10 else ''}"
        for what, names in (("changed", changed), ("missing", missing), ("added", added))
        if names
    ]
    if parts:
        raise failed_precondition(
            f"registry model {model_id}: its files differ from the scanned ones ({'; '.join(parts)}); "
            "refusing to load them (rescan the model in the registry and redeploy)",
            reason=Reason.MODEL_FILES_CHANGED,
            param="source.registry",
        )
