"""Scans of catalogued models: ScanModel, the scan started after a registration or an import, and
the check a deployment passes through (ResolveModelForDeployment).

A scan runs `registry.scanning.scan_model` on every file under the model's directory, in the
background; its progress (stage "scan", bytes hashed and sent to clamd) is written to an operation
row of `registry_imports` every half second, so GetImportOperation answers a poll on any replica.
When it ends, the model gets the scan's status (CLEAN, INFECTED, UNSAFE, ERROR), its report, and
the files' hashes as scanned: the file rows are replaced by the scanned set, so what a deployment
is later checked against is exactly what was scanned. While a scan runs the model is PENDING.

Before a deployment uses a model, :meth:`ScanRunner.resolve` refuses one whose status is not
CLEAN (FAILED_PRECONDITION naming the findings) and re-hashes its files (`verify_hashes`): a file
changed, missing or added since the scan sends the model back to PENDING and refuses. The engine
checks the same hashes again when it loads (`engine/registry_files.py`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from google.protobuf.json_format import MessageToDict
from sqlalchemy import update

from bud.registry.v1 import registry_pb2
from budrt.errors import Reason, echo, failed_precondition, not_found
from registry.convert import OPERATION, new_id, timestamp
from registry.db import models
from registry.db.models import now_ms
from registry.db.session import RegistryDatabase
from registry.operations import write_operation
from registry.scanning import ScanProgress, ScanReport, ScanSettings, Verdict, scan_model, verify_hashes

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 0.5
STAGE = "scan"
PENDING = registry_pb2.ScanStatus.Name(registry_pb2.SCAN_STATUS_PENDING)
CLEAN = registry_pb2.ScanStatus.Name(registry_pb2.SCAN_STATUS_CLEAN)
RUNNING = registry_pb2.ImportState.Name(registry_pb2.IMPORT_STATE_RUNNING)
SUCCEEDED = registry_pb2.ImportState.Name(registry_pb2.IMPORT_STATE_SUCCEEDED)
FAILED = registry_pb2.ImportState.Name(registry_pb2.IMPORT_STATE_FAILED)

# The scanning library's verdicts → the contract's one enum (ScanStatus).
STATUS = {
    Verdict.PENDING: registry_pb2.SCAN_STATUS_PENDING,
    Verdict.CLEAN: registry_pb2.SCAN_STATUS_CLEAN,
    Verdict.INFECTED: registry_pb2.SCAN_STATUS_INFECTED,
    Verdict.UNSAFE: registry_pb2.SCAN_STATUS_UNSAFE,
    Verdict.ERROR: registry_pb2.SCAN_STATUS_ERROR,
}
# The older, coarser ScanReport.verdict (no UNSAFE there: it shows as INFECTED).
_VERDICT = {
    Verdict.CLEAN: registry_pb2.SCAN_VERDICT_CLEAN,
    Verdict.INFECTED: registry_pb2.SCAN_VERDICT_INFECTED,
    Verdict.UNSAFE: registry_pb2.SCAN_VERDICT_INFECTED,
    Verdict.ERROR: registry_pb2.SCAN_VERDICT_ERROR,
}


def status_name(verdict: Verdict) -> str:
    """The stored name of a verdict ("SCAN_STATUS_CLEAN")."""
    return registry_pb2.ScanStatus.Name(STATUS[verdict])


def report_to_proto(report: ScanReport) -> registry_pb2.ScanReport:
    """The library's report as the contract's message."""
    message = registry_pb2.ScanReport(
        verdict=_VERDICT.get(report.status, registry_pb2.SCAN_VERDICT_UNSPECIFIED),
        status=STATUS[report.status],
        reason=report.reason,
        summary=report.summary(),
        files_scanned=len(report.files),
        clamav_version=report.clamav_version,
    )
    if report.finished_at:
        message.scan_time.CopyFrom(timestamp(int(report.finished_at * 1000)))
    for entry in report.files:
        findings = [
            registry_pb2.ScanFinding(
                path=entry.file,
                scanner=x.engine.value,
                detail=x.signature,
                severity=x.severity,
                message=x.detail,
            )
            for x in entry.findings
        ]
        message.findings.extend(findings)
        message.files.append(
            registry_pb2.ScannedFile(
                path=entry.file,
                sha256=entry.sha256,
                size_bytes=entry.size,
                status=STATUS[entry.verdict],
                findings=findings,
                error=entry.error,
            )
        )
    return message


def stored_report(report: ScanReport) -> dict[str, Any]:
    """What `registry_models.scan_report` keeps: the contract's JSON form (read back by
    `convert.scan_report`)."""
    return MessageToDict(report_to_proto(report), preserving_proto_field_name=False)


def summary_of(row: models.RegistryModel) -> str:
    """The stored report's one-line summary (or why there is none)."""
    summary = str((row.scan_report or {}).get("summary", ""))
    return summary or "the model has not been scanned"


