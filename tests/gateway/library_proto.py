"""Compiles the test-only library.proto at test time (it is not part of gen/)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from functools import cache
from pathlib import Path
from types import ModuleType

from budrt import protogen

HERE = Path(__file__).parent / "protos"


@cache
def library_modules(out_dir: str) -> tuple[ModuleType, ModuleType]:
    """(library_pb2, library_pb2_grpc), generated into out_dir and imported."""
    from grpc_tools import protoc

    includes = [f"-I{HERE}", *(f"-I{d}" for d in protoc_includes())]
    rc = protoc.main(
        [
            "protoc",
            *includes,
            f"--python_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            "bud/testing/v1/library.proto",
        ]
    )
    assert rc == 0, "protoc failed for library.proto"
    # Register the generated modules under their proto package (bud.testing.v1) beside gen/'s.
    package = sys.modules.setdefault("bud.testing.v1", ModuleType("bud.testing.v1"))
    sys.modules.setdefault("bud.testing", ModuleType("bud.testing"))
    modules = []
    for name in ("library_pb2", "library_pb2_grpc"):
        path = Path(out_dir) / "bud" / "testing" / "v1" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(f"bud.testing.v1.{name}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        setattr(package, name, module)
        modules.append(module)
    return modules[0], modules[1]


def protoc_includes() -> list[Path]:
    """The include path gen/ is built with."""
    return protogen._include_dirs()
