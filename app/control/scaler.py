"""The scaler hook: what the reconcile loop asks, each pass, about the engines' load.

The loop hands a scaler the pass's desired models and, when the scaler asks for them
(`needs_stats`), each engine's GetStats answer. The default, `StaticScaler`, keeps the endpoints
as the deployments list them and asks for no stats, so the engines see no GetStats calls.
Autoscaling and scale-to-zero (the operations work) go in a `Scaler` of their own, passed to
`Reconciler(scaler=...)`: the app passes `app.control.autoscaler.Autoscaler`. A scaler may also
have `wants_stats(model)` (which deployments' engines to ask GetStats of) and `attach(reconciler)`
(called once, to unload replicas and ask for passes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from app.control.desired_state import DesiredModel
from bud.engine.v1 import engine_service_pb2


@dataclass(frozen=True)
class EngineLoad:
    """One engine's answer to GetStats in this pass: its stats, or why there are none."""

    address: str
    stats: engine_service_pb2.GetStatsResponse | None
    error: str = ""


class Scaler(Protocol):
    """Called by the reconcile loop once per pass, after it has started that pass's loads."""

    # Whether the loop should call GetStats on every engine of the desired models for this scaler.
    needs_stats: bool

    async def observe(self, desired: Sequence[DesiredModel], loads: Mapping[str, EngineLoad]) -> None:
        """Sees the pass's desired models and, per engine address, its load (empty mapping
        when `needs_stats` is false). Must not raise for a missing engine; a raise is logged
        and the loop goes on."""
        ...


class StaticScaler:
    """Scales nothing: the endpoints are what the deployments list (today's behaviour)."""

    needs_stats = False

    async def observe(self, desired: Sequence[DesiredModel], loads: Mapping[str, EngineLoad]) -> None:
        """Does nothing."""
