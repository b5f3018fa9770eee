"""Image generation through the whole mesh (`budrt up`): the first-start `tiny-diffusion`
deployment runs the engine's real diffusers pipeline; the official openai SDK gets decodable
images of the size asked, the same bytes for the same seed, a signed link that works without the
key, and a stream of events."""

from __future__ import annotations

import base64
import io

import openai
import requests
from PIL import Image

from tests.support.mesh import Mesh


def _client(mesh: Mesh) -> openai.OpenAI:
    return openai.OpenAI(base_url=mesh.openai_base_url, api_key=mesh.api_key, max_retries=0, timeout=120)


def _png(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


def test_tiny_diffusion_through_the_mesh(mesh: Mesh) -> None:
    client = _client(mesh)
    assert "tiny-diffusion" in {m.id for m in client.models.list().data}
    first = client.images.generate(
        model="tiny-diffusion",
        prompt="a lighthouse at dusk",
        n=2,
        response_format="b64_json",
        extra_body={"seed": 11},
    )
    images = [_png(d.b64_json) for d in first.data]
    assert [(i.format, i.size) for i in images] == [("PNG", (64, 64))] * 2
    assert first.usage is not None and first.usage.input_tokens > 0
    # Sent one after the other (one batch size): the same seed gives the same bytes.
    again = client.images.generate(
        model="tiny-diffusion",
        prompt="a lighthouse at dusk",
        n=2,
        response_format="b64_json",
        extra_body={"seed": 11},
    )
    assert [d.b64_json for d in again.data] == [d.b64_json for d in first.data]
    other = client.images.generate(
        model="tiny-diffusion",
        prompt="a lighthouse at dusk",
        response_format="b64_json",
        extra_body={"seed": 12},
    )
    assert other.data[0].b64_json != first.data[0].b64_json
    linked = client.images.generate(model="tiny-diffusion", prompt="a harbour", output_format="jpeg")
    content = requests.get(linked.data[0].url, timeout=60)  # no key: the signed link is enough
    assert content.status_code == 200 and content.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(content.content)).size == (64, 64)
    tampered = requests.get(linked.data[0].url[:-2] + "xx", timeout=60)
    assert tampered.status_code == 403


def test_a_streamed_image_through_the_mesh(mesh: Mesh) -> None:
    events = list(
        _client(mesh).images.generate(
            model="tiny-diffusion",
            prompt="a field",
            stream=True,
            partial_images=1,
            response_format="b64_json",
        )
    )
    kinds = [e.type for e in events]
    assert kinds[-1] == "image_generation.completed", kinds
    assert "image_generation.partial_image" in kinds
    assert _png(events[-1].b64_json).size == (64, 64)
