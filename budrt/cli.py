"""`budrt`: run the whole mesh on one machine (`budrt up`) or services (`budrt serve NAME...`),
show the effective settings (`budrt config [NAME...]`), and migrate the databases (`budrt
migrate`: every component's schema to this version's head, then exit).

The services are the installed components (`budrt.components`: entry points of group
`bud.components`); this module imports none of them. `budrt up` starts one process per
component, except where one joins another's (by default the engine joins the gateway: `budrt
serve gateway engine`, the inference path without a loopback gRPC hop; each its own process when
`engine_in_gateway` is off), exactly as `budrt serve` runs them on separate machines; it waits
until every readiness probe passes and prints where to point an OpenAI client.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from typing import Any

import yaml
from pydantic import ValidationError

from budrt import tracing
from budrt.components import Component, Host, discover, settings_of, standalone, up_groups
from budrt.database import SchemaBehindError
from budrt.grpc_server import install_stop_signals
from budrt.logs import setup_logging
from budrt.metrics import start_process_metrics
from budrt.settings import RuntimeSettings, SettingsError, check_known, redacted, settings
from budrt.tls import (
    OPERATOR,
    LocalCa,
    certificate_hosts,
    process_tls,
    set_process_identity,
    warn_if_insecure,
)


def _components() -> dict[str, Component]:
    """The installed components, after checking that the configuration names only settings they
    know (an unknown BUD_* variable or YAML key is an error, not silently ignored)."""
    components = discover()
    check_known([RuntimeSettings, *(c.settings for c in components.values())])
    return components


async def _run_services(components: dict[str, Component], names: list[str]) -> None:
    """Runs the named components (and the guests they host) on one event loop until SIGTERM or
    SIGINT, or until one of them fails. Every component is built before any runs, so what one
    offers in process (the engine its servicer) the others find."""
    stop = asyncio.Event()
    install_stop_signals(stop)
    # The process's /metrics, at its first component's (the host's) metrics address.
    exporter = await start_process_metrics(settings_of(components[names[0]]), names[0])
    host = Host(components, names, stop)
    runs = [components[name].start(host) for name in names]  # type: ignore[misc]
    tasks = [asyncio.create_task(run()) for run in runs]
    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    stop.set()  # one service ended (or failed): the others stop with it
    await asyncio.gather(*tasks, return_exceptions=True)
    if exporter is not None:
        await exporter.stop()
    tracing.shutdown()  # the spans still queued are exported
    for task in done:
        task.result()  # a failure surfaces as this process's failure


def serve_command(components: dict[str, Component], names: list[str]) -> int:
    """Runs one component (or several co-hosted) in this process until SIGTERM/SIGINT."""
    conf = settings()
    setup_logging(conf.log_level, service="+".join(names))
    tracing.configure_from(conf, "+".join(names))  # nothing at all without an OTLP endpoint
    conf.ensure_data_dir()  # after the logging setup: tightening an old one is logged
    warn_if_insecure(conf)
    # The process's service identity is its first component's (the host's): `gateway` for
    # `serve gateway engine`. Its certificate is loaded (or generated) now, so a missing file or
    # a certificate without an identity stops the start with a clear error.
    set_process_identity(names[0])
    try:
        process_tls()
        if conf.tls and not conf.tls_cert_file:  # the local CA: the operator's grpcurl too
            LocalCa.of(conf).issue([OPERATOR], certificate_hosts(conf))
    except (OSError, SettingsError) as err:
        print(f"budrt: TLS: {err}", file=sys.stderr)
        return 2
    import uvloop

    try:
        uvloop.run(_run_services(components, names))
    except (SettingsError, SchemaBehindError) as err:
        # A plaintext server on a reachable address (budrt.tls); a schema the code does not know
        # with migrate_on_start off (budrt.database): a clear line, not a traceback.
        print(f"budrt: {err}", file=sys.stderr)
        return 2
    return 0


def _mesh_ready(components: dict[str, Component]) -> bool:
    """Whether every component's readiness probe passes."""
    expected = sum(
        c.default_deployments(settings_of(c)) for c in components.values() if c.default_deployments
    )
    return all(c.ready(settings_of(c), expected) for c in components.values() if c.ready)


def _up_message(components: dict[str, Component]) -> str:
    # The front door (the components with a readiness probe) first, then the others.
    ordered = sorted(components.values(), key=lambda c: c.ready is None)
    lines = [line for c in ordered if c.announce for line in c.announce(settings_of(c))]
    return "\n".join(["", "Bud Runtime is up.", *lines, "  Press Ctrl-C to stop.", ""])


