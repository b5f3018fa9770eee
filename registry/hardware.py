"""The hardware profile of a benchmark: CPU model and cores, GPUs, memory, and the key results
are grouped, filtered and ranked by.

`capture()` reads this machine (`/proc/cpuinfo`, `os.cpu_count()`, `/proc/meminfo`, and
`nvidia-smi` when it is on the PATH; no GPU otherwise). `budrt bench` captures on the machine it
runs on: run it on the engine's machine (or pass the engine machine's profile by hand) — the
deployment's engine may run elsewhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from bud.registry.v1 import registry_pb2

GIB = 1024**3
# nvidia-smi answers in well under a second; a wedged driver must not hang the benchmark.
NVIDIA_SMI_TIMEOUT_S = 10.0


def profile_key(hw: registry_pb2.HardwareProfile) -> str:
    """``"<n>x <gpu> | <cpu> x<cores> | <GiB> GiB"`` (``"cpu | ..."`` without a GPU): equal for
    two results on the same kind of machine. Memory is rounded to whole GiB (what the kernel
    reserves varies by a few MiB between boots). An empty profile (a result that names no
    machine, e.g. an accuracy) has the empty key."""
    if not (hw.cpu_model or hw.cpu_cores or hw.gpu_count or hw.memory_bytes):
        return ""
    gpu = f"{hw.gpu_count}x {hw.gpu_name}" if hw.gpu_count and hw.gpu_name else "cpu"
    cpu = f"{hw.cpu_model or 'unknown cpu'} x{hw.cpu_cores}"
    return f"{gpu} | {cpu} | {round(hw.memory_bytes / GIB)} GiB"


def _cpu_model(cpuinfo: str) -> str:
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        # x86: "model name"; arm64 kernels often give none (then "CPU part", else nothing).
        if key.strip() in ("model name", "Model", "Hardware") and value.strip():
            return " ".join(value.split())
    return ""


def _memory_bytes(meminfo: str) -> int:
    for line in meminfo.splitlines():
        if line.startswith("MemTotal:"):
            parts = line.split()
            return int(parts[1]) * 1024 if len(parts) >= 2 and parts[1].isdigit() else 0
    return 0


def _gpus() -> tuple[str, int]:
    """(name of the first GPU, how many) from nvidia-smi; ("", 0) without one."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return "", 0
    try:
        out = subprocess.run(
            [smi, "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=NVIDIA_SMI_TIMEOUT_S,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "", 0
    names = [line.strip() for line in out.splitlines() if line.strip()]
    return (names[0], len(names)) if names else ("", 0)


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def capture() -> registry_pb2.HardwareProfile:
    """This machine's profile."""
    gpu_name, gpu_count = _gpus()
    hw = registry_pb2.HardwareProfile(
        cpu_model=_cpu_model(_read("/proc/cpuinfo")),
        cpu_cores=os.cpu_count() or 0,
        gpu_name=gpu_name,
        gpu_count=gpu_count,
        memory_bytes=_memory_bytes(_read("/proc/meminfo")),
    )
    hw.key = profile_key(hw)
    return hw
