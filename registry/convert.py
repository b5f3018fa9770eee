"""Rows of the registry's tables → contract messages."""

from __future__ import annotations

import secrets
import time
from typing import Any

from google.protobuf import timestamp_pb2
from google.protobuf.json_format import ParseDict

from bud.registry.v1 import registry_pb2
from registry import licenses
from registry.db import models

MODEL = "rm"
OPERATION = "rop"


def new_id(kind: str) -> str:
    """``<kind>_<ms time, 12 hex><12 random hex>``: sorts by creation (the app's id scheme)."""
    return f"{kind}_{time.time_ns() // 1_000_000:012x}{secrets.token_hex(6)}"


def timestamp(ms: int) -> timestamp_pb2.Timestamp:
    """A Timestamp of milliseconds since the epoch."""
    ts = timestamp_pb2.Timestamp()
    ts.FromMilliseconds(ms)
    return ts


def license_of(row: models.RegistryModel) -> registry_pb2.License:
    """A model's licence: the catalogue's entry, plus where it was found and the card's words."""
    message = licenses.get(row.license_id).to_proto()
    message.text = row.license_text
    message.source = row.license_source
    message.card_license_name = row.card_license_name
    message.card_license_link = row.card_license_link
    return message


def scan_report(data: dict[str, Any]) -> registry_pb2.ScanReport | None:
    """The stored scan report (the contract's JSON form), None when no scan has run."""
    if not data:
        return None
    return ParseDict(data, registry_pb2.ScanReport(), ignore_unknown_fields=True)


def model_to_proto(row: models.RegistryModel) -> registry_pb2.RegistryModel:
    """A catalogue entry (licence text left to GetModelLicense: it can be long)."""
    license_ = license_of(row)
    license_.ClearField("text")
    return registry_pb2.RegistryModel(
        id=row.id,
        name=row.name,
        description=row.description,
        provider=registry_pb2.ModelProvider.Value(row.provider),
        hugging_face_id=row.hugging_face_id,
        revision=row.revision,
        local_path=row.local_path,
        architecture=row.architecture,
        model_type=row.model_type,
        parameter_count=row.parameter_count,
        context_length=row.context_length,
        dtype=row.dtype,
        license_id=row.license_id,
        license=license_,
        requirements=registry_pb2.ModelRequirements(
            weights_bytes=row.weights_bytes,
            kv_cache_bytes_per_1k_tokens=row.kv_cache_bytes_per_1k_tokens,
            memory_bytes_estimate=row.weights_bytes
            + row.kv_cache_bytes_per_1k_tokens * row.context_length // 1024,
        ),
        files=[
            registry_pb2.ModelFile(path=f.path, size_bytes=f.size_bytes, sha256=f.sha256) for f in row.files
        ],
        total_size_bytes=row.total_size_bytes,
        tags=list(row.tags),
        scan_status=registry_pb2.ScanStatus.Value(row.scan_status),
        scan=scan_report(row.scan_report),
        create_time=timestamp(row.create_time_ms),
        update_time=timestamp(row.update_time_ms),
    )


def operation_to_proto(row: models.ImportOperation) -> registry_pb2.ImportOperation:
    """An import's state and progress."""
    return registry_pb2.ImportOperation(
        id=row.id,
        source=row.source,
        state=registry_pb2.ImportState.Value(row.state),
        stage=row.stage,
        bytes_done=row.bytes_done,
        bytes_total=row.bytes_total,
        model_id=row.model_id,
        error=row.error,
        create_time=timestamp(row.create_time_ms),
        update_time=timestamp(row.update_time_ms),
    )
