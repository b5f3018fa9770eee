"""Benchmark results: what CreateBenchmarkResult accepts (bounded, finite numbers), rows ↔
messages, and ListBenchmarkResults' query (newest first, keyset pagination bound to the filters).

A result is either a serving load (`budrt bench`: `load_points`, one per concurrency, with the
hardware profile and the engine configuration; benchmark "serving") or one metric of a named
benchmark (`benchmark`, `metric`, `value`, e.g. an evaluation run elsewhere)."""

from __future__ import annotations

import hashlib
import math
from typing import Any

from google.protobuf.json_format import MessageToDict, ParseDict
from sqlalchemy import Select, select

from bud.registry.v1 import registry_pb2
from budrt.errors import echo, invalid_argument
from registry.convert import timestamp
from registry.db import models
from registry.hardware import profile_key

SERVING = "serving"
RESULT = "rbr"
MAX_TEXT = 256
MAX_NOTES = 4000
MAX_LOAD_POINTS = 64
MAX_CONCURRENCY = 100_000
MAX_ENGINE_CONFIG = 64
MAX_CONFIG_VALUE = 1000
MAX_CORES = 1_000_000
MAX_GPUS = 4096
# The load-point fields that are numbers of milliseconds, rates or token counts (non-negative).
_MEASURES = tuple(
    f.name
    for f in registry_pb2.BenchmarkLoadPoint.DESCRIPTOR.fields
    if f.name not in ("concurrency", "requests", "errors")
)


def _text(value: str, param: str, limit: int = MAX_TEXT) -> str:
    if len(value) > limit:
        raise invalid_argument(f"{param} is longer than {limit} characters", param=param)
    return value.strip()


def _non_negative(value: float, param: str) -> float:
    if not math.isfinite(value) or value < 0:
        raise invalid_argument(f"{param} must be a finite number, not negative", param=param)
    return value


def check_hardware(hw: registry_pb2.HardwareProfile) -> registry_pb2.HardwareProfile:
    """The profile with its key computed (a caller's `key` is ignored: output only)."""
    _text(hw.cpu_model, "result.hardware.cpu_model")
    _text(hw.gpu_name, "result.hardware.gpu_name")
    if not 0 <= hw.cpu_cores <= MAX_CORES:
        raise invalid_argument("result.hardware.cpu_cores is out of range", param="result.hardware.cpu_cores")
    if not 0 <= hw.gpu_count <= MAX_GPUS:
        raise invalid_argument("result.hardware.gpu_count is out of range", param="result.hardware.gpu_count")
    if hw.memory_bytes < 0:
        raise invalid_argument(
            "result.hardware.memory_bytes must not be negative", param="result.hardware.memory_bytes"
        )
    if bool(hw.gpu_name) != bool(hw.gpu_count):
        raise invalid_argument(
            "result.hardware: gpu_name and gpu_count go together (both empty without a GPU)",
            param="result.hardware.gpu_count",
        )
    out = registry_pb2.HardwareProfile()
    out.CopyFrom(hw)
    out.cpu_model, out.gpu_name = " ".join(hw.cpu_model.split()), " ".join(hw.gpu_name.split())
    out.key = profile_key(out)
    return out


def check_load_points(points: Any) -> list[registry_pb2.BenchmarkLoadPoint]:
    """Load points with distinct positive concurrencies and finite, non-negative measures."""
    if len(points) > MAX_LOAD_POINTS:
        raise invalid_argument(f"result.load_points: at most {MAX_LOAD_POINTS}", param="result.load_points")
    seen: set[int] = set()
    for i, point in enumerate(points):
        param = f"result.load_points[{i}]"
        if not 1 <= point.concurrency <= MAX_CONCURRENCY:
            raise invalid_argument(
                f"{param}.concurrency must be between 1 and {MAX_CONCURRENCY}", param=f"{param}.concurrency"
            )
        if point.concurrency in seen:
            raise invalid_argument(
                f"{param}: concurrency {point.concurrency} is given twice", param=f"{param}.concurrency"
            )
        seen.add(point.concurrency)
        if point.requests < 0 or point.errors < 0:
            raise invalid_argument(f"{param}: requests and errors must not be negative", param=param)
        for name in _MEASURES:
            _non_negative(getattr(point, name), f"{param}.{name}")
    return sorted(points, key=lambda p: p.concurrency)


