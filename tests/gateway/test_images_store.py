"""The image store (local files, and S3 against moto's real S3 HTTP server on loopback), the
signed links, and the transcoder's HttpBody answers (any RPC answering google.api.HttpBody: its
bytes, its content type)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.api import httpbody_pb2

from bud.openai.v1 import openai_service_pb2_grpc
from budrt.errors import not_found
from gateway.backends import LocalBackend
from gateway.images.links import LinkSigner, link_secret
from gateway.images.store import ImageStore, LocalImageStore, S3ImageStore, StoredImage
from gateway.server import OPENAI_SERVICE
from gateway.transcoder import FrontedService, Transcoder
from tests.gateway.conftest import http_server
from tests.support.mesh import free_port


def _image(image_id: str, project: str = "p1", expires_in: float = 3600) -> StoredImage:
    now = int(time.time())
    return StoredImage(image_id, project, "draw", "64x64", "png", 3, now, int(now + expires_in))


async def _exercise(store: ImageStore) -> None:
    """What every store does: per-project images, expiry at once, deletion, the sweep."""
    await store.put(_image("img_a"), b"aaa")
    await store.put(_image("img_b", expires_in=-1), b"bbb")  # already expired
    await store.put(_image("img_c", project="p2"), b"ccc")
    assert await store.read("p1", "img_a") == b"aaa"
    found = await store.get("p1", "img_a")
    assert found is not None and (found.model, found.size, found.bytes) == ("draw", "64x64", 3)
    assert await store.get("p2", "img_a") is None  # another project's
    assert await store.read("p2", "img_a") is None
    assert await store.get("p1", "img_b") is None  # expired: gone before the sweep
    assert [i.id for i in await store.list("p1")] == ["img_a"]
    assert [i.id for i in await store.list("p2")] == ["img_c"]
    assert await store.sweep() == 1
    assert not await store.delete("p2", "img_a")
    assert await store.delete("p1", "img_a")
    assert await store.read("p1", "img_a") is None
    assert await store.list("p1") == []


async def test_local_store(tmp_path: Path) -> None:
    store = LocalImageStore(tmp_path / "images")
    await _exercise(store)
    await store.put(_image("img_d", project="../../etc"), b"ddd")  # an odd project id stays inside
    assert all(tmp_path in p.parents for p in tmp_path.rglob("*"))
    assert all(p.stat().st_mode & 0o077 == 0 for p in (tmp_path / "images").rglob("*"))


@pytest.fixture(scope="module")
def s3_url() -> Iterator[str]:
    """moto's standalone S3 server (a real HTTP API) on a loopback port."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