class _Latest:
    """The latest progress of a running scan (set on the event loop by the scanner)."""

    def __init__(self) -> None:
        self.value = ScanProgress(phase="connecting")

    def __call__(self, progress: ScanProgress) -> None:
        self.value = progress


class ScanRunner:
    """Starts scans in the background, one at a time per model, and checks models for deployment."""

    def __init__(self, db: RegistryDatabase, settings: Callable[[], ScanSettings]) -> None:
        self._db = db
        self._settings = settings
        self._tasks: set[asyncio.Task[None]] = set()
        self._running: dict[str, str] = {}  # model id → operation id

    async def start(self, model_id: str) -> models.ImportOperation:
        """Sets the model PENDING and starts scanning it; a scan already running for it is
        answered instead. NOT_FOUND for an unknown model, FAILED_PRECONDITION for one without
        files here (an OpenAI-compatible entry)."""
        async with self._db.transaction() as session:
            running = self._running.get(model_id)
            if running is not None:
                op = await session.get(models.ImportOperation, running)
                if op is not None:
                    return op
            row = await session.get(models.RegistryModel, model_id)
            if row is None:
                raise not_found(
                    f"model {echo(model_id)} not found", reason=Reason.MODEL_NOT_FOUND, param="model_id"
                )
            if not row.local_path:
                raise failed_precondition(
                    f"model {model_id} has no files here to scan (an OpenAI-compatible entry)",
                    param="model_id",
                )
            root = Path(row.local_path)
            row.scan_status, row.update_time_ms = PENDING, now_ms()
            op = models.ImportOperation(
                id=new_id(OPERATION), source=row.local_path, state=RUNNING, stage=STAGE, model_id=model_id
            )
            session.add(op)
        self._running[model_id] = op.id
        task = asyncio.create_task(self._run(op.id, model_id, root), name=f"scan-{op.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return op

    async def _write(self, op_id: str, **values: object) -> None:
        await write_operation(self._db, op_id, **values)

    async def _run(self, op_id: str, model_id: str, root: Path) -> None:
        latest = _Latest()
        work = asyncio.create_task(scan_model(root, None, self._settings(), latest))
        try:
            while not work.done():
                await asyncio.wait({work}, timeout=PROGRESS_INTERVAL_S)
                p = latest.value
                await self._write(op_id, bytes_done=p.bytes_done, bytes_total=p.bytes_total)
            report = work.result()
            await self._record(op_id, model_id, report)
            log.info(
                "model scanned", extra={"operation": op_id, "model_id": model_id, "status": report.status}
            )
        except asyncio.CancelledError:
            work.cancel()
            await asyncio.shield(
                self._write(op_id, state=FAILED, error="the registry stopped during the scan")
            )
            raise
        except Exception as err:  # recorded on the operation (the model stays PENDING)
            log.exception("model scan failed", extra={"operation": op_id, "model_id": model_id})
            await self._write(op_id, state=FAILED, error=f"{type(err).__name__}: {err}"[:2000])
        finally:
            if self._running.get(model_id) == op_id:
                del self._running[model_id]

    async def scan_now(self, model_id: str, progress: Callable[[ScanProgress], None] | None = None) -> str:
        """Scans in the foreground (the CLI, after its import): the status recorded."""
        async with self._db.transaction() as session:
            row = await session.get(models.RegistryModel, model_id)
            if row is None or not row.local_path:
                raise not_found(f"model {echo(model_id)} not found", param="model_id")
            root = Path(row.local_path)
        report = await scan_model(root, None, self._settings(), progress)
        await self._record(None, model_id, report)
        return status_name(report.status)

    async def _record(self, op_id: str | None, model_id: str, report: ScanReport) -> None:
        """The model's status, report and scanned files; the operation (if any) SUCCEEDED
        (whatever the verdict: the scan ran)."""
        async with self._db.transaction() as session:
            row = await session.get(models.RegistryModel, model_id)
            if row is None and op_id is None:
                return
            if row is None:
                await session.execute(
                    update(models.ImportOperation)
                    .where(models.ImportOperation.id == op_id)
                    .values(
                        state=FAILED, error="the model was deleted during its scan", update_time_ms=now_ms()
                    )
                )
                return
            # The scanned set replaces the recorded one (a file of the same path is updated).
            row.files = [
                models.RegistryModelFile(path=entry.file, size_bytes=entry.size, sha256=entry.sha256)
                for entry in report.files
            ]
            row.total_size_bytes = sum(entry.size for entry in report.files)
            row.scan_status = status_name(report.status)
            row.scan_report = stored_report(report)
            row.update_time_ms = now_ms()
            if op_id is None:
                return
            await session.execute(
                update(models.ImportOperation)
                .where(models.ImportOperation.id == op_id)
                .values(
                    state=SUCCEEDED,
                    stage="done",
                    bytes_done=sum(f.size for f in report.files),
                    error="" if report.status is Verdict.CLEAN else report.summary()[:2000],
                    update_time_ms=now_ms(),
                )
            )

    async def resolve(self, model_id: str) -> registry_pb2.ResolveModelForDeploymentResponse:
        """What a deployment of the model loads. FAILED_PRECONDITION unless its last scan is
        CLEAN (the message names the findings) and every file still has its scanned hash (a
        change sends the model back to PENDING)."""
        async with self._db.transaction() as session:
            row = await session.get(models.RegistryModel, model_id)
            if row is None:
                raise not_found(
                    f"registry model {echo(model_id)} not found",
                    reason=Reason.MODEL_NOT_FOUND,
                    param="model_id",
                )
            status, local_path = row.scan_status, row.local_path
            recorded = {f.path: f.sha256 for f in row.files}
            answer = registry_pb2.ResolveModelForDeploymentResponse(
                model_id=row.id,
                local_path=row.local_path,
                hugging_face_id=row.hugging_face_id,
                revision=row.revision,
                files=[
                    registry_pb2.ModelFile(path=f.path, size_bytes=f.size_bytes, sha256=f.sha256)
                    for f in row.files
                ],
                scan_status=registry_pb2.SCAN_STATUS_CLEAN,
            )
            summary = summary_of(row)
        if status != CLEAN:
            shown = status.removeprefix("SCAN_STATUS_")
            raise failed_precondition(
                f"registry model {model_id} cannot be deployed: its scan is {shown}"
                + ("" if status == PENDING else f" ({summary})")
                + ("; it is scanned after registration, or with ScanModel" if status == PENDING else ""),
                reason=Reason.MODEL_SCAN_NOT_CLEAN,
                param="model_id",
            )
        check = await verify_hashes(Path(local_path), recorded)
        if not check.unchanged:
            async with self._db.transaction() as session:
                await session.execute(
                    update(models.RegistryModel)
                    .where(models.RegistryModel.id == model_id)
                    .values(scan_status=PENDING, update_time_ms=now_ms())
                )
            raise failed_precondition(
                f"registry model {model_id} cannot be deployed: its files changed since its scan "
                f"({check.describe()}); it is PENDING until scanned again (ScanModel)",
                reason=Reason.MODEL_FILES_CHANGED,
                param="model_id",
            )
        return answer

    async def wait(self) -> None:
        """Waits for the running scans (tests)."""
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def stop(self) -> None:
        """Cancels the running scans (each operation is recorded FAILED; the models stay PENDING)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
