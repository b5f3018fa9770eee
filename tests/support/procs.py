"""Process trees of the services tests and benchmarks start (psutil): what a service spawned,
whether it is gone, how much CPU it used; and waiting until one got somewhere."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psutil


def descendants(pid: int) -> set[int]:
    """The pids of every process below `pid` (empty when it is gone)."""
    try:
        return {child.pid for child in psutil.Process(pid).children(recursive=True)}
    except psutil.Error:
        return set()


def still_running(pids: set[int]) -> set[int]:
    """Those of `pids` that exist and have not exited (zombies count as gone)."""
    running = set()
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                running.add(pid)
        except psutil.Error:
            pass
    return running


def tree_cpu_seconds(pid: int) -> tuple[float, float]:
    """(user + system CPU seconds of `pid`, of all its descendants); zeros when it is gone."""
    try:
        root = psutil.Process(pid)
        own = sum(root.cpu_times()[:2])
        children = root.children(recursive=True)
    except psutil.Error:
        return 0.0, 0.0
    below = 0.0
    for child in children:
        try:
            below += sum(child.cpu_times()[:2])
        except psutil.Error:
            pass
    return own, below


def service_pids(launcher_pid: int) -> dict[str, int]:
    """The `budrt serve <name>...` children of a `budrt up` launcher, by process label: the
    service's name, or the names joined by "+" for services co-hosted in one process
    (`budrt serve gateway engine` → "gateway+engine")."""
    pids = {}
    try:
        children = psutil.Process(launcher_pid).children()
    except psutil.Error:
        return pids
    for child in children:
        try:
            cmdline = child.cmdline()
        except psutil.Error:
            continue
        if "serve" in cmdline[:-1]:
            pids["+".join(cmdline[cmdline.index("serve") + 1 :])] = child.pid
    return pids


def service_pid(launcher_pid: int, service: str) -> int:
    """The pid of the `budrt up` child that hosts `service` (alone or co-hosted)."""
    for label, pid in service_pids(launcher_pid).items():
        if service in label.split("+"):
            return pid
    raise LookupError(f"no process of launcher {launcher_pid} hosts {service!r}")


def wait_until(
    what: str, check: Callable[[], Any], timeout: float, logs: Callable[[], str] | None = None
) -> Any:
    """Polls `check` every half second until it returns something true, and returns that;
    AssertionError naming `what` (and the tail `logs` gives, for a service that never got there)
    after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not within {timeout:.0f}s\n{logs() if logs else ''}")
        time.sleep(0.5)
