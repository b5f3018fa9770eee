"""Image deployments: which deployments are, their settings (checks, storage, defaults) and what
the gateways' routing tables carry of them.

A deployment is an image deployment when its model runs ``RUNNER_DIFFUSION``: its runner says so,
or it leaves the runner unspecified and names a builtin model whose catalogue runner is diffusion
(``tiny-diffusion``). A Hugging Face or local diffusers pipeline must set the runner: the app
cannot read a model's architecture. Only image deployments take `Deployment.image`
(`ImageSettings`); their zero or empty fields take the platform's defaults (`ImageDefaults`, from
the `default_image_*` settings), filled in for the gateways (`RouteDeployment.image`, set for
image deployments only: its presence is how a gateway tells them from chat deployments).

The settings are checked here against the platform's caps (what any diffusion pipeline this
platform serves is asked for); whether the model itself can make a size is the engine's check.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format

from bud.app.v1 import deployment_pb2
from bud.auth.v1 import routing_pb2
from bud.engine.v1 import engine_service_pb2
from budrt.builtin_models import BUILTIN_MODELS
from budrt.errors import ServiceError, echo, invalid_argument

DIFFUSION = engine_service_pb2.RUNNER_DIFFUSION
# Caps of a deployment's settings (and of the platform's defaults).
MAX_IMAGES = 10  # OpenAI's own cap on `n`
MIN_SIDE = 64
MAX_SIDE = 2048
SIDE_MULTIPLE = 8  # latent diffusion works on 8x downsampled latents
MAX_STEPS = 200
MAX_SIZES = 32
SIZE_RE = re.compile(r"^([1-9][0-9]{0,4})x([1-9][0-9]{0,4})$")


def effective_runner(kind: str, value: str, runner: int) -> int:
    """The runner a model runs as: `runner`, or, when unspecified, a builtin model's catalogue
    runner (`kind`/`value`: the ModelSource oneof field and its value)."""
    if runner == engine_service_pb2.RUNNER_UNSPECIFIED and kind == "builtin" and value in BUILTIN_MODELS:
        return BUILTIN_MODELS[value].runner
    return runner


def is_image_deployment(deployment: deployment_pb2.Deployment) -> bool:
    """Whether a deployment message is an image deployment (a model running RUNNER_DIFFUSION)."""
    if not deployment.HasField("model"):
        return False
    kind = deployment.model.WhichOneof("source") or ""
    value = getattr(deployment.model, kind) if kind else ""
    return effective_runner(kind, value, deployment.runner) == DIFFUSION


def is_image_row(kind: str | None, value: str | None, runner: str) -> bool:
    """Whether a stored deployment (its model source kind and value, its runner's name) is one."""
    if kind is None:  # a prompt deployment
        return False
    return effective_runner(kind, value or "", engine_service_pb2.Runner.Value(runner)) == DIFFUSION


def parse_size(value: str) -> tuple[int, int] | None:
    """(width, height) of "WIDTHxHEIGHT", or None when it is not that shape."""
    match = SIZE_RE.match(value)
    return (int(match.group(1)), int(match.group(2))) if match else None


def check_size(value: str, param: str) -> None:
    """A size: "WIDTHxHEIGHT", each side a multiple of 8 from 64 to 2048."""
    size = parse_size(value)
    if size is None:
        raise invalid_argument(
            f"{param} must be a size WIDTHxHEIGHT such as 512x512, got {echo(value)}", param=param
        )
    if not all(MIN_SIDE <= side <= MAX_SIDE and side % SIDE_MULTIPLE == 0 for side in size):
        raise invalid_argument(
            f"{param}: each side of {value} must be a multiple of {SIDE_MULTIPLE} from {MIN_SIDE} to {MAX_SIDE}",
            param=param,
        )


def check_sizes(sizes: Sequence[str], param: str) -> None:
    """A list of sizes: each valid, none twice, at most `MAX_SIZES`."""
    if len(sizes) > MAX_SIZES:
        raise invalid_argument(f"{param} lists more than {MAX_SIZES} sizes", param=param)
    seen: set[str] = set()
    for i, size in enumerate(sizes):
        check_size(size, f"{param}[{i}]")
        if size in seen:
            raise invalid_argument(f"{param}[{i}]: {size} is listed twice", param=f"{param}[{i}]")
        seen.add(size)


def _check_count(value: int, cap: int, param: str, *, zero: bool) -> None:
    low = 0 if zero else 1
    if not low <= value <= cap:
        raise invalid_argument(
            f"{param} must be from 1 to {cap}" + (" (0: the platform's default)" if zero else ""),
            param=param,
        )


@dataclass(frozen=True)
class ImageDefaults:
    """The platform's image settings (AppSettings' `default_image_*`): what a deployment's unset
    fields take."""

    max_images: int = 4
    default_steps: int = 20
    max_steps: int = 50
    # Empty: callers get the model's default size only (the engine's choice).
    sizes: tuple[str, ...] = ()

    @classmethod
    def of(cls, settings: Any) -> ImageDefaults:
        """From AppSettings."""
        return cls(
            max_images=settings.default_image_max_images,
            default_steps=settings.default_image_steps,
            max_steps=settings.default_image_max_steps,
            sizes=tuple(settings.default_image_sizes),
        )

    def check(self, param: str = "default_image") -> None:
        """The defaults themselves (ValueError naming the setting: they are checked at start)."""
        for name, value, cap in (
            ("max_images", self.max_images, MAX_IMAGES),
            ("steps", self.default_steps, MAX_STEPS),
            ("max_steps", self.max_steps, MAX_STEPS),
        ):
            if not 1 <= value <= cap:
                raise ValueError(f"{param}_{name} must be from 1 to {cap}")
        if self.default_steps > self.max_steps:
            raise ValueError(f"{param}_steps is above {param}_max_steps")
        try:
            check_sizes(self.sizes, f"{param}_sizes")
        except ServiceError as err:  # a setting is refused with the check's message
            raise ValueError(err.message) from None

    def effective(self, image: deployment_pb2.ImageSettings) -> routing_pb2.RouteImageSettings:
        """A deployment's settings with the defaults filled in (images_per_minute aside)."""
        sizes = list(image.sizes) or list(self.sizes)
        default_size = image.default_size or (sizes[0] if sizes else "")
        return routing_pb2.RouteImageSettings(
            max_images=image.max_images or self.max_images,
            sizes=sizes,
            default_size=default_size,
            default_steps=image.default_steps or self.default_steps,
            max_steps=image.max_steps or self.max_steps,
        )


def check_image_settings(
    image: deployment_pb2.ImageSettings, defaults: ImageDefaults, param: str = "deployment.image"
) -> None:
    """A deployment's image settings: counts within the caps (0: the default), sizes valid and
    distinct, the default size one of the sizes (the deployment's, else the platform's, when
    either lists some), the default steps not above the most steps (each the deployment's or the
    platform's). INVALID_ARGUMENT naming the field."""
    _check_count(image.max_images, MAX_IMAGES, f"{param}.max_images", zero=True)
    _check_count(image.default_steps, MAX_STEPS, f"{param}.default_steps", zero=True)
    _check_count(image.max_steps, MAX_STEPS, f"{param}.max_steps", zero=True)
    check_sizes(image.sizes, f"{param}.sizes")
    if image.default_size:
        check_size(image.default_size, f"{param}.default_size")
        sizes = list(image.sizes) or list(defaults.sizes)
        if sizes and image.default_size not in sizes:
            whose = "sizes" if image.sizes else "the platform's default sizes"
            raise invalid_argument(
                f"{param}.default_size {image.default_size} is not one of {whose} ({', '.join(sizes)})",
                param=f"{param}.default_size",
            )
    effective = defaults.effective(image)
    if effective.default_steps > effective.max_steps:
        field = "default_steps" if image.default_steps else "max_steps"
        raise invalid_argument(
            f"{param}: default_steps {effective.default_steps} is above max_steps {effective.max_steps}"
            + ("" if image.default_steps and image.max_steps else " (unset fields: the platform's defaults)"),
            param=f"{param}.{field}",
        )


def check_image(
    deployment: deployment_pb2.Deployment, defaults: ImageDefaults, param: str = "deployment"
) -> None:
    """`image` only on an image deployment, and valid there."""
    if not deployment.HasField("image"):
        return
    if not is_image_deployment(deployment):
        raise invalid_argument(
            f"{param}.image is for image deployments only (a model with runner RUNNER_DIFFUSION)",
            param=f"{param}.image",
        )
    check_image_settings(deployment.image, defaults, f"{param}.image")


def check_runner_matches(deployment: deployment_pb2.Deployment, param: str = "deployment") -> None:
    """A builtin model runs as what it is: a diffusion pipeline only with the diffusion runner, a
    language model never with it (the engine could not load either)."""
    if not deployment.HasField("model") or deployment.model.WhichOneof("source") != "builtin":
        return
    builtin = BUILTIN_MODELS.get(deployment.model.builtin)
    runner = deployment.runner
    if builtin is None or runner == engine_service_pb2.RUNNER_UNSPECIFIED:
        return
    if (builtin.runner == DIFFUSION) != (runner == DIFFUSION):
        raise invalid_argument(
            f"{param}.runner: the builtin model {builtin.name} runs as "
            f"{engine_service_pb2.Runner.Name(builtin.runner)}, not {engine_service_pb2.Runner.Name(runner)}",
            param=f"{param}.runner",
        )


def image_settings_to_json(deployment: deployment_pb2.Deployment) -> dict[str, Any] | None:
    """The stored form of `image` (protobuf JSON, set fields only); None when unset."""
    if not deployment.HasField("image"):
        return None
    return json_format.MessageToDict(deployment.image, preserving_proto_field_name=True)


def image_settings_from_json(value: dict[str, Any] | None) -> deployment_pb2.ImageSettings | None:
    """The ImageSettings stored by :func:`image_settings_to_json` (None: unset)."""
    if value is None:
        return None
    return json_format.ParseDict(value, deployment_pb2.ImageSettings())


def route_image(
    kind: str | None,
    value: str | None,
    runner: str,
    stored: dict[str, Any] | None,
    images_per_minute: int,
    defaults: ImageDefaults,
) -> routing_pb2.RouteImageSettings | None:
    """What the gateways get of an image deployment (None for any other)."""
    if not is_image_row(kind, value, runner):
        return None
    route = defaults.effective(image_settings_from_json(stored) or deployment_pb2.ImageSettings())
    route.images_per_minute = images_per_minute
    return route