def check_engine_config(config: Any) -> dict[str, str]:
    if len(config) > MAX_ENGINE_CONFIG:
        raise invalid_argument(
            f"result.engine_config: at most {MAX_ENGINE_CONFIG} entries", param="result.engine_config"
        )
    for key, value in config.items():
        _text(key, "result.engine_config (a key)", 100)
        _text(value, f"result.engine_config[{echo(key)}]", MAX_CONFIG_VALUE)
    return dict(config)


def new_row(
    result_id: str, model_id: str, model_name: str, result: registry_pb2.BenchmarkResult
) -> models.BenchmarkResult:
    """The row of a checked result (`check_*` applied by the caller)."""
    hardware = check_hardware(result.hardware)
    points = check_load_points(result.load_points)
    return models.BenchmarkResult(
        id=result_id,
        model_id=model_id,
        model_name=model_name,
        deployment_name=result.deployment_name,
        benchmark=result.benchmark,
        metric=result.metric,
        value=result.value,
        hardware=MessageToDict(hardware, preserving_proto_field_name=True),
        hardware_key=hardware.key,
        gpu_name=hardware.gpu_name,
        engine_config=check_engine_config(result.engine_config),
        load_points=[MessageToDict(p, preserving_proto_field_name=True) for p in points],
        source=result.source,
        notes=result.notes,
    )


def check_result(result: registry_pb2.BenchmarkResult) -> None:
    """The result's own fields (model resolution is the servicer's)."""
    _text(result.benchmark, "result.benchmark", 200)
    _text(result.metric, "result.metric", 200)
    _text(result.deployment_name, "result.deployment_name")
    _text(result.model_name, "result.model_name")
    _text(result.source, "result.source", 100)
    _text(result.notes, "result.notes", MAX_NOTES)
    if not math.isfinite(result.value):
        raise invalid_argument("result.value must be a finite number", param="result.value")
    if result.load_points:
        if result.benchmark not in ("", SERVING):
            raise invalid_argument(
                f"result.load_points belong to the {SERVING!r} benchmark", param="result.benchmark"
            )
        if result.metric:
            raise invalid_argument(
                "result.metric is for a named benchmark's value, not a serving load", param="result.metric"
            )
    elif not result.benchmark.strip() or not result.metric.strip():
        raise invalid_argument(
            "a result is a serving load (load_points) or a named benchmark's value (benchmark, metric, value)",
            param="result.benchmark" if not result.benchmark.strip() else "result.metric",
        )


def to_proto(row: models.BenchmarkResult) -> registry_pb2.BenchmarkResult:
    """The stored result."""
    return registry_pb2.BenchmarkResult(
        id=row.id,
        model_id=row.model_id,
        model_name=row.model_name,
        deployment_name=row.deployment_name,
        benchmark=row.benchmark,
        metric=row.metric,
        value=row.value,
        hardware=ParseDict(row.hardware, registry_pb2.HardwareProfile(), ignore_unknown_fields=True),
        engine_config=row.engine_config,
        load_points=[
            ParseDict(p, registry_pb2.BenchmarkLoadPoint(), ignore_unknown_fields=True)
            for p in row.load_points
        ],
        source=row.source,
        notes=row.notes,
        create_time=timestamp(row.create_time_ms),
    )


def list_scope(request: registry_pb2.ListBenchmarkResultsRequest) -> str:
    """The listing a page token belongs to (its filters)."""
    filters = (
        request.model_id,
        request.hardware_profile,
        request.deployment_name,
        request.model_name,
        request.gpu_name,
    )
    return "registry/benchmarks/" + hashlib.sha256(repr(filters).encode()).hexdigest()[:16]


def list_query(
    request: registry_pb2.ListBenchmarkResultsRequest, before: str | None
) -> Select[tuple[models.BenchmarkResult]]:
    """Newest first (ids sort by creation), filtered; `before`: the last id of the previous page."""
    table = models.BenchmarkResult
    stmt = select(table)
    if request.model_id:
        stmt = stmt.where(table.model_id == request.model_id)
    if request.hardware_profile:
        stmt = stmt.where(table.hardware_key == request.hardware_profile)
    if request.deployment_name:
        stmt = stmt.where(table.deployment_name == request.deployment_name)
    if request.model_name:
        stmt = stmt.where(table.model_name == request.model_name)
    if request.gpu_name:
        stmt = stmt.where(table.gpu_name == ("" if request.gpu_name.lower() == "none" else request.gpu_name))
    if before is not None:
        stmt = stmt.where(table.id < before)
    return stmt.order_by(table.id.desc())
