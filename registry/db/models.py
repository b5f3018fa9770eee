"""The registry's tables as SQLAlchemy 2.0 typed ORM classes.

The schema is created and changed only by the alembic revisions in `registry/migrations/`
(version table `alembic_version_registry`); these classes must match them (a test compares the
two). Tables are prefixed `registry_`: they sit in the app's database by default.

Enum values (provider, scan status, import state) are stored by their protobuf *name*; times are
milliseconds since the epoch (UTC), the same on every dialect.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Index, Integer, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Where the revision of the registry's schema is recorded (the app's is `alembic_version`).
VERSION_TABLE = "alembic_version_registry"


def now_ms() -> int:
    """The current time in milliseconds since the epoch."""
    return time.time_ns() // 1_000_000


class Base(DeclarativeBase):
    """Declarative base of the registry's tables."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class RegistryModel(Base):
    """A catalogued model: what it is, where its files are, its licence and scan state."""

    __tablename__ = "registry_models"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(256))
    description: Mapped[str] = mapped_column(Text, default="")
    provider: Mapped[str] = mapped_column(String(40))
    hugging_face_id: Mapped[str] = mapped_column(String(200), default="")
    revision: Mapped[str] = mapped_column(String(100), default="")
    local_path: Mapped[str] = mapped_column(String(4096), default="")
    architecture: Mapped[str] = mapped_column(String(200), default="")
    model_type: Mapped[str] = mapped_column(String(100), default="")
    parameter_count: Mapped[int] = mapped_column(BigInteger, default=0)
    context_length: Mapped[int] = mapped_column(Integer, default=0)
    dtype: Mapped[str] = mapped_column(String(40), default="")
    # Licence: the catalogue's id ("unknown" when the card names none the catalogue knows), where
    # it was found, and what the card said of an unknown or "other" one.
    license_id: Mapped[str] = mapped_column(String(100), default="unknown")
    license_source: Mapped[str] = mapped_column(String(40), default="none")
    card_license_name: Mapped[str] = mapped_column(String(200), default="")
    card_license_link: Mapped[str] = mapped_column(String(2000), default="")
    license_text: Mapped[str] = mapped_column(Text, default="")
    weights_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    kv_cache_bytes_per_1k_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    total_size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    scan_status: Mapped[str] = mapped_column(String(40), default="SCAN_STATUS_PENDING")
    # The last scan's report (the scanner's: verdict, findings, files scanned, time); {} until one.
    scan_report: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    create_time_ms: Mapped[int] = mapped_column(BigInteger, default=now_ms)
    update_time_ms: Mapped[int] = mapped_column(BigInteger, default=now_ms)

    files: Mapped[list[RegistryModelFile]] = relationship(
        back_populates="model",
        cascade="all, delete-orphan",
        order_by="RegistryModelFile.path",
        lazy="selectin",
    )
    # The card's evaluation results: written with the entry, read by the leaderboard's own
    # query (never loaded with the entry), removed with it by the foreign key's cascade.
    evals: Mapped[list[ModelEvalResult]] = relationship(lazy="raise", passive_deletes=True)

    __table_args__ = (
        Index(None, "provider"),
        Index(None, "license_id"),
        Index(None, "scan_status"),
    )


class RegistryModelFile(Base):
    """One file of a model, with its size and SHA-256 (what a scan and a deployment check)."""

    __tablename__ = "registry_model_files"

    model_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("registry_models.id", ondelete="CASCADE"), primary_key=True
    )
    path: Mapped[str] = mapped_column(String(1024), primary_key=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))

    model: Mapped[RegistryModel] = relationship(back_populates="files")


class ImportOperation(Base):
    """A long-running import: its progress is written as it goes, so any replica answers a poll."""

    __tablename__ = "registry_imports"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    source: Mapped[str] = mapped_column(String(4096))
    revision: Mapped[str] = mapped_column(String(100), default="")
    state: Mapped[str] = mapped_column(String(40))
    stage: Mapped[str] = mapped_column(String(40), default="")
    bytes_done: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_total: Mapped[int] = mapped_column(BigInteger, default=0)
    model_id: Mapped[str] = mapped_column(String(64), default="")
    error: Mapped[str] = mapped_column(Text, default="")
    create_time_ms: Mapped[int] = mapped_column(BigInteger, default=now_ms)
    update_time_ms: Mapped[int] = mapped_column(BigInteger, default=now_ms)


