"""A model whose vLLM engine core dies stops claiming to serve: its health turns NOT_SERVING,
ListModels says FAILED and why, calls get UNAVAILABLE (not a hang), and the engine's other
models keep serving. The model here is loaded by the test itself, so the mesh's own are left
alone."""

from __future__ import annotations

import os
import signal
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bud.engine.v1 import engine_service_pb2 as engine_pb
from bud.engine.v1 import engine_service_pb2_grpc
from bud.openai.v1 import chat_pb2
from tests.engine.test_engine_cancellation import client
from tests.support.mesh import Mesh
from tests.support.procs import descendants, service_pid

pytestmark = pytest.mark.mesh

DOOMED = "doomed-tiny"


def test_a_dead_engine_core_is_noticed_and_the_rest_keeps_serving(mesh: Mesh) -> None:
    engine_pid = service_pid(mesh.process.pid, "engine")
    before = descendants(engine_pid)
    with mesh.channel(mesh.engine_grpc) as channel:
        engine = engine_service_pb2_grpc.EngineServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        loaded = engine.LoadModel(
            engine_pb.LoadModelRequest(
                name=DOOMED,
                source=engine_pb.ModelSource(builtin="tiny-llama"),
                runner=engine_pb.RUNNER_GENERATE,
                args=engine_pb.EngineArgs(max_model_len=256, kv_cache_space_gib=0.1),
            ),
            timeout=600,
        ).model
        assert loaded.state == engine_pb.MODEL_STATE_READY, loaded.error
        try:
            core = descendants(engine_pid) - before
            assert core, "the load started no process"
            for pid in core:
                os.kill(pid, signal.SIGKILL)

            deadline = time.monotonic() + 30
            while (
                health.Check(health_pb2.HealthCheckRequest(service=DOOMED), timeout=10).status
                != health_pb2.HealthCheckResponse.NOT_SERVING
            ):
                assert time.monotonic() < deadline, "health still SERVING 30 s after the engine core died"
                time.sleep(0.5)
            (served,) = [
                m
                for m in engine.ListModels(engine_pb.ListModelsRequest(), timeout=10).models
                if m.name == DOOMED
            ]
            assert served.state == engine_pb.MODEL_STATE_FAILED and "engine core" in served.error
            with pytest.raises(grpc.RpcError) as refused:
                engine.CreateChatCompletion(
                    chat_pb2.ChatCompletionRequest(
                        model=DOOMED,
                        messages=[chat_pb2.ChatMessage(role="user", content_text="hi")],
                        max_tokens=2,
                    ),
                    timeout=30,
                )
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, refused.value.details()
        finally:
            engine.UnloadModel(engine_pb.UnloadModelRequest(name=DOOMED), timeout=120)
    # The mesh's own model never noticed.
    reply = client(mesh).chat.completions.create(
        model="tiny-llama", messages=[{"role": "user", "content": "hi"}], max_tokens=2
    )
    assert reply.choices[0].message.role == "assistant"
