"""The gateway's in-memory key, project and route tables, fed by the app's WatchRouting stream
(snapshot, then changes with revisions; reconnect and resume). The request path reads these
tables only: no database or RPC per request. When the app is unreachable the gateway keeps
serving from the last tables it had."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

import grpc

from auth import keys
from bud.auth.v1 import routing_pb2, routing_pb2_grpc
from budrt.endpoints import Endpoint
from budrt.grpc_server import service_channel
from budrt.money import Price
from gateway.budgets import BudgetEntry

log = logging.getLogger(__name__)


@dataclass(slots=True)
class KeyEntry:
    """An active API key as the gateway knows it."""

    id: str
    prefix: str
    key_hash: bytes
    project_id: str
    deployment_ids: frozenset[str]
    expire_at: float | None  # unix seconds
    requests_per_minute: int
    tokens_per_minute: int


@dataclass(slots=True)
class DeploymentEntry:
    """A routable deployment."""

    id: str
    project_id: str
    name: str
    endpoints: list[Endpoint]
    ready: bool
    requests_per_minute: int
    tokens_per_minute: int
    created: int
    max_concurrency: int = 0  # requests in flight at once across the gateways; 0: no limit
    # A prompt deployment: the prompt it runs, the version it pins (0: none) and the label it
    # follows ("" with no version: the prompt's default label); prompt_id "" for a model.
    prompt_id: str = ""
    prompt_version: int = 0
    prompt_label: str = ""
    caching: bool = False  # the response cache answers its deterministic requests
    price: Price = Price()  # what its calls cost (budgets, usage records' cost)
    # Scaled to zero, or loading after a wake: a request waits for it (gateway/cold_start.py)
    # instead of failing as not ready.
    cold_start: bool = False
    # The served names of its replicas, or of its last replicas while it has none (scaled to
    # zero): the response cache keys on them, so a hit answers without waking the deployment.
    served_names: tuple[str, ...] = ()
    # An image deployment's settings (RouteImageSettings; None: a text deployment).
    image: routing_pb2.RouteImageSettings | None = None

    @property
    def serving(self) -> bool:
        """Ready, with replicas to call."""
        return self.ready and bool(self.endpoints)


@dataclass
class RoutingTables:
    """Keys by prefix, deployments by (project, name), project names; plus the revision."""

    revision: int = 0
    loaded: asyncio.Event = field(default_factory=asyncio.Event)
    keys_by_prefix: dict[str, KeyEntry] = field(default_factory=dict)
    key_prefix_by_id: dict[str, str] = field(default_factory=dict)
    deployments: dict[str, DeploymentEntry] = field(default_factory=dict)
    by_name: dict[tuple[str, str], DeploymentEntry] = field(default_factory=dict)
    projects: dict[str, str] = field(default_factory=dict)
    # Set (and replaced by a new one) by each applied update: what a waiter for a change awaits.
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    # Projects' budgets (theirs and their keys'), by project id; projects without any absent.
    budgets: dict[str, tuple[BudgetEntry, ...]] = field(default_factory=dict)

    def apply(self, update: routing_pb2.WatchRoutingResponse) -> None:
        """Applies a snapshot (reset) or a batch of changes."""
        before = dict(self.deployments) if update.reset else self.deployments
        if update.reset:
            self.keys_by_prefix.clear()
            self.key_prefix_by_id.clear()
            self.deployments.clear()
            self.by_name.clear()
            self.projects.clear()
            self.budgets.clear()
        for key_id in update.delete_key_ids:
            prefix = self.key_prefix_by_id.pop(key_id, None)
            if prefix is not None:
                self.keys_by_prefix.pop(prefix, None)
        for k in update.upsert_keys:
            old_prefix = self.key_prefix_by_id.get(k.id)
            if old_prefix is not None and old_prefix != k.prefix:
                self.keys_by_prefix.pop(old_prefix, None)
            self.keys_by_prefix[k.prefix] = KeyEntry(
                id=k.id,
                prefix=k.prefix,
                key_hash=k.key_hash,
                project_id=k.project_id,
                deployment_ids=frozenset(k.deployment_ids),
                expire_at=k.expire_time.seconds + k.expire_time.nanos / 1e9
                if k.HasField("expire_time")
                else None,
                requests_per_minute=k.requests_per_minute,
                tokens_per_minute=k.tokens_per_minute,
            )
            self.key_prefix_by_id[k.id] = k.prefix
        for dep_id in update.delete_deployment_ids:
            old = self.deployments.pop(dep_id, None)
            if old is not None:
                self.by_name.pop((old.project_id, old.name), None)
        for d in update.upsert_deployments:
            old = self.deployments.get(d.id)
            if old is not None:
                self.by_name.pop((old.project_id, old.name), None)
            names = tuple(e.served_model_name for e in d.endpoints)
            known = before.get(d.id)
            if not names and d.cold_start and known is not None:
                names = known.served_names  # scaled to zero: its cache entries stay reachable
            entry = DeploymentEntry(
                id=d.id,
                project_id=d.project_id,
                name=d.name,
                endpoints=[Endpoint(e.address, e.served_model_name) for e in d.endpoints],
                ready=d.ready,
                requests_per_minute=d.requests_per_minute,
                tokens_per_minute=d.tokens_per_minute,
                created=d.create_time.seconds,
                max_concurrency=d.max_concurrency,
                prompt_id=d.prompt_id,
                prompt_version=d.prompt_version,
                prompt_label=d.prompt_label,
                caching=d.caching,
                cold_start=d.cold_start,
                served_names=names,
                price=Price(
                    d.pricing.input_micros_per_million,
                    d.pricing.output_micros_per_million,
                    d.pricing.request_micros,
                    d.pricing.image_micros,
                ),
                image=d.image if d.HasField("image") else None,
            )
            self.deployments[d.id] = entry
            self.by_name[(d.project_id, d.name)] = entry
        for project_id in update.delete_project_ids:
            self.projects.pop(project_id, None)
            self.budgets.pop(project_id, None)
        for p in update.upsert_projects:
            self.projects[p.id] = p.name
            if p.budgets:
                self.budgets[p.id] = tuple(
                    BudgetEntry(
                        b.id,
                        b.api_key_id,
                        b.period,
                        b.limit_micros,
                        tuple(b.alert_thresholds),
                        b.hard_stop,
                        b.webhook_url,
                    )
                    for b in p.budgets
                )
            else:
                self.budgets.pop(p.id, None)
        self.revision = update.revision
        self.loaded.set()
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()

    def authenticate(self, key: str, hash_secret: str) -> KeyEntry | None:
        """The active key matching `key`, compared by keyed hash in constant time."""
        prefix = keys.key_prefix(key)
        if prefix is None:
            return None
        entry = self.keys_by_prefix.get(prefix)
        if entry is None or not keys.key_matches(key, entry.key_hash, hash_secret):
            return None
        if entry.expire_at is not None and entry.expire_at <= time.time():
            return None
        return entry

    def resolve(self, key: KeyEntry, model: str) -> DeploymentEntry | None:
        """The deployment `model` names in the key's project, if the key may call it."""
        entry = self.by_name.get((key.project_id, model))
        if entry is None or (key.deployment_ids and entry.id not in key.deployment_ids):
            return None
        return entry

    def visible(self, key: KeyEntry) -> list[DeploymentEntry]:
        """The deployments a key may call, by name."""
        found = [
            d
            for d in self.deployments.values()
            if d.project_id == key.project_id and (not key.deployment_ids or d.id in key.deployment_ids)
        ]
        return sorted(found, key=lambda d: d.name)


