"""The answer headers a call made on a caller's behalf passes back to that caller: the rate-limit
headers (`x-ratelimit-*`: the key's, the model's and the prompt deployment's limits, the tightest
of each kind) and the response cache's `x-bud-cache` (hit or miss). The prompt executor passes its
model call's to the gateway, the gateway the executor's to the client."""

from __future__ import annotations

from typing import Any

import grpc

_LIMIT_HEADER_PREFIX = "x-ratelimit-"
_CACHE_HEADER = "x-bud-cache"


async def pass_answer_headers(call: Any, context: Any) -> None:
    """Sends `context`'s caller, as its own initial metadata, the answer headers `call` (a grpc.aio
    call, or an in-process one with `initial_metadata()`) answered with; nothing when it has none."""
    getter = getattr(call, "initial_metadata", None)
    if getter is None:
        return
    try:
        metadata = await getter()
    except grpc.aio.AioRpcError:
        return
    headers = tuple(
        (k, v) for k, v in metadata or () if k.startswith(_LIMIT_HEADER_PREFIX) or k == _CACHE_HEADER
    )
    if headers:
        await context.send_initial_metadata(headers)
