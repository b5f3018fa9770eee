"""How many replicas a deployment runs: its scaling bounds with the platform's defaults filled in,
the floor its `min_replicas` and `min_concurrency` ask for, and the checks of those settings that
depend on the platform's configuration (the static ones are `app.validation`'s).

A replica is one row of `deployment_endpoints`: a model loaded on a registered engine. Those the
deployment names (or its first placement chose) are the tenant's (`placed_by` "tenant"); the
control plane adds more on other engines (`placed_by` "scaler") up to `max_replicas`, and removes
only those (after draining them). Scaled to zero, every replica is unloaded and the tenant's rows
stay, for the wake.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from app.convert import SCALER, TENANT
from app.settings import AppSettings
from bud.app.v1 import deployment_pb2
from budrt.errors import invalid_argument

__all__ = ["SCALER", "TENANT", "Bounds", "ReplicaPolicy", "bounds", "check_replica_settings"]


@dataclass(frozen=True)
class ReplicaPolicy:
    """The platform's defaults and limits for scaling settings (from `AppSettings`)."""

    default_min_replicas: int = 1
    default_max_replicas: int = 4
    default_idle_timeout_seconds: int = 60
    min_idle_timeout_seconds: int = 10
    replica_concurrency: int = 8

    @classmethod
    def of(cls, settings: AppSettings) -> ReplicaPolicy:
        return cls(
            default_min_replicas=settings.default_min_replicas,
            default_max_replicas=settings.default_max_replicas,
            default_idle_timeout_seconds=settings.default_idle_timeout_seconds,
            min_idle_timeout_seconds=settings.min_idle_timeout_seconds,
            replica_concurrency=settings.replica_concurrency,
        )


@dataclass(frozen=True)
class Bounds:
    """A deployment's effective scaling bounds."""

    min_replicas: int
    max_replicas: int
    idle_timeout_seconds: int
    min_concurrency: int
    tenant_replicas: int
    replica_concurrency: int

    @property
    def concurrency_replicas(self) -> int:
        """Replicas `min_concurrency` needs warm."""
        return math.ceil(self.min_concurrency / self.replica_concurrency) if self.min_concurrency > 0 else 0

    @property
    def floor(self) -> int:
        """Fewest replicas while serving (never below the tenant's endpoints, nor 1)."""
        return min(
            self.max_replicas,
            max(1, self.min_replicas, self.concurrency_replicas, self.tenant_replicas),
        )

    @property
    def may_scale_to_zero(self) -> bool:
        """min_replicas 0 and no capacity kept warm for min_concurrency."""
        return self.min_replicas == 0 and self.min_concurrency == 0


def bounds(
    policy: ReplicaPolicy,
    *,
    min_replicas: int | None,
    max_replicas: int | None,
    idle_timeout_seconds: int | None,
    min_concurrency: int,
    tenant_replicas: int,
) -> Bounds:
    """The bounds of stored (or requested) settings, the policy's defaults where unset."""
    return Bounds(
        min_replicas=policy.default_min_replicas if min_replicas is None else min_replicas,
        max_replicas=policy.default_max_replicas if max_replicas is None else max_replicas,
        idle_timeout_seconds=(
            policy.default_idle_timeout_seconds if idle_timeout_seconds is None else idle_timeout_seconds
        ),
        min_concurrency=min_concurrency,
        tenant_replicas=tenant_replicas,
        replica_concurrency=policy.replica_concurrency,
    )


def _optional(scaling: deployment_pb2.ScalingSettings, field: str) -> int | None:
    return getattr(scaling, field) if scaling.HasField(field) else None


def message_bounds(
    policy: ReplicaPolicy, deployment: deployment_pb2.Deployment, tenant_replicas: int
) -> Bounds:
    """The bounds of a Deployment message's scaling settings."""
    scaling = deployment.scaling
    return bounds(
        policy,
        min_replicas=_optional(scaling, "min_replicas"),
        max_replicas=_optional(scaling, "max_replicas"),
        idle_timeout_seconds=_optional(scaling, "idle_timeout_seconds"),
        min_concurrency=scaling.min_concurrency,
        tenant_replicas=tenant_replicas,
    )


def check_replica_settings(
    policy: ReplicaPolicy,
    deployment: deployment_pb2.Deployment,
    *,
    named_endpoints: int,
    param: str = "deployment",
) -> None:
    """The checks that need the platform's defaults: the idle timeout's floor, and bounds that
    contradict each other once defaults fill the unset ones (min above the default max, more named
    endpoints than max_replicas, min_concurrency needing more replicas than max_replicas).
    INVALID_ARGUMENT naming the field."""
    scaling = deployment.scaling
    where = f"{param}.scaling"
    if (
        scaling.HasField("idle_timeout_seconds")
        and scaling.idle_timeout_seconds < policy.min_idle_timeout_seconds
    ):
        raise invalid_argument(
            f"{where}.idle_timeout_seconds must be at least {policy.min_idle_timeout_seconds}",
            param=f"{where}.idle_timeout_seconds",
        )
    b = message_bounds(policy, deployment, named_endpoints)
    if b.min_replicas > b.max_replicas:
        field = "min_replicas" if scaling.HasField("min_replicas") else "max_replicas"
        raise invalid_argument(
            f"{where}.min_replicas ({b.min_replicas}) is above max_replicas ({b.max_replicas})",
            param=f"{where}.{field}",
        )
    if named_endpoints > b.max_replicas:
        raise invalid_argument(
            f"{param}.endpoints names {named_endpoints} engines, more than max_replicas ({b.max_replicas})",
            param=f"{param}.endpoints",
        )
    if b.concurrency_replicas > b.max_replicas:
        raise invalid_argument(
            f"{where}.min_concurrency {b.min_concurrency} needs {b.concurrency_replicas} replicas "
            f"of {policy.replica_concurrency} requests, more than max_replicas ({b.max_replicas})",
            param=f"{where}.min_concurrency",
        )
