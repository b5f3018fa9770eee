"""`budrt`: run the whole mesh on one machine (`budrt up`) or services (`budrt serve NAME...`).

`budrt up` starts the app in one process and the gateway with the engine co-hosted in another
(`budrt serve gateway engine`: the inference path has no loopback gRPC hop), or each service in
its own process when `engine_in_gateway` is off, exactly as `budrt serve` runs them on separate
machines; it waits until the gateway can serve and prints where to point an OpenAI client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Coroutine
from typing import Any

from budrt.logs import setup_logging
from budrt.settings import Settings, settings

SERVICES = ("app", "engine", "gateway")


async def _serve_app(conf: Settings, stop: asyncio.Event) -> None:
    from app.server import serve as app_serve
    from prompt.server import bindings as prompt_bindings
    from registry.server import bindings as registry_bindings

    # The prompt and registry services are co-hosted in the app process (one fewer process,
    # one database connection pool); they have no state of their own outside the database.
    await app_serve(conf, stop, extra_bindings=[*prompt_bindings(), *registry_bindings()])


async def _run_services(names: list[str], conf: Settings) -> None:
    """Runs the named services on one event loop until SIGTERM/SIGINT or until one of them
    fails. A gateway co-hosted with an engine calls it directly (no loopback gRPC hop)."""
    from budrt.grpc_server import install_stop_signals

    stop = asyncio.Event()
    install_stop_signals(stop)
    runs: list[Coroutine[Any, Any, None]] = []
    engine_servicer = None
    if "engine" in names:
        from engine.server import build_servicer, serve as engine_serve

        engine_servicer = build_servicer(conf)
        runs.append(engine_serve(conf, stop, engine_servicer))
    if "gateway" in names:
        from gateway.server import serve as gateway_serve

        local = {conf.engine_address: engine_servicer} if engine_servicer is not None else None
        runs.append(gateway_serve(conf, stop, local))
    if "app" in names:
        runs.append(_serve_app(conf, stop))
    tasks = [asyncio.create_task(run) for run in runs]
    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    stop.set()  # one service ended (or failed): the others stop with it
    await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        task.result()  # a failure surfaces as this process's failure


def serve_command(names: list[str]) -> int:
    """Runs one service (or several co-hosted) in this process until SIGTERM/SIGINT."""
    conf = settings()
    conf.data_dir.mkdir(parents=True, exist_ok=True)
    setup_logging(conf.log_level, service="+".join(names))
    import uvloop

    uvloop.run(_run_services(names, conf))
    return 0


def _gateway_ready(conf: Settings) -> bool:
    """Whether the gateway has its routing tables and every deployment in them is ready."""
    url = f"http://{conf.gateway_http_host}:{conf.gateway_http_port}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            state = json.loads(response.read())
    except (OSError, ValueError):
        return False
    # Some deployment must be there unless the settings ask for no default ones.
    least = 1 if conf.default_model_name or conf.default_embedding_model_name else 0
    return state.get("deployments", 0) >= least and state.get("deployments_ready") == state.get("deployments")


def _default_models(conf: Settings) -> str:
    names = []
    if conf.default_model_name:
        noise = "" if conf.default_model_source else "; random weights: replies are noise"
        names.append(f"{conf.default_model_name} (chat{noise})")
    if conf.default_embedding_model_name:
        names.append(f"{conf.default_embedding_model_name} (embeddings)")
    return ", ".join(names) or "none (no default deployments)"


def up_command(timeout: float) -> int:
    """Starts app, engine and gateway as child processes; stops them all on SIGINT/SIGTERM or
    when any of them exits."""
    conf = settings()
    conf.data_dir.mkdir(parents=True, exist_ok=True)
    # Generate the shared secrets once, before the children race to do it.
    conf.secret("key_hash_secret")
    conf.secret("jwt_secret")
    # The engine runs inside the gateway process unless configured otherwise (engine_in_gateway).
    groups = [["app"], ["gateway", "engine"]] if conf.engine_in_gateway else [["app"], ["engine"], ["gateway"]]
    children: dict[str, subprocess.Popen[bytes]] = {}
    stopping = False

    def stop_all(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop_all)
    signal.signal(signal.SIGTERM, stop_all)
    for group in groups:
        # Each process in a process group of its own, so that vLLM's engine-core and worker
        # processes go with their engine even when it has to be killed (e.g. mid-load).
        children["+".join(group)] = subprocess.Popen([sys.executable, "-m", "budrt", "serve", *group],
                                                     env=os.environ.copy(), start_new_session=True)
    deadline = time.monotonic() + timeout
    announced = False
    exit_code = 0
    while not stopping:
        for name, child in children.items():
            if child.poll() is not None:
                print(f"budrt: {name} exited with status {child.returncode}; stopping the mesh", file=sys.stderr, flush=True)
                exit_code = child.returncode or 1
                stopping = True
        if stopping:
            break
        if not announced and _gateway_ready(conf):
            base = f"http://{conf.gateway_http_host}:{conf.gateway_http_port}/v1"
            print(
                "\nBud Runtime is up.\n"
                f"  OpenAI base URL: OPENAI_BASE_URL={base}\n"
                f"  gRPC (OpenAI service): {conf.gateway_grpc_address}   management gRPC: {conf.app_address}\n"
                f"  models: {_default_models(conf)}\n"
                "  The API key and the admin password were printed once above on first start\n"
                "  (OPENAI_API_KEY=..., BUD_ADMIN_PASSWORD=...); log in with POST /v1/auth/login.\n"
                "  Press Ctrl-C to stop.\n",
                flush=True,
            )
            announced = True
        if not announced and time.monotonic() > deadline:
            print(f"budrt: the gateway was not ready within {timeout:.0f}s; stopping", file=sys.stderr, flush=True)
            exit_code = 1
            break
        time.sleep(0.2)
    for child in reversed(children.values()):  # front first, so nothing new arrives
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for name, child in children.items():
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            print(f"budrt: {name} did not stop within 30s; killing it", file=sys.stderr, flush=True)
        # Whatever is left of the service's group (the process itself, or processes it spawned
        # and could not stop) goes too.
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        child.wait()
    return exit_code


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `budrt` command."""
    parser = argparse.ArgumentParser(prog="budrt", description="Bud Runtime launcher")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the whole mesh on this machine")
    up.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the mesh to be ready")
    serve = sub.add_parser("serve", help="run one service, or several in one process (addresses from configuration)")
    serve.add_argument("service", choices=SERVICES, nargs="+")
    args = parser.parse_args(argv)
    if args.command == "up":
        return up_command(args.timeout)
    return serve_command(list(dict.fromkeys(args.service)))


if __name__ == "__main__":
    raise SystemExit(main())
