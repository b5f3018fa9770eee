"""The app process on SQLite and PostgreSQL: migrations, first-start bootstrap, restarts,
`serve`."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, select

from app.bootstrap import BootstrapError
from app.db import models
from app.db.migrate import upgrade_database
from app.db.session import Database
from app.server import serve
from app.settings import AppSettings as Settings
from auth.keys import key_matches
from bud.app.v1 import deployment_pb2, project_pb2, usage_pb2
from bud.auth.v1 import auth_pb2
from bud.engine.v1 import engine_service_pb2

HASH_SECRET = "test-key-hash-secret"


def _printed_keys(out: str) -> list[str]:
    return [line.split("=", 1)[1] for line in out.splitlines() if line.startswith("OPENAI_API_KEY=")]


async def _counts(db: Database) -> dict[str, int]:
    async with db.snapshot() as session:
        return {
            table.name: int(await session.scalar(select(func.count()).select_from(table)) or 0)
            for table in models.Base.metadata.sorted_tables
        }


async def test_bootstrap_once(capsys: Any, start: Any, engine_host: Any, helpers: Any) -> None:
    first = await start()
    out = capsys.readouterr().out
    (secret,) = _printed_keys(out)
    lines = out.splitlines()
    assert "shown this once" in lines[lines.index(f"OPENAI_API_KEY={secret}") - 1]
    assert first.bootstrapped is not None and first.bootstrapped.secret == secret
    assert secret not in repr(first.bootstrapped)

    async with first.db.snapshot() as session:
        project = await session.scalar(select(models.Project))
        assert project is not None and project.name == "default"
        deployments = {d.name: d for d in await session.scalars(select(models.Deployment))}
        key = await session.scalar(select(models.ApiKey))
    assert set(deployments) == {"tiny-llama", "all-minilm-l6-v2"}
    chat, embedding = deployments["tiny-llama"], deployments["all-minilm-l6-v2"]
    assert (chat.model_source_kind, chat.model_source, chat.runner) == (
        "builtin",
        "tiny-llama",
        "RUNNER_GENERATE",
    )
    assert chat.engine_args == {"max_model_len": 2048, "kv_cache_space_gib": 1.0}
    assert (embedding.model_source_kind, embedding.model_source, embedding.runner) == (
        "builtin",
        "all-minilm-l6-v2",
        "RUNNER_POOLING",
    )
    # Placed on the configured engine, registered at the first start.
    assert [(e.address, e.served_model_name) for e in chat.endpoints] == [
        (engine_host.address, f"{chat.id}-g1")
    ]
    async with first.db.snapshot() as session:
        (engine,) = (await session.scalars(select(models.Engine))).all()
    assert (engine.name, engine.address, engine.max_models) == ("default", engine_host.address, 0)
    assert chat.endpoints[0].engine_id == engine.id
    assert key is not None and key.project_id == project.id and key_matches(secret, key.key_hash, HASH_SECRET)

    # The reconciler loads both on the engine double.
    await helpers.eventually(lambda: _all_ready(first.db), what="default deployments READY")
    loads = {c.name: c for c in engine_host.engine.load_calls}
    assert loads[f"{chat.id}-g1"].source == engine_service_pb2.ModelSource(builtin="tiny-llama")
    assert loads[f"{chat.id}-g1"].runner == engine_service_pb2.RUNNER_GENERATE
    assert (
        loads[f"{chat.id}-g1"].args.max_model_len == 2048
        and loads[f"{chat.id}-g1"].args.kv_cache_space_gib == 1.0
    )
    assert loads[f"{embedding.id}-g1"].source == engine_service_pb2.ModelSource(builtin="all-minilm-l6-v2")
    assert loads[f"{embedding.id}-g1"].runner == engine_service_pb2.RUNNER_POOLING
    assert not loads[f"{embedding.id}-g1"].args.HasField("max_model_len")

    before = await _counts(first.db)
    await first.stop()
    second = await start()
    assert capsys.readouterr().out == ""  # nothing printed on later starts
    assert second.bootstrapped is None
    assert await _counts(second.db) == before  # nothing created


async def _all_ready(db: Database) -> bool:
    async with db.snapshot() as session:
        statuses = set((await session.scalars(select(models.Deployment.status))).all())
    return statuses == {"DEPLOYMENT_STATUS_READY"}


async def test_bootstrap_does_not_come_back(capsys: Any, start: Any, clients: Any) -> None:
    """Deleting the defaults is respected: a restart does not recreate them."""
    first = await start()
    assert first.bootstrapped is not None
    admin = await clients(first).login()
    await admin.projects.DeleteProject(
        project_pb2.DeleteProjectRequest(project_id=first.bootstrapped.project_id, force=True)
    )
    await first.stop()
    capsys.readouterr()
    second = await start()
    assert second.bootstrapped is None and capsys.readouterr().out == ""
    counts = await _counts(second.db)
    assert counts["projects"] == counts["deployments"] == counts["api_keys"] == 0


async def test_concurrent_first_starts_bootstrap_once(capsys: Any, start: Any) -> None:
    apps = await asyncio.gather(start(), start())
    assert len(_printed_keys(capsys.readouterr().out)) == 1
    assert sum(a.bootstrapped is not None for a in apps) == 1
    counts = await _counts(apps[0].db)
    assert counts["projects"] == 1 and counts["deployments"] == 2 and counts["api_keys"] == 1


async def test_model_source_settings(capsys: Any, start: Any, tmp_path: Path) -> None:
    weights = tmp_path / "weights"
    weights.mkdir()
    app = await start(
        default_model_source=str(weights),
        default_embedding_model_source="sentence-transformers/all-MiniLM-L6-v2",
        default_model_name="local-chat",
        max_model_len=512,
    )
    async with app.db.snapshot() as session:
        deployments = {d.name: d for d in await session.scalars(select(models.Deployment))}
    chat = deployments["local-chat"]
    assert (chat.model_source_kind, chat.model_source) == ("local_path", str(weights.resolve()))
    assert chat.engine_args["max_model_len"] == 512
    embedding = deployments["all-minilm-l6-v2"]
    assert (embedding.model_source_kind, embedding.model_source) == (
        "hugging_face_id",
        "sentence-transformers/all-MiniLM-L6-v2",
    )


async def test_invalid_defaults_refuse_to_start(capsys: Any, start: Any, app_settings: Settings) -> None:
    with pytest.raises(BootstrapError, match="Hugging Face id"):
        await start(default_model_source="./no/such/dir")
    assert _printed_keys(capsys.readouterr().out) == []
    db = Database(app_settings.resolved_database_url())
    try:
        counts = await _counts(db)
        assert counts["projects"] == counts["deployments"] == counts["api_keys"] == 0  # all or nothing
        async with db.snapshot() as session:
            installation = await session.get(models.Installation, 1)
            assert installation is not None and installation.bootstrap_time is None
    finally:
        await db.dispose()
    # Fixed settings then bootstrap normally.
    app = await start()
    assert app.bootstrapped is not None


async def test_restart_loses_nothing(start: Any, helpers: Any, engine_host: Any, clients: Any) -> None:
    first = await start()
    client = await clients(first).login()
    project = (
        await client.projects.CreateProject(
            project_pb2.CreateProjectRequest(project=project_pb2.Project(name="durable", description="d"))
        )
    ).project
    deployment = (
        await client.deployments.CreateDeployment(
            deployment_pb2.CreateDeploymentRequest(
                project_id=project.id, deployment=helpers.model_deployment("m")
            )
        )
    ).deployment
    created = await client.api_keys.CreateApiKey(
        auth_pb2.CreateApiKeyRequest(project_id=project.id, name="k")
    )
    revoked = (
        await client.api_keys.CreateApiKey(auth_pb2.CreateApiKeyRequest(project_id=project.id))
    ).api_key
    revoked = (
        await client.api_keys.RevokeApiKey(
            auth_pb2.RevokeApiKeyRequest(project_id=project.id, api_key_id=revoked.id)
        )
    ).api_key
    await client.usage.RecordUsage(
        usage_pb2.RecordUsageRequest(
            records=[usage_pb2.UsageRecord(request_id="r1", project_id=project.id, prompt_tokens=3)]
        )
    )
    await helpers.eventually(lambda: _all_ready(first.db), what="READY")
    before = await _snapshot(client, project.id)
    revision = await first.db.revision()
    await first.stop()

    second = await start()
    client = await clients(second).login()
    after = await _snapshot(client, project.id)
    assert after == before
    assert await second.db.revision() >= revision
    async with second.db.snapshot() as session:
        row = await session.get(models.ApiKey, created.api_key.id)
        assert row is not None and key_matches(created.secret, row.key_hash, HASH_SECRET)
    listed = await client.deployments.ListDeployments(
        deployment_pb2.ListDeploymentsRequest(project_id=project.id)
    )
    assert [d.id for d in listed.deployments] == [deployment.id]


async def _snapshot(client: Any, project_id: str) -> tuple[Any, ...]:
    projects = await client.projects.ListProjects(project_pb2.ListProjectsRequest())
    deployments = await client.deployments.ListDeployments(
        deployment_pb2.ListDeploymentsRequest(project_id=project_id)
    )
    keys = await client.api_keys.ListApiKeys(auth_pb2.ListApiKeysRequest(project_id=project_id))
    usage = await client.usage.QueryUsage(usage_pb2.QueryUsageRequest(project_id=project_id))
    return projects, deployments, keys, usage


async def test_schema_matches_models(database_url: str) -> None:
    db = Database(database_url)
    try:
        await upgrade_database(db)
        await upgrade_database(db)  # idempotent
        async with db.engine.connect() as conn:
            diff = await conn.run_sync(
                lambda c: compare_metadata(
                    MigrationContext.configure(c, opts={"compare_type": True}), models.Base.metadata
                )
            )
        assert diff == []
        assert await db.revision() == 1
    finally:
        await db.dispose()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_serve_until_stopped(capsys: Any, app_settings: Settings, clients: Any) -> None:
    address = f"127.0.0.1:{_free_port()}"
    stop = asyncio.Event()
    task = asyncio.create_task(serve(app_settings.model_copy(update={"app_address": address}), stop))
    try:
        client = await clients(address).login(wait_for_ready=True, timeout=20)
        reply = await client.projects.ListProjects(project_pb2.ListProjectsRequest(), timeout=20)
        assert [p.name for p in reply.projects] == ["default"]
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert len(_printed_keys(capsys.readouterr().out)) == 1
