"""Image benchmark: images per second of the tiny diffusion pipeline called directly in one
process, next to the same pipeline behind the engine's gRPC GenerateImages (and, with --mesh,
behind a gateway's POST /v1/images/generations).

    python -m tests.performance.bench_images [--quick] [--concurrency 1 4] [--steps 4]
    python -m tests.performance.bench_images --mesh http://127.0.0.1:8000 --key sk-... [--model tiny-diffusion]
    python -m tests.performance.bench_images --start-mesh [--quick]   # starts `budrt up` itself

(a) direct: `AutoPipelineForText2Image.from_pretrained` on the builtin tiny-diffusion directory;
    at concurrency c, one pipeline call of c prompts (one generator per image), each image then
    PNG-encoded: what one process calling diffusers itself does at best;
(b) engine: a real engine gRPC server in this process (plaintext loopback) with the pipeline
    loaded as builtin tiny-diffusion, c clients each sending GenerateImages (n=1, PNG) one after
    another (the engine batches what waits together);
(c) --mesh (or --start-mesh): c clients posting to the gateway (response_format b64_json, each
    image decoded), alternated with (a) as (b) is.

Both (a) and (b) use one torch thread (`diffusion_threads=1`: on a shared 2-core machine more
threads oversubscribe the cores) and the same steps and size. Prints images/s per target and
level, and the ratio engine/direct or mesh/direct (target: at least 0.9). It measures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

MODEL = "tiny-diffusion"
PROMPT = "a photo of a red boat on the sea"


def build(data_dir: Path) -> Path:
    from engine.builtin_models.tiny_diffusion import build_tiny_diffusion

    return build_tiny_diffusion(data_dir / "models" / MODEL)


def direct(model_dir: Path, concurrency: int, rounds: int, steps: int) -> float:
    """Images per second of the pipeline called in this thread, c images per call."""
    import torch
    from diffusers import AutoPipelineForText2Image

    from engine.images.encode import encode

    torch.set_num_threads(1)
    pipe = AutoPipelineForText2Image.from_pretrained(
        str(model_dir), local_files_only=True, dtype=torch.float32
    )
    pipe.set_progress_bar_config(disable=True)

    def once(seed: int) -> None:
        generators = [torch.Generator("cpu").manual_seed(seed + i) for i in range(concurrency)]
        images = pipe(
            prompt=[PROMPT] * concurrency, num_inference_steps=steps, generator=generators, output_type="pil"
        ).images
        for image in images:
            encode(image, "png", None)

    once(0)  # warm-up
    started = time.perf_counter()
    for r in range(rounds):
        once(r * concurrency)
    return rounds * concurrency / (time.perf_counter() - started)


async def engine(data_dir: Path, concurrency: int, rounds: int, steps: int) -> float:
    """Images per second through a real engine gRPC server, c clients, n=1 each."""
    from bud.engine.v1 import engine_service_pb2 as pb
    from bud.engine.v1 import engine_service_pb2_grpc
    from bud.openai.v1 import image_pb2
    from budrt.grpc_server import GrpcServer, ServiceBinding, service_channel
    from engine import manager as manager_module
    from engine.manager import ModelManager
    from engine.server import ENGINE_SERVICE
    from engine.service import EngineServicer
    from engine.settings import EngineSettings

    manager_module._freeze_heap = lambda: None  # this process is the client too: no frozen heap
    settings = EngineSettings(data_dir=data_dir, diffusion_threads=1)
    servicer = EngineServicer(ModelManager(settings))
    await servicer.LoadModel(pb.LoadModelRequest(name=MODEL, source=pb.ModelSource(builtin=MODEL)), None)
    binding = ServiceBinding(
        servicer, engine_service_pb2_grpc.add_EngineServiceServicer_to_server, ENGINE_SERVICE
    )
    server = GrpcServer("127.0.0.1:0", [binding], tls=None)
    await server.start()
    channel = service_channel(f"127.0.0.1:{server.port}", tls=None)
    stub = engine_service_pb2_grpc.EngineServiceStub(channel)

    async def client(worker: int, count: int) -> None:
        for i in range(count):
            request = image_pb2.ImageGenerationRequest(
                model=MODEL, prompt=PROMPT, seed=worker * 1000 + i, num_inference_steps=steps
            )
            await stub.GenerateImages(request)

    try:
        await asyncio.gather(*(client(w, 1) for w in range(concurrency)))  # warm-up
        started = time.perf_counter()
        await asyncio.gather(*(client(w, rounds) for w in range(concurrency)))
        return rounds * concurrency / (time.perf_counter() - started)
    finally:
        await channel.close()
        await server.server.stop(None)
        await servicer.manager.close()


async def mesh(url: str, key: str, model: str, concurrency: int, rounds: int, steps: int) -> float:
    """Images per second through a gateway's POST /v1/images/generations (b64_json)."""
    import httpx
    from PIL import Image

    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=120
    ) as http:

        async def client(worker: int, count: int) -> None:
            for i in range(count):
                body = {
                    "model": model,
                    "prompt": PROMPT,
                    "response_format": "b64_json",
                    "seed": worker * 1000 + i,
                    "num_inference_steps": steps,
                }
                answer = await http.post("/v1/images/generations", json=body)
                answer.raise_for_status()
                Image.open(io.BytesIO(base64.b64decode(answer.json()["data"][0]["b64_json"]))).verify()

        await asyncio.gather(*(client(w, 1) for w in range(concurrency)))
        started = time.perf_counter()
        await asyncio.gather(*(client(w, rounds) for w in range(concurrency)))
        return rounds * concurrency / (time.perf_counter() - started)