class RoutingWatcher:
    """Keeps RoutingTables in step with the app: watch, apply, and on failure reconnect with
    backoff, resuming from the last applied revision."""

    def __init__(
        self,
        app_address: str,
        tables: RoutingTables,
        gateway_id: str,
        channel: grpc.aio.Channel | None = None,
    ) -> None:
        """`channel`: one to the app shared with the gateway's other calls to it (its owner
        closes it); by default the watch opens its own."""
        self.app_address = app_address
        self.tables = tables
        self.gateway_id = gateway_id
        self.channel = channel

    async def run(self) -> None:
        """Runs until cancelled."""
        backoff = 0.1
        channel = self.channel or service_channel(self.app_address)
        stub = routing_pb2_grpc.RoutingServiceStub(channel)
        try:
            while True:
                try:
                    request = routing_pb2.WatchRoutingRequest(
                        since_revision=self.tables.revision, gateway_id=self.gateway_id
                    )
                    async for update in stub.WatchRouting(request):
                        self.tables.apply(update)
                        backoff = 0.1
                    log.warning("routing watch ended; reconnecting")
                except grpc.aio.AioRpcError as err:
                    log.warning(
                        "routing watch failed: %s; serving from revision %d",
                        err.code().name,
                        self.tables.revision,
                    )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
        finally:
            if channel is not self.channel:
                await channel.close()
