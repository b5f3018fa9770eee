"""The SQLite database holds password and key hashes: it and its WAL companions are 0600, and the
data dir around it is 0700 — on a fresh data dir, and after tightening one an older version made."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy import text

from app.db.migrate import upgrade_database
from app.db.session import Database
from app.server import RunningApp, start_app
from app.settings import AppSettings
from tests.app.conftest import ADMIN_PASSWORD, ADMIN_USERNAME, FAST_RECONCILER
from tests.support.files import file_mode

pytestmark = pytest.mark.usefixtures("usual_umask")


async def test_a_fresh_data_dir_gets_a_private_database(tmp_path: Path, engine_host: object) -> None:
    settings = AppSettings(
        data_dir=tmp_path / "data",
        app_address="127.0.0.1:0",
        engine_address=engine_host.address,  # type: ignore[attr-defined]
        admin_username=ADMIN_USERNAME,
        admin_password=ADMIN_PASSWORD,
    )
    app: RunningApp = await start_app(settings, reconciler_options=FAST_RECONCILER)
    try:
        data_dir = settings.data_dir
        database = data_dir / "bud.db"
        # Written (the bootstrap) and open in WAL mode: all three files exist now.
        assert {p.name for p in data_dir.iterdir()} >= {"bud.db", "bud.db-wal", "bud.db-shm"}
        assert file_mode(data_dir) == 0o700
        for path in (database, data_dir / "bud.db-wal", data_dir / "bud.db-shm"):
            assert file_mode(path) == 0o600, path
        assert file_mode(data_dir / "secrets") == 0o700
        assert {file_mode(p) for p in (data_dir / "secrets").iterdir()} == {0o600}
    finally:
        await app.stop(grace=0)


async def test_an_existing_world_readable_database_is_tightened(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    database = tmp_path / "old" / "bud.db"
    database.parent.mkdir()
    db = Database(f"sqlite:///{database}")
    await upgrade_database(db)
    await db.dispose()
    for path in database.parent.iterdir():  # as SQLite made them before this fix
        path.chmod(0o644)
    (database.parent / "bud.db-wal").touch(mode=0o644)
    with caplog.at_level(logging.WARNING, logger="app.db.session"):
        db = Database(f"sqlite:///{database}")
    try:
        assert file_mode(database) == 0o600 and file_mode(database.parent / "bud.db-wal") == 0o600
        assert "tightened a database file to owner-only access" in [r.message for r in caplog.records]
        async with db.snapshot() as session:  # still a working database
            assert await session.scalar(text("SELECT count(*) FROM routing_state")) == 1
    finally:
        await db.dispose()
    assert file_mode(database.parent) == 0o755  # a directory the URL named: not this code's to change