def _measure(target: str, model_dir: Path, data_dir: Path, c: int, rounds: int, args: Any) -> float:
    if target == "direct":
        return direct(model_dir, c, rounds, args.steps)
    if target == "engine":
        return asyncio.run(engine(data_dir, c, rounds, args.steps))
    return asyncio.run(mesh(args.mesh, args.key or "", args.model, c, rounds, args.steps))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images per level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3, help="alternating direct/other runs per level")
    parser.add_argument(
        "--mesh", help="a gateway's base URL: measure POST /v1/images/generations against direct"
    )
    parser.add_argument("--key", help="an API key of the mesh (with --mesh)")
    parser.add_argument("--model", default=MODEL, help="the image deployment's name (with --mesh)")
    parser.add_argument(
        "--start-mesh", action="store_true", help="start a mesh (`budrt up`, a fresh data dir) and measure it"
    )
    args = parser.parse_args(argv)
    images = 8 if args.quick else 40
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        started_mesh = None
        if args.start_mesh:
            from tests.support.mesh import start_mesh

            started_mesh = start_mesh(data_dir / "mesh", {"BUD_DEFAULT_KEY_REQUESTS_PER_MINUTE": "0"})
            args.mesh, args.key = started_mesh.http_url, started_mesh.api_key
        other = "mesh" if args.mesh else "engine"
        try:
            model_dir = build(data_dir)
            for c in args.concurrency:
                rounds = max(1, images // c)
                rates: dict[str, list[float]] = {"direct": [], other: []}
                for r in range(args.repeats):  # alternate, so a shared machine's drift hits both
                    for target in ("direct", other) if r % 2 == 0 else (other, "direct"):
                        rates[target].append(_measure(target, model_dir, data_dir, c, rounds, args))
                d, o = statistics.median(rates["direct"]), statistics.median(rates[other])
                label = "mesh (gateway REST)" if other == "mesh" else "engine gRPC"
                print(
                    f"c={c}: direct {d:.2f} images/s, {label} {o:.2f} images/s, "
                    f"ratio {o / d:.2f} (target >= 0.9); runs direct={[round(x, 2) for x in rates['direct']]} "
                    f"{other}={[round(x, 2) for x in rates[other]]}",
                    flush=True,
                )
        finally:
            if started_mesh is not None:
                started_mesh.stop()


if __name__ == "__main__":
    main()
