"""ApiKeyService over gRPC on SQLite and PostgreSQL: secrets shown once, stored as hashes only."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import field_mask_pb2, timestamp_pb2
from sqlalchemy import select

from app.db import models
from app.server import RunningApp
from auth.keys import hash_key, key_matches, key_prefix
from bud.app.v1 import deployment_pb2, project_pb2
from bud.auth.v1 import auth_pb2

HASH_SECRET = "test-key-hash-secret"  # the conftest's settings


async def _project(stubs: Any, name: str = "keys") -> str:
    reply = await stubs.projects.CreateProject(
        project_pb2.CreateProjectRequest(project=project_pb2.Project(name=name))
    )
    return str(reply.project.id)


def _timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


async def test_create_list_get(stubs: Any, helpers: Any) -> None:
    project_id = await _project(stubs)
    reply = await stubs.api_keys.CreateApiKey(auth_pb2.CreateApiKeyRequest(project_id=project_id, name="ci"))
    key, secret = reply.api_key, reply.secret
    assert key.id.startswith("key_") and key.name == "ci" and key.project_id == project_id
    assert key.state == auth_pb2.API_KEY_STATE_ACTIVE
    assert secret.startswith(f"bud-{key.prefix}-") and key_prefix(secret) == key.prefix
    assert (
        not key.HasField("revoke_time")
        and not key.HasField("expire_time")
        and not key.HasField("last_used_time")
    )

    listed = await stubs.api_keys.ListApiKeys(auth_pb2.ListApiKeysRequest(project_id=project_id))
    assert [k.prefix for k in listed.api_keys] == [key.prefix]
    assert listed.api_keys[0] == key
    got = (
        await stubs.api_keys.GetApiKey(auth_pb2.GetApiKeyRequest(project_id=project_id, api_key_id=key.id))
    ).api_key
    assert got == key
    assert secret not in str(listed) and secret not in str(got)

    other = await _project(stubs, "other")
    await helpers.expect_error(
        stubs.api_keys.GetApiKey(auth_pb2.GetApiKeyRequest(project_id=other, api_key_id=key.id)),
        grpc.StatusCode.NOT_FOUND,
        "api_key_id",
    )
    await helpers.expect_error(
        stubs.api_keys.CreateApiKey(auth_pb2.CreateApiKeyRequest(project_id="prj_missing")),
        grpc.StatusCode.NOT_FOUND,
        "project_id",
    )


async def test_pagination(stubs: Any) -> None:
    project_id = await _project(stubs)
    ids = [
        (
            await stubs.api_keys.CreateApiKey(
                auth_pb2.CreateApiKeyRequest(project_id=project_id, name=f"k{i}")
            )
        ).api_key.id
        for i in range(5)
    ]
    seen, token = [], ""
    while True:
        page = await stubs.api_keys.ListApiKeys(
            auth_pb2.ListApiKeysRequest(project_id=project_id, page_size=2, page_token=token)
        )
        seen += [k.id for k in page.api_keys]
        token = page.next_page_token
        if not token:
            break
    assert seen == ids


async def test_restrictions_and_expiry(stubs: Any, helpers: Any, engine_host: Any) -> None:
    project_id = await _project(stubs)
    deployment = (
        await stubs.deployments.CreateDeployment(
            deployment_pb2.CreateDeploymentRequest(
                project_id=project_id, deployment=helpers.model_deployment("m")
            )
        )
    ).deployment
    restricted = (
        await stubs.api_keys.CreateApiKey(
            auth_pb2.CreateApiKeyRequest(project_id=project_id, deployment_ids=[deployment.id])
        )
    ).api_key
    assert list(restricted.deployment_ids) == [deployment.id]
    await helpers.expect_error(
        stubs.api_keys.CreateApiKey(
            auth_pb2.CreateApiKeyRequest(project_id=project_id, deployment_ids=["dep_nope"])
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "deployment_ids",
    )
    await helpers.expect_error(
        stubs.api_keys.CreateApiKey(
            auth_pb2.CreateApiKeyRequest(
                project_id=project_id, expire_time=_timestamp(datetime.now(UTC) - timedelta(minutes=1))
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "expire_time",
    )
    soon = (
        await stubs.api_keys.CreateApiKey(
            auth_pb2.CreateApiKeyRequest(
                project_id=project_id, expire_time=_timestamp(datetime.now(UTC) + timedelta(seconds=1))
            )
        )
    ).api_key
    assert soon.state == auth_pb2.API_KEY_STATE_ACTIVE and soon.HasField("expire_time")
    await asyncio.sleep(1.1)
    got = (
        await stubs.api_keys.GetApiKey(auth_pb2.GetApiKeyRequest(project_id=project_id, api_key_id=soon.id))
    ).api_key
    assert got.state == auth_pb2.API_KEY_STATE_EXPIRED


async def test_revoke_and_rotate(app: RunningApp, stubs: Any, helpers: Any) -> None:
    project_id = await _project(stubs)
    created = await stubs.api_keys.CreateApiKey(auth_pb2.CreateApiKeyRequest(project_id=project_id, name="r"))

    rotated = await stubs.api_keys.RotateApiKey(
        auth_pb2.RotateApiKeyRequest(project_id=project_id, api_key_id=created.api_key.id)
    )
    assert rotated.api_key.id == created.api_key.id
    assert rotated.secret != created.secret and rotated.secret.startswith(f"bud-{rotated.api_key.prefix}-")
    async with app.db.snapshot() as session:
        row = await session.get(models.ApiKey, created.api_key.id)
        assert row is not None
        assert key_matches(rotated.secret, row.key_hash, HASH_SECRET)
        assert not key_matches(created.secret, row.key_hash, HASH_SECRET)  # the old secret is dead
        assert row.prefix == rotated.api_key.prefix

    revoked = (
        await stubs.api_keys.RevokeApiKey(
            auth_pb2.RevokeApiKeyRequest(project_id=project_id, api_key_id=created.api_key.id)
        )
    ).api_key
    assert revoked.state == auth_pb2.API_KEY_STATE_REVOKED and revoked.HasField("revoke_time")
    again = (
        await stubs.api_keys.RevokeApiKey(
            auth_pb2.RevokeApiKeyRequest(project_id=project_id, api_key_id=created.api_key.id)
        )
    ).api_key
    assert again.revoke_time == revoked.revoke_time  # idempotent
    err = await helpers.expect_error(
        stubs.api_keys.RotateApiKey(
            auth_pb2.RotateApiKeyRequest(project_id=project_id, api_key_id=created.api_key.id)
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert err.reason == "API_KEY_REVOKED"
    listed = await stubs.api_keys.ListApiKeys(auth_pb2.ListApiKeysRequest(project_id=project_id))
    assert [k.state for k in listed.api_keys] == [auth_pb2.API_KEY_STATE_REVOKED]


async def test_rate_limits_and_update(stubs: Any, helpers: Any, engine_host: Any) -> None:
    project_id = await _project(stubs)
    key = (
        await stubs.api_keys.CreateApiKey(
            auth_pb2.CreateApiKeyRequest(
                project_id=project_id, name="limited", requests_per_minute=60, tokens_per_minute=1000
            )
        )
    ).api_key
    assert (key.requests_per_minute, key.tokens_per_minute) == (60, 1000)
    for field in ("requests_per_minute", "tokens_per_minute"):
        await helpers.expect_error(
            stubs.api_keys.CreateApiKey(auth_pb2.CreateApiKeyRequest(project_id=project_id, **{field: -1})),
            grpc.StatusCode.INVALID_ARGUMENT,
            field,
        )

    # Only the fields in the mask change.
    updated = (
        await stubs.api_keys.UpdateApiKey(
            auth_pb2.UpdateApiKeyRequest(
                api_key=auth_pb2.ApiKey(
                    id=key.id, project_id=project_id, requests_per_minute=5, name="ignored"
                ),
                update_mask=field_mask_pb2.FieldMask(paths=["requests_per_minute"]),
            )
        )
    ).api_key
    assert (updated.requests_per_minute, updated.tokens_per_minute, updated.name) == (5, 1000, "limited")
    assert updated.prefix == key.prefix and updated.state == auth_pb2.API_KEY_STATE_ACTIVE

    deployment = (
        await stubs.deployments.CreateDeployment(
            deployment_pb2.CreateDeploymentRequest(
                project_id=project_id, deployment=helpers.model_deployment("m")
            )
        )
    ).deployment
    # An empty mask writes every writable field: unset limits and expiry mean none.
    replaced = (
        await stubs.api_keys.UpdateApiKey(
            auth_pb2.UpdateApiKeyRequest(
                api_key=auth_pb2.ApiKey(
                    id=key.id, project_id=project_id, name="renamed", deployment_ids=[deployment.id]
                )
            )
        )
    ).api_key
    assert (replaced.name, list(replaced.deployment_ids)) == ("renamed", [deployment.id])
    assert (replaced.requests_per_minute, replaced.tokens_per_minute) == (0, 0)
    got = (
        await stubs.api_keys.GetApiKey(auth_pb2.GetApiKeyRequest(project_id=project_id, api_key_id=key.id))
    ).api_key
    assert got == replaced

    for request, code, param in (
        (
            auth_pb2.UpdateApiKeyRequest(
                api_key=auth_pb2.ApiKey(id=key.id, project_id=project_id),
                update_mask=field_mask_pb2.FieldMask(paths=["prefix"]),
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "update_mask",
        ),
        (
            auth_pb2.UpdateApiKeyRequest(
                api_key=auth_pb2.ApiKey(id=key.id, project_id=project_id, tokens_per_minute=-5),
                update_mask=field_mask_pb2.FieldMask(paths=["tokens_per_minute"]),
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "tokens_per_minute",
        ),
        (
            auth_pb2.UpdateApiKeyRequest(
                api_key=auth_pb2.ApiKey(id=key.id, project_id=project_id, deployment_ids=["dep_nope"]),
                update_mask=field_mask_pb2.FieldMask(paths=["deployment_ids"]),
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "deployment_ids",
        ),
        (
            auth_pb2.UpdateApiKeyRequest(api_key=auth_pb2.ApiKey(id="key_missing", project_id=project_id)),
            grpc.StatusCode.NOT_FOUND,
            "api_key.id",
        ),
    ):
        await helpers.expect_error(stubs.api_keys.UpdateApiKey(request), code, param)

    await stubs.api_keys.RevokeApiKey(auth_pb2.RevokeApiKeyRequest(project_id=project_id, api_key_id=key.id))
    err = await helpers.expect_error(
        stubs.api_keys.UpdateApiKey(
            auth_pb2.UpdateApiKeyRequest(
                api_key=auth_pb2.ApiKey(id=key.id, project_id=project_id, requests_per_minute=1),
                update_mask=field_mask_pb2.FieldMask(paths=["requests_per_minute"]),
            )
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert err.reason == "API_KEY_REVOKED"


async def test_only_hashes_are_stored(capsys: Any, app: RunningApp, stubs: Any, database_url: str) -> None:
    # capsys comes first so that it is capturing when the app starts and prints its first key.
    bootstrap_secret = next(
        line.split("=", 1)[1]
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("OPENAI_API_KEY=")
    )
    project_id = await _project(stubs)
    created = await stubs.api_keys.CreateApiKey(auth_pb2.CreateApiKeyRequest(project_id=project_id))
    rotated = await stubs.api_keys.RotateApiKey(
        auth_pb2.RotateApiKeyRequest(project_id=project_id, api_key_id=created.api_key.id)
    )
    secrets = [bootstrap_secret, created.secret, rotated.secret]
    # The random part of each secret, which the prefix does not reveal.
    hidden = [s.split("-", 2)[2] for s in secrets]

    dumped: list[str] = []
    async with app.db.snapshot() as session:
        for table in models.Base.metadata.sorted_tables:
            for row in (await session.execute(select(table))).all():
                for value in row:
                    dumped.append(value.hex() if isinstance(value, bytes) else str(value))
        hashes = {bytes(h) for h in (await session.scalars(select(models.ApiKey.key_hash))).all()}
    text = "\n".join(dumped)
    for secret, random_part in zip(secrets, hidden, strict=True):
        assert secret not in text and random_part not in text
    assert hash_key(rotated.secret, HASH_SECRET) in hashes
    assert hash_key(bootstrap_secret, HASH_SECRET) in hashes

    if database_url.startswith("sqlite"):  # the raw file (and its write-ahead log) too
        path = Path(database_url.removeprefix("sqlite:///"))
        raw = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
        for secret, random_part in zip(secrets, hidden, strict=True):
            assert secret.encode() not in raw and random_part.encode() not in raw


async def test_an_expired_key_stays_expired(app: RunningApp, stubs: Any, helpers: Any) -> None:
    """The attack: PATCH ...?update_mask=expire_time with an empty body cleared the expiry of an
    expired key, and it worked again. Neither clearing nor extending revives it; other fields may
    still change, and a key that has not expired yet may still be extended or made permanent."""
    project_id = await _project(stubs)
    live = (
        await stubs.api_keys.CreateApiKey(
            auth_pb2.CreateApiKeyRequest(
                project_id=project_id, expire_time=_timestamp(datetime.now(UTC) + timedelta(hours=1))
            )
        )
    ).api_key
    made_permanent = (
        await stubs.api_keys.UpdateApiKey(
            auth_pb2.UpdateApiKeyRequest(
                api_key=auth_pb2.ApiKey(id=live.id, project_id=project_id),
                update_mask=field_mask_pb2.FieldMask(paths=["expire_time"]),
            )
        )
    ).api_key
    assert not made_permanent.HasField("expire_time")  # not expired yet: the editor's call

    key = (
        await stubs.api_keys.CreateApiKey(
            auth_pb2.CreateApiKeyRequest(
                project_id=project_id, expire_time=_timestamp(datetime.now(UTC) + timedelta(hours=1))
            )
        )
    ).api_key
    async with app.db.transaction() as session:  # time passes: the key expired a minute ago
        row = await session.get(models.ApiKey, key.id)
        assert row is not None
        row.expire_time = datetime.now(UTC) - timedelta(minutes=1)
    cleared = auth_pb2.UpdateApiKeyRequest(
        api_key=auth_pb2.ApiKey(id=key.id, project_id=project_id),
        update_mask=field_mask_pb2.FieldMask(paths=["expire_time"]),
    )
    extended = auth_pb2.UpdateApiKeyRequest(
        api_key=auth_pb2.ApiKey(
            id=key.id, project_id=project_id, expire_time=_timestamp(datetime.now(UTC) + timedelta(days=1))
        ),
        update_mask=field_mask_pb2.FieldMask(paths=["expire_time"]),
    )
    replaced = auth_pb2.UpdateApiKeyRequest(  # an empty mask writes every field, expire_time too
        api_key=auth_pb2.ApiKey(id=key.id, project_id=project_id, name="again")
    )
    for request in (cleared, extended, replaced):
        err = await helpers.expect_error(
            stubs.api_keys.UpdateApiKey(request), grpc.StatusCode.FAILED_PRECONDITION, "api_key.expire_time"
        )
        assert err.reason == "API_KEY_EXPIRED" and "create a new key" in err.message
    got = (
        await stubs.api_keys.GetApiKey(auth_pb2.GetApiKeyRequest(project_id=project_id, api_key_id=key.id))
    ).api_key
    assert got.state == auth_pb2.API_KEY_STATE_EXPIRED and got.name == ""
    assert got.expire_time.ToDatetime(tzinfo=UTC) < datetime.now(UTC)

    renamed = (
        await stubs.api_keys.UpdateApiKey(
            auth_pb2.UpdateApiKeyRequest(
                api_key=auth_pb2.ApiKey(id=key.id, project_id=project_id, name="old"),
                update_mask=field_mask_pb2.FieldMask(paths=["name"]),
            )
        )
    ).api_key
    assert renamed.name == "old" and renamed.state == auth_pb2.API_KEY_STATE_EXPIRED
