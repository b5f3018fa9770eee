"""What this gateway reports of its load to the control plane (`RoutingService.ReportLoad`): per
deployment, the requests in flight on its engines (a stream until its last byte or its client
leaving), those waiting (for a concurrency slot, or for a cold start), the requests admitted since
the gateway started and the last one's arrival, and the requests in flight per replica. They are
the control plane's signals for autoscaling, scale to zero's idle clock and draining a replica.

Nothing is counted twice: the engine calls are the engine pool's leases (`EnginePool.in_flight`,
by deployment and endpoint), the waiters the concurrency limiter's and the cold starts' queues;
this module adds the admissions (`note`) and a prompt deployment's runs in progress (it has no
engines of its own: its in-flight requests are its runs).

A report goes every `load_report_interval` seconds, and at once when a deployment gets its first
request after being idle (none for an interval), so that the idle clock and the autoscaler see
it without waiting for the next tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from bud.auth.v1 import routing_pb2
from gateway.control import ControlPlane
from gateway.engines import EnginePool

# The default interval of the reports (seconds); GatewaySettings.load_report_interval.
DEFAULT_LOAD_REPORT_INTERVAL_S = 5.0
# The least time between two reports, however many deployments wake at once (seconds).
MIN_REPORT_GAP_S = 0.2


@dataclass
class _Counts:
    requests_total: int = 0
    last_request: float = 0.0  # unix seconds; 0: none yet
    runs: int = 0  # a prompt deployment's runs in progress


class LoadTracker:
    """Per-deployment counts for the reports. `queued(deployment_id)`: the requests waiting for
    it in this gateway (the servicer sums its queues)."""

    def __init__(
        self,
        engines: EnginePool,
        queued: Callable[[str], int] | None = None,
        idle_after: float = DEFAULT_LOAD_REPORT_INTERVAL_S,
    ) -> None:
        self.engines = engines
        self.queued = queued or (lambda _: 0)
        self.idle_after = idle_after
        self._counts: dict[str, _Counts] = {}
        # Set when a deployment gets its first request after being idle: report at once.
        self.first_request = asyncio.Event()

    def note(self, deployment_id: str) -> None:
        """Counts a request admitted for the deployment (before it waits or runs)."""
        now = time.time()
        counts = self._counts.setdefault(deployment_id, _Counts())
        if now - counts.last_request >= self.idle_after:
            self.first_request.set()
        counts.requests_total += 1
        counts.last_request = now

    @contextlib.contextmanager
    def run(self, deployment_id: str) -> Iterator[None]:
        """A prompt deployment's run: admitted, and in flight while the block runs."""
        self.note(deployment_id)
        counts = self._counts[deployment_id]
        counts.runs += 1
        try:
            yield
        finally:
            counts.runs -= 1

    def report(self) -> routing_pb2.ReportLoadRequest:
        """Every deployment this gateway has served or queued since it started."""
        out: dict[str, routing_pb2.DeploymentLoad] = {}
        for deployment_id, counts in self._counts.items():
            load = routing_pb2.DeploymentLoad(
                deployment_id=deployment_id,
                in_flight=counts.runs,
                queued=self.queued(deployment_id),
                requests_total=counts.requests_total,
            )
            if counts.last_request:
                load.last_request_time.FromNanoseconds(int(counts.last_request * 1e9))
            out[deployment_id] = load
        for (deployment_id, endpoint), n in sorted(
            self.engines.in_flight.items(), key=lambda item: (item[0][0], item[0][1].address)
        ):
            load = out.get(deployment_id)
            if load is None:  # a call whose deployment was never noted (not from the servicer)
                load = out[deployment_id] = routing_pb2.DeploymentLoad(deployment_id=deployment_id)
            load.in_flight += n
            load.endpoints.add(
                address=endpoint.address, served_model_name=endpoint.served_model_name, in_flight=n
            )
        return routing_pb2.ReportLoadRequest(deployments=out.values())


async def report_load(tracker: LoadTracker, control: ControlPlane, interval: float) -> None:
    """Sends the tracker's report every `interval` seconds, and soon after a deployment's first
    request after idleness, until cancelled; `interval` 0: never. A report that fails is not
    resent: the next one carries the counts as they are then."""
    if interval <= 0:
        return
    while True:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(interval):
                await tracker.first_request.wait()
        tracker.first_request.clear()
        await control.report_load(tracker.report())
        await asyncio.sleep(MIN_REPORT_GAP_S)
