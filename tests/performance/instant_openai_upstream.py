"""An OpenAI-shaped HTTP upstream that answers instantly: the same canned chat completion the
instant engine gives (content "ok", usage 5 + 1), as a minimal ASGI app under uvicorn (uvloop,
httptools, no access log). The gateway benchmark calls it directly as the baseline, and puts
LiteLLM's proxy in front of it.

    python -m tests.performance.instant_openai_upstream --port 18090
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_JSON = [(b"content-type", b"application/json")]


def chat_completion(model: str) -> bytes:
    """The canned reply, as the Bud gateway writes the instant engine's answer."""
    return orjson.dumps(
        {
            "id": "chatcmpl-instant",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "ok"},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
        }
    )


async def _body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """POST /v1/chat/completions → the canned completion (echoing `model`); GET /v1/models and
    health probes for clients that look first; 404 otherwise."""
    if scope["type"] != "http":
        return
    path, method = scope["path"], scope["method"]
    if method == "POST" and path.endswith("/chat/completions"):
        body = await _body(receive)
        try:
            model = orjson.loads(body).get("model") or "instant"
        except (orjson.JSONDecodeError, AttributeError):
            status, payload = (
                400,
                b'{"error":{"message":"bad JSON","type":"invalid_request_error","param":null,"code":null}}',
            )
        else:
            status, payload = 200, chat_completion(model)
    elif method == "GET" and path.endswith("/models"):
        status, payload = (
            200,
            b'{"object":"list","data":[{"id":"instant","object":"model","created":0,"owned_by":"bench"}]}',
        )
    elif method == "GET" and path in ("/healthz", "/health"):
        status, payload = 200, b'{"status":"ok"}'
    else:
        status, payload = (
            404,
            b'{"error":{"message":"not found","type":"invalid_request_error","param":null,"code":null}}',
        )
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*_JSON, (b"content-length", str(len(payload)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    import uvicorn

    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
        timeout_keep_alive=30,
        backlog=4096,
    )


if __name__ == "__main__":
    main()
