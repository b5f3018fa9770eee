"""Image generation end to end on the in-process stack (the app on SQLite, the instant engine,
the gateway): the first-start `tiny-diffusion` deployment and one created with its own image
settings and per-image price, called with the official openai SDK; the app's usage counts the
images and costs them; image and chat deployments refuse each other's calls."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import requests
from PIL import Image

from tests.gateway.prompt_stack import PromptStack, prompt_stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PromptStack]:
    with prompt_stack(Path(tmp_path_factory.mktemp("images-stack"))) as running:
        yield running


@pytest.fixture(scope="module")
def client(stack: PromptStack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.url}/v1", api_key=stack.api_key, max_retries=0)


def _painter(stack: PromptStack) -> dict[str, Any]:
    reply = requests.post(
        f"{stack.url}/v1/projects/{stack.project_id}/deployments",
        json={
            "name": "painter",
            "model": {"builtin": "tiny-diffusion"},
            "runner": "RUNNER_DIFFUSION",
            "image": {"max_images": 2, "sizes": ["64x64", "64x128"], "default_size": "64x128"},
            "pricing": {"per_image_usd": "0.04"},
        },
        headers=stack.headers(),
        timeout=30,
    )
    assert reply.status_code == 200, reply.text
    stack.wait_routed("painter")
    return reply.json()["deployment"]


def _decode(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


def test_the_first_start_image_deployment_answers_the_sdk(stack: PromptStack, client: openai.OpenAI) -> None:
    tables = stack.gateway_tables()
    (entry,) = [d for d in tables.deployments.values() if d.name == "tiny-diffusion"]
    assert entry.image is not None  # routed as an image deployment, from the app's feed
    result = client.images.generate(model="tiny-diffusion", prompt="a lighthouse", response_format="b64_json")
    (image,) = result.data
    assert _decode(image.b64_json).format == "PNG"
    assert result.usage is not None and result.usage.input_tokens > 0


def test_a_created_image_deployment_its_settings_usage_and_cost(
    stack: PromptStack, client: openai.OpenAI
) -> None:
    deployment = _painter(stack)
    result = client.images.generate(
        model="painter", prompt="a red square", n=2, response_format="b64_json", extra_body={"seed": 3}
    )
    assert [_decode(d.b64_json).size for d in result.data] == [(64, 128), (64, 128)]  # the default size
    again = client.images.generate(
        model="painter", prompt="a red square", n=2, response_format="b64_json", extra_body={"seed": 3}
    )
    assert [d.b64_json for d in again.data] == [d.b64_json for d in result.data]  # same seed, same bytes
    linked = client.images.generate(model="painter", prompt="a blue circle", size="64x64")
    (link,) = linked.data
    assert link.url and link.url.startswith(stack.url)
    content = requests.get(link.url, timeout=30)  # no key: the signed link is enough
    assert content.status_code == 200 and content.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(content.content)).size == (64, 64)
    # The deployment's own limits: n over max_images, a size it does not list.
    with pytest.raises(openai.BadRequestError) as over:
        client.images.generate(model="painter", prompt="x", n=3)
    assert over.value.body["param"] == "n"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as size:
        client.images.generate(model="painter", prompt="x", size="1024x1024")
    assert size.value.body["param"] == "size"  # type: ignore[index]
    # The app's usage: 5 images over 3 successful calls, each image at $0.04.
    deadline = time.monotonic() + 15
    while True:
        reply = requests.get(
            f"{stack.url}/v1/projects/{stack.project_id}/usage",
            params={"deployment_id": deployment["id"]},
            headers=stack.headers(),
            timeout=30,
        )
        assert reply.status_code == 200, reply.text
        buckets = reply.json().get("buckets", [])
        if sum(int(b.get("images", 0)) for b in buckets) >= 5:
            break
        assert time.monotonic() < deadline, f"the images never reached the app's usage: {buckets}"
        time.sleep(0.1)
    assert sum(int(b.get("images", 0)) for b in buckets) == 5
    ok = [b for b in buckets if int(b["requests"]) > int(b.get("errors", 0))]
    assert sum(float(b["cost_usd"]) for b in ok) == pytest.approx(5 * 0.04)


def test_image_and_chat_deployments_refuse_each_others_calls(
    stack: PromptStack, client: openai.OpenAI
) -> None:
    with pytest.raises(openai.BadRequestError) as chat_on_images:
        client.images.generate(model=stack.model, prompt="a cat")
    assert chat_on_images.value.body["param"] == "model"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as images_on_chat:
        client.chat.completions.create(
            model="tiny-diffusion", messages=[{"role": "user", "content": "hi"}], max_tokens=4
        )
    assert images_on_chat.value.body["param"] == "model"  # type: ignore[index]
