"""The layering of the tree, checked on the imports every module makes (parsed, not run):

    runtime   budrt, bud (generated)        imports no library and no service
    libraries auth                          imports the runtime
    services  app, engine, gateway, prompt, registry
                                            import the runtime and libraries, never each other
                                            (they talk over gRPC, or through components)

Lazy imports inside functions count too. A new top-level package must be given a layer here.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LAYERS: dict[str, int] = {
    "budrt": 0,
    "bud": 0,
    "auth": 1,
    "app": 2,
    "engine": 2,
    "gateway": 2,
    "prompt": 2,
    "registry": 2,
}
RUNTIME, LIBRARIES, SERVICES = 0, 1, 2
LAYER_NAMES = {RUNTIME: "runtime", LIBRARIES: "library", SERVICES: "service"}
NOT_CODE = {"tests", "proto", "gen"}  # tests may import anything; proto/ holds no Python


def packages() -> dict[str, Path]:
    """Every first-party top-level package: the repository's and the generated one(s) in gen/."""
    found = {p.parent.name: p.parent for p in REPO.glob("*/__init__.py") if p.parent.name not in NOT_CODE}
    found.update(
        {p.name: p for p in (REPO / "gen").iterdir() if p.is_dir() and not p.name.startswith(("_", "."))}
    )
    return found


def imported_packages(path: Path) -> Iterator[tuple[int, str]]:
    """(line, top-level package) of every absolute import in a module, lazy ones included."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module.split(".")[0]


def dependencies() -> dict[str, dict[str, list[str]]]:
    """package → first-party package it imports → where ("file:line")."""
    pkgs = packages()
    deps: dict[str, dict[str, list[str]]] = {name: {} for name in pkgs}
    for name, root in pkgs.items():
        for path in sorted(root.rglob("*.py")):
            for line, target in imported_packages(path):
                if target in pkgs and target != name:
                    deps[name].setdefault(target, []).append(f"{path.relative_to(REPO)}:{line}")
    return deps


def test_every_package_has_a_layer() -> None:
    missing = sorted(set(packages()) - set(LAYERS))
    assert not missing, f"give these top-level packages a layer in {__file__}: {missing}"


def test_the_runtime_imports_no_service_package() -> None:
    """budrt finds the services as components (entry points); it never imports one."""
    services = {name for name, layer in LAYERS.items() if layer == SERVICES}
    offending = [
        f"{path.relative_to(REPO)}:{line} imports {target}"
        for path in sorted((REPO / "budrt").rglob("*.py"))
        for line, target in imported_packages(path)
        if target in services
    ]
    assert not offending, offending


def test_no_import_from_a_lower_layer_to_a_higher_one_nor_between_services() -> None:
    wrong = []
    for source, targets in dependencies().items():
        for target, places in targets.items():
            up = LAYERS.get(target, RUNTIME) > LAYERS.get(source, RUNTIME)
            sideways = LAYERS.get(source) == SERVICES == LAYERS.get(target)
            if up or sideways:
                kind = "a higher layer" if up else "another service"
                wrong.append(
                    f"{source} ({LAYER_NAMES[LAYERS[source]]}) imports {kind}, {target}: {places[:3]}"
                )
    assert not wrong, "\n".join(wrong)


def test_no_cycles_between_packages() -> None:
    deps = dependencies()
    cycles = []

    def visit(name: str, path: list[str]) -> None:
        for target in deps.get(name, {}):
            if target in path:
                cycles.append(" → ".join([*path[path.index(target) :], target]))
            elif len(path) < len(deps):
                visit(target, [*path, target])

    for name in deps:
        visit(name, [name])
    assert not cycles, sorted(set(cycles))


def test_the_walker_sees_lazy_and_aliased_imports(tmp_path: Path) -> None:
    """The checks above only hold if the import walker finds every form of import."""
    module = tmp_path / "m.py"
    module.write_text("import a.b as c\nfrom d.e import f\nfrom . import g\n\ndef h():\n    import i\n")
    assert sorted(t for _, t in imported_packages(module)) == ["a", "d", "i"]
