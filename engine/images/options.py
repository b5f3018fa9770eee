"""An image request checked against the model that will draw it, as the work to do.

The gateway checks what the deployment allows (n, sizes, max steps); the engine checks what the
model can do: sizes a multiple of 8 within `MIN_SIDE`..`MAX_SIDE` ("auto" or none: the model's
native size), at least one step, a prompt that is not empty and fits the text encoder's token
limit (truncated instead only with `allow_prompt_truncation`, and `revised_prompt` says so).
Every refusal is INVALID_ARGUMENT naming the parameter, so REST callers get OpenAI's 400.

Steps: `num_inference_steps` when given, else the model's default scaled by `quality`
(`QUALITY_STEPS`), else the default.
"""

from __future__ import annotations

import math
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from bud.openai.v1 import image_pb2
from budrt.errors import echo, invalid_argument
from engine.images.encode import FORMATS

MIN_SIDE = 64
MAX_SIDE = 2048
SIDE_MULTIPLE = 8
# Images one call may ask for (the deployment's limit, checked by the gateway, is usually lower).
MAX_IMAGES = 16
MAX_STEPS = 500
MAX_GUIDANCE = 100.0
# `quality` as a factor of the model's default step count (OpenAI's values; "auto" = default).
QUALITY_STEPS = {"low": 0.5, "standard": 1.0, "auto": 1.0, "medium": 1.0, "high": 1.5, "hd": 2.0}
# Seeds the engine draws when the request names none (small enough for every JSON reader).
DRAWN_SEED_LIMIT = 2**32
SIZE_RE = re.compile(r"^(\d{1,5})x(\d{1,5})$")


@dataclass(frozen=True)
class ModelLimits:
    """What a loaded pipeline can do, read from it once at load."""

    native_width: int
    native_height: int
    default_steps: int
    default_guidance: float
    # The text encoder's token limit (CLIP: 77, start and end tokens included); 0 = unknown.
    max_tokens: int


@dataclass
class ImageWork:
    """A checked request: everything the runner needs to draw its images."""

    prompt: str
    negative_prompt: str | None
    n: int
    width: int
    height: int
    steps: int
    guidance: float
    seed: int
    output_format: str
    compression: int | None
    partial_images: int
    revised_prompt: str
    input_tokens: int
    seeds: list[int] = field(default_factory=list)

    def batch_key(self) -> tuple[int, int, int, float, bool]:
        """Requests with the same key run in one pipeline call."""
        return (self.width, self.height, self.steps, self.guidance, self.negative_prompt is None)


def parse_size(value: str, limits: ModelLimits) -> tuple[int, int]:
    """(width, height) of `size`: "WxH", or "auto"/"" for the model's native size."""
    if value in ("", "auto"):
        return limits.native_width, limits.native_height
    match = SIZE_RE.match(value)
    if match is None:
        raise invalid_argument(
            f"Invalid size {echo(value)}: expected WIDTHxHEIGHT (e.g. "
            f"{limits.native_width}x{limits.native_height}) or auto.",
            param="size",
        )
    width, height = int(match[1]), int(match[2])
    for side in (width, height):
        if not MIN_SIDE <= side <= MAX_SIDE or side % SIDE_MULTIPLE:
            raise invalid_argument(
                f"Invalid size {echo(value)}: each side must be a multiple of {SIDE_MULTIPLE} "
                f"from {MIN_SIDE} to {MAX_SIDE}.",
                param="size",
            )
    return width, height


def steps_of(request: image_pb2.ImageGenerationRequest, limits: ModelLimits) -> int:
    """The denoising steps: `num_inference_steps`, else the default scaled by `quality`."""
    if request.HasField("num_inference_steps"):
        steps = request.num_inference_steps
        if not 1 <= steps <= MAX_STEPS:
            raise invalid_argument(
                f"num_inference_steps must be from 1 to {MAX_STEPS}, not {steps}.",
                param="num_inference_steps",
            )
        return steps
    quality = request.quality if request.HasField("quality") else "auto"
    factor = QUALITY_STEPS.get(quality)
    if factor is None:
        raise invalid_argument(
            f"Invalid quality {echo(quality)}: one of {', '.join(QUALITY_STEPS)}.", param="quality"
        )
    return max(1, round(limits.default_steps * factor))


