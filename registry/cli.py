"""`budrt models import SOURCE`: imports a model into the registry from this machine, with
progress bars (download, hashing, scanning), scans it (unless `--no-scan`; clamd down: the scan
is ERROR, the import stands) and prints the resulting entry as JSON.

It runs the import itself, against the registry's database (`registry_database_url`, else the
app's `database_url`), as an operator on the app's machine does with its migrations; no login is
involved, so it is for whoever can read the settings and the database. Hugging Face sources go
through `snapshot_download` (HF_TOKEN, the HF cache, HF_HUB_OFFLINE=1 for an air-gapped site).
"""

from __future__ import annotations

import sys

import orjson
from google.protobuf.json_format import MessageToDict
from tqdm.auto import tqdm

from budrt.errors import ServiceError
from budrt.settings import load
from registry import operations
from registry.convert import model_to_proto
from registry.db import models
from registry.db.migrate import upgrade_database
from registry.db.session import RegistryDatabase
from registry.scanning import ScanProgress
from registry.scans import ScanRunner
from registry.settings import RegistrySettings


class _Bars:
    """tqdm bars for the hashing and the scan, in bytes (huggingface_hub draws the download's)."""

    def __init__(self) -> None:
        self._bars: dict[str, tqdm] = {}

    def scanning(self, progress: ScanProgress) -> None:
        """The scanner's progress (bytes read, hashed and sent to clamd)."""
        self("scanning", progress.bytes_done, progress.bytes_total)

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage not in ("hashing", "scanning"):
            return
        bar = self._bars.get(stage)
        if bar is None:
            bar = self._bars[stage] = tqdm(
                desc=stage, total=total or None, unit="B", unit_scale=True, file=sys.stderr, leave=True
            )
        if total and bar.total != total:
            bar.total = total
        bar.update(done - bar.n)

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()


async def import_command(source: str, revision: str, name: str, tags: list[str], scan: bool = True) -> int:
    """Imports `source` (and scans it); prints the entry (stdout) or the refusal (stderr, exit
    status 1)."""
    from registry.component import host_settings

    settings = load(RegistrySettings)
    db = RegistryDatabase(settings.resolved_database_url(host_settings()))
    bars = _Bars()
    try:
        await upgrade_database(db)
        row = await operations.run_import(
            db, source, revision, name, tags, settings.model_roots(), settings.registry_hf_cache_dir, bars
        )
        if scan:
            await ScanRunner(db, settings.scan_settings).scan_now(row.id, bars.scanning)
            async with db.transaction() as session:
                row = await session.get(models.RegistryModel, row.id) or row
                entry = MessageToDict(model_to_proto(row), preserving_proto_field_name=True)
        else:
            entry = MessageToDict(model_to_proto(row), preserving_proto_field_name=True)
    except ServiceError as err:
        bars.close()
        print(f"budrt models import: {err.message}", file=sys.stderr)
        return 1
    finally:
        await db.dispose()
    bars.close()
    print(orjson.dumps(entry, option=orjson.OPT_INDENT_2).decode())
    return 0
