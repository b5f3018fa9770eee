"""Ending a streaming model call the executor opened, whichever kind it is."""

from __future__ import annotations

from typing import Any


async def end_call(call: Any) -> None:
    """Ends a streaming call and the generation behind it: a gRPC call is cancelled, the
    in-process one (`prompt.component._LocalStreamCall`) closed. A caller that left cancels the
    model call with it."""
    cancel = getattr(call, "cancel", None)
    if cancel is not None:
        cancel()
    elif hasattr(call, "aclose"):
        await call.aclose()
