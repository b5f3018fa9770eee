"""What the compose and chart tests share: the settings a container's environment gives the
services it runs — read by the services' own settings models, so a misspelt or unknown `BUD_`
variable fails here as it would at start (`budrt.settings.check_known`) — and the ports and
identities of the components."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any

from budrt.components import Component, discover
from budrt.settings import ENV_PREFIX, RuntimeSettings, check_known

COMPONENTS: dict[str, Component] = discover()
MODELS = [RuntimeSettings, *(c.settings for c in COMPONENTS.values())]

# Variables a container may set that are not Bud settings: read by a library or the image.
# CLAMAV_HOST/PORT and LEADERBOARD_UPDATE_INTERVAL are read by the registry as documented.
FOREIGN_ENV = frozenset(
    {
        "HF_HOME",
        "HF_TOKEN",
        "HF_HUB_OFFLINE",
        "PYTHONUNBUFFERED",
        "RAY_ADDRESS",
        "VLLM_HOST_IP",
        "REDIS_PASSWORD",
        # An engine pod's name (the downward API), expanded into BUD_ANNOUNCE_ADDRESS.
        "POD_NAME",
    }
)


def known_settings() -> set[str]:
    return {name for model in MODELS for name in model.model_fields}


@contextlib.contextmanager
def environment(env: Mapping[str, str]) -> Iterator[None]:
    """This process's environment with no BUD_ variables but `env`'s."""
    saved = dict(os.environ)
    try:
        for key in [k for k in os.environ if k.startswith(ENV_PREFIX)]:
            del os.environ[key]
        os.environ.update(env)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def service_settings(names: list[str], env: Mapping[str, str]) -> dict[str, Any]:
    """The settings each of `names` (and the guests they host) reads from `env`, as at start;
    raises what a start would raise on an unknown or invalid setting."""
    bud = {k: v for k, v in env.items() if k.startswith(ENV_PREFIX)}
    foreign = {k for k in env if not k.startswith(ENV_PREFIX)} - FOREIGN_ENV - {"CLAMAV_HOST", "CLAMAV_PORT"}
    assert not foreign, f"variables that are neither settings nor known to a library: {sorted(foreign)}"
    check_known(MODELS, bud)
    hosted = [g for g, c in COMPONENTS.items() if c.hosted_by in names]
    with environment(bud):
        return {name: COMPONENTS[name].settings() for name in [*names, *hosted]}


def port(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def host(address: str) -> str:
    return address.rsplit(":", 1)[0]


def bind_address(name: str, settings: Any) -> str:
    """The gRPC address component `name` listens on."""
    return str(getattr(settings, COMPONENTS[name].address_setting))


def address_setting(name: str) -> str:
    component = COMPONENTS[name]
    return (
        COMPONENTS[component.hosted_by].address_setting if component.hosted_by else component.address_setting
    )
