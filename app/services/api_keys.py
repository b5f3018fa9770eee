"""ApiKeyService: project API keys.

A key's secret (``bud-<prefix>-<random>``, from `auth.keys.mint_key`) is returned once, by
CreateApiKey or RotateApiKey. Only its prefix and its HMAC-SHA256 (keyed by the platform secret
`key_hash_secret`) are stored; nothing can show the secret again. Revoked keys stay listed
(state REVOKED) and leave the gateways' tables through WatchRouting. Viewers of a project read
its keys; editors mint, revoke and rotate them (see `auth.roles`).
"""

from __future__ import annotations

from datetime import datetime

import grpc
from google.protobuf import timestamp_pb2
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app import ids
from app.authz import Access
from app.convert import api_key_to_proto, from_timestamp
from app.db import models
from app.db.models import utcnow
from app.db.session import Database, discard
from app.services.common import conflicts_as, get_api_key, get_project
from app.services.pagination import fetch_project_page
from app.validation import MAX_KEY_DEPLOYMENTS, MAX_KEY_NAME, check_update_mask
from auth.keys import NewKey, mint_key
from auth.roles import EDITOR, VIEWER
from auth.tokens import Authenticator
from bud.auth.v1 import auth_pb2, auth_pb2_grpc
from budrt.errors import Reason, ServiceError, aborted, failed_precondition, internal, invalid_argument
from budrt.grpc_server import ServiceBinding

# The fields UpdateApiKey may change.
UPDATABLE_KEY_FIELDS = ("name", "deployment_ids", "expire_time", "requests_per_minute", "tokens_per_minute")

# Prefixes are 8 random alphanumerics; a clash is astronomically rare, but cheap to retry.
_MINT_ATTEMPTS = 5


async def _mint_unique(session: AsyncSession, hash_secret: str) -> NewKey:
    for _ in range(_MINT_ATTEMPTS):
        key = mint_key(hash_secret)
        if await session.scalar(select(models.ApiKey.id).where(models.ApiKey.prefix == key.prefix)) is None:
            return key
    raise internal("could not mint a key with an unused prefix", reason=Reason.INTERNAL)


def _prefix_clash(err: IntegrityError) -> ServiceError:
    """ABORTED: a concurrent mint took the prefix (retrying mints another)."""
    return aborted("key prefix clash; retry", reason=Reason.ABORTED)


def check_key_fields(name: str, requests_per_minute: int, tokens_per_minute: int) -> None:
    """INVALID_ARGUMENT for a name too long or a negative limit."""
    if len(name) > MAX_KEY_NAME:
        raise invalid_argument(f"name is longer than {MAX_KEY_NAME} characters", param="name")
    for field, value in (
        ("requests_per_minute", requests_per_minute),
        ("tokens_per_minute", tokens_per_minute),
    ):
        if value < 0:
            raise invalid_argument(f"{field} must not be negative (0 means no limit)", param=field)


def _check_expiry(expire_time: timestamp_pb2.Timestamp) -> datetime:
    expires = from_timestamp(expire_time)
    if expires <= utcnow():
        raise invalid_argument("expire_time is in the past", param="expire_time")
    return expires


async def _check_deployments(
    session: AsyncSession, project_id: str, deployment_ids: list[str] | None
) -> list[str]:
    """The ids without duplicates; INVALID_ARGUMENT when too many or not the project's."""
    deployment_ids = list(dict.fromkeys(deployment_ids or []))
    if len(deployment_ids) > MAX_KEY_DEPLOYMENTS:
        raise invalid_argument(f"at most {MAX_KEY_DEPLOYMENTS} deployment_ids", param="deployment_ids")
    if deployment_ids:
        known = set(
            (
                await session.scalars(
                    select(models.Deployment.id).where(
                        models.Deployment.project_id == project_id, models.Deployment.id.in_(deployment_ids)
                    )
                )
            ).all()
        )
        unknown = [d for d in deployment_ids if d not in known]
        if unknown:
            raise invalid_argument(
                f"not deployments of project {project_id!r}: {', '.join(unknown)}", param="deployment_ids"
            )
    return deployment_ids


