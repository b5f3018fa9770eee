"""Migrations run once per release, never by every replica at once: `budrt migrate` brings the
app's and the registry's schemas to the code's head and exits (the Helm chart's Job, compose's
one-shot service), and with `migrate_on_start` off an app (or its registry) refuses a database
behind its code instead of migrating it — on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text

from app.db import migrate as app_migrate
from app.db.session import Database
from app.server import start_app
from app.settings import AppSettings
from budrt import cli
from budrt.database import SchemaBehindError, alembic_config
from budrt.settings import load
from registry.component import make_servicer
from registry.db import migrate as registry_migrate
from registry.db.models import VERSION_TABLE
from registry.db.session import RegistryDatabase
from registry.settings import RegistrySettings
from tests.support.postgres import PostgresCluster, postgres_cluster  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[2]


def _head(script_location: Path) -> str:
    return ScriptDirectory.from_config(alembic_config(script_location)).get_current_head() or ""


APP_HEAD = _head(app_migrate.MIGRATIONS_DIR)
REGISTRY_HEAD = _head(registry_migrate.MIGRATIONS_DIR)


@pytest.fixture(autouse=True)
def _root_logging() -> Iterator[None]:
    """`budrt migrate` run in process sets the root logger up as the CLI does (a handler on this
    test's captured stderr, closed after it): give the next tests the root logger back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: a SQLite file, or a new database in the session's PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'bud.db'}"
        return
    cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
    name = cluster.create_database()
    try:
        yield cluster.url(name)
    finally:
        cluster.drop_database(name)


async def _versions(url: str) -> tuple[str | None, str | None]:
    db = Database(url)
    try:
        async with db.engine.connect() as conn:
            app = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
            registry = (await conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}"))).scalar()
        return app, registry
    finally:
        await db.dispose()


@pytest.fixture
def settings_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str) -> Iterator[str]:
    """The process's settings name `database_url` (read fresh: the settings cache is cleared)."""
    monkeypatch.setenv("BUD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("BUD_DATABASE_URL", database_url)
    load.cache_clear()
    yield database_url
    load.cache_clear()


async def test_budrt_migrate_brings_app_and_registry_to_head(
    settings_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # The command calls asyncio.run: it runs in a thread without a running loop.
    assert await asyncio.to_thread(cli.main, ["migrate"]) == 0
    out = capsys.readouterr().out
    assert "budrt migrate: app: at the head revision" in out
    assert "budrt migrate: registry: at the head revision" in out
    assert await _versions(settings_env) == (APP_HEAD, REGISTRY_HEAD)
    assert await asyncio.to_thread(cli.main, ["migrate"]) == 0  # idempotent: a rerun of the Job
    assert await _versions(settings_env) == (APP_HEAD, REGISTRY_HEAD)


async def test_budrt_migrate_fails_naming_the_component(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BUD_DATA_DIR", str(tmp_path / "data"))
    # Nothing listens there: the Job fails, and says which component's database it could not reach.
    monkeypatch.setenv("BUD_DATABASE_URL", "postgresql+psycopg://bud:pw@127.0.0.1:1/bud?connect_timeout=2")
    load.cache_clear()
    try:
        assert await asyncio.to_thread(cli.main, ["migrate"]) == 1
    finally:
        load.cache_clear()
    assert "budrt migrate: app: OperationalError" in capsys.readouterr().err


async def test_app_refuses_a_schema_behind_its_code_without_migrate_on_start(
    database_url: str, tmp_path: Path
) -> None:
    settings = AppSettings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        migrate_on_start=False,
        key_hash_secret="k" * 32,
        jwt_secret="j" * 32,
        app_address="127.0.0.1:0",
    )
    # An empty database: nothing to serve from, and the replica does not create the schema itself.
    with pytest.raises(SchemaBehindError, match=r"none \(an empty database\).*budrt migrate"):
        await start_app(settings)
    # One release behind (the Job has not run yet): refused, naming both revisions.
    db = Database(database_url)
    try:
        await app_migrate.upgrade_database(db, "0008_prompt_usage")
        with pytest.raises(SchemaBehindError) as refused:
            await start_app(settings)
        message = str(refused.value)
        assert "app database schema is at revision 0008_prompt_usage" in message
        assert APP_HEAD in message and "migrate_on_start=true" in message
        # ... and left as it was: only the Job migrates.
        async with db.engine.connect() as conn:
            version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
        assert version == "0008_prompt_usage"
        # At the head, the check passes.
        await app_migrate.upgrade_database(db)
        await app_migrate.check_database_current(db)
    finally:
        await db.dispose()


async def test_registry_checks_instead_of_migrating_without_migrate_on_start(
    database_url: str, tmp_path: Path
) -> None:
    settings = RegistrySettings(data_dir=tmp_path / "data", registry_register_builtin_models=False)
    servicer = make_servicer(settings, lambda: "127.0.0.1:1", database_url, migrate=False)
    try:
        with pytest.raises(SchemaBehindError, match="registry database schema"):
            await servicer.ready()
        db = RegistryDatabase(database_url)
        try:
            await registry_migrate.upgrade_database(db)
        finally:
            await db.dispose()
        await servicer.ready()  # current now: the check passes
    finally:
        await servicer.dispose()


def test_the_registry_follows_its_hosts_migrate_on_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The chart and compose set BUD_MIGRATE_ON_START=false on the app; the registry, a guest of
    # its process, takes its host's setting (the app's), as it takes its database URL.
    settings = RegistrySettings(data_dir=tmp_path)
    for value, expected in (("false", False), ("true", True)):
        monkeypatch.setenv("BUD_MIGRATE_ON_START", value)
        load.cache_clear()
        try:
            assert AppSettings().migrate_on_start is expected
            assert make_servicer(settings, lambda: "127.0.0.1:1")._migrate is expected
        finally:
            load.cache_clear()


@pytest.mark.integration
def test_budrt_migrate_as_the_job_runs_it(tmp_path: Path) -> None:
    """The command line the chart's Job and compose's service run: a process that exits 0."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("BUD_")},
        "BUD_DATA_DIR": str(tmp_path / "data"),
        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'gen'}",
    }
    done = subprocess.run(
        [sys.executable, "-m", "budrt", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("at the head revision") == 2


@pytest.mark.integration
def test_budrt_serve_app_refuses_a_behind_schema_with_one_clear_line(tmp_path: Path) -> None:
    """A replica started before the Job ran: exit status 2 and the reason, no traceback."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("BUD_")},
        "BUD_DATA_DIR": str(tmp_path / "data"),
        "BUD_MIGRATE_ON_START": "false",
        "BUD_APP_ADDRESS": "127.0.0.1:0",
        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'gen'}",
    }
    done = subprocess.run(
        [sys.executable, "-m", "budrt", "serve", "app"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 2, done.stderr
    assert "budrt: the app database schema is at revision none (an empty database)" in done.stderr
    assert "run `budrt migrate`" in done.stderr and "Traceback" not in done.stderr
