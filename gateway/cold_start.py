"""Cold starts: a request for a deployment scaled to zero (or loading after a wake; the routing
feed's `cold_start`) does not fail as not ready. It asks the control plane to wake the
deployment (`WakeDeployment`: one call per deployment at a time in this gateway, however many
requests wait) and waits, in a bounded queue, until the routing tables show the deployment ready
with replicas; then it is served as any other request (a stream streams once the model is up).

A request is refused with 503 and `Retry-After` when the deployment's queue in this gateway is
full (`cold_start_queue_length`), when it waited `cold_start_timeout` seconds, or when the
deployment failed (or was stopped, or deleted) meanwhile: no longer ready nor coming up. A
client that leaves while waiting frees its place at once (its call is cancelled).

A wake that does not reach the app (unreachable) is asked again, with backoff, while requests
wait; an app that does not implement it (UNIMPLEMENTED, logged once) is not asked again for this
wait — the requests still wait for the tables, in case the control plane wakes the deployment by
itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from budrt.errors import Reason, ServiceError, unavailable
from gateway.tables import DeploymentEntry, RoutingTables

log = logging.getLogger(__name__)

# The defaults of the settings (GatewaySettings.cold_start_timeout, cold_start_queue_length): a
# model loading on CPU takes minutes.
DEFAULT_COLD_START_TIMEOUT_S = 300.0
DEFAULT_COLD_START_QUEUE_LENGTH = 100
# How long a refused request is told to wait before retrying (`Retry-After`, seconds).
COLD_START_RETRY_AFTER_S = 10
# The backoff between wake calls that did not reach the app (seconds, doubling up to the last).
WAKE_RETRY_S = (0.5, 5.0)

# Wakes a deployment: True when the control plane got the call, False when it should be asked
# again (gateway/control.py ControlPlane.wake).
Wake = Callable[[str], Awaitable[bool]]


class ColdStarts:
    """The cold-start waits of this gateway, per deployment."""

    def __init__(
        self,
        tables: RoutingTables,
        wake: Wake | None = None,
        timeout: float = DEFAULT_COLD_START_TIMEOUT_S,
        queue_length: int = DEFAULT_COLD_START_QUEUE_LENGTH,
        unimplemented: Callable[[], bool] | None = None,
    ) -> None:
        self.tables = tables
        self.wake = wake
        self.timeout = timeout
        self.queue_length = queue_length
        # Whether the app answered UNIMPLEMENTED to the last wake (then it is not asked again
        # during this wait).
        self._unimplemented = unimplemented or (lambda: False)
        self._waiting: dict[str, int] = {}
        self._wakers: dict[str, asyncio.Task[None]] = {}
        self.wake_calls = 0  # WakeDeployment calls made (for tests and metrics)

    def queued(self, deployment_id: str) -> int:
        """The requests waiting for the deployment in this gateway."""
        return self._waiting.get(deployment_id, 0)

    async def wait(self, deployment: DeploymentEntry, model: str, context: object = None) -> DeploymentEntry:
        """The deployment's entry once it is ready with replicas (at once if it already is);
        503 with Retry-After when the queue is full, the wait times out or the deployment fails.
        `context`: the call's, to send Retry-After on (REST header; RetryInfo over gRPC too)."""
        if deployment.serving:
            return deployment
        dep_id = deployment.id
        if self._waiting.get(dep_id, 0) >= self.queue_length:
            raise _refused(
                context,
                f"The model `{model}` is starting and too many requests are waiting for it; "
                f"retry after {COLD_START_RETRY_AFTER_S}s.",
                Reason.COLD_START_QUEUE_FULL,
            )
        self._waiting[dep_id] = self._waiting.get(dep_id, 0) + 1
        try:
            self._start_waking(dep_id)
            async with asyncio.timeout(self.timeout):
                while True:
                    changed = self.tables.changed  # taken before the check: no update is missed
                    entry = self.tables.deployments.get(dep_id)
                    if entry is not None and entry.serving:
                        return entry
                    if entry is None or not entry.cold_start:
                        raise _refused(
                            context,
                            f"The model `{model}` failed to start or was stopped; retry after {COLD_START_RETRY_AFTER_S}s.",
                            Reason.COLD_START_FAILED,
                        )
                    await changed.wait()
        except TimeoutError:
            raise _refused(
                context,
                f"The model `{model}` did not start within {self.timeout:g}s; "
                f"retry after {COLD_START_RETRY_AFTER_S}s.",
                Reason.COLD_START_TIMEOUT,
            ) from None
        finally:
            left = self._waiting[dep_id] - 1
            if left:
                self._waiting[dep_id] = left
            else:
                del self._waiting[dep_id]
                waker = self._wakers.pop(dep_id, None)
                if waker is not None:
                    waker.cancel()  # nobody waits any more

    def _start_waking(self, dep_id: str) -> None:
        """One waker per deployment while requests wait for it."""
        if self.wake is None or dep_id in self._wakers:
            return
        task = asyncio.get_running_loop().create_task(self._wake_until_asked(dep_id))
        self._wakers[dep_id] = task

    async def _wake_until_asked(self, dep_id: str) -> None:
        """Calls WakeDeployment until the control plane got it (or said it does not know it)."""
        assert self.wake is not None
        delay = WAKE_RETRY_S[0]
        while True:
            self.wake_calls += 1
            try:
                if await self.wake(dep_id) or self._unimplemented():
                    return
            except Exception:
                log.exception("waking a deployment failed", extra={"deployment_id": dep_id})
            await asyncio.sleep(delay)
            delay = min(delay * 2, WAKE_RETRY_S[1])

    async def close(self) -> None:
        """Stops the wakers still running."""
        for task in self._wakers.values():
            task.cancel()
        for task in list(self._wakers.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._wakers.clear()


def _refused(context: object, message: str, reason: Reason) -> ServiceError:
    error = unavailable(message, reason=reason)
    error.retry_after = COLD_START_RETRY_AFTER_S  # RetryInfo over gRPC
    if context is not None:
        context.set_trailing_metadata((("retry-after", str(COLD_START_RETRY_AFTER_S)),))  # type: ignore[attr-defined]
    return error