def _require_unrevoked(row: models.ApiKey, param: str) -> None:
    """FAILED_PRECONDITION for a revoked key: it can no longer change."""
    if row.revoke_time is not None:
        raise failed_precondition(
            f"API key {row.id!r} is revoked; create a new key", reason=Reason.API_KEY_REVOKED, param=param
        )


def _require_unexpired(row: models.ApiKey, param: str) -> None:
    """FAILED_PRECONDITION for an expired key: its expire_time can no longer change, so that an
    expired key is never revived (by a later expire_time, or none)."""
    if row.expire_time is not None and row.expire_time <= utcnow():
        raise failed_precondition(
            f"API key {row.id!r} has expired and stays expired; create a new key",
            reason=Reason.API_KEY_EXPIRED,
            param=param,
        )


async def create_api_key(
    session: AsyncSession,
    hash_secret: str,
    project_id: str,
    name: str = "",
    deployment_ids: list[str] | None = None,
    expire_time: timestamp_pb2.Timestamp | None = None,
    requests_per_minute: int = 0,
    tokens_per_minute: int = 0,
) -> tuple[models.ApiKey, str]:
    """Validates and inserts a key; returns the row and the secret (to show once).

    Raises ServiceError: INVALID_ARGUMENT, NOT_FOUND (project).
    """
    check_key_fields(name, requests_per_minute, tokens_per_minute)
    deployment_ids = await _check_deployments(session, project_id, deployment_ids)
    now = utcnow()
    expires = None if expire_time is None else _check_expiry(expire_time)
    await get_project(session, project_id)
    key = await _mint_unique(session, hash_secret)
    row = models.ApiKey(
        id=ids.new_id(ids.API_KEY),
        project_id=project_id,
        name=name,
        prefix=key.prefix,
        key_hash=key.key_hash,
        deployment_ids=deployment_ids,
        create_time=now,
        expire_time=expires,
        revoke_time=None,
        last_used_time=None,
        requests_per_minute=requests_per_minute,
        tokens_per_minute=tokens_per_minute,
    )
    session.add(row)
    await session.flush()
    return row, key.secret


