"""Long-running imports: ImportModel records an operation and runs the import in the background
(a thread: downloads and hashing block); its progress (stage, bytes) is written to the
operation's row at most every half second, so any replica answers GetImportOperation.

The same :func:`run_import` serves the CLI (`budrt models import`), in the foreground with
progress bars.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from sqlalchemy import update

from bud.registry.v1 import registry_pb2
from budrt.errors import ServiceError
from registry import importer
from registry.convert import MODEL, new_id
from registry.db import models
from registry.db.models import now_ms
from registry.db.session import RegistryDatabase

log = logging.getLogger(__name__)

# How often a running import's progress is written.
PROGRESS_INTERVAL_S = 0.5
RUNNING = registry_pb2.ImportState.Name(registry_pb2.IMPORT_STATE_RUNNING)
SUCCEEDED = registry_pb2.ImportState.Name(registry_pb2.IMPORT_STATE_SUCCEEDED)
FAILED = registry_pb2.ImportState.Name(registry_pb2.IMPORT_STATE_FAILED)


class _Progress:
    """The latest (stage, done, total), written by the worker thread, read by the writer."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = ("download", 0, 0)

    def __call__(self, stage: str, done: int, total: int) -> None:
        with self._lock:
            self.value = (stage, done, total)

    def get(self) -> tuple[str, int, int]:
        with self._lock:
            return self.value


async def write_operation(db: RegistryDatabase, op_id: str, **values: object) -> None:
    """Updates an operation row (an import's or a scan's): its progress or its end."""
    async with db.transaction() as session:
        await session.execute(
            update(models.ImportOperation)
            .where(models.ImportOperation.id == op_id)
            .values(update_time_ms=now_ms(), **values)
        )


def import_blocking(
    source: str,
    revision: str,
    name: str,
    tags: Sequence[str],
    roots: Sequence[Path],
    cache_dir: str,
    progress: importer.StageProgress,
    quiet: bool = True,
) -> models.RegistryModel:
    """Resolves (downloads) and describes (hashes) a source; the unsaved catalogue row. `quiet`:
    huggingface_hub's download bars are not drawn (the server; the CLI shows them)."""
    resolved = importer.resolve(source, revision, roots, cache_dir=cache_dir, progress=progress, quiet=quiet)
    meta, found = importer.describe(resolved, roots, progress)
    progress("metadata", 0, 0)
    return importer.new_row(new_id(MODEL), name or source, resolved, meta, found, tags)


async def run_import(
    db: RegistryDatabase,
    source: str,
    revision: str,
    name: str,
    tags: Sequence[str],
    roots: Sequence[Path],
    cache_dir: str,
    progress: importer.StageProgress | None = None,
) -> models.RegistryModel:
    """Imports in the foreground (the CLI): the saved row."""
    row = await asyncio.to_thread(
        import_blocking, source, revision, name, tags, roots, cache_dir, progress or (lambda *_: None), False
    )
    async with db.transaction() as session:
        session.add(row)
    return row


class ImportRunner:
    """Starts imports in the background and keeps their tasks until they end."""

    def __init__(
        self,
        db: RegistryDatabase,
        roots: Sequence[Path],
        cache_dir: str,
        after_import: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self._db = db
        # Called with the new model's id once an import succeeded (the servicer starts its scan).
        self._after_import = after_import
        self._roots = tuple(roots)
        self._cache_dir = cache_dir
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(
        self, source: str, revision: str, name: str, tags: Sequence[str]
    ) -> models.ImportOperation:
        """Records a RUNNING operation and starts it; the source was checked by the caller."""
        op = models.ImportOperation(
            id=new_id("rop"), source=source, revision=revision, state=RUNNING, stage="download"
        )
        async with self._db.transaction() as session:
            session.add(op)
        task = asyncio.create_task(
            self._run(op.id, source, revision, name, list(tags)), name=f"import-{op.id}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return op

    async def _write(self, op_id: str, **values: object) -> None:
        await write_operation(self._db, op_id, **values)

    async def _run(self, op_id: str, source: str, revision: str, name: str, tags: list[str]) -> None:
        progress = _Progress()
        work = asyncio.create_task(
            asyncio.to_thread(
                import_blocking, source, revision, name, tags, self._roots, self._cache_dir, progress
            )
        )
        # Retrieved even when this task is cancelled first (the thread cannot be stopped).
        work.add_done_callback(lambda t: t.cancelled() or t.exception())
        try:
            while not work.done():
                await asyncio.wait({work}, timeout=PROGRESS_INTERVAL_S)
                stage, done, total = progress.get()
                await self._write(op_id, stage=stage, bytes_done=done, bytes_total=total)
            row = work.result()
            async with self._db.transaction() as session:
                session.add(row)
                await session.flush()
                await session.execute(
                    update(models.ImportOperation)
                    .where(models.ImportOperation.id == op_id)
                    .values(state=SUCCEEDED, stage="done", model_id=row.id, update_time_ms=now_ms())
                )
            log.info("model imported", extra={"operation": op_id, "model_id": row.id})
            if self._after_import is not None:
                try:
                    await self._after_import(row.id)
                except Exception:  # the import stands; the model stays PENDING
                    log.exception("starting the scan of an imported model failed", extra={"model_id": row.id})
        except asyncio.CancelledError:
            await asyncio.shield(
                self._write(op_id, state=FAILED, error="the registry stopped during the import")
            )
            raise
        except ServiceError as err:
            await self._write(op_id, state=FAILED, error=err.message)
        except Exception as err:  # recorded on the operation; the service goes on
            log.exception("model import failed", extra={"operation": op_id})
            await self._write(op_id, state=FAILED, error=f"{type(err).__name__}: {err}"[:2000])

    async def wait(self) -> None:
        """Waits for the running imports (tests)."""
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def stop(self) -> None:
        """Cancels the running imports (each is recorded FAILED)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
