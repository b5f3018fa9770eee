"""PromptService: prompts of a project, their immutable numbered versions and their labels.

Viewers read prompts, versions, labels and diffs; editors create prompts, save versions and move
labels; owners delete prompts (see `auth.roles`). A caller with no role in the project gets
NOT_FOUND; an API key is no user token and gets UNAUTHENTICATED. Every save is one transaction
(`app/prompts/store.py`); a version body is checked before (`app/prompts/body.py`).

The prompt studio's RPCs (`RunPrompt`, `RunPromptVersion`, `GenerateValidation`; editors) are
authorised here and run by the prompt executor (`prompt/studio.py`), called over the mutual-TLS
service channel at `prompt_address` as the app (the only identity its studio RPCs accept) with
the project named: its model call is made for that project, without an API key (prompt/README.md,
"The studio's runs"). Nothing of a run is stored.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app import ids
from app.authz import Access, visible_projects
from app.convert import to_timestamp
from app.db import models
from app.db.models import utcnow
from app.db.session import Database
from app.pricing import row_price
from app.prompts import body, integrations, store
from app.prompts.cipher import KeyCipher
from app.prompts.watch import PromptState, fetch_version, load_state
from app.services.common import conflicts_as
from app.services.pagination import fetch_page, page_size
from app.validation import check_description, check_update_mask
from auth.roles import EDITOR, OWNER, VIEWER
from auth.service_identity import GATEWAY, PROMPT, caller_identity
from auth.tokens import Authenticator
from bud.prompt.v1 import prompt_pb2, prompt_pb2_grpc
from budrt.errors import (
    Reason,
    ServiceError,
    already_exists,
    invalid_argument,
    permission_denied,
    unavailable,
)
from budrt.grpc_server import ServiceBinding, service_channel
from budrt.interceptors import call_request_id
from budrt.money import NANOS_PER_MICRO, Price, format_nanos
from budrt.page_tokens import decode_page_token, encode_page_token

P = prompt_pb2
Context = grpc.aio.ServicerContext
UPDATABLE = ("description", "default_label")
POLL_INTERVAL_S = 0.1
# A version named by number in a path (ASCII digits: `str.isdigit` also takes "²").
_VERSION_NUMBER = re.compile(r"[0-9]{1,9}")

log = logging.getLogger(__name__)

# Who may read the integration tools' access keys in plaintext from WatchPrompts: the prompt
# executor's hosts (co-hosted in a gateway's process, or `budrt serve prompt`).
KEY_READERS = frozenset({GATEWAY, PROMPT})


def _name_conflict(name: str) -> Exception:
    return already_exists(f"a prompt named {name!r} already exists in the project", param="name")


async def _price_of(session: AsyncSession, deployment_id: str) -> Price | None:
    """The current token and request price of a run's deployment (None: it has gone); a
    prompt's model is a chat model, so the per-image price never applies."""
    row = await session.get(models.Deployment, deployment_id) if deployment_id else None
    return row_price(row) if row is not None else None


def _set_cost(run: P.PromptRun, price: Price | None) -> None:
    """A studio run's cost at its deployment's price: its tokens, and the per-request price once
    per model call (a repair is a call). The usage records the gateway wrote for the calls are
    costed the same way, at the price of their time."""
    if price is None:
        return
    nanos = price.cost_nanos(run.usage.prompt_tokens, run.usage.completion_tokens, per_request=False)
    nanos += max(run.model_calls, 1) * price.request_micros * NANOS_PER_MICRO
    run.cost_usd = format_nanos(nanos)


def _check_labels(labels: list[str], param: str = "labels") -> None:
    for i, label in enumerate(labels):
        body.check_label(label, f"{param}[{i}]")


