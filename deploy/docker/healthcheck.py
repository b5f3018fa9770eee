#!/usr/bin/env python3
"""`bud-healthcheck [--ready] [NAME...]`: the images' health check (Docker's HEALTHCHECK, compose's
healthcheck, Kubernetes exec probes) for the service this container runs.

NAME is the service (`gateway`, `app`, `engine`, `prompt`); without one it is read from the
container's one process, `budrt serve NAME...` (PID 1's command line). The gateway is asked over
HTTP on loopback, `/healthz` (alive) or, with `--ready`, `/readyz` (routing tables loaded). The
other services are asked over gRPC, `grpc.health.v1.Health/Check`, on loopback at the port of
their configured address, with mutual TLS and this container's own certificate (the same
`BUD_TLS_*` settings the service reads): Kubernetes' built-in gRPC probe speaks no TLS, and the
services accept no plaintext. Exit status 0: healthy; 1: not (the reason on stderr).
"""

from __future__ import annotations

import asyncio
import sys
import urllib.request
from pathlib import Path

TIMEOUT_S = 4.0


def _service_names(argv: list[str]) -> list[str]:
    names = [arg for arg in argv if not arg.startswith("-")]
    if names:
        return names
    try:
        cmdline = Path("/proc/1/cmdline").read_bytes().split(b"\0")
    except OSError:
        return []
    words = [word.decode() for word in cmdline if word]
    return words[words.index("serve") + 1 :] if "serve" in words else []


def _port(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def _check_http(port: int, ready: bool) -> str | None:
    url = f"http://127.0.0.1:{port}/{'readyz' if ready else 'healthz'}"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:  # noqa: S310 - loopback
            return None if response.status == 200 else f"{url}: HTTP {response.status}"
    except OSError as err:
        return f"{url}: {err}"


async def _check_grpc(name: str, port: int) -> str | None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from budrt.grpc_server import service_channel
    from budrt.tls import set_process_identity

    set_process_identity(name)  # without certificate files: the local CA's certificate of `name`
    address = f"127.0.0.1:{port}"
    async with service_channel(address) as channel:
        try:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT_S
            )
        except grpc.aio.AioRpcError as err:  # refused, a failed handshake, the deadline
            return f"{address}: {err.code().name}: {err.details()}"
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        return f"{address}: {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}"
    return None


def main(argv: list[str]) -> int:
    from budrt.components import discover, settings_of

    ready = "--ready" in argv
    names = _service_names(argv)
    if not names:
        print("bud-healthcheck: no service named and none found in PID 1's command line", file=sys.stderr)
        return 1
    components = discover()
    host = components.get(names[0])
    if host is None:
        print(f"bud-healthcheck: unknown service {names[0]!r}", file=sys.stderr)
        return 1
    settings = settings_of(host)
    if host.name == "gateway":
        problem = _check_http(settings.gateway_http_port, ready)
    else:
        problem = asyncio.run(_check_grpc(host.name, _port(getattr(settings, host.address_setting))))
    if problem:
        print(f"bud-healthcheck: {host.name}: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
