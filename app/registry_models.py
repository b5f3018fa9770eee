"""Deployments of registry models: the app asks the registry (a guest of its own process, reached
over the service channel like any other service: the app may not import it) for the model's
files, and keeps them, with their scanned hashes, as the deployment's source (its "pin").

The registry refuses (FAILED_PRECONDITION, naming the findings) a model whose last scan is not
CLEAN or whose files changed since; the engine, loading, checks the pinned hashes again and
refuses on a mismatch (the deployment then FAILED with the engine's message). A deployment stays
pinned to the files as they were when it was created: a later rescan with other hashes does not
change what it loads (its engine refuses changed files instead).

The pin is stored as JSON in `deployments.model_source` (kind "registry_model_id"):
``{"id": model id, "path": directory, "sha256": {file: hash}}``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc
import orjson

from bud.engine.v1 import engine_service_pb2
from bud.registry.v1 import registry_pb2, registry_pb2_grpc
from budrt.errors import ServiceError, failed_precondition, internal, unavailable
from budrt.grpc_server import PROCESS_TLS, service_channel

KIND = "registry_model_id"
REGISTRY_TIMEOUT_S = 600.0  # the registry re-hashes the files before answering


def encode_pin(answer: registry_pb2.ResolveModelForDeploymentResponse) -> str:
    """The stored source of a deployment of a resolved registry model."""
    return orjson.dumps(
        {
            "id": answer.model_id,
            "path": answer.local_path,
            "sha256": {f.path: f.sha256 for f in answer.files},
        },
        option=orjson.OPT_SORT_KEYS,
    ).decode()


def decode_pin(value: str) -> dict[str, Any]:
    """A stored pin ({"id": ..., "path": "", "sha256": {}} for a bare id)."""
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        return {"id": value, "path": "", "sha256": {}}
    return data


def pinned_id(value: str) -> str:
    """The registry model id of a stored pin."""
    return str(decode_pin(value).get("id", ""))


def engine_source(value: str) -> engine_service_pb2.ModelSource:
    """The LoadModel source of a pin: the directory and the hashes the engine must find."""
    pin = decode_pin(value)
    source = engine_service_pb2.ModelSource()
    if not pin.get("path"):
        source.registry_model_id = str(pin.get("id", ""))  # refused by the engine
        return source
    source.registry.model_id = str(pin["id"])
    source.registry.local_path = str(pin["path"])
    source.registry.sha256.update({str(k): str(v) for k, v in dict(pin.get("sha256", {})).items()})
    return source


class RegistryModels:
    """The app's client of ResolveModelForDeployment (the app's service identity is what the
    registry admits; the user was checked by the app)."""

    def __init__(self, address: Callable[[], str], tls: Any = PROCESS_TLS) -> None:
        self._address = address
        self._tls = tls
        self._channel: grpc.aio.Channel | None = None
        self._lock = asyncio.Lock()

    async def pin(self, model_id: str, param: str) -> str:
        """The stored source of a deployment of `model_id` (see the module); the registry's
        refusal is raised as it came (FAILED_PRECONDITION, NOT_FOUND), named `param`."""
        async with self._lock:
            if self._channel is None:
                self._channel = service_channel(self._address(), tls=self._tls)
        stub = registry_pb2_grpc.RegistryServiceStub(self._channel)
        try:
            answer = await stub.ResolveModelForDeployment(
                registry_pb2.ResolveModelForDeploymentRequest(model_id=model_id), timeout=REGISTRY_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as err:
            code = err.code()
            if code == grpc.StatusCode.UNIMPLEMENTED:
                raise failed_precondition(
                    "registry models cannot be deployed here: the registry does not run in this app",
                    param=param,
                ) from None
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise unavailable(f"the model registry cannot be reached: {err.details()}") from None
            if code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
                # The registry refused the app's own identity: the platform's misconfiguration,
                # not the user's fault (their own rights were checked by the app).
                raise internal(f"the model registry refused the app: {err.details()}") from None
            error = ServiceError.from_rpc_error(err)
            error.param = param
            raise error from None
        return encode_pin(answer)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