class PromptServicer(prompt_pb2_grpc.PromptServiceServicer):
    """Implements bud.prompt.v1.PromptService."""

    def __init__(
        self,
        db: Database,
        auth: Authenticator,
        cipher: KeyCipher,
        closing: asyncio.Event | None = None,
        poll_interval: float = POLL_INTERVAL_S,
        executor: Callable[[], Any] | None = None,
    ) -> None:
        self._db = db
        # The prompt executor (PromptExecutionService) as a stub, for the studio's runs; None
        # (or None returned): not reachable from here.
        self._executor = executor
        self._closing = closing or asyncio.Event()
        self._poll_interval = poll_interval
        self._access = Access(db, auth)
        self._cipher = cipher

    async def _version_reply(
        self, session: AsyncSession, prompt: models.Prompt, row: models.PromptVersion
    ) -> P.PromptVersion:
        labels = await store.labels_at(session, prompt, [row.version])
        return store.version_to_proto(row, self._cipher, labels[row.version])

    async def CreatePrompt(self, request: P.CreatePromptRequest, context: Context) -> P.CreatePromptResponse:
        """Creates a prompt and its version 1 (editor)."""
        caller = await self._access.caller(context, request, "project_id")
        body.check_prompt_fields(request.name, request.description)
        if request.type not in P.PromptType.values():
            raise invalid_argument(f"unknown prompt type {request.type}", param="type")
        default_label = request.default_label or body.LATEST
        body.check_label(default_label, "default_label", allow_latest=True)
        _check_labels(list(request.labels))
        if default_label != body.LATEST and default_label not in request.labels:
            raise invalid_argument(
                'default_label must be "latest" or one of labels (it must point at a version)',
                param="default_label",
            )
        version = P.PromptVersion()
        version.CopyFrom(request.version)
        warnings = body.check_version(version)
        with conflicts_as(lambda err: _name_conflict(request.name)):
            async with self._access.project(caller, request.project_id, EDITOR, kind="mutation") as session:
                if await store.name_taken(session, request.project_id, request.name):
                    raise _name_conflict(request.name)
                await store.resolve_deployment(session, request.project_id, version)
                now = utcnow()
                prompt = models.Prompt(
                    id=ids.new_id(ids.PROMPT),
                    project_id=request.project_id,
                    name=request.name,
                    description=request.description,
                    type=P.PromptType.Name(request.type or P.PROMPT_TYPE_SIMPLE),
                    default_label=default_label,
                    latest_version=0,
                    create_user_id=caller.user_id,
                    create_time=now,
                    update_time=now,
                )
                session.add(prompt)
                await session.flush()
                row = await store.save_version(
                    session, prompt, version, caller.user_id, self._cipher, labels=list(request.labels)
                )
                labels = (await store.labels_of(session, [prompt.id]))[prompt.id]
                return P.CreatePromptResponse(
                    prompt=store.prompt_to_proto(prompt, labels),
                    version=await self._version_reply(session, prompt, row),
                    warnings=warnings,
                )

    async def GetPrompt(self, request: P.GetPromptRequest, context: Context) -> P.GetPromptResponse:
        """One prompt with its labels (viewer)."""
        caller = await self._access.caller(context, request, "project_id", "prompt_id")
        async with self._access.project(caller, request.project_id, VIEWER) as session:
            prompt = await store.get_prompt(session, request.project_id, request.prompt_id)
            labels = (await store.labels_of(session, [prompt.id]))[prompt.id]
            return P.GetPromptResponse(prompt=store.prompt_to_proto(prompt, labels))

    async def ListPrompts(self, request: P.ListPromptsRequest, context: Context) -> P.ListPromptsResponse:
        """A project's prompts in creation order, paginated (viewer)."""
        caller = await self._access.caller(context, request, "project_id")
        async with self._access.project(caller, request.project_id, VIEWER) as session:
            rows, token = await fetch_page(
                session,
                select(models.Prompt).where(models.Prompt.project_id == request.project_id),
                models.Prompt.id,
                f"prompts/{request.project_id}",
                request,
            )
            labels = await store.labels_of(session, [r.id for r in rows])
            return P.ListPromptsResponse(
                prompts=[store.prompt_to_proto(r, labels[r.id]) for r in rows], next_page_token=token
            )

    async def ListAllPrompts(
        self, request: P.ListAllPromptsRequest, context: Context
    ) -> P.ListAllPromptsResponse:
        """Every prompt of every project the caller has a role in (all to a platform admin), in
        creation order, paginated."""
        caller = await self._access.caller(context, request)
        projects = visible_projects(caller).with_only_columns(models.Project.id)
        async with self._db.snapshot() as session:
            rows, token = await fetch_page(
                session,
                select(models.Prompt).where(models.Prompt.project_id.in_(projects)),
                models.Prompt.id,
                "prompts/*",
                request,
            )
            labels = await store.labels_of(session, [r.id for r in rows])
            return P.ListAllPromptsResponse(
                prompts=[store.prompt_to_proto(r, labels[r.id]) for r in rows], next_page_token=token
            )

    async def UpdatePrompt(self, request: P.UpdatePromptRequest, context: Context) -> P.UpdatePromptResponse:
        """Changes description and/or default_label (editor); a default label must exist."""
        caller = await self._access.caller(context, request, "prompt.id", "prompt.project_id")
        patch = request.prompt
        paths = check_update_mask(request.update_mask, P.Prompt.DESCRIPTOR, UPDATABLE)
        if "description" in paths:
            check_description(patch.description, "prompt.description")
        if "default_label" in paths:
            body.check_label(patch.default_label or body.LATEST, "prompt.default_label", allow_latest=True)
        async with self._access.project(
            caller, patch.project_id, EDITOR, kind="mutation", param="prompt.project_id"
        ) as session:
            prompt = await store.get_prompt(session, patch.project_id, patch.id, lock=True, param="prompt.id")
            if "default_label" in paths:
                label = patch.default_label or body.LATEST
                await store.resolve_label(session, prompt, label, "prompt.default_label")
                prompt.default_label = label
            if "description" in paths:
                prompt.description = patch.description
            prompt.update_time = utcnow()
            await session.flush()
            labels = (await store.labels_of(session, [prompt.id]))[prompt.id]
            return P.UpdatePromptResponse(prompt=store.prompt_to_proto(prompt, labels))

    async def DeletePrompt(self, request: P.DeletePromptRequest, context: Context) -> P.DeletePromptResponse:
        """Deletes a prompt, its versions and labels (owner); refused while deployments use it,
        unless `force`, which deletes them too."""
        caller = await self._access.caller(context, request, "project_id", "prompt_id")
        async with self._access.project(caller, request.project_id, OWNER, kind="mutation") as session:
            prompt = await store.get_prompt(session, request.project_id, request.prompt_id, lock=True)
            deleted = await store.delete_prompt(session, prompt, request.force)
        return P.DeletePromptResponse(deleted_deployment_ids=deleted)

    async def CreatePromptVersion(
        self, request: P.CreatePromptVersionRequest, context: Context
    ) -> P.CreatePromptVersionResponse:
        """Saves the next version (editor); ABORTED when `expected_version` is stale."""
        caller = await self._access.caller(context, request, "project_id", "prompt_id")
        _check_labels(list(request.labels))
        if request.expected_version < 0:
            raise invalid_argument("expected_version must not be negative", param="expected_version")
        version = P.PromptVersion()
        version.CopyFrom(request.version)
        warnings = body.check_version(version)
        async with self._access.project(caller, request.project_id, EDITOR, kind="mutation") as session:
            prompt = await store.get_prompt(session, request.project_id, request.prompt_id, lock=True)
            await store.resolve_deployment(session, request.project_id, version)
            row = await store.save_version(
                session,
                prompt,
                version,
                caller.user_id,
                self._cipher,
                expected_version=request.expected_version,
                labels=list(request.labels),
            )
            return P.CreatePromptVersionResponse(
                version=await self._version_reply(session, prompt, row), warnings=warnings
            )

    async def GetPromptVersion(
        self, request: P.GetPromptVersionRequest, context: Context
    ) -> P.GetPromptVersionResponse:
        """One version: by number, or the one `label` (else the default label) points at (viewer)."""
        caller = await self._access.caller(context, request, "project_id", "prompt_id")
        if request.version < 0:
            raise invalid_argument("version must not be negative", param="version")
        if request.label:
            body.check_label(request.label, "label", allow_latest=True)
        async with self._access.project(caller, request.project_id, VIEWER) as session:
            prompt = await store.get_prompt(session, request.project_id, request.prompt_id)
            number = request.version or await store.resolve_label(
                session, prompt, request.label or prompt.default_label
            )
            row = await store.get_version(session, prompt, number)
            return P.GetPromptVersionResponse(version=await self._version_reply(session, prompt, row))

    async def ListPromptVersions(
        self, request: P.ListPromptVersionsRequest, context: Context
    ) -> P.ListPromptVersionsResponse:
        """A prompt's versions, newest first, paginated (viewer)."""
        caller = await self._access.caller(context, request, "project_id", "prompt_id")
        size = page_size(request.page_size)
        scope = f"prompt-versions/{request.prompt_id}"
        after = decode_page_token(request.page_token, scope)
        async with self._access.project(caller, request.project_id, VIEWER) as session:
            prompt = await store.get_prompt(session, request.project_id, request.prompt_id)
            table = models.PromptVersion
            stmt = select(table).where(table.prompt_id == prompt.id)
            if after is not None:
                stmt = stmt.where(table.version < int(after) if after.isdigit() else False)
            rows = list((await session.scalars(stmt.order_by(table.version.desc()).limit(size + 1))).all())
            token = encode_page_token(scope, str(rows[size - 1].version)) if len(rows) > size else ""
            rows = rows[:size]
            labels = await store.labels_at(session, prompt, [r.version for r in rows])
            return P.ListPromptVersionsResponse(
                versions=[store.version_to_proto(r, self._cipher, labels[r.version]) for r in rows],
                next_page_token=token,
            )

    async def ListPromptIntegrations(
        self, request: P.ListPromptIntegrationsRequest, context: Context
    ) -> P.ListPromptIntegrationsResponse:
        """The integration catalogue (any logged-in user): what each integration does, the
        access keys it needs, the functions it offers the model."""
        await self._access.caller(context, request)
        return P.ListPromptIntegrationsResponse(integrations=[i.to_proto() for i in integrations.CATALOGUE])

    async def SetPromptLabel(
        self, request: P.SetPromptLabelRequest, context: Context
    ) -> P.SetPromptLabelResponse:
        """Points a label at a version, creating or moving it atomically (editor)."""
        caller = await self._access.caller(context, request, "project_id", "prompt_id", "label")
        body.check_label(request.label, "label")
        if request.version < 1:
            raise invalid_argument("version is required (1 or more)", param="version")
        async with self._access.project(caller, request.project_id, EDITOR, kind="mutation") as session:
            prompt = await store.get_prompt(session, request.project_id, request.prompt_id, lock=True)
            row = await store.move_label(
                session,
                prompt,
                request.label,
                request.version,
                caller.user_id,
                expected_version=request.expected_version,
            )
            return P.SetPromptLabelResponse(label=store.label_to_proto(row))

    async def GetPromptLabel(
        self, request: P.GetPromptLabelRequest, context: Context
    ) -> P.GetPromptLabelResponse:
        """A label and its version (viewer)."""
        caller = await self._access.caller(context, request, "project_id", "prompt_id", "label")
        body.check_label(request.label, "label", allow_latest=True)
        async with self._access.project(caller, request.project_id, VIEWER) as session:
            prompt = await store.get_prompt(session, request.project_id, request.prompt_id)
            number = await store.resolve_label(session, prompt, request.label)
            if request.label == body.LATEST:
                label = store.latest_label(prompt)
            else:
                label = store.label_to_proto(
                    await session.get(models.PromptLabel, (prompt.id, request.label))
                )
            row = await store.get_version(session, prompt, number)
            return P.GetPromptLabelResponse(
                label=label, version=await self._version_reply(session, prompt, row)
            )

    async def DeletePromptLabel(
        self, request: P.DeletePromptLabelRequest, context: Context
    ) -> P.DeletePromptLabelResponse:
        """Removes a label (editor); not the default one."""
        caller = await self._access.caller(context, request, "project_id", "prompt_id", "label")
        body.check_label(request.label, "label")
        async with self._access.project(caller, request.project_id, EDITOR, kind="mutation") as session:
            prompt = await store.get_prompt(session, request.project_id, request.prompt_id, lock=True)
            await store.remove_label(session, prompt, request.label, caller.user_id)
        return P.DeletePromptLabelResponse()

    async def ListPromptLabels(
        self, request: P.ListPromptLabelsRequest, context: Context
    ) -> P.ListPromptLabelsResponse:
        """A prompt's labels, "latest" first (viewer)."""
        caller = await self._access.caller(context, request, "project_id", "prompt_id")
        async with self._access.project(caller, request.project_id, VIEWER) as session:
            prompt = await store.get_prompt(session, request.project_id, request.prompt_id)
            labels = (await store.labels_of(session, [prompt.id]))[prompt.id]
            return P.ListPromptLabelsResponse(labels=store.prompt_to_proto(prompt, labels).labels)

    async def ListPromptLabelChanges(
        self, request: P.ListPromptLabelChangesRequest, context: Context
    ) -> P.ListPromptLabelChangesResponse:
        """Every move of a prompt's labels (or of one), newest first, paginated (viewer)."""
        caller = await self._access.caller(context, request, "project_id", "prompt_id")
        size = page_size(request.page_size)
        scope = f"prompt-label-changes/{request.prompt_id}/{request.label}"
        after = decode_page_token(request.page_token, scope)
        async with self._access.project(caller, request.project_id, VIEWER) as session:
            prompt = await store.get_prompt(session, request.project_id, request.prompt_id)
            table = models.PromptLabelChange
            stmt = select(table).where(table.prompt_id == prompt.id)
            if request.label:
                stmt = stmt.where(table.label == request.label)
            if after is not None:
                stmt = stmt.where(table.id < int(after) if after.isdigit() else False)
            rows = list((await session.scalars(stmt.order_by(table.id.desc()).limit(size + 1))).all())
            token = encode_page_token(scope, str(rows[size - 1].id)) if len(rows) > size else ""
            return P.ListPromptLabelChangesResponse(
                changes=[
                    P.PromptLabelChange(
                        label=r.label,
                        from_version=r.from_version or 0,
                        to_version=r.to_version or 0,
                        user_id=r.user_id,
                        time=to_timestamp(r.time),
                    )
                    for r in rows[:size]
                ],
                next_page_token=token,
            )

    async def DiffPromptVersions(
        self, request: P.DiffPromptVersionsRequest, context: Context
    ) -> P.DiffPromptVersionsResponse:
        """What differs from `version` to `other` (viewer); access keys compare masked."""
        caller = await self._access.caller(context, request, "project_id", "prompt_id")
        async with self._access.project(caller, request.project_id, VIEWER) as session:
            prompt = await store.get_prompt(session, request.project_id, request.prompt_id)
            a = await store.get_version(session, prompt, request.version, "version")
            b = await store.get_version(session, prompt, request.other, "other")
            return store.diff(
                store.version_to_proto(a, self._cipher), store.version_to_proto(b, self._cipher)
            )

    # ---- the prompt studio (run by the prompt executor: prompt/studio.py) --------------------
    def _stub(self) -> Any:
        stub = self._executor() if self._executor is not None else None
        if stub is None:
            raise unavailable("The prompt service is not reachable from the app.", reason=Reason.NOT_READY)
        return stub

    async def _execute(self, method: str, request: Any, context: Context) -> Any:
        """Calls the executor's studio RPC `method`; its failure is the caller's (same status)."""
        metadata = (("x-request-id", call_request_id(context)),)
        try:
            return await getattr(self._stub(), method)(request, metadata=metadata)
        except grpc.aio.AioRpcError as err:
            raise ServiceError.from_rpc_error(err) from None

    async def _draft_run(
        self, request: P.RunPromptRequest | P.StreamRunPromptRequest, context: Context
    ) -> P.RunPromptBodyRequest:
        """The executor's request for an unsaved body (editor): checked as a save would be, its
        deployment resolved."""
        caller = await self._access.caller(context, request, "project_id")
        version = P.PromptVersion()
        version.CopyFrom(request.version)
        body.check_version(version)
        async with self._access.project(caller, request.project_id, EDITOR) as session:
            await store.resolve_deployment(session, request.project_id, version)
            price = await _price_of(session, version.deployment_id)
        version.version = 0
        run = P.RunPromptBodyRequest(project_id=request.project_id, version=version, user_id=caller.user_id)
        if request.HasField("variables"):
            run.variables = request.variables
        return run, price

    async def RunPrompt(self, request: P.RunPromptRequest, context: Context) -> P.RunPromptResponse:
        """Runs an unsaved body with inputs (editor): checked as a save would be, then run by the
        executor for the project; nothing stored."""
        run, price = await self._draft_run(request, context)
        answer = await self._execute("RunPromptBody", run, context)
        _set_cost(answer.run, price)
        return P.RunPromptResponse(run=answer.run)

    async def StreamRunPrompt(
        self, request: P.StreamRunPromptRequest, context: Context
    ) -> AsyncIterator[P.StreamRunPromptResponse]:
        """RunPrompt streamed: the executor's events passed on as they come. A caller that
        leaves cancels this stream, and with it the executor's and the model call."""
        run, price = await self._draft_run(request, context)
        streamed = P.StreamRunPromptBodyRequest()
        streamed.ParseFromString(run.SerializeToString())  # the same fields, the same numbers
        metadata = (("x-request-id", call_request_id(context)),)
        call = self._stub().StreamRunPromptBody(streamed, metadata=metadata)
        try:
            async for event in call:
                out = P.StreamRunPromptResponse(type=event.type, delta=event.delta)
                if event.HasField("run"):
                    out.run.CopyFrom(event.run)
                    _set_cost(out.run, price)
                yield out
        except grpc.aio.AioRpcError as err:
            raise ServiceError.from_rpc_error(err) from None
        finally:
            call.cancel()

    async def _saved_version(
        self, session: AsyncSession, project_id: str, prompt_id: str, version: str
    ) -> P.PromptVersion:
        """A saved version by number or label (the default label when empty), access keys masked."""
        prompt = await store.get_prompt(session, project_id, prompt_id)
        if _VERSION_NUMBER.fullmatch(version):
            number = int(version)
        else:
            label = version or prompt.default_label
            body.check_label(label, "version", allow_latest=True)
            number = await store.resolve_label(session, prompt, label, "version")
        row = await store.get_version(session, prompt, number, "version")
        return store.version_to_proto(row, self._cipher)

    async def RunPromptVersion(
        self, request: P.RunPromptVersionRequest, context: Context
    ) -> P.RunPromptVersionResponse:
        """Runs a saved version, by number or label, with inputs (editor); nothing stored."""
        caller = await self._access.caller(context, request, "project_id", "prompt_id")
        async with self._access.project(caller, request.project_id, EDITOR) as session:
            version = await self._saved_version(
                session, request.project_id, request.prompt_id, request.version
            )
            price = await _price_of(session, version.deployment_id)
        run = P.RunPromptBodyRequest(
            project_id=request.project_id,
            version=version,
            user_id=caller.user_id,
            prompt_id=request.prompt_id,
        )
        if request.HasField("variables"):
            run.variables = request.variables
        answer = await self._execute("RunPromptBody", run, context)
        _set_cost(answer.run, price)
        return P.RunPromptVersionResponse(run=answer.run)

    async def GenerateValidation(
        self, request: P.GenerateValidationRequest, context: Context
    ) -> P.GenerateValidationResponse:
        """A constraint document for the prompt's output, written by the chat deployment `model`
        from `rule` (editor); returned, not stored (save it in a version's output.validation)."""
        caller = await self._access.caller(context, request, "project_id", "prompt_id", "rule", "model")
        async with self._access.project(caller, request.project_id, EDITOR) as session:
            version = await self._saved_version(
                session, request.project_id, request.prompt_id, request.version
            )
            probe = P.PromptVersion(model=request.model)
            try:
                await store.resolve_deployment(session, request.project_id, probe)
            except ServiceError as err:
                raise invalid_argument(err.message.replace("version.model", "model"), param="model") from None
        ask = P.GenerateValidationDocumentRequest(
            project_id=request.project_id,
            rule=request.rule,
            model=probe.model,
            version=version,
            user_id=caller.user_id,
        )
        answer = await self._execute("GenerateValidationDocument", ask, context)
        return P.GenerateValidationResponse(
            validation=answer.validation, model_calls=answer.model_calls, usage=answer.usage
        )

    async def WatchPrompts(
        self, request: P.WatchPromptsRequest, context: Context
    ) -> AsyncIterator[P.WatchPromptsResponse]:
        """A snapshot (unless resuming at the current revision), then the prompts that changed
        with each new revision (internal: no token, as WatchRouting). `include_access_keys`:
        the integration tools' keys in plaintext, for the prompt executor only (its verified
        service identity: a gateway, which co-hosts it, or the prompt service)."""
        reveal = request.include_access_keys
        if reveal:
            identity = caller_identity(context)
            if identity is None:
                # A plaintext peer (TLS off): no verified identity, no keys over that channel;
                # the prompts still flow (masked), integration calls then fail with a clear error.
                log.warning("prompt watch: access keys are not sent without mutual TLS")
                reveal = False
            elif identity not in KEY_READERS:
                raise permission_denied(
                    "Access keys are delivered to the prompt executor only.",
                    reason=Reason.SERVICE_NOT_ALLOWED,
                )
        wake = self._db.changes.current()  # taken before reading: a change meanwhile still wakes us
        sent = await load_state(self._db, self._cipher, reveal=reveal)
        resumed = request.since_revision > 0 and request.since_revision == sent.revision
        log.info(
            "prompt watch",
            extra={
                "watcher_id": request.watcher_id[:128],
                "revision": sent.revision,
                "snapshot": not resumed,
            },
        )
        yield sent.snapshot() if not resumed else P.WatchPromptsResponse(revision=sent.revision)
        while not self._closing.is_set():
            try:
                await asyncio.wait_for(wake.wait(), self._poll_interval)
            except TimeoutError:
                pass
            wake = self._db.changes.current()
            if await self._db.revision() == sent.revision:
                continue
            state: PromptState = await load_state(self._db, self._cipher, reveal=reveal)
            if state.revision < sent.revision:  # the database went back (restored): start over
                yield state.snapshot()
            else:
                message = state.changes_since(sent)
                if message.upsert_prompts or message.delete_prompt_ids:
                    yield message
            sent = state

    async def FetchPromptVersion(
        self, request: P.FetchPromptVersionRequest, context: Context
    ) -> P.FetchPromptVersionResponse:
        """One version for the executing side, labelled or not (internal: no token, as
        WatchPrompts; `app/prompts/watch.py`)."""
        version = await fetch_version(self._db, self._cipher, request.prompt_id, request.version)
        return P.FetchPromptVersionResponse(version=version)


def executor_lookup(address: str) -> Callable[[], Any]:
    """The prompt executor at `address` (PromptExecutionService over mutual TLS, as the app), its
    channel opened on first use (on the serving event loop)."""
    held: list[Any] = []

    def lookup() -> Any:
        if not held:
            held.append(prompt_pb2_grpc.PromptExecutionServiceStub(service_channel(address)))
        return held[0]

    return lookup


def binding(
    db: Database,
    auth: Authenticator,
    cipher: KeyCipher,
    closing: asyncio.Event | None = None,
    executor_address: str | None = None,
) -> ServiceBinding:
    """PromptService, ready for `GrpcServer`; watch streams end when `closing` is set; the
    studio's runs go to the prompt executor at `executor_address` (None: they answer
    UNAVAILABLE)."""
    executor = executor_lookup(executor_address) if executor_address else None
    return ServiceBinding(
        servicer=PromptServicer(db, auth, cipher, closing, executor=executor),
        add_to_server=prompt_pb2_grpc.add_PromptServiceServicer_to_server,
        descriptor=prompt_pb2.DESCRIPTOR.services_by_name["PromptService"],
    )
