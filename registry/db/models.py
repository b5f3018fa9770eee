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

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, MetaData, String, Text
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
