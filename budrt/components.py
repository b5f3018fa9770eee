"""Components: how a service package presents itself to the launcher, and how the launcher finds
them (Python entry points, group `bud.components`), without the runtime importing any service.

Each service package exposes one :class:`Component` (`<package>/component.py`) and registers it
in `pyproject.toml`:

    [project.entry-points."bud.components"]
    gateway = "gateway.component:component"

A component either runs as a process of its own (`start`; `budrt serve NAME...` runs one or
several in one process) or is a *guest* whose gRPC services are added to its host's server
(`hosted_by` + `bindings`: the prompt and registry services live in the app's process).
Components co-hosted in one process share a :class:`Host`: what one offers there (the engine its
servicer) the others call directly, without a loopback gRPC hop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from google.protobuf.descriptor import ServiceDescriptor

from budrt.grpc_server import ServiceBinding
from budrt.settings import RuntimeSettings, SettingsT, load

ENTRY_POINT_GROUP = "bud.components"


@dataclass(frozen=True)
class Component:
    """A service package's face to the launcher. Every hook is optional."""

    name: str
    # Its settings model: RuntimeSettings plus the component's own knobs.
    settings: type[RuntimeSettings] = RuntimeSettings
    # The RuntimeSettings field holding the address of the gRPC server that hosts its services
    # (a guest's is its host's).
    address_setting: str = ""
    # Services a gateway fronts over REST (routes from their google.api.http annotations),
    # reached at this component's address.
    rest_services: tuple[ServiceDescriptor, ...] = ()

    # A process of its own: builds the service in `host` (synchronously; this is where it offers
    # in-process services to co-hosted components) and returns what runs it until `host.stop`.
    start: Callable[[Host], Callable[[], Awaitable[None]]] | None = None
    # A guest: the component whose process and gRPC server host it, and its services there.
    hosted_by: str = ""
    bindings: Callable[[Host], list[ServiceBinding]] | None = None

    # `budrt up`: the component whose process this one joins ("" or None: a process of its own),
    # from this component's settings (the engine joins the gateway unless engine_in_gateway=false).
    joins: Callable[[Any], str] | None = None
    # `budrt up`: how many deployments this component creates on first start (the mesh is not
    # ready while none is there when some are expected).
    default_deployments: Callable[[Any], int] | None = None
    # `budrt up`: whether this component is ready to be used, given its settings and how many
    # deployments the components create on first start; the mesh is up when every probe says so.
    ready: Callable[[Any, int], bool] | None = None
    # `budrt up`: lines for the "is up" message (where to point clients, what is served); the
    # components with a readiness probe (the front door) are listed first.
    announce: Callable[[Any], list[str]] | None = None
    # Command-line verbs of its own (`budrt models import ...`): adds its parsers to `budrt`'s
    # subcommands (argparse's `add_subparsers()` result); each sets `run=` (a function of the
    # parsed arguments returning the exit status) with `set_defaults`.
    commands: Callable[[Any], None] | None = None
    # `budrt migrate`: brings the component's database schema to this version's head, given its
    # settings, then returns (the app's tables, the registry's). Run once per release by a Job
    # before the rollout, so replicas started with `migrate_on_start` off never race to migrate.
    migrate: Callable[[Any], Awaitable[None]] | None = None


class ComponentError(RuntimeError):
    """The installed components do not fit together (unknown name, missing host...)."""


def discover() -> dict[str, Component]:
    """The installed components by name (sorted), from the `bud.components` entry points."""
    found: dict[str, Component] = {}
    for point in entry_points(group=ENTRY_POINT_GROUP):
        component = point.load()
        if not isinstance(component, Component) or component.name != point.name:
            raise ComponentError(
                f"entry point {point.name} = {point.value} is not the Component {point.name!r}"
            )
        found[component.name] = component
    for component in found.values():
        if component.hosted_by and component.hosted_by not in found:
            raise ComponentError(
                f"{component.name} is hosted by {component.hosted_by}, which is not installed"
            )
    return dict(sorted(found.items()))


def standalone(components: dict[str, Component]) -> list[str]:
    """The components that run as processes (`budrt serve` accepts these names)."""
    return [name for name, c in components.items() if c.start is not None]


def settings_of(component: Component) -> Any:
    """The process-wide settings of a component (read once)."""
    return load(component.settings)


def up_groups(components: dict[str, Component]) -> list[list[str]]:
    """The processes `budrt up` starts, each a list of co-hosted component names (the host first):
    every standalone component in a process of its own, unless it joins another's."""
    groups: dict[str, list[str]] = {}
    names = standalone(components)
    for name in names:
        component = components[name]
        target = component.joins(settings_of(component)) if component.joins else ""
        if not target:
            groups.setdefault(name, [name])
            continue
        if target not in names or (
            components[target].joins and components[target].joins(settings_of(components[target]))
        ):
            raise ComponentError(f"{name} cannot join {target}: not a process of its own")
        groups.setdefault(target, [target]).append(name)
    return list(groups.values())


class Host:
    """One process's view of the components it runs: their settings, the stop signal, the
    services they offer each other in process, and what every installed component fronts."""

    def __init__(self, components: dict[str, Component], names: list[str], stop: asyncio.Event) -> None:
        self.components = components
        self.names = list(names)
        self.stop = stop
        self._offers: dict[str, dict[str, Any]] = {}

    def settings(self, model: type[SettingsT]) -> SettingsT:
        """The process-wide settings of `model` (read once)."""
        return load(model)

    def offer(self, service: ServiceDescriptor, address: str, servicer: Any) -> None:
        """Makes `servicer` (the one serving `service` at `address`) callable in process by the
        components co-hosted here."""
        self._offers.setdefault(service.full_name, {})[address] = servicer

    def offered(self, service: ServiceDescriptor) -> dict[str, Any]:
        """Servicers of `service` co-hosted in this process, by the address they serve at."""
        return dict(self._offers.get(service.full_name, {}))

    def guest_bindings(self, name: str) -> list[ServiceBinding]:
        """The gRPC services of the guests that component `name` hosts."""
        return [
            binding
            for guest in self.components.values()
            if guest.hosted_by == name and guest.bindings
            for binding in guest.bindings(self)
        ]

    def address(self, name: str) -> str:
        """The gRPC address of component `name` (a guest's: its host's)."""
        component = self.components[name]
        if component.hosted_by:
            component = self.components[component.hosted_by]
        if not component.address_setting:
            raise ComponentError(f"{component.name} names no address setting")
        return getattr(self.settings(RuntimeSettings), component.address_setting)

    def rest_services(self) -> list[tuple[ServiceDescriptor, str]]:
        """Every service an installed component wants fronted over REST, with its address."""
        return [
            (service, self.address(name))
            for name, component in self.components.items()
            for service in component.rest_services
        ]
