"""Image generation at the gateway against the instant engine, with the official openai SDK:
base64 and URL answers, signed links (no key, expiry, tampering, other projects), streaming,
the gRPC face, OpenAI-shaped 400s, images per minute, usage and cost, and the retention sweep."""

from __future__ import annotations

import asyncio
import base64
import io
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import openai
import pytest
from PIL import Image

from auth import keys
from bud.auth.v1 import routing_pb2
from bud.openai.v1 import image_pb2, openai_service_pb2_grpc
from gateway.engines import EnginePool
from gateway.images.links import LinkSigner, link_secret
from gateway.images.service import ImageConfig
from gateway.images.store import LocalImageStore
from gateway.openai_service import OpenAiServicer
from gateway.ratelimit import MemoryRateLimiter
from gateway.request_limits import RequestLimits
from gateway.server import OPENAI_SERVICE, build_transcoder, grpc_face
from gateway.tables import RoutingTables
from tests.gateway.conftest import http_server
from tests.support.instant_engine import InstantEngine, start_instant_engine
from tests.support.mesh import free_port

SECRET = "test-hash-secret"


class Usage:
    """A usage recorder that keeps each record's fields."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def record(self, *args: Any, **fields: Any) -> None:
        names = ("client_request_id", "project_id", "api_key_id", "deployment_id", "operation")
        self.records.append({**dict(zip(names, args, strict=False)), **fields})

    def track(self, task: Any) -> None:
        pass


def _tables(keys_: list[keys.NewKey], address: str, images_per_minute: int = 0) -> RoutingTables:
    """Project p1 (key 0) with the image deployment `draw` and the chat deployment `chat`;
    project p2 (key 1, when given) with nothing of its own."""
    tables = RoutingTables()
    snap = routing_pb2.WatchRoutingResponse(revision=1, reset=True)
    snap.upsert_projects.add(id="p1", name="team")
    snap.upsert_projects.add(id="p2", name="others")
    for i, key in enumerate(keys_):
        snap.upsert_keys.add(id=f"k{i}", prefix=key.prefix, key_hash=key.key_hash, project_id=f"p{i + 1}")
    draw = snap.upsert_deployments.add(id="d-img", project_id="p1", name="draw", ready=True)
    draw.endpoints.add(address=address, served_model_name="tiny-diffusion")
    draw.image.CopyFrom(
        routing_pb2.RouteImageSettings(
            max_images=4,
            sizes=["64x64", "32x48"],
            default_size="64x64",
            default_steps=3,
            max_steps=10,
            images_per_minute=images_per_minute,
        )
    )
    draw.pricing.image_micros = 2500  # $0.0025 an image
    draw.pricing.request_micros = 100
    chat = snap.upsert_deployments.add(id="d-chat", project_id="p1", name="chat", ready=True)
    chat.endpoints.add(address=address, served_model_name="m1")
    tables.apply(snap)
    return tables


@pytest.fixture
async def engine() -> AsyncIterator[tuple[str, InstantEngine]]:
    address = f"127.0.0.1:{free_port()}"
    server, instant = await start_instant_engine(address, ["tiny-diffusion", "m1"])
    yield address, instant
    await server.stop(0)


def _servicer(tables: RoutingTables, root: Path, **config: Any) -> tuple[OpenAiServicer, Usage]:
    usage = Usage()
    images = ImageConfig(LocalImageStore(root), LinkSigner(link_secret(SECRET)), **config)
    servicer = OpenAiServicer(
        tables,
        EnginePool(),
        SECRET,
        usage=usage,
        limiter=MemoryRateLimiter(),
        images=images,  # type: ignore[arg-type]
    )
    return servicer, usage


def _png(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    assert image.format == "PNG"
    return image


async def test_b64_json_images_of_the_requested_size(engine: Any, tmp_path: Path) -> None:
    address, instant = engine
    key = keys.mint_key(SECRET)
    servicer, usage = _servicer(_tables([key], address), tmp_path)
    async with http_server(build_transcoder(servicer, servicer.tables)) as url:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key.secret, max_retries=0)
        reply = await client.images.generate(
            model="draw", prompt="a red fox", n=3, size="32x48", response_format="b64_json"
        )
        assert len(reply.data) == 3
        assert {_png(d.b64_json).size for d in reply.data} == {(32, 48)}
        assert reply.data[0].revised_prompt == "a red fox"
        assert reply.size == "32x48" and reply.output_format == "png"
        # The engine got the served name, the default steps, and the gateway's own usage id.
        sent = instant.image_requests[-1]
        assert sent.model == "tiny-diffusion" and sent.num_inference_steps == 3
        # Same seed → same bytes (the instant engine's determinism is the engine's contract).
        one = await client.images.generate(
            model="draw", prompt="x", response_format="b64_json", extra_body={"seed": 7}
        )
        two = await client.images.generate(
            model="draw", prompt="x", response_format="b64_json", extra_body={"seed": 7}
        )
        assert one.data[0].b64_json == two.data[0].b64_json
        assert _png(one.data[0].b64_json).size == (64, 64)  # "auto": the deployment's default
    await asyncio.sleep(0)
    record = usage.records[0]
    assert record["operation"] == "CreateImage" and record["images"] == 3
    assert record["image_size"] == "32x48" and record["image_steps"] == 3
    # 3 images at $0.0025, the request's $0.0001, 5 prompt tokens at no token price.
    assert record["cost_usd"] == "0.007600000"


async def test_url_links_expire_refuse_tampering_and_other_projects(engine: Any, tmp_path: Path) -> None:
    address, _ = engine
    mine, theirs = keys.mint_key(SECRET), keys.mint_key(SECRET)
    servicer, _ = _servicer(_tables([mine, theirs], address), tmp_path, url_ttl_s=4)
    async with http_server(build_transcoder(servicer, servicer.tables)) as url:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=mine.secret, max_retries=0)
        reply = await client.images.generate(model="draw", prompt="a fox", n=2)
        links = [d.url for d in reply.data]
        assert all(link.startswith(f"{url}/v1/images/img_") for link in links)
        async with httpx.AsyncClient() as http:
            got = await http.get(links[0])  # no API key
            assert got.status_code == 200 and got.headers["content-type"] == "image/png"
            assert got.headers["cache-control"].startswith("private, max-age=")
            assert Image.open(io.BytesIO(got.content)).size == (64, 64)
            # A token for another image, or altered, is refused.
            first_id = links[0].split("/")[-2]
            second_id, second_token = links[1].split("/")[-2], links[1].split("token=")[1]
            other = await http.get(f"{url}/v1/images/{first_id}/content?token={second_token}")
            assert other.status_code == 403 and other.json()["error"]["param"] == "token"
            expiry, project, signature = second_token.split(".")
            forged = f"{int(expiry) + 3600}.{project}.{signature}"
            assert (await http.get(f"{url}/v1/images/{second_id}/content?token={forged}")).status_code == 403
            # With the owner's key the content is served; another project's key sees nothing.
            owner = {"authorization": f"Bearer {mine.secret}"}
            stranger = {"authorization": f"Bearer {theirs.secret}"}
            assert (await http.get(f"{url}/v1/images/{first_id}/content", headers=owner)).status_code == 200
            for method, path in (
                ("GET", f"/v1/images/{first_id}/content"),
                ("GET", f"/v1/images/{first_id}"),
                ("DELETE", f"/v1/images/{first_id}"),
            ):
                refused = await http.request(method, f"{url}{path}", headers=stranger)
                assert refused.status_code == 404, (method, path, refused.text)
            assert (await http.get(f"{url}/v1/images", headers=stranger)).json()["data"] == []
            listed = (await http.get(f"{url}/v1/images", headers=owner)).json()
            assert {i["id"] for i in listed["data"]} == {first_id, second_id}
            assert listed["data"][0]["model"] == "draw" and listed["data"][0]["size"] == "64x64"
            # Deleted by its owner: gone.
            assert (await http.delete(f"{url}/v1/images/{second_id}", headers=owner)).json()["deleted"]
            assert (await http.get(f"{url}/v1/images/{second_id}/content", headers=owner)).status_code == 404
            # The link expires (url_ttl_s): 403.
            link_expiry = int(links[0].split("token=")[1].split(".")[0])
            await asyncio.sleep(max(0.0, link_expiry - time.time()) + 0.05)
            expired = await http.get(links[0])
            assert expired.status_code == 403 and "expired" in expired.json()["error"]["message"]


async def test_expired_images_are_gone_and_swept(engine: Any, tmp_path: Path) -> None:
    address, _ = engine
    key = keys.mint_key(SECRET)
    servicer, _ = _servicer(_tables([key], address), tmp_path, retention_s=2)
    async with http_server(build_transcoder(servicer, servicer.tables)) as url:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key.secret, max_retries=0)
        reply = await client.images.generate(model="draw", prompt="a fox")
        image_id = reply.data[0].url.split("/")[-2]
        owner = {"authorization": f"Bearer {key.secret}"}
        async with httpx.AsyncClient() as http:
            listed = await http.get(f"{url}/v1/images/{image_id}", headers=owner)
            assert listed.status_code == 200
            files = list(tmp_path.rglob("*"))
            assert any(f.suffix == ".img" for f in files)
            assert all((f.stat().st_mode & 0o077) == 0 for f in files)  # private files and dirs
            await asyncio.sleep(max(0.0, int(listed.json()["expires_at"]) - time.time()) + 0.05)
            # Expired: 404 before the sweep by key; its link (which expires with it) 403.
            assert (await http.get(f"{url}/v1/images/{image_id}", headers=owner)).status_code == 404
            assert (await http.get(reply.data[0].url)).status_code == 403
        assert await servicer.images.store.sweep() == 1
        assert not [f for f in tmp_path.rglob("*") if f.is_file()]


async def test_streaming_with_the_sdk(engine: Any, tmp_path: Path) -> None:
    address, _ = engine
    key = keys.mint_key(SECRET)
    servicer, usage = _servicer(_tables([key], address), tmp_path)
    async with http_server(build_transcoder(servicer, servicer.tables)) as url:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key.secret, max_retries=0)
        stream = await client.images.generate(
            model="draw",
            prompt="a fox",
            n=2,
            stream=True,
            partial_images=1,
            response_format="b64_json",
            extra_body={"progress": True, "num_inference_steps": 2},
        )
        events = [event async for event in stream]
        kinds = [e.type for e in events]
        assert kinds == [
            "image_generation.progress",
            "image_generation.partial_image",
            "image_generation.progress",
            "image_generation.partial_image",
            "image_generation.completed",
            "image_generation.completed",
        ]
        completed = [e for e in events if e.type == "image_generation.completed"]
        assert all(_png(e.b64_json).size == (64, 64) for e in completed)
        assert completed[-1].usage is not None and completed[-1].usage.input_tokens == 5
        assert completed[0].usage is None
        # Without `progress`, and as links: completed events carry URLs.
        stream = await client.images.generate(model="draw", prompt="a fox", stream=True)
        events = [event async for event in stream]
        assert [e.type for e in events] == ["image_generation.completed"]
        async with httpx.AsyncClient() as http:
            assert (await http.get(events[0].url)).status_code == 200  # type: ignore[attr-defined]
    assert [r["images"] for r in usage.records] == [2, 1]


async def test_bad_requests_are_openai_400s(engine: Any, tmp_path: Path) -> None:
    address, _ = engine
    key = keys.mint_key(SECRET)
    servicer, _ = _servicer(_tables([key], address), tmp_path)
    async with http_server(build_transcoder(servicer, servicer.tables)) as url:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key.secret, max_retries=0)
        cases: list[tuple[dict[str, Any], str]] = [
            ({"model": "draw", "prompt": "x", "size": "1024x1024"}, "size"),
            ({"model": "draw", "prompt": "x", "n": 5}, "n"),
            ({"model": "draw", "prompt": "  "}, "prompt"),
            ({"model": "draw", "prompt": "x", "response_format": "gif"}, "response_format"),
            (
                {"model": "draw", "prompt": "x", "extra_body": {"num_inference_steps": 11}},
                "num_inference_steps",
            ),
            ({"model": "chat", "prompt": "x"}, "model"),
        ]
        for arguments, param in cases:
            with pytest.raises(openai.BadRequestError) as caught:
                await client.images.generate(**arguments)
            assert caught.value.param == param, (arguments, caught.value.body)
        with pytest.raises(openai.BadRequestError) as caught:  # a stream is refused before its first event
            await client.images.generate(model="draw", prompt="x", n=9, stream=True)
        assert caught.value.param == "n"
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(model="draw", messages=[{"role": "user", "content": "x"}])
        assert caught.value.param == "model" and "image model" in caught.value.message
        with pytest.raises(openai.BadRequestError) as caught:
            await client.embeddings.create(model="draw", input="x")
        assert caught.value.param == "model"


async def test_images_per_minute(engine: Any, tmp_path: Path) -> None:
    address, _ = engine
    key = keys.mint_key(SECRET)
    servicer, _ = _servicer(_tables([key], address, images_per_minute=3), tmp_path)
    async with http_server(build_transcoder(servicer, servicer.tables)) as url:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key.secret, max_retries=0)
        reply = await client.images.with_raw_response.generate(
            model="draw", prompt="x", n=2, response_format="b64_json"
        )
        assert reply.headers["x-ratelimit-remaining-images"] == "1"
        with pytest.raises(openai.RateLimitError):  # 2 more images would make 4 > 3
            await client.images.generate(model="draw", prompt="x", n=2, response_format="b64_json")
        await client.images.generate(model="draw", prompt="x", n=1, response_format="b64_json")


async def test_grpc_face(engine: Any, tmp_path: Path) -> None:
    address, _ = engine
    key = keys.mint_key(SECRET)
    servicer, _ = _servicer(_tables([key], address), tmp_path)
    face = grpc_face(servicer, f"127.0.0.1:{free_port()}", RequestLimits(), 1 << 20)
    await face.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{face.port}") as channel:
            stub = openai_service_pb2_grpc.OpenAiServiceStub(channel)
            metadata = (("authorization", f"Bearer {key.secret}"),)
            reply = await stub.CreateImage(
                image_pb2.ImageGenerationRequest(
                    model="draw", prompt="a fox", n=2, response_format="b64_json"
                ),
                metadata=metadata,
            )
            assert len(reply.data) == 2 and reply.usage.images == 2
            assert _png(reply.data[0].b64_json).size == (64, 64)
            linked = await stub.CreateImage(
                image_pb2.ImageGenerationRequest(model="draw", prompt="a fox"), metadata=metadata
            )
            image_id = linked.data[0].url.split("/")[-2]
            body = await stub.GetImageContent(
                image_pb2.GetImageContentRequest(image_id=image_id), metadata=metadata
            )
            assert body.content_type == "image/png" and body.data.startswith(b"\x89PNG")
            events = [
                e
                async for e in stub.StreamImage(
                    image_pb2.ImageGenerationRequest(model="draw", prompt="x", response_format="b64_json"),
                    metadata=metadata,
                )
            ]
            assert [e.type for e in events] == ["image_generation.completed"]
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.CreateImage(image_pb2.ImageGenerationRequest(model="draw", prompt="x"))
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await face.stop(0)


async def test_a_client_that_leaves_cancels_the_engine_call(engine: Any, tmp_path: Path) -> None:
    address, instant = engine
    instant.unary_delay = 5.0
    key = keys.mint_key(SECRET)
    servicer, usage = _servicer(_tables([key], address), tmp_path)
    async with http_server(build_transcoder(servicer, servicer.tables)) as url:
        async with httpx.AsyncClient() as http:
            with pytest.raises(httpx.ReadTimeout):
                await http.post(
                    f"{url}/v1/images/generations",
                    json={"model": "draw", "prompt": "x"},
                    headers={"authorization": f"Bearer {key.secret}"},
                    timeout=0.5,
                )
        deadline = time.monotonic() + 5
        while instant.open_unary:
            assert time.monotonic() < deadline, "the engine call was never cancelled"
            await asyncio.sleep(0.02)
        await servicer.drain()
    assert usage.records[-1]["images"] == 0  # nothing was made


def test_openai_service_serves_every_image_rpc() -> None:
    """No image RPC is left to the generated servicer's UNIMPLEMENTED."""
    for name in ("CreateImage", "StreamImage", "ListImages", "GetImage", "GetImageContent", "DeleteImage"):
        assert name in OPENAI_SERVICE.methods_by_name
        assert getattr(OpenAiServicer, name) is not getattr(
            openai_service_pb2_grpc.OpenAiServiceServicer, name
        ), name
