"""Process trees from /proc: what a service spawned, whether it is gone, how much CPU it used."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Proc:
    """One process as /proc/<pid>/stat shows it."""

    pid: int
    ppid: int
    state: str  # R, S, Z (zombie: exited, not yet reaped), ...
    cpu_seconds: float  # user + system


def process_table() -> dict[int, Proc]:
    """Every process, by pid."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        pid = int(entry.name)
        table[pid] = Proc(pid, int(fields[1]), fields[0], (int(fields[11]) + int(fields[12])) / _TICKS)
    return table


def descendants(pid: int, table: dict[int, Proc] | None = None) -> set[int]:
    """The pids of every process below `pid`."""
    table = process_table() if table is None else table
    children: dict[int, list[int]] = {}
    for proc in table.values():
        children.setdefault(proc.ppid, []).append(proc.pid)
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def still_running(pids: set[int]) -> set[int]:
    """Those of `pids` that exist and have not exited (zombies count as gone)."""
    table = process_table()
    return {pid for pid in pids if pid in table and table[pid].state != "Z"}
