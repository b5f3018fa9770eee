"""The observed stack: the in-process prompt stack (app, instant engine behind its own gRPC server,
the gateway, the prompt executor co-hosted) with tracing exported to an in-process OTLP
receiver, `/metrics` served on the stack's event loop, and every log line of the run captured
as the JSON the processes write."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from budrt import tracing
from budrt.logs import JsonFormatter, _ContextFilter
from budrt.metrics import MetricsServer
from tests.gateway.prompt_stack import PromptStack, prompt_stack
from tests.observability.otlp_receiver import OtlpReceiver
from tests.support.prometheus import prometheus  # noqa: F401  (a fixture)


@dataclass
class ObservedStack:
    stack: PromptStack
    receiver: OtlpReceiver
    logs: io.StringIO
    metrics_url: str
    handler: logging.Handler

    def log_lines(self) -> str:
        self.handler.flush()
        return self.logs.getvalue()


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObservedStack]:
    logs = io.StringIO()
    handler = logging.StreamHandler(logs)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(_ContextFilter("observed-stack"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)  # everything the processes could say, DEBUG included
    with OtlpReceiver() as receiver:
        tracing.configure(receiver.endpoint, "observed-stack")
        try:
            with prompt_stack(Path(tmp_path_factory.mktemp("observed"))) as stack:
                server = MetricsServer("127.0.0.1:0")
                asyncio.run_coroutine_threadsafe(server.start(), stack.loop).result(10)
                try:
                    yield ObservedStack(
                        stack, receiver, logs, f"http://127.0.0.1:{server.port}/metrics", handler
                    )
                finally:
                    asyncio.run_coroutine_threadsafe(server.stop(), stack.loop).result(10)
        finally:
            tracing.shutdown()
            root.removeHandler(handler)
            root.setLevel(level)
