"""The gateways' load, as they report it (RoutingService.ReportLoad, every few seconds): kept in
memory in the app process, per gateway, the latest report only. A gateway that stops reporting
(it died, or reports to another app replica now) is forgotten after `ttl` seconds.

What the control plane reads of it, per deployment and summed over the live gateways: requests in
flight and queued, the last request's arrival, and requests in flight per replica (address, model
name) — the signals of autoscaling, of idleness (scale to zero) and of a drained replica.

Each app replica sees only the gateways that report to it: with several app replicas, run the
gateways against one of them (or accept that each replica's scaler sees a share of the load).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bud.auth.v1 import routing_pb2

# Most deployments one report may carry (a bigger one is cut: a report is a hint, not a record).
MAX_DEPLOYMENTS_PER_REPORT = 10_000
# Most gateways remembered at once (ids are the gateways' own; the oldest report goes first).
MAX_GATEWAYS = 1_000


@dataclass
class DeploymentLoad:
    """One deployment's load summed over the live gateways."""

    in_flight: int = 0
    queued: int = 0
    last_request: datetime | None = None
    # (address, served_model_name) -> requests in flight there.
    endpoints: dict[tuple[str, str], int] = field(default_factory=dict)
    # Live gateway reports counted.
    reports: int = 0

    @property
    def outstanding(self) -> int:
        return self.in_flight + self.queued


@dataclass(frozen=True)
class _Report:
    received: float  # monotonic
    received_wall: datetime
    deployments: dict[str, routing_pb2.DeploymentLoad]


class LoadBoard:
    """The latest report of each gateway, for `ttl` seconds."""

    def __init__(self, ttl: float = 15.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._reports: dict[str, _Report] = {}

    def report(self, request: routing_pb2.ReportLoadRequest, now_wall: datetime) -> None:
        """Keeps a gateway's report (replacing its previous one)."""
        deployments = {d.deployment_id: d for d in request.deployments[:MAX_DEPLOYMENTS_PER_REPORT]}
        self._reports.pop(request.gateway_id, None)
        self._reports[request.gateway_id] = _Report(self._clock(), now_wall, deployments)
        while len(self._reports) > MAX_GATEWAYS:
            del self._reports[next(iter(self._reports))]

    def _live(self) -> list[_Report]:
        now = self._clock()
        for gateway in [g for g, r in self._reports.items() if now - r.received > self.ttl]:
            del self._reports[gateway]
        return list(self._reports.values())

    @property
    def gateways(self) -> int:
        """Gateways reporting now."""
        return len(self._live())

    def load(self, deployment_id: str) -> DeploymentLoad:
        """A deployment's load over the live gateways (zeros when none reports it)."""
        total = DeploymentLoad()
        for report in self._live():
            entry = report.deployments.get(deployment_id)
            total.reports += 1
            if entry is None:
                continue
            total.in_flight += max(0, entry.in_flight)
            total.queued += max(0, entry.queued)
            if entry.HasField("last_request_time"):
                last = entry.last_request_time.ToDatetime(tzinfo=UTC)
                last = min(last, report.received_wall)  # a gateway's clock ahead of ours: not later
                if total.last_request is None or last > total.last_request:
                    total.last_request = last
            for endpoint in entry.endpoints:
                key = (endpoint.address, endpoint.served_model_name)
                total.endpoints[key] = total.endpoints.get(key, 0) + max(0, endpoint.in_flight)
        return total

    def drained(self, address: str, served_model_name: str, since: float) -> bool:
        """Whether every live gateway has reported since `since` (monotonic) and none has a
        request in flight on the replica (a gateway that reported before may not have seen the
        replica leave its routing table yet)."""
        for report in self._live():
            if report.received < since:
                return False
            for entry in report.deployments.values():
                for endpoint in entry.endpoints:
                    if (
                        endpoint.address == address
                        and endpoint.served_model_name == served_model_name
                        and endpoint.in_flight > 0
                    ):
                        return False
        return True

    def monotonic(self) -> float:
        """The board's clock (what `drained`'s `since` is measured on)."""
        return self._clock()
