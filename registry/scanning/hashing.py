"""Which files a model has, and whether they are still the ones that were scanned.

The scanner records each file's sha256 (computed in the same read that feeds clamd); the registry
keeps them and, before a deployment or on a rescan request, asks :func:`verify_hashes` whether
the files on disk still match. Any difference (a file changed, missing or added) sends the model
back to PENDING.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

HASH_CHUNK = 1024 * 1024


def model_files(root: Path) -> list[str]:
    """Every regular file under `root` (symlinks followed, as a loader would: a Hugging Face
    cache snapshot is links into its blobs), relative, "/"-separated, sorted. The `.cache`
    directory huggingface_hub keeps beside a local download is skipped."""
    found = []
    for base, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not (Path(base) == root and d == ".cache"))
        for name in files:
            path = Path(base) / name
            if path.is_file():
                found.append(path.relative_to(root).as_posix())
    return sorted(found)


def resolve_file(root: Path, name: str) -> Path:
    """`root / name` for a relative name that stays inside `root` (ValueError otherwise: an
    absolute name or a ``..`` part is a caller's bug or an attack, never scanned)."""
    pure = PurePosixPath(name)
    if not name or pure.is_absolute() or ".." in pure.parts or "\\" in name or "\0" in name:
        raise ValueError(f"model file names are relative paths inside the model: {name!r}")
    return root / pure


def sha256_file(path: Path, chunk: int = HASH_CHUNK) -> tuple[str, int]:
    """(sha256 hex, size) of a file, read in chunks (blocking: call it in a thread)."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


@dataclass(frozen=True)
class HashCheck:
    """How the files on disk compare with the recorded hashes."""

    changed: list[str] = field(default_factory=list)  # hash differs (or unreadable)
    missing: list[str] = field(default_factory=list)  # recorded, no longer there
    added: list[str] = field(default_factory=list)  # there, never scanned

    @property
    def unchanged(self) -> bool:
        """True when every recorded file is there with its hash and no file was added."""
        return not (self.changed or self.missing or self.added)

    def describe(self) -> str:
        """One line for logs and error messages."""
        parts = [
            f"{what}: {', '.join(names)}"
            for what, names in (("changed", self.changed), ("missing", self.missing), ("added", self.added))
            if names
        ]
        return "; ".join(parts) or "unchanged"


async def verify_hashes(
    root: Path, recorded: Mapping[str, str], files: Sequence[str] | None = None
) -> HashCheck:
    """Compares the recorded {file: sha256} with the files under `root` (all of them, or just
    `files` when the model's file list is fixed), hashing off the event loop."""
    present = await asyncio.to_thread(model_files, root) if files is None else list(files)
    changed, missing = [], []
    for name in sorted(recorded):
        path = resolve_file(root, name)
        if not path.is_file():
            missing.append(name)
            continue
        try:
            digest, _ = await asyncio.to_thread(sha256_file, path)
        except OSError:
            digest = ""
        if digest != recorded[name]:
            changed.append(name)
    added = sorted(set(present) - set(recorded))
    return HashCheck(changed=changed, missing=missing, added=added)
