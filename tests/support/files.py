"""File helpers for tests."""

from __future__ import annotations

import stat
from pathlib import Path


def file_mode(path: Path) -> int:
    """The permission bits of `path` (e.g. 0o600)."""
    return stat.S_IMODE(path.stat().st_mode)
