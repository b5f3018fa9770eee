"""What a scan says: per-file verdicts with their findings, the model's overall status, and the
progress reported while it runs. Pydantic models, so the registry stores a report as JSON
(`report.model_dump(mode="json")`) and reads it back (`ScanReport.model_validate`)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field


class Verdict(StrEnum):
    """A file's verdict, and (with PENDING) a model's scan status, worst last but one:
    INFECTED > UNSAFE > ERROR > CLEAN when files are combined."""

    PENDING = "PENDING"  # not scanned, or its files changed since (the registry's state)
    CLEAN = "CLEAN"
    ERROR = "ERROR"  # the scan could not finish: never taken as clean
    UNSAFE = "UNSAFE"  # a dangerous pickle global, or a malformed model-format header
    INFECTED = "INFECTED"  # a ClamAV signature matched


# The order in which file verdicts decide a model's status (a later one wins).
_RANK = {Verdict.CLEAN: 0, Verdict.ERROR: 1, Verdict.UNSAFE: 2, Verdict.INFECTED: 3}

# Scan status is the same vocabulary as a file's verdict.
ScanStatus = Verdict


class Engine(StrEnum):
    """Which scanner made a finding."""

    CLAMAV = "clamav"
    PICKLESCAN = "picklescan"
    SAFETENSORS = "safetensors"
    GGUF = "gguf"


class Finding(BaseModel):
    """One thing a scanner found in a file."""

    engine: Engine
    # ClamAV: the signature name; picklescan: the global ("posix.system"); formats: a short code
    # ("header.offsets_out_of_bounds").
    signature: str
    # "error" findings decide the verdict; "warning" ones are reported only (a suspicious but
    # not known-dangerous pickle global when not strict).
    severity: str = "error"
    detail: str = ""


class FileReport(BaseModel):
    """One file of the model: its hash and size as scanned, and what the scanners said."""

    file: str  # path relative to the model's root, with "/" separators
    sha256: str = ""  # empty when the file could not be read
    size: int = 0
    verdict: Verdict
    findings: list[Finding] = Field(default_factory=list)
    # Why the verdict is ERROR (empty otherwise).
    error: str = ""


class ScanReport(BaseModel):
    """The result of scanning a model's files."""

    status: Verdict
    files: list[FileReport] = Field(default_factory=list)
    # Why the status is ERROR (the first file errors, or clamd unreachable); empty otherwise.
    reason: str = ""
    # clamd's VERSION answer (engine/signature-database version/date), for the record.
    clamav_version: str = ""
    started_at: float = 0.0  # Unix time
    finished_at: float = 0.0

    @property
    def findings(self) -> list[tuple[str, Finding]]:
        """Every finding that decides a verdict, with its file (for FAILED_PRECONDITION messages)."""
        return [(f.file, x) for f in self.files for x in f.findings if x.severity == "error"]

    def hashes(self) -> dict[str, str]:
        """{file: sha256} of the scanned files, to record and compare later (`verify_hashes`)."""
        return {f.file: f.sha256 for f in self.files if f.sha256}

    def summary(self) -> str:
        """One line naming the status and what decided it."""
        if self.status is Verdict.CLEAN:
            return f"CLEAN ({len(self.files)} files)"
        found = [f"{file}: {x.engine.value} {x.signature}" for file, x in self.findings]
        if self.status is Verdict.ERROR or not found:
            return f"{self.status.value}: {self.reason}"
        return f"{self.status.value}: " + "; ".join(found)


def combine(verdicts: list[Verdict]) -> Verdict:
    """The model's status from its files' verdicts (no files: CLEAN)."""
    return max(verdicts, key=_RANK.__getitem__, default=Verdict.CLEAN)


class ScanProgress(BaseModel):
    """Where a running scan is; passed to the caller's progress callback."""

    phase: str  # "connecting", "scanning", "done"
    file: str = ""  # the file being scanned
    files_done: int = 0
    files_total: int = 0
    bytes_done: int = 0  # bytes read (hashed) so far across all files
    bytes_total: int = 0
