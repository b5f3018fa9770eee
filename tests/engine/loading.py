"""How the engine tests ask for a model: the one place that knows the shape of a model source
(a local directory here), so a change of that shape is one edit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bud.engine.v1 import engine_service_pb2 as pb
from engine.manager import ModelManager


def load_request(
    name: str, model_dir: Path, runner: int = pb.RUNNER_UNSPECIFIED, **args: Any
) -> pb.LoadModelRequest:
    """LoadModel of the local model at `model_dir` as `name`, with engine arguments `args`."""
    return pb.LoadModelRequest(
        name=name, source=pb.ModelSource(local_path=str(model_dir)), runner=runner, args=pb.EngineArgs(**args)
    )


async def load(
    manager: ModelManager,
    name: str,
    model_dir: Path,
    runner: int = pb.RUNNER_UNSPECIFIED,
    owner: pb.ModelOwner | None = None,
    **args: Any,
) -> pb.ServedModel:
    """`manager.load` of the local model at `model_dir` as `name` (for `owner`, when given)."""
    request = load_request(name, model_dir, runner, **args)
    return await manager.load(request.name, request.source, request.runner, request.args, owner)
