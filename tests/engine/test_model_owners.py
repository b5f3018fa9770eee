"""The engine's model owners (issue 11, finding 1): a model records the deployment and generation
it was loaded for, and no one else can replace or unload it — the real ModelManager and
EngineServicer over the fake vLLM."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from bud.engine.v1 import engine_service_pb2 as pb
from budrt.errors import ServiceError
from engine.manager import ModelManager
from engine.service import EngineServicer
from tests.engine.fake_vllm import FakeVllm
from tests.engine.loading import load, load_request

OWNER_A = pb.ModelOwner(deployment_id="dep_a", generation=1)
OWNER_B = pb.ModelOwner(deployment_id="dep_b", generation=1)


def _refused(info: pytest.ExceptionInfo[ServiceError]) -> None:
    err = info.value
    assert (err.code, err.reason, err.param) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "MODEL_OWNER_MISMATCH",
        "owner",
    )
    assert "dep_a" not in err.message and "dep_b" not in err.message  # the owner is not revealed


async def test_the_owner_is_recorded_and_listed(manager: ModelManager, model_dir: Path) -> None:
    served = await load(manager, "m", model_dir, owner=OWNER_A)
    assert served.state == pb.MODEL_STATE_READY and served.owner == OWNER_A
    reply = await EngineServicer(manager).ListModels(pb.ListModelsRequest(), None)
    assert [m.owner for m in reply.models] == [OWNER_A]


@pytest.mark.parametrize("same_source", [True, False])
async def test_another_owner_cannot_load_over_a_model(
    manager: ModelManager, fake: FakeVllm, model_dir: Path, same_source: bool
) -> None:
    await load(manager, "m", model_dir, owner=OWNER_A)
    args = {} if same_source else {"max_model_len": 32}
    with pytest.raises(ServiceError) as info:
        await load(manager, "m", model_dir, owner=OWNER_B, **args)
    _refused(info)
    # An unowned request (an operator's grpcurl) is "another owner" too.
    with pytest.raises(ServiceError) as info:
        await load(manager, "m", model_dir, **args)
    _refused(info)
    assert manager.slots["m"].owner == OWNER_A and manager.ready("m") is not None
    assert len(fake.engines) == 1 and not fake.engines[0].is_shut_down


async def test_a_newer_generation_is_another_owner(manager: ModelManager, model_dir: Path) -> None:
    await load(manager, "m", model_dir, owner=OWNER_A)
    with pytest.raises(ServiceError) as info:
        await load(manager, "m", model_dir, owner=pb.ModelOwner(deployment_id="dep_a", generation=2))
    _refused(info)


async def test_another_owner_cannot_replace_a_failed_model(
    manager: ModelManager, fake: FakeVllm, model_dir: Path
) -> None:
    fake.start_error = RuntimeError("out of memory")
    served = await load(manager, "m", model_dir, owner=OWNER_A)
    assert served.state == pb.MODEL_STATE_FAILED
    fake.start_error = None
    with pytest.raises(ServiceError) as info:
        await load(manager, "m", model_dir, owner=OWNER_B)
    _refused(info)
    # Its owner may load it again.
    assert (await load(manager, "m", model_dir, owner=OWNER_A)).state == pb.MODEL_STATE_READY


async def test_the_same_owner_loading_again_is_a_no_op(
    manager: ModelManager, fake: FakeVllm, model_dir: Path
) -> None:
    await load(manager, "m", model_dir, owner=OWNER_A)
    assert (await load(manager, "m", model_dir, owner=OWNER_A)).state == pb.MODEL_STATE_READY
    assert len(fake.engines) == 1


async def test_only_the_owner_unloads(manager: ModelManager, fake: FakeVllm, model_dir: Path) -> None:
    await load(manager, "m", model_dir, owner=OWNER_A)
    for other in (OWNER_B, pb.ModelOwner(), None, pb.ModelOwner(deployment_id="dep_a", generation=2)):
        with pytest.raises(ServiceError) as info:
            await manager.unload("m", other)
        _refused(info)
    assert manager.ready("m") is not None and not fake.engines[0].is_shut_down
    await manager.unload("m", OWNER_A)
    assert "m" not in manager.slots and fake.engines[0].is_shut_down


async def test_unowned_models_keep_working_for_unowned_requests(
    manager: ModelManager, model_dir: Path
) -> None:
    await load(manager, "m", model_dir)
    with pytest.raises(ServiceError) as info:
        await manager.unload("m", OWNER_A)
    _refused(info)
    await manager.unload("m")
    assert "m" not in manager.slots


async def test_the_service_passes_the_owner_through(manager: ModelManager, model_dir: Path) -> None:
    servicer = EngineServicer(manager)
    request = load_request("m", model_dir)
    request.owner.CopyFrom(OWNER_A)
    reply = await servicer.LoadModel(request, None)
    assert reply.model.owner == OWNER_A
    with pytest.raises(ServiceError) as info:
        await servicer.UnloadModel(pb.UnloadModelRequest(name="m", owner=OWNER_B), None)
    _refused(info)
    other = load_request("m", model_dir)
    other.owner.CopyFrom(OWNER_B)
    with pytest.raises(ServiceError) as info:
        await servicer.LoadModel(other, None)
    _refused(info)
    await servicer.UnloadModel(pb.UnloadModelRequest(name="m", owner=OWNER_A), None)
    assert "m" not in manager.slots


async def test_close_unloads_models_of_every_owner(manager: ModelManager, model_dir: Path) -> None:
    await load(manager, "a", model_dir, owner=OWNER_A)
    await load(manager, "b", model_dir, owner=OWNER_B)
    await manager.close()
    assert manager.slots == {}