class ModelEvalResult(Base):
    """One evaluation result a model's card publishes (`model-index`), stored at import: what the
    leaderboard ranks besides the recorded benchmarks."""

    __tablename__ = "registry_model_evals"

    model_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("registry_models.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    task: Mapped[str] = mapped_column(String(200), default="")
    dataset: Mapped[str] = mapped_column(String(200))
    dataset_name: Mapped[str] = mapped_column(String(200), default="")
    metric: Mapped[str] = mapped_column(String(200))
    metric_name: Mapped[str] = mapped_column(String(200), default="")
    value: Mapped[float] = mapped_column(Float)
    verified: Mapped[bool] = mapped_column(Boolean, default=False)


class BenchmarkResult(Base):
    """A recorded benchmark: a serving load (`budrt bench`: latency and throughput per
    concurrency, the hardware and the engine configuration) or one metric of a named benchmark.

    `model_id` is a registry entry's id or empty (a deployment of a model the catalogue does not
    hold: `model_name` names it); an entry's deletion leaves its results, named by `model_name`."""

    __tablename__ = "registry_benchmarks"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    model_id: Mapped[str] = mapped_column(String(64), default="")
    model_name: Mapped[str] = mapped_column(String(256), default="")
    deployment_name: Mapped[str] = mapped_column(String(256), default="")
    benchmark: Mapped[str] = mapped_column(String(200))
    metric: Mapped[str] = mapped_column(String(200), default="")
    value: Mapped[float] = mapped_column(Float, default=0.0)
    # The HardwareProfile's JSON form, and its key and GPU name as columns to filter on.
    hardware: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    hardware_key: Mapped[str] = mapped_column(String(512), default="")
    gpu_name: Mapped[str] = mapped_column(String(200), default="")
    engine_config: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    # BenchmarkLoadPoint JSON forms, by concurrency.
    load_points: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    source: Mapped[str] = mapped_column(String(100), default="")
    notes: Mapped[str] = mapped_column(Text, default="")
    create_time_ms: Mapped[int] = mapped_column(BigInteger, default=now_ms)

    __table_args__ = (
        Index(None, "model_id"),
        Index(None, "model_name"),
        Index(None, "deployment_name"),
        Index(None, "hardware_key"),
        Index(None, "gpu_name"),
    )


class LeaderboardEntry(Base):
    """A row of the leaderboard as last computed (the whole board is replaced at each refresh,
    so a read is a plain query and every replica answers the same)."""

    __tablename__ = "registry_leaderboard"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    benchmark: Mapped[str] = mapped_column(String(200))
    metric: Mapped[str] = mapped_column(String(200))
    hardware_key: Mapped[str] = mapped_column(String(512), default="")
    concurrency: Mapped[int] = mapped_column(Integer, default=0)
    rank: Mapped[int] = mapped_column(Integer)
    model_id: Mapped[str] = mapped_column(String(64), default="")
    model_name: Mapped[str] = mapped_column(String(256), default="")
    value: Mapped[float] = mapped_column(Float)
    higher_is_better: Mapped[bool] = mapped_column(Boolean)
    source: Mapped[str] = mapped_column(String(40))
    result_id: Mapped[str] = mapped_column(String(64), default="")
    task: Mapped[str] = mapped_column(String(200), default="")

    # Named: the convention's name would pass PostgreSQL's 63 characters.
    __table_args__ = (
        Index("ix_registry_leaderboard_board", "benchmark", "metric", "hardware_key", "concurrency", "rank"),
    )


class LeaderboardState(Base):
    """When the leaderboard was last computed (one row, id 1)."""

    __tablename__ = "registry_leaderboard_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    refresh_time_ms: Mapped[int] = mapped_column(BigInteger, default=0)
