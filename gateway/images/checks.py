"""What the gateway checks of an image request against its deployment's image settings
(`RouteDeployment.image`; the engine checks the rest against the model itself): the route and
the deployment are of one kind, `n`, `size`, steps and the formats are allowed, the prompt is not
empty. The request is completed with the deployment's defaults (size, steps) on the way."""

from __future__ import annotations

from typing import Any

from bud.openai.v1 import image_pb2
from budrt.errors import echo, invalid_argument

IMAGE_OPERATIONS = frozenset({"CreateImage", "StreamImage"})
RESPONSE_FORMATS = ("url", "b64_json")
OUTPUT_FORMATS = ("png", "jpeg", "webp")
MAX_PARTIAL_IMAGES = 3
# Steps of a deployment whose settings give no maximum: a bound all the same (a request for two
# billion steps would hold a runner for ever).
DEFAULT_MAX_STEPS = 500


def check_kind(operation: str, deployment: Any, model: str) -> None:
    """An image operation needs an image deployment, any other operation a text one."""
    image = deployment.image is not None
    if operation in IMAGE_OPERATIONS and not image:
        raise invalid_argument(f"`{model}` is not an image model.", param="model")
    if operation not in IMAGE_OPERATIONS and image:
        raise invalid_argument(
            f"`{model}` is an image model: call it at /v1/images/generations.", param="model"
        )


def _parse_size(size: str) -> tuple[int, int] | None:
    width, sep, height = size.partition("x")
    if sep and width.isdigit() and height.isdigit() and int(width) > 0 and int(height) > 0:
        return int(width), int(height)
    return None


def check_image_request(request: image_pb2.ImageGenerationRequest, settings: Any) -> None:
    """INVALID_ARGUMENT (with `param`) for what `settings` (RouteImageSettings) or OpenAI's API
    refuses; fills the deployment's default size and steps in."""
    if not request.prompt.strip():
        raise invalid_argument("Invalid 'prompt': empty string.", param="prompt")
    n = request.n if request.HasField("n") else 1
    most = settings.max_images or 1
    if not 1 <= n <= most:
        raise invalid_argument(
            f"Invalid 'n': expected a value between 1 and {most}, but got {n} instead.", param="n"
        )
    size = request.size if request.HasField("size") else "auto"
    if size == "auto":
        if settings.default_size:
            request.size = settings.default_size
        else:
            request.ClearField("size")  # the engine's default
    elif settings.sizes and size not in settings.sizes:
        raise invalid_argument(
            f"Invalid 'size': {echo(size)} is not supported; supported values are "
            f"{', '.join(['auto', *settings.sizes])}.",
            param="size",
        )
    elif _parse_size(size) is None:
        raise invalid_argument(
            f"Invalid 'size': {echo(size)}; expected 'WIDTHxHEIGHT' or 'auto'.", param="size"
        )
    if request.HasField("num_inference_steps"):
        steps = request.num_inference_steps
        top = settings.max_steps or DEFAULT_MAX_STEPS
        if not 1 <= steps <= top:
            raise invalid_argument(
                f"Invalid 'num_inference_steps': expected a value between 1 and {top}, but got {steps} instead.",
                param="num_inference_steps",
            )
    elif settings.default_steps and not request.HasField("quality"):
        request.num_inference_steps = settings.default_steps
    if request.HasField("response_format") and request.response_format not in RESPONSE_FORMATS:
        raise invalid_argument(
            f"Invalid 'response_format': {echo(request.response_format)}; expected 'url' or 'b64_json'.",
            param="response_format",
        )
    if request.HasField("output_format") and request.output_format not in OUTPUT_FORMATS:
        raise invalid_argument(
            f"Invalid 'output_format': {echo(request.output_format)}; expected 'png', 'jpeg' or 'webp'.",
            param="output_format",
        )
    if request.HasField("output_compression") and not 0 <= request.output_compression <= 100:
        raise invalid_argument(
            "Invalid 'output_compression': expected a value between 0 and 100.", param="output_compression"
        )
    if request.HasField("partial_images") and not 0 <= request.partial_images <= MAX_PARTIAL_IMAGES:
        raise invalid_argument(
            f"Invalid 'partial_images': expected a value between 0 and {MAX_PARTIAL_IMAGES}.",
            param="partial_images",
        )


def image_count(request: Any) -> int:
    """The images a request asks for."""
    return (request.n or 1) if request.HasField("n") else 1
