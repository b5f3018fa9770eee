"""The prompt executor run on its own (`budrt serve prompt`): the gateway calls its
PromptExecutionService over mutual TLS, and it calls the gateway's public gRPC face back with the
caller's key — the same answers as co-hosted, through the openai SDK."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import openai
import pytest
import requests

from auth.service_identity import ACTING_PROJECT_HEADER
from bud.openai.v1 import openai_service_pb2_grpc, response_pb2
from tests.gateway.prompt_stack import PromptStack, prompt_stack
from tests.gateway.test_prompt_responses import GREETING

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PromptStack]:
    with prompt_stack(Path(tmp_path_factory.mktemp("prompt-remote")), remote=True) as running:
        running.engine.keep_requests = True
        yield running


def test_unary_stream_and_errors_over_grpc(stack: PromptStack) -> None:
    client = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=stack.api_key, max_retries=0)
    prompt_id = stack.create_prompt("remote", GREETING)["id"]
    stack.engine.replies = ["Bonjour"]
    ref = {"id": prompt_id, "variables": {"name": "Ada", "age": "36", "language": "fr"}}
    response = client.responses.create(prompt=ref)
    assert (
        response.output_text == "Bonjour" and response.prompt is not None and response.prompt.version == "1"
    )
    assert [m.content_text for m in stack.engine.chat_requests[-1].messages] == [
        "You greet people in fr.",
        "Greet Ada (36 years old).",
    ]
    kinds = [e.type for e in client.responses.create(stream=True, prompt=ref)]
    assert kinds[0] == "response.created" and kinds[-1] in ("response.completed", "response.incomplete")
    with pytest.raises(openai.BadRequestError, match="prompt.variables.age"):
        client.responses.create(prompt={"id": prompt_id, "variables": {"name": "Ada", "age": "x"}})
    with pytest.raises(openai.NotFoundError):
        client.responses.create(prompt={"id": prompt_id, "version": "7"})
    bad = openai.OpenAI(base_url=f"{stack.url}/v1", api_key="bud_nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.responses.create(prompt=ref)


def test_studio_runs_need_the_gateway_in_process(stack: PromptStack) -> None:
    """A standalone executor reaches the gateway only over its public face, where naming a project
    instead of a key is refused: the studio's runs answer 503 rather than try."""
    body = {
        "version": {"model": stack.model, "messages": [{"role": "user", "template": "{{ input }}"}]},
        "variables": {"input": "hi"},
    }
    reply = requests.post(
        f"{stack.url}/v1/projects/{stack.project_id}/prompts:run",
        json=body,
        headers=stack.headers(),
        timeout=30,
    )
    assert reply.status_code == 503, reply.text
    assert "co-hosted" in reply.json()["message"]


def test_the_public_grpc_face_refuses_a_named_project(stack: PromptStack) -> None:
    with grpc.insecure_channel(stack.grpc_address) as channel:
        stub = openai_service_pb2_grpc.OpenAiServiceStub(channel)
        request = response_pb2.ResponseRequest(model=stack.model, input_text="hi")
        with pytest.raises(grpc.RpcError) as refused:
            stub.CreateResponse(request, metadata=((ACTING_PROJECT_HEADER, stack.project_id),), timeout=30)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_deployment_names_headers_and_stored_responses_over_grpc(stack: PromptStack) -> None:
    """Over the wire too: a prompt deployment's name runs (its limit applies: the signed claim
    travels as gRPC metadata), the model call's rate-limit headers reach the caller, unary and
    streamed, and the prompt's response is stored."""
    import time

    import httpx

    prompt_id = stack.create_prompt("remote-named", GREETING)["id"]
    stack.deploy("remote-dep", {"prompt_id": prompt_id, "version": 1}, rate_limits={"requests_per_minute": 4})
    body = {"prompt": {"id": "remote-dep", "variables": {"name": "Ada", "age": "1"}}}
    with httpx.Client(
        base_url=stack.url, headers={"authorization": f"Bearer {stack.api_key}"}, timeout=30
    ) as http:
        deadline = time.monotonic() + 10
        while (reply := http.post("/v1/responses", json=body)).status_code != 200:
            assert reply.status_code in (404, 503) and time.monotonic() < deadline, reply.text
            time.sleep(0.05)
        assert reply.headers["x-ratelimit-limit-requests"] == "4"
        assert reply.headers["x-ratelimit-remaining-requests"] == "3"
        streamed = http.post("/v1/responses", json={**body, "stream": True})
        assert streamed.status_code == 200 and streamed.headers["x-ratelimit-remaining-requests"] == "2"
        stored = http.get(f"/v1/responses/{reply.json()['id']}")
        assert stored.status_code == 200 and stored.json()["prompt"]["id"] == "remote-dep"