def count_tokens(tokenizer: Any, text: str) -> list[int]:
    """The text encoder's token ids of `text`, start and end tokens included, untruncated."""
    return list(tokenizer(text, truncation=False, add_special_tokens=True)["input_ids"])


def fit_prompt(
    text: str, tokenizer: Any, limits: ModelLimits, allow_truncation: bool, param: str
) -> tuple[int, str]:
    """(tokens, revised prompt) of a prompt: refused (INVALID_ARGUMENT `param`) when over the
    text encoder's limit unless truncation is allowed; then the revised prompt is the text the
    encoder keeps (as its tokenizer decodes it) and says it was truncated. The pipeline is
    still given the whole prompt: it truncates at the same token."""
    if tokenizer is None or not limits.max_tokens:
        return 0, text
    ids = count_tokens(tokenizer, text)
    if len(ids) <= limits.max_tokens:
        return len(ids), text
    if not allow_truncation:
        raise invalid_argument(
            f"The {param.replace('_', ' ')} is {len(ids)} tokens long; this model's text encoder "
            f"takes at most {limits.max_tokens} (set allow_prompt_truncation to truncate it).",
            param=param,
        )
    kept = tokenizer.decode(ids[: limits.max_tokens - 1], skip_special_tokens=True).strip()
    return limits.max_tokens, f"{kept} (truncated to {limits.max_tokens} tokens)"


def check(request: image_pb2.ImageGenerationRequest, limits: ModelLimits, tokenizer: Any) -> ImageWork:
    """The request as work for the model, or INVALID_ARGUMENT naming the first bad parameter."""
    if not request.prompt.strip():
        raise invalid_argument("The prompt must not be empty.", param="prompt")
    n = request.n if request.HasField("n") else 1
    if not 1 <= n <= MAX_IMAGES:
        raise invalid_argument(f"n must be from 1 to {MAX_IMAGES}, not {n}.", param="n")
    width, height = parse_size(request.size if request.HasField("size") else "", limits)
    steps = steps_of(request, limits)
    guidance = request.guidance_scale if request.HasField("guidance_scale") else limits.default_guidance
    if not (math.isfinite(guidance) and 0.0 <= guidance <= MAX_GUIDANCE):
        raise invalid_argument(f"guidance_scale must be from 0 to {MAX_GUIDANCE:g}.", param="guidance_scale")
    output_format = request.output_format if request.HasField("output_format") else "png"
    if output_format == "jpg":
        output_format = "jpeg"
    if output_format not in FORMATS:
        raise invalid_argument(
            f"Invalid output_format {echo(output_format)}: one of {', '.join(FORMATS)}.",
            param="output_format",
        )
    compression = request.output_compression if request.HasField("output_compression") else None
    if compression is not None and not 0 <= compression <= 100:
        raise invalid_argument("output_compression must be from 0 to 100.", param="output_compression")
    partial = request.partial_images if request.HasField("partial_images") else 0
    if not 0 <= partial <= 3:
        raise invalid_argument("partial_images must be from 0 to 3.", param="partial_images")
    truncate = request.allow_prompt_truncation
    tokens, revised = fit_prompt(request.prompt, tokenizer, limits, truncate, "prompt")
    negative = request.negative_prompt if request.HasField("negative_prompt") else None
    if negative is not None:
        negative_tokens, _ = fit_prompt(negative, tokenizer, limits, truncate, "negative_prompt")
        tokens += negative_tokens
    seed = request.seed if request.HasField("seed") else secrets.randbelow(DRAWN_SEED_LIMIT)
    return ImageWork(
        prompt=request.prompt,
        negative_prompt=negative,
        n=n,
        width=width,
        height=height,
        steps=min(steps, MAX_STEPS),
        guidance=guidance,
        seed=seed,
        output_format=output_format,
        compression=compression,
        partial_images=partial,
        revised_prompt=revised,
        input_tokens=tokens,
        seeds=[seed + i for i in range(n)],
    )