class ApiKeyServicer(auth_pb2_grpc.ApiKeyServiceServicer):
    """Implements bud.auth.v1.ApiKeyService."""

    def __init__(self, db: Database, hash_secret: str, auth: Authenticator) -> None:
        self._hash_secret = hash_secret
        self._access = Access(db, auth)

    async def CreateApiKey(
        self, request: auth_pb2.CreateApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.CreateApiKeyResponse:
        """Mints a key; the response carries its secret, this once. Editor."""
        caller = await self._access.caller(context, request, "project_id")
        with conflicts_as(_prefix_clash):
            async with self._access.project(caller, request.project_id, EDITOR, kind="mutation") as session:
                row, secret = await create_api_key(
                    session,
                    self._hash_secret,
                    request.project_id,
                    request.name,
                    list(request.deployment_ids),
                    request.expire_time if request.HasField("expire_time") else None,
                    request.requests_per_minute,
                    request.tokens_per_minute,
                )
        return auth_pb2.CreateApiKeyResponse(api_key=api_key_to_proto(row, utcnow()), secret=secret)

    async def GetApiKey(
        self, request: auth_pb2.GetApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.GetApiKeyResponse:
        """One key, without its secret (viewer)."""
        caller = await self._access.caller(context, request, "project_id", "api_key_id")
        async with self._access.project(caller, request.project_id, VIEWER) as session:
            row = await get_api_key(session, request.project_id, request.api_key_id)
        return auth_pb2.GetApiKeyResponse(api_key=api_key_to_proto(row, utcnow()))

    async def ListApiKeys(
        self, request: auth_pb2.ListApiKeysRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.ListApiKeysResponse:
        """A project's keys (revoked and expired ones too) in creation order, paginated (viewer)."""
        caller = await self._access.caller(context, request, "project_id")
        async with self._access.project(caller, request.project_id, VIEWER) as session:
            rows, token = await fetch_project_page(
                session, models.ApiKey, "api_keys", request.project_id, request
            )
        now = utcnow()
        return auth_pb2.ListApiKeysResponse(
            api_keys=[api_key_to_proto(r, now) for r in rows], next_page_token=token
        )

    async def RevokeApiKey(
        self, request: auth_pb2.RevokeApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.RevokeApiKeyResponse:
        """Revokes a key for good (revoking it again changes nothing). Editor."""
        caller = await self._access.caller(context, request, "project_id", "api_key_id")
        async with self._access.project(caller, request.project_id, EDITOR, kind="mutation") as session:
            row = await get_api_key(session, request.project_id, request.api_key_id)
            if row.revoke_time is None:
                row.revoke_time = utcnow()
                await session.flush()
            else:
                discard(session)
            reply = auth_pb2.RevokeApiKeyResponse(api_key=api_key_to_proto(row, utcnow()))
        return reply

    async def UpdateApiKey(
        self, request: auth_pb2.UpdateApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.UpdateApiKeyResponse:
        """Changes the fields named in update_mask (all writable ones when empty): name,
        deployment_ids, expire_time (absent clears it), requests_per_minute, tokens_per_minute.
        Gateways apply the change within a second. Revoked keys cannot change, and an expired
        key's expire_time cannot (FAILED_PRECONDITION: an expired key stays expired). Editor."""
        caller = await self._access.caller(context, request, "api_key.id", "api_key.project_id")
        patch = request.api_key
        paths = check_update_mask(request.update_mask, auth_pb2.ApiKey.DESCRIPTOR, UPDATABLE_KEY_FIELDS)
        name = patch.name if "name" in paths else None
        check_key_fields(
            name or "",
            patch.requests_per_minute if "requests_per_minute" in paths else 0,
            patch.tokens_per_minute if "tokens_per_minute" in paths else 0,
        )
        async with self._access.project(
            caller, patch.project_id, EDITOR, kind="mutation", param="api_key.project_id"
        ) as session:
            row = await get_api_key(session, patch.project_id, patch.id, param="api_key.id")
            _require_unrevoked(row, "api_key.id")
            if name is not None:
                row.name = name
            if "deployment_ids" in paths:
                row.deployment_ids = await _check_deployments(
                    session, row.project_id, list(patch.deployment_ids)
                )
            if "expire_time" in paths:
                _require_unexpired(row, "api_key.expire_time")
                row.expire_time = _check_expiry(patch.expire_time) if patch.HasField("expire_time") else None
            if "requests_per_minute" in paths:
                row.requests_per_minute = patch.requests_per_minute
            if "tokens_per_minute" in paths:
                row.tokens_per_minute = patch.tokens_per_minute
            await session.flush()
            reply = auth_pb2.UpdateApiKeyResponse(api_key=api_key_to_proto(row, utcnow()))
        return reply

    async def RotateApiKey(
        self, request: auth_pb2.RotateApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.RotateApiKeyResponse:
        """Gives a key a new secret (and prefix); the old secret stops working at once.
        Revoked keys cannot be rotated (FAILED_PRECONDITION). Editor."""
        caller = await self._access.caller(context, request, "project_id", "api_key_id")
        with conflicts_as(_prefix_clash):
            async with self._access.project(caller, request.project_id, EDITOR, kind="mutation") as session:
                row = await get_api_key(session, request.project_id, request.api_key_id)
                _require_unrevoked(row, "api_key_id")
                key = await _mint_unique(session, self._hash_secret)
                row.prefix, row.key_hash = key.prefix, key.key_hash
                await session.flush()
        return auth_pb2.RotateApiKeyResponse(api_key=api_key_to_proto(row, utcnow()), secret=key.secret)


def binding(db: Database, hash_secret: str, auth: Authenticator) -> ServiceBinding:
    """ApiKeyService, ready for `GrpcServer`."""
    return ServiceBinding(
        servicer=ApiKeyServicer(db, hash_secret, auth),
        add_to_server=auth_pb2_grpc.add_ApiKeyServiceServicer_to_server,
        descriptor=auth_pb2.DESCRIPTOR.services_by_name["ApiKeyService"],
    )