async def test_s3_store(s3_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3

    # Credentials from the environment, as in production (moto takes any).
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    boto3.client("s3", endpoint_url=s3_url).create_bucket(Bucket="bud-images")
    store = S3ImageStore("bud-images", "gw/", endpoint_url=s3_url)
    await _exercise(store)
    # Two gateways sharing the bucket see the same images.
    other = S3ImageStore("bud-images", "gw/", endpoint_url=s3_url)
    await store.put(_image("img_e"), b"eee")
    assert await other.read("p1", "img_e") == b"eee"
    keys = [o["Key"] for o in store.client.list_objects_v2(Bucket="bud-images")["Contents"]]
    assert sorted(keys) == ["gw/p1/img_e.img", "gw/p1/img_e.json", "gw/p2/img_c.img", "gw/p2/img_c.json"]


def test_links() -> None:
    signer = LinkSigner(link_secret("shared"))
    token = signer.token("p1", "img_a", int(time.time()) + 60)
    assert signer.verify(token, "img_a").project_id == "p1"
    assert signer.verify(token, "img_b").problem == "invalid"  # another image
    assert LinkSigner(link_secret("other")).verify(token, "img_a").problem == "invalid"  # another secret
    expiry, project, signature = token.split(".")
    assert signer.verify(f"{int(expiry) + 1}.{project}.{signature}", "img_a").problem == "invalid"
    assert signer.verify("garbage", "img_a").problem == "invalid"
    old = signer.token("p1", "img_a", int(time.time()) - 1)
    assert signer.verify(old, "img_a").problem == "expired"
    # The link key is not the shared secret itself.
    assert link_secret("shared") != b"shared"


class _Bodies(openai_service_pb2_grpc.OpenAiServiceServicer):
    """Answers GetImageContent with an HttpBody (or an error): no image code involved."""

    async def GetImageContent(self, request: Any, context: Any) -> httpbody_pb2.HttpBody:
        if request.image_id == "missing":
            raise not_found("no such thing", param="image_id")
        await context.send_initial_metadata((("cache-control", "private, max-age=5"),))
        return httpbody_pb2.HttpBody(content_type="text/csv", data=b"a,b\n1,2\n")


async def test_transcoder_answers_http_body_raw() -> None:
    service = FrontedService(OPENAI_SERVICE, LocalBackend(_Bodies(), OPENAI_SERVICE), lenient=True)
    async with http_server(Transcoder([service])) as url, httpx.AsyncClient() as http:
        got = await http.get(f"{url}/v1/images/x/content")
        assert got.status_code == 200 and got.content == b"a,b\n1,2\n"
        assert got.headers["content-type"] == "text/csv"
        assert got.headers["cache-control"] == "private, max-age=5"
        assert got.headers["x-content-type-options"] == "nosniff"
        missing = await http.get(f"{url}/v1/images/missing/content")
        assert missing.status_code == 404 and missing.json()["error"]["param"] == "image_id"


def test_the_document_says_http_body_answers_are_raw_and_links_need_no_key() -> None:
    from gateway.openapi import DocumentedService, build_document

    document = build_document([DocumentedService(OPENAI_SERVICE, True)])
    content = document["paths"]["/v1/images/{image_id}/content"]["get"]
    assert content["responses"]["200"]["content"] == {
        "*/*": {"schema": {"type": "string", "format": "binary"}}
    }
    assert content["security"] == [{"apiKey": []}, {}]  # the link's token, or the key
    assert document["paths"]["/v1/images"]["get"]["security"] == [{"apiKey": []}]


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    from tests.support.redis_server import redis_server

    with redis_server() as url:
        yield url


async def test_images_per_minute_count_each_image_in_memory_and_redis(redis_url: str) -> None:
    """A counted kind adds its amount (the images of the call), in both limiters alike."""
    from gateway.ratelimit import Limit, MemoryRateLimiter, RedisRateLimiter

    redis = RedisRateLimiter(redis_url, prefix=f"img{time.time_ns()}:")
    try:
        for limiter in (MemoryRateLimiter(), redis):
            requests = Limit("dep:d:req", 10, "requests")
            first = await limiter.admit([requests, Limit("dep:d:img", 5, "images", amount=3)], 0)
            assert first.allowed and ("x-ratelimit-remaining-images", "2") in first.headers
            refused = await limiter.admit([requests, Limit("dep:d:img", 5, "images", amount=3)], 0)
            assert not refused.allowed
            assert (await limiter.admit([requests, Limit("dep:d:img", 5, "images", amount=2)], 0)).allowed
    finally:
        await redis.close()


def test_checks_bound_steps_and_sizes_without_deployment_limits() -> None:
    """A deployment whose settings list no sizes and no step maximum still bounds the steps; a
    size is `WIDTHxHEIGHT`; "auto" leaves the size to the engine when there is no default."""
    from bud.auth.v1 import routing_pb2
    from bud.openai.v1 import image_pb2
    from budrt.errors import ServiceError
    from gateway.images.checks import DEFAULT_MAX_STEPS, check_image_request

    open_settings = routing_pb2.RouteImageSettings()
    for fields, param in (
        ({"num_inference_steps": DEFAULT_MAX_STEPS + 1}, "num_inference_steps"),
        ({"num_inference_steps": 0}, "num_inference_steps"),
        ({"size": "big"}, "size"),
        ({"n": 2}, "n"),  # max_images 0: one image
        ({"output_compression": 101}, "output_compression"),
        ({"partial_images": 4}, "partial_images"),
    ):
        request = image_pb2.ImageGenerationRequest(model="m", prompt="x", **fields)
        with pytest.raises(ServiceError) as caught:
            check_image_request(request, open_settings)
        assert caught.value.param == param
    request = image_pb2.ImageGenerationRequest(
        model="m", prompt="x", size="auto", num_inference_steps=DEFAULT_MAX_STEPS
    )
    check_image_request(request, open_settings)
    assert not request.HasField("size")
