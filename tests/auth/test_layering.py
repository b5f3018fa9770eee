"""The auth room imports the runtime and the generated contracts only, never a service."""

from __future__ import annotations

import ast
from pathlib import Path

import auth

SERVICES = {"app", "gateway", "engine", "prompt", "registry"}


def _imported_top_levels(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_auth_imports_no_service_package() -> None:
    room = Path(auth.__file__).parent
    modules = sorted(room.rglob("*.py"))
    assert len(modules) >= 7
    offending = {str(m.relative_to(room)): sorted(_imported_top_levels(m) & SERVICES) for m in modules}
    assert not {m: names for m, names in offending.items() if names}
