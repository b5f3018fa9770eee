"""GenerateImages and StreamImages: the request checked against the model, handed to its
runner, and answered (the usage: text-encoder tokens of the prompt and negative prompt, images,
steps)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from bud.engine.v1 import engine_service_pb2 as pb
from bud.openai.v1 import image_pb2
from budrt.errors import Reason, ServiceError, internal, invalid_argument
from engine.images import options
from engine.images.runner import DiffusionModel


def diffusion_model(model: Any, name: str) -> DiffusionModel:
    """`model` when it draws images; INVALID_ARGUMENT (param model) when it is a vLLM model."""
    if not isinstance(model, DiffusionModel):
        raise invalid_argument(
            f"The model `{name}` does not generate images.",
            reason=Reason.UNSUPPORTED_OPERATION,
            param="model",
        )
    return model


def result(work: options.ImageWork, images: list[pb.GeneratedImage]) -> pb.GeneratedImages:
    """The call's answer: its images, usage and revised prompt."""
    usage = image_pb2.ImageUsage(
        input_tokens=work.input_tokens,
        total_tokens=work.input_tokens,
        images=len(images),
        steps=work.steps,
    )
    usage.input_tokens_details.text_tokens = work.input_tokens
    return pb.GeneratedImages(
        images=images, usage=usage, revised_prompt=work.revised_prompt, steps=work.steps
    )


async def generate(model: DiffusionModel, request: image_pb2.ImageGenerationRequest) -> pb.GeneratedImages:
    """GenerateImages on a loaded diffusion model."""
    work = options.check(request, model.limits, model.tokenizer)
    try:
        images = await model.generate(work)
    except (ServiceError, asyncio.CancelledError):
        raise
    except Exception as err:
        raise internal(str(err), reason=None) from None
    return result(work, images)


async def stream(
    model: DiffusionModel, request: image_pb2.ImageGenerationRequest
) -> AsyncIterator[pb.ImageProgress]:
    """StreamImages: progress per step (with partial images when due), then the result. Leaving
    the stream early cancels the job like a cancelled unary call."""
    work = options.check(request, model.limits, model.tokenizer)
    events: asyncio.Queue[pb.ImageProgress] = asyncio.Queue()
    task = asyncio.ensure_future(model.generate(work, events.put_nowait))
    try:
        while True:
            getter = asyncio.ensure_future(events.get())
            done, _ = await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                yield getter.result()
                continue
            getter.cancel()
            while not events.empty():  # steps reported before the result arrived
                yield events.get_nowait()
            break
        try:
            images = task.result()
        except ServiceError:
            raise
        except Exception as err:
            raise internal(str(err), reason=None) from None
        yield pb.ImageProgress(total_steps=work.steps, step=work.steps, result=result(work, images))
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