def up_command(components: dict[str, Component], timeout: float) -> int:
    """Starts the components as child processes (`up_groups`); stops them all on SIGINT/SIGTERM
    or when any of them exits."""
    conf = settings()
    conf.ensure_data_dir()
    # Generate the shared secrets once, before the children race to do it.
    conf.secret("key_hash_secret")
    conf.secret("jwt_secret")
    if conf.tls and not conf.tls_cert_file:
        # The local CA and a certificate per service and for the operator's grpcurl.
        LocalCa.of(conf).issue([*standalone(components), OPERATOR], certificate_hosts(conf))
    groups = up_groups(components)
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
        children["+".join(group)] = subprocess.Popen(
            [sys.executable, "-m", "budrt", "serve", *group], env=os.environ.copy(), start_new_session=True
        )
    deadline = time.monotonic() + timeout
    announced = False
    exit_code = 0
    while not stopping:
        for name, child in children.items():
            if child.poll() is not None:
                print(
                    f"budrt: {name} exited with status {child.returncode}; stopping the mesh",
                    file=sys.stderr,
                    flush=True,
                )
                exit_code = child.returncode or 1
                stopping = True
        if stopping:
            break
        if not announced and _mesh_ready(components):
            print(_up_message(components), flush=True)
            announced = True
        if not announced and time.monotonic() > deadline:
            print(
                f"budrt: the mesh was not ready within {timeout:.0f}s; stopping", file=sys.stderr, flush=True
            )
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


def config_command(components: dict[str, Component], names: list[str]) -> int:
    """Prints the effective settings (defaults, BUD_CONFIG, BUD_* variables) as the flat YAML a
    BUD_CONFIG file takes: the runtime's shared ones, then each component's own; secrets that
    are set show as "***"."""
    shared = set(RuntimeSettings.model_fields)
    print("# runtime (budrt.settings.RuntimeSettings): shared by every component")
    print(yaml.safe_dump(redacted(settings()), sort_keys=False), end="")
    for name in names or list(components):
        model = components[name].settings
        own = {
            key: value for key, value in redacted(settings_of(components[name])).items() if key not in shared
        }
        print(f"# {name} ({model.__module__}.{model.__qualname__})")
        if own:
            print(yaml.safe_dump(own, sort_keys=False), end="")
    return 0


def migrate_command(components: dict[str, Component]) -> int:
    """Runs every installed component's migrations (`Component.migrate`: the app's, then the
    registry's), each to the code's head, and exits: what a cluster's migration Job runs once per
    release before the replicas (with `migrate_on_start` off) roll out. Exit status 1 naming the
    component when one fails."""
    conf = settings()
    setup_logging(conf.log_level, service="migrate")
    for name, component in components.items():
        if component.migrate is None:
            continue
        try:
            asyncio.run(component.migrate(settings_of(component)))
        except Exception as err:  # any failure ends the Job, named
            print(f"budrt migrate: {name}: {type(err).__name__}: {err}", file=sys.stderr)
            return 1
        print(f"budrt migrate: {name}: at the head revision", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `budrt` command."""
    try:
        components = _components()
    except SettingsError as err:
        print(f"budrt: {err}", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog="budrt", description="Bud Runtime launcher")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the whole mesh on this machine")
    up.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the mesh to be ready")
    serve = sub.add_parser(
        "serve", help="run one service, or several in one process (addresses from configuration)"
    )
    serve.add_argument("service", choices=standalone(components), nargs="+")
    sub.add_parser(
        "migrate", help="bring every component's database schema to this version's head, then exit"
    )
    config = sub.add_parser("config", help="print the effective settings (secrets redacted)")
    # No `choices` here: argparse rejects an empty list against them.
    config.add_argument("component", nargs="*", help=f"any of: {', '.join(components)} (default: all)")
    for component in components.values():
        if component.commands is not None:
            component.commands(sub)
    args = parser.parse_args(argv)
    try:
        return _dispatch(parser, args, components)
    except ValidationError as err:  # a setting's value refused by its model (e.g. a bad cron)
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or e['type']}: {e['msg'].removeprefix('Value error, ')}"
            for e in err.errors()
        )
        print(f"budrt: invalid settings ({err.title}): {problems}", file=sys.stderr)
        return 2


def _dispatch(
    parser: argparse.ArgumentParser, args: argparse.Namespace, components: dict[str, Component]
) -> int:
    if getattr(args, "run", None) is not None:  # a component's own command
        return int(args.run(args))
    if args.command == "up":
        return up_command(components, args.timeout)
    if args.command == "migrate":
        return migrate_command(components)
    if args.command == "config":
        unknown = [name for name in args.component if name not in components]
        if unknown:
            parser.error(f"unknown components: {', '.join(unknown)}; installed: {', '.join(components)}")
        return config_command(components, list(dict.fromkeys(args.component)))
    return serve_command(components, list(dict.fromkeys(args.service)))


if __name__ == "__main__":
    raise SystemExit(main())
