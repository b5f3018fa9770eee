"""The scanner's knobs: where clamd listens and how files reach it.

:class:`ScanSettings` is a plain pydantic model whose field names live in the runtime's flat
settings namespace (`clamav_*`, `scan_*`), so the registry's settings model can inherit it
(``class RegistrySettings(RuntimeSettings, ScanSettings)``) and every knob is a `BUD_<FIELD>`
variable or a key of the BUD_CONFIG file like any other. ClamAV's customary variables
``CLAMAV_HOST`` and ``CLAMAV_PORT`` are honoured too (they win over ``BUD_CLAMAV_HOST`` /
``BUD_CLAMAV_PORT`` when both are set). Standalone, :meth:`ScanSettings.from_env` reads the same
variables.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pydantic import AliasChoices, BaseModel, Field, model_validator

# clamd's own default StreamMaxLength (clamd.conf): an INSTREAM longer than this is refused.
CLAMD_DEFAULT_STREAM_MAX = 25 * 1024 * 1024


def _env(name: str, *others: str) -> AliasChoices:
    # The field name first: the BUD_CONFIG file's keys reach a settings model under the first
    # alias (budrt.settings keeps only keys that are field names). pydantic-settings reads every
    # alias as an environment name too (unprefixed, case-insensitive), so the bare upper-case name
    # (CLAMAV_SOCKET, SCAN_CHUNK_BYTES) is read as well as BUD_<FIELD> and CLAMAV_HOST/PORT.
    return AliasChoices(name, *others, f"BUD_{name.upper()}")


class ScanSettings(BaseModel):
    """How the registry scans model files (ClamAV, pickles, model-format headers)."""

    # clamd over TCP (host, port) unless `clamav_socket` names its unix socket.
    clamav_host: str = Field(default="127.0.0.1", validation_alias=_env("clamav_host", "CLAMAV_HOST"))
    clamav_port: int = Field(
        default=3310, ge=1, le=65535, validation_alias=_env("clamav_port", "CLAMAV_PORT")
    )
    clamav_socket: str = Field(default="", validation_alias=_env("clamav_socket"))
    # Ask clamd to read the file itself (`SCAN <path>`) instead of streaming it (INSTREAM): only
    # when clamd sees the same filesystem at the same paths and may read the model files. Then
    # clamd's MaxFileSize/MaxScanSize apply; set `AlertExceedsMax yes` in clamd.conf so a file
    # beyond them is reported (the scan is then ERROR) rather than passed silently.
    clamav_scan_by_path: bool = Field(default=False, validation_alias=_env("clamav_scan_by_path"))
    # clamd's StreamMaxLength (it cannot be asked over the protocol, so it is configured here too).
    # A file longer than this is streamed as several INSTREAM sessions ("segments") of at most
    # this many bytes, consecutive segments overlapping by `clamav_segment_overlap_bytes` so a
    # body signature shorter than the overlap is found even where it straddles a boundary.
    clamav_stream_max_bytes: int = Field(
        default=CLAMD_DEFAULT_STREAM_MAX, ge=4096, validation_alias=_env("clamav_stream_max_bytes")
    )
    clamav_segment_overlap_bytes: int = Field(
        default=1024 * 1024, ge=0, validation_alias=_env("clamav_segment_overlap_bytes")
    )
    clamav_connect_timeout_s: float = Field(
        default=5.0, gt=0, validation_alias=_env("clamav_connect_timeout_s")
    )
    # Longest wait for clamd to accept a chunk or to answer after the last one.
    clamav_timeout_s: float = Field(default=300.0, gt=0, validation_alias=_env("clamav_timeout_s"))

    # Bytes read (and sent to clamd) at a time: the scanner's memory per file is about this.
    scan_chunk_bytes: int = Field(
        default=1024 * 1024, ge=4096, le=64 * 1024 * 1024, validation_alias=_env("scan_chunk_bytes")
    )
    # Pickle globals picklescan neither knows as safe nor as dangerous ("suspicious", e.g. a
    # custom class): findings with severity "warning" by default; with strict, the file is UNSAFE.
    scan_pickle_strict: bool = Field(default=False, validation_alias=_env("scan_pickle_strict"))

    model_config = {"populate_by_name": True}

    @model_validator(mode="after")
    def _overlap_fits(self) -> ScanSettings:
        # A segment must advance: the overlap is at most half a segment.
        if self.clamav_segment_overlap_bytes * 2 > self.clamav_stream_max_bytes:
            raise ValueError("clamav_segment_overlap_bytes must be at most half of clamav_stream_max_bytes")
        return self

    @property
    def clamd_address(self) -> str:
        """Where clamd is, for messages: the unix socket or host:port."""
        return (
            f"unix:{self.clamav_socket}" if self.clamav_socket else f"{self.clamav_host}:{self.clamav_port}"
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ScanSettings:
        """Settings from the environment (`CLAMAV_HOST`, `CLAMAV_PORT`, `BUD_<FIELD>`), then
        `overrides`."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, field in cls.model_fields.items():
            alias = field.validation_alias
            choices = alias.choices if isinstance(alias, AliasChoices) else []
            # Later choices are the BUD_ name; the customary CLAMAV_* name wins, as in a settings model.
            for choice in reversed(choices[1:]):
                if isinstance(choice, str) and choice in env:
                    values[name] = env[choice]
        values.update(overrides)
        return cls.model_validate(values)
