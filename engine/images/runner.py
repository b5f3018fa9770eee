"""One loaded diffusion model: a `diffusers` text-to-image pipeline, its worker thread, and the
queue that batches requests into pipeline calls.

- **Off the event loop.** Loading, denoising, decoding and encoding run in the model's one
  worker thread (`ThreadPoolExecutor(1)`; torch's intra-op threads per the `diffusion_threads`
  setting), so the engine's other models, and a co-hosted gateway, keep answering.
- **Batching.** Requests with the same size, steps, guidance (and negative prompt or none) that
  wait together run as one pipeline call (prompt lists, one `torch.Generator` per image seeded
  `seed + index`), up to `image_max_batch` images; an idle worker waits at most
  `image_batch_window_ms` for as many images as its last batch made (no wait while requests come
  one at a time).
- **Cancellation.** A caller that goes away marks its job cancelled: its images are dropped,
  and when no job of the running batch is live the pipeline's step callback raises, so
  denoising stops at the end of the current step and the worker takes the next batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bud.engine.v1 import engine_service_pb2 as pb
from budrt.errors import unavailable
from engine.images.encode import encode
from engine.images.options import ImageWork, ModelLimits

log = logging.getLogger(__name__)

# Written by the builtin builders: the step count a request without steps or quality gets.
DEFAULTS_FILE = "bud_defaults.json"
# Steps of a model that says nothing (what most Stable Diffusion checkpoints are tuned for).
FALLBACK_STEPS = 30
FALLBACK_GUIDANCE = 7.5
SEED_MASK = 2**64 - 1


def is_pipeline_dir(path: Path) -> bool:
    """Whether `path` holds a diffusers pipeline (a `model_index.json` naming a pipeline class)."""
    try:
        index = json.loads((path / "model_index.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(index, dict) and str(index.get("_class_name", "")).endswith("Pipeline")


def is_diffusers_model(model: str, revision: str = "") -> bool:
    """Whether a resolved source (a directory, or a Hugging Face id in the local cache) is a
    diffusers pipeline: what RUNNER_UNSPECIFIED loads as a diffusion model."""
    path = Path(model)
    if path.is_absolute():
        return is_pipeline_dir(path)
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(model, "model_index.json", revision=revision or None)
    except Exception:  # not cached, or not an id the hub's helpers accept
        return False
    return isinstance(found, str) and is_pipeline_dir(Path(found).parent)


class _Interrupted(Exception):
    """Raised from the step callback: every job of the running batch is gone."""


@dataclass
class ImageJob:
    """One request waiting for, or in, a pipeline call."""

    work: ImageWork
    future: asyncio.Future[list[pb.GeneratedImage]]
    # Called on the event loop with each progress event (StreamImages); None for unary calls.
    events: Callable[[pb.ImageProgress], None] | None = None
    cancelled: bool = False
    partial_steps: frozenset[int] = field(default_factory=frozenset)


def partial_steps(partials: int, total: int) -> frozenset[int]:
    """The steps (from 1) after which the partial images are decoded: evenly spaced, never the
    last step (the final image is that)."""
    due = {round(total * (k + 1) / (partials + 1)) for k in range(partials)}
    return frozenset(s for s in due if 1 <= s < total)


class DiffusionModel:
    """A diffusers pipeline served under a name (what `ModelManager` holds for RUNNER_DIFFUSION)."""

    runner = pb.RUNNER_DIFFUSION
    dead = False  # no engine core to die: the worker is a thread of this process
    kv_cache_usage = 0.0
    generation_tokens_total = 0

    def __init__(
        self,
        name: str,
        source: pb.ModelSource,
        args: pb.EngineArgs,
        *,
        batch_window_s: float = 0.005,
        max_batch: int = 8,
        threads: int = 0,
    ) -> None:
        self.name = name
        self.source = source
        self.args = args
        self.batch_window_s = batch_window_s
        self.max_batch = max(1, max_batch)
        self.threads = threads
        self.pipe: Any = None
        self.tokenizer: Any = None
        self.limits = ModelLimits(64, 64, FALLBACK_STEPS, FALLBACK_GUIDANCE, 0)
        self.max_model_len = 0
        self.loaded_at = 0.0
        self.inflight = 0
        self.running = 0
        self.prompt_tokens_total = 0
        self.images_total = 0
        self.pipeline_calls = 0
        self._steps_callback = False
        self._queue: list[ImageJob] = []
        self._wakeup = asyncio.Event()
        self._executor: ThreadPoolExecutor | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._batch: list[ImageJob] = []
        self._last_batch_images = 0

    @property
    def waiting(self) -> int:
        return sum(1 for job in self._queue if not job.cancelled)

    def handler(self, attribute: str) -> Any:
        """vLLM's serving objects: none (chat, completions and embeddings are refused)."""
        return None

    # ---- lifecycle ------------------------------------------------------------------------
    async def start(self, model_path: str, revision: str = "") -> None:
        """Loads the pipeline in the worker thread and starts taking requests."""
        self._executor = ThreadPoolExecutor(
            1, thread_name_prefix=f"diffusion-{self.name}", initializer=self._init_worker
        )
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._load, model_path, revision)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise
        self.loaded_at = time.time()
        self._dispatcher = asyncio.create_task(self._dispatch(), name=f"diffusion-{self.name}")

    def _init_worker(self) -> None:
        if self.threads > 0:
            import torch

            # OpenMP's thread count is per calling thread: this sets the worker's own.
            torch.set_num_threads(self.threads)

    def _load(self, model_path: str, revision: str) -> None:
        import torch
        from diffusers import AutoPipelineForText2Image

        device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype_name = self.args.dtype if self.args.HasField("dtype") else "auto"
        if dtype_name in ("", "auto"):
            dtype = torch.float16 if device == "cuda" else torch.float32
        else:
            dtype = getattr(torch, dtype_name.replace("half", "float16"), None)
            if not isinstance(dtype, torch.dtype):
                raise ValueError(f"unknown dtype {dtype_name!r}")
        pipe = AutoPipelineForText2Image.from_pretrained(
            model_path, revision=revision or None, local_files_only=True, dtype=dtype
        )
        pipe = pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe
        self.device = device
        self.tokenizer = getattr(pipe, "tokenizer", None)
        self._steps_callback = "callback_on_step_end" in inspect.signature(pipe.__call__).parameters
        self.limits = _limits(pipe, Path(model_path))
        self.max_model_len = self.limits.max_tokens

    async def stop(self) -> None:
        """Stops taking requests, fails the queued ones, interrupts the running batch and frees
        the pipeline (GC and the accelerator's cache: the memory goes back)."""
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._dispatcher
            self._dispatcher = None
        for job in self._queue + self._batch:
            job.cancelled = True
            if not job.future.done():
                job.future.set_exception(
                    unavailable(f"The model `{self.name}` was unloaded.", reason=None, param="model")
                )
        self._queue.clear()
        if self._executor is not None:
            executor, self._executor = self._executor, None
            await asyncio.to_thread(executor.shutdown, wait=True)
        self.pipe = self.tokenizer = None
        gc.collect()
        with contextlib.suppress(Exception):
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    # ---- requests -------------------------------------------------------------------------
    async def generate(
        self, work: ImageWork, events: Callable[[pb.ImageProgress], None] | None = None
    ) -> list[pb.GeneratedImage]:
        """The images of `work`, once a pipeline call made them; cancelling the awaiting task
        cancels the job (see the module's docstring)."""
        if self._dispatcher is None:
            raise unavailable(f"The model `{self.name}` is not ready.", reason=None, param="model")
        loop = asyncio.get_running_loop()
        job = ImageJob(work, loop.create_future(), events)
        if events is not None:
            job.partial_steps = partial_steps(work.partial_images, work.steps)
        self._queue.append(job)
        self._wakeup.set()
        self.inflight += 1
        try:
            return await asyncio.shield(job.future)
        finally:
            self.inflight -= 1
            if not job.future.done():
                job.cancelled = True  # dropped from the queue, or interrupts its batch
                job.future.cancel()

    async def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                await self._gather_companions()
            batch = self._take_batch()
            if not batch:
                continue
            self._batch = batch
            self.running = len(batch)
            try:
                await loop.run_in_executor(self._executor, self._run_batch, batch, loop)
            except _Interrupted:
                log.info("image batch interrupted: every caller left", extra={"model": self.name})
            except Exception as err:
                log.exception("image generation failed", extra={"model": self.name})
                failure = RuntimeError(f"{type(err).__name__}: {err}")
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(failure)
            finally:
                self._last_batch_images = sum(job.work.n for job in batch)
                self._batch = []
                self.running = 0
            for job in batch:  # interrupted or cancelled: nobody waits for them
                if not job.future.done():
                    job.future.cancel()

    async def _gather_companions(self) -> None:
        """Waits, at most `batch_window_s`, until as many images wait as the last batch made
        (callers that came together tend to come back together): no wait while requests come
        one at a time, and a batch as large as the last one when they come in a crowd."""
        deadline = time.monotonic() + self.batch_window_s
        target = min(self._last_batch_images, self.max_batch)
        while sum(job.work.n for job in self._queue if not job.cancelled) < target:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), left)

    def _take_batch(self) -> list[ImageJob]:
        """The first live job and every later one with its batch key, up to `max_batch` images."""
        self._queue = [job for job in self._queue if not job.cancelled]
        if not self._queue:
            return []
        first = self._queue[0]
        key, images, batch, rest = first.work.batch_key(), 0, [], []
        for job in self._queue:
            if job.work.batch_key() == key and (not batch or images + job.work.n <= self.max_batch):
                batch.append(job)
                images += job.work.n
            else:
                rest.append(job)
        self._queue = rest
        return batch

    def _run_batch(self, batch: list[ImageJob], loop: asyncio.AbstractEventLoop) -> None:
        """In the worker thread: one pipeline call for `batch`, then each job's images encoded
        and handed back on the event loop."""
        import torch

        live = [job for job in batch if not job.cancelled]
        if not live:
            return
        work = live[0].work
        prompts: list[str] = []
        negatives: list[str] = []
        generators = []
        for job in live:
            for seed in job.work.seeds:
                prompts.append(job.work.prompt)
                negatives.append(job.work.negative_prompt or "")
                # CPU generators on every device: the same seed gives the same noise anywhere.
                generators.append(torch.Generator("cpu").manual_seed(seed & SEED_MASK))
        kwargs: dict[str, Any] = {
            "prompt": prompts,
            "num_inference_steps": work.steps,
            "guidance_scale": work.guidance,
            "width": work.width,
            "height": work.height,
            "generator": generators,
            "output_type": "pil",
        }
        if work.negative_prompt is not None:
            kwargs["negative_prompt"] = negatives
        if self._steps_callback:
            kwargs["callback_on_step_end"] = self._step_callback(live, work.steps, loop)
            kwargs["callback_on_step_end_tensor_inputs"] = ["latents"]
        self.pipeline_calls += 1
        images = self.pipe(**kwargs).images
        offset = 0
        for job in live:
            mine = images[offset : offset + job.work.n]
            offset += job.work.n
            if job.cancelled:
                continue
            encoded = [
                _generated(image, job.work, index, job.work.seeds[index]) for index, image in enumerate(mine)
            ]
            self.images_total += len(encoded)
            self.prompt_tokens_total += job.work.input_tokens
            loop.call_soon_threadsafe(_resolve, job.future, encoded)

    def _step_callback(
        self, live: list[ImageJob], total: int, loop: asyncio.AbstractEventLoop
    ) -> Callable[..., dict[str, Any]]:
        offsets, offset = [], 0
        for job in live:
            offsets.append(offset)
            offset += job.work.n

        def on_step_end(pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            if all(job.cancelled for job in live):
                raise _Interrupted
            done = step + 1
            for job, start in zip(live, offsets, strict=True):
                if job.events is None or job.cancelled:
                    continue
                partial: list[pb.GeneratedImage] = []
                if done in job.partial_steps and "latents" in kwargs:
                    partial = self._previews(kwargs["latents"][start : start + job.work.n], job.work)
                rank = sorted(job.partial_steps).index(done) if partial else 0
                for index in range(job.work.n):
                    event = pb.ImageProgress(image_index=index, step=done, total_steps=total)
                    if partial:
                        event.partial_image.CopyFrom(partial[index])
                        event.partial_image_index = rank
                    loop.call_soon_threadsafe(job.events, event)
            return {}

        return on_step_end

    def _previews(self, latents: Any, work: ImageWork) -> list[pb.GeneratedImage]:
        """Partial images: the current latents decoded by the VAE (Stable-Diffusion-shaped
        pipelines; others give none)."""
        import torch

        try:
            vae = self.pipe.vae
            with torch.no_grad():
                pixels = vae.decode(latents / vae.config.scaling_factor, return_dict=False)[0]
            pictures = self.pipe.image_processor.postprocess(pixels, output_type="pil")
        except Exception:
            log.debug("no partial image from this pipeline", exc_info=True)
            return []
        return [_generated(p, work, i, work.seeds[i]) for i, p in enumerate(pictures)]


def _generated(image: Any, work: ImageWork, index: int, seed: int) -> pb.GeneratedImage:
    return pb.GeneratedImage(
        data=encode(image, work.output_format, work.compression),
        output_format=work.output_format,
        width=image.width,
        height=image.height,
        seed=seed,
        index=index,
    )


def _resolve(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _limits(pipe: Any, path: Path) -> ModelLimits:
    """What the pipeline can do: native size (the denoiser's sample size × the VAE's scale),
    default steps and guidance (the builder's `bud_defaults.json`, else common values), the
    text encoder's token limit."""
    scale = int(getattr(pipe, "vae_scale_factor", 8) or 8)
    denoiser = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
    sample = getattr(getattr(denoiser, "config", None), "sample_size", None) or 64
    if isinstance(sample, (list, tuple)):
        height, width = int(sample[0]) * scale, int(sample[1]) * scale
    else:
        height = width = int(sample) * scale
    defaults: dict[str, Any] = {}
    if path.is_dir():
        with contextlib.suppress(OSError, ValueError):
            defaults = json.loads((path / DEFAULTS_FILE).read_text())
    tokenizer = getattr(pipe, "tokenizer", None)
    max_tokens = int(getattr(tokenizer, "model_max_length", 0) or 0)
    if max_tokens > 100_000:  # transformers' "no limit" sentinel
        max_tokens = 0
    return ModelLimits(
        native_width=width,
        native_height=height,
        default_steps=int(defaults.get("num_inference_steps", FALLBACK_STEPS)),
        default_guidance=float(defaults.get("guidance_scale", FALLBACK_GUIDANCE)),
        max_tokens=max_tokens,
    )
