"""RegistryService: the model catalogue over gRPC (and REST through the gateways' transcoder).

Every logged-in user reads (GetModel, ListModels, GetModelLicense, ListLicenses,
GetImportOperation, ListBenchmarkResults, GetLeaderboard); platform admins write (CreateModel,
UpdateModel, DeleteModel, ImportModel, CreateBenchmarkResult, GetLeaderboard's `refresh`). The
caller check is `registry.callers`. ScanModel (platform admins) and the scans started after a
registration or an import are `registry.scans`; ResolveModelForDeployment is the app's (its
service identity only: auth/service_identity.py), asked when a deployment names a registry model.

The registry's schema is migrated on the first call after start (its own alembic environment,
`registry.db.migrate`), once per process.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from pathlib import Path
from typing import Any

import grpc
from sqlalchemy import Select, delete, select

from bud.registry.v1 import registry_pb2, registry_pb2_grpc
from budrt.errors import Reason, echo, failed_precondition, invalid_argument, not_found
from budrt.page_tokens import decode_page_token, encode_page_token
from registry import benchmarks, importer, leaderboard, licenses
from registry.builtins import BuiltinCatalogue
from registry.callers import Callers
from registry.convert import (
    MODEL,
    license_of,
    model_to_proto,
    new_id,
    operation_to_proto,
    scan_report,
    timestamp,
)
from registry.db import models
from registry.db.migrate import check_database_current, upgrade_database
from registry.db.models import now_ms
from registry.db.session import RegistryDatabase
from registry.operations import ImportRunner
from registry.scanning import ScanSettings
from registry.scans import ScanRunner
from registry.settings import DEFAULT_LEADERBOARD_INTERVAL

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
MAX_NAME = 256
MAX_DESCRIPTION = 2000
MAX_TAGS = 64
TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/+-]{0,63}$")
WRITABLE = ("name", "description", "tags", "license_id")
ID_RE = re.compile(r"^[a-z]{1,8}_[0-9a-f]{24}$")


def _page_size(requested: int) -> int:
    if requested < 0:
        raise invalid_argument("page_size must not be negative", param="page_size")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def _scope(request: registry_pb2.ListModelsRequest) -> str:
    """The listing a page token belongs to: the filters (a token of other filters is refused)."""
    filters = (
        request.provider,
        request.architecture,
        request.license_id,
        request.scan_status,
        request.max_parameters,
    )
    return "registry/models/" + hashlib.sha256(repr(filters).encode()).hexdigest()[:16]


def check_name(name: str, param: str) -> None:
    if not name.strip():
        raise invalid_argument(f"{param} is required", param=param)
    if len(name) > MAX_NAME:
        raise invalid_argument(f"{param} is longer than {MAX_NAME} characters", param=param)


def check_tags(tags: list[str], param: str) -> list[str]:
    if len(tags) > MAX_TAGS:
        raise invalid_argument(f"{param}: at most {MAX_TAGS} tags", param=param)
    for tag in tags:
        if not TAG_RE.match(tag):
            raise invalid_argument(
                f"invalid tag {echo(tag)}: up to 64 letters, digits or '._:/+-'", param=param
            )
    return list(dict.fromkeys(tags))


def check_license_id(license_id: str, param: str) -> str:
    """A licence id of the catalogue (its canonical spelling), or "unknown"."""
    if license_id == licenses.UNKNOWN:
        return license_id
    known = licenses.lookup(license_id)
    if known is None:
        raise invalid_argument(
            f"unknown licence {echo(license_id)}: use an id of ListLicenses, or 'unknown'", param=param
        )
    return known.id


def check_model_id(model_id: str, param: str = "model_id") -> str:
    if not model_id:
        raise invalid_argument(f"{param} is required", param=param)
    return model_id


class RegistryServicer(registry_pb2_grpc.RegistryServiceServicer):
    """The catalogue, its licences and imports."""

    def __init__(
        self,
        db: RegistryDatabase,
        callers: Callers,
        roots: tuple[Path, ...],
        hf_cache_dir: str = "",
        schedule: leaderboard.Schedule | None = None,
        scan_settings: ScanSettings | None = None,
        scan_on_register: bool = True,
        builtins_dir: Path | None = None,
        migrate: bool = True,
    ) -> None:
        self._db = db
        self._migrate = migrate
        self.schedule = schedule or leaderboard.Schedule(DEFAULT_LEADERBOARD_INTERVAL)
        self._callers = callers
        self._roots = roots
        settings = scan_settings or ScanSettings.from_env()
        self.scans = ScanRunner(db, lambda: settings)
        self._scan_on_register = scan_on_register
        self.imports = ImportRunner(db, roots, hf_cache_dir, after_import=self._scan_registered)
        # The default deployments' built-in models, catalogued from this data dir (None: not).
        self._builtins = (
            BuiltinCatalogue(db, builtins_dir, self._scan_registered) if builtins_dir is not None else None
        )
        self._migrated = False
        self._migrating = asyncio.Lock()

    async def callers_close(self) -> None:
        """Closes the channel to the app."""
        await self._callers.app.close()

    async def dispose(self) -> None:
        """Stops the imports and scans and closes the database (tests; a process just exits)."""
        await self.imports.stop()
        await self.scans.stop()
        await self._db.dispose()

    async def ready(self) -> None:
        """Migrates the registry's schema once per process (the first call waits for it; with
        `migrate` off it only checks the schema is current: `budrt migrate` ran before), and
        catalogues the built-in models until it has (`registry.builtins`)."""
        if not self._migrated:
            async with self._migrating:
                if not self._migrated:
                    if self._migrate:
                        await upgrade_database(self._db)
                    else:
                        await check_database_current(self._db)
                    self._migrated = True
        if self._builtins is not None:
            await self._builtins.ensure()

    async def _get(self, session: Any, model_id: str) -> models.RegistryModel:
        row = await session.get(models.RegistryModel, model_id)
        if row is None:
            raise not_found(
                f"model {echo(model_id)} not found", reason=Reason.MODEL_NOT_FOUND, param="model_id"
            )
        return row

    # ---- reads ---------------------------------------------------------------------------
    async def GetModel(
        self, request: registry_pb2.GetModelRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.GetModelResponse:
        """One model. Any logged-in user."""
        await self._callers.caller(context)
        check_model_id(request.model_id)
        await self.ready()
        async with self._db.transaction() as session:
            return registry_pb2.GetModelResponse(
                model=model_to_proto(await self._get(session, request.model_id))
            )

    async def ListModels(
        self, request: registry_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.ListModelsResponse:
        """Models in creation order, filtered, paginated. Any logged-in user."""
        await self._callers.caller(context)
        size = _page_size(request.page_size)
        if request.max_parameters < 0:
            raise invalid_argument("max_parameters must not be negative", param="max_parameters")
        scope = _scope(request)
        after = decode_page_token(request.page_token, scope)
        table = models.RegistryModel
        stmt: Select[tuple[models.RegistryModel]] = select(table)
        if request.provider:
            stmt = stmt.where(table.provider == registry_pb2.ModelProvider.Name(request.provider))
        if request.architecture:
            stmt = stmt.where(
                (table.architecture == request.architecture) | (table.model_type == request.architecture)
            )
        if request.license_id:
            known = licenses.lookup(request.license_id)
            stmt = stmt.where(table.license_id == (known.id if known else request.license_id))
        if request.scan_status:
            stmt = stmt.where(table.scan_status == registry_pb2.ScanStatus.Name(request.scan_status))
        if request.max_parameters:
            stmt = stmt.where(table.parameter_count <= request.max_parameters)
        if after is not None:
            stmt = stmt.where(table.id > after)
        await self.ready()
        async with self._db.transaction() as session:
            rows = (await session.scalars(stmt.order_by(table.id).limit(size + 1))).all()
            token = encode_page_token(scope, rows[size - 1].id) if len(rows) > size else ""
            return registry_pb2.ListModelsResponse(
                models=[model_to_proto(r) for r in rows[:size]], next_page_token=token
            )

    async def GetModelLicense(
        self, request: registry_pb2.GetModelLicenseRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.GetModelLicenseResponse:
        """A model's licence with its restrictions and the text found. Any logged-in user."""
        await self._callers.caller(context)
        check_model_id(request.model_id)
        await self.ready()
        async with self._db.transaction() as session:
            row = await self._get(session, request.model_id)
            return registry_pb2.GetModelLicenseResponse(license=license_of(row))

    async def ListLicenses(
        self, request: registry_pb2.ListLicensesRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.ListLicensesResponse:
        """The catalogue's licences (and the entry every unknown licence gets). Any logged-in user."""
        await self._callers.caller(context)
        return registry_pb2.ListLicensesResponse(
            licenses=[info.to_proto() for info in (*licenses.CATALOGUE, licenses.UNKNOWN_LICENSE)]
        )

    async def GetImportOperation(
        self, request: registry_pb2.GetImportOperationRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.GetImportOperationResponse:
        """An import's progress. Any logged-in user."""
        await self._callers.caller(context)
        if not request.operation_id:
            raise invalid_argument("operation_id is required", param="operation_id")
        await self.ready()
        async with self._db.transaction() as session:
            row = await session.get(models.ImportOperation, request.operation_id)
            if row is None:
                raise not_found(f"operation {echo(request.operation_id)} not found", param="operation_id")
            return registry_pb2.GetImportOperationResponse(operation=operation_to_proto(row))

    # ---- writes (platform admins) ---------------------------------------------------------
    async def CreateModel(
        self, request: registry_pb2.CreateModelRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.CreateModelResponse:
        """Registers a custom model from a local directory under the model roots (its files are
        read and hashed now; for a large model prefer ImportModel, which reports progress), or an
        entry for a model served by an OpenAI-compatible endpoint (metadata only)."""
        await self._callers.admin(context, "register models")
        model = request.model
        tags = check_tags(list(model.tags), "model.tags")
        if len(model.description) > MAX_DESCRIPTION:
            raise invalid_argument(
                f"model.description is longer than {MAX_DESCRIPTION} characters", param="model.description"
            )
        license_id = check_license_id(model.license_id, "model.license_id") if model.license_id else ""
        if model.provider == registry_pb2.MODEL_PROVIDER_OPENAI_COMPATIBLE:
            check_name(model.name, "model.name")
            if model.local_path:
                raise invalid_argument(
                    "an OpenAI-compatible model has no local_path", param="model.local_path"
                )
            row = models.RegistryModel(
                id=new_id(MODEL),
                name=model.name,
                description=model.description,
                provider=registry_pb2.ModelProvider.Name(model.provider),
                architecture=model.architecture,
                parameter_count=max(model.parameter_count, 0),
                context_length=max(model.context_length, 0),
                license_id=license_id or licenses.UNKNOWN,
                license_source="metadata" if license_id else "none",
                tags=tags,
                scan_status=registry_pb2.ScanStatus.Name(registry_pb2.SCAN_STATUS_PENDING),
                scan_report={},
                files=[],
            )
        else:
            if model.provider not in (
                registry_pb2.MODEL_PROVIDER_UNSPECIFIED,
                registry_pb2.MODEL_PROVIDER_CUSTOM,
            ):
                raise invalid_argument(
                    "CreateModel registers custom models (local_path) or OpenAI-compatible ones; "
                    "import Hugging Face models with ImportModel",
                    param="model.provider",
                )
            if not model.local_path:
                raise invalid_argument("model.local_path is required", param="model.local_path")
            if model.name:
                check_name(model.name, "model.name")
            directory = importer.allowed_directory(model.local_path, self._roots, "model.local_path")
            if not directory.is_dir():
                raise invalid_argument(
                    f"model.local_path {echo(model.local_path)} is not a directory", param="model.local_path"
                )
            source = importer.Source(registry_pb2.MODEL_PROVIDER_CUSTOM, directory)
            meta, found = await asyncio.to_thread(importer.describe, source, self._roots)
            row = importer.new_row(
                new_id(MODEL), model.name or directory.name, source, meta, found, tags, model.description
            )
            if license_id:  # the admin's word wins over the card's; the card's text stays
                row.license_id, row.license_source = license_id, "metadata"
        await self.ready()
        async with self._db.transaction() as session:
            session.add(row)
        if row.local_path:
            await self._scan_registered(row.id)
        return registry_pb2.CreateModelResponse(model=model_to_proto(row))

    async def _scan_registered(self, model_id: str) -> None:
        """Starts the scan of a model just registered or imported (unless turned off)."""
        if self._scan_on_register:
            await self.scans.start(model_id)

    async def ScanModel(
        self, request: registry_pb2.ScanModelRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.ScanModelResponse:
        """Starts scanning a model's files (ClamAV, pickles, headers) in the background: answers
        the last report and the operation to poll (GetImportOperation); GetModel shows the new
        report when it ends. The model is PENDING meanwhile. Platform admins."""
        await self._callers.admin(context, "scan models")
        check_model_id(request.model_id)
        await self.ready()
        async with self._db.transaction() as session:
            previous = scan_report((await self._get(session, request.model_id)).scan_report)
        op = await self.scans.start(request.model_id)
        return registry_pb2.ScanModelResponse(report=previous, operation=operation_to_proto(op))

    async def ResolveModelForDeployment(
        self, request: registry_pb2.ResolveModelForDeploymentRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.ResolveModelForDeploymentResponse:
        """The files a deployment of the model loads and their scanned hashes; FAILED_PRECONDITION
        unless the model's scan is CLEAN and its files unchanged since. Called by the app (its
        service identity is the caller check: auth/service_identity.py), which has checked the
        user who asks for the deployment."""
        check_model_id(request.model_id)
        await self.ready()
        return await self.scans.resolve(request.model_id)

    async def UpdateModel(
        self, request: registry_pb2.UpdateModelRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.UpdateModelResponse:
        """Changes name, description, tags or licence id (the fields `update_mask` names; all of
        them when it names none)."""
        await self._callers.admin(context, "update models")
        check_model_id(request.model_id)
        mask = request.update_mask
        if not mask.IsValidForDescriptor(registry_pb2.RegistryModel.DESCRIPTOR):
            raise invalid_argument(
                f"update_mask names unknown fields: {', '.join(mask.paths)}", param="update_mask"
            )
        paths = list(dict.fromkeys(mask.paths)) or list(WRITABLE)
        unwritable = [p for p in paths if p not in WRITABLE]
        if unwritable:
            raise invalid_argument(
                f"update_mask: {', '.join(map(repr, unwritable))} cannot be updated (writable: {', '.join(WRITABLE)})",
                param="update_mask",
            )
        model = request.model
        values: dict[str, Any] = {}
        if "name" in paths:
            check_name(model.name, "model.name")
            values["name"] = model.name
        if "description" in paths:
            if len(model.description) > MAX_DESCRIPTION:
                raise invalid_argument(
                    f"model.description is longer than {MAX_DESCRIPTION} characters",
                    param="model.description",
                )
            values["description"] = model.description
        if "tags" in paths:
            values["tags"] = check_tags(list(model.tags), "model.tags")
        if "license_id" in paths:
            values["license_id"] = check_license_id(model.license_id or licenses.UNKNOWN, "model.license_id")
        await self.ready()
        async with self._db.transaction() as session:
            row = await self._get(session, request.model_id)
            for key, value in values.items():
                setattr(row, key, value)
            if "license_id" in values:
                row.license_source = "metadata"
            row.update_time_ms = now_ms()
        return registry_pb2.UpdateModelResponse(model=model_to_proto(row))

    async def DeleteModel(
        self, request: registry_pb2.DeleteModelRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.DeleteModelResponse:
        """Deletes an entry (never its files). Refused (FAILED_PRECONDITION, MODEL_IN_USE) while a
        deployment serves it — by registry id, Hugging Face id or directory, as the app answers
        the admin's ListProjects/ListDeployments — unless `force`; when the app cannot be asked,
        UNAVAILABLE (nothing is deleted blind)."""
        _, token = await self._callers.admin(context, "delete models")
        check_model_id(request.model_id)
        await self.ready()
        async with self._db.transaction() as session:
            row = await self._get(session, request.model_id)
            hf_id, path = row.hugging_face_id, row.local_path
        if not request.force:
            using = await self._callers.deployments_using(token, hf_id, path, request.model_id)
            if using:
                shown = ", ".join(using[:10]) + (f" and {len(using) - 10} more" if len(using) > 10 else "")
                raise failed_precondition(
                    f"model {request.model_id} is used by deployments: {shown}; delete them or pass force",
                    reason=Reason.MODEL_IN_USE,
                    param="model_id",
                )
        async with self._db.transaction() as session:
            await self._get(session, request.model_id)
            await session.execute(
                delete(models.RegistryModelFile).where(models.RegistryModelFile.model_id == request.model_id)
            )
            await session.execute(
                delete(models.RegistryModel).where(models.RegistryModel.id == request.model_id)
            )
        return registry_pb2.DeleteModelResponse()

    async def ImportModel(
        self, request: registry_pb2.ImportModelRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.ImportModelResponse:
        """Starts an import (a local directory under the model roots, or a Hugging Face id through
        the HF cache and offline mode); answers at once with the operation to poll."""
        await self._callers.admin(context, "import models")
        importer.check_source(request.source, request.revision, self._roots)
        if request.name:
            check_name(request.name, "name")
        tags = check_tags(list(request.tags), "tags")
        await self.ready()
        op = await self.imports.start(request.source, request.revision, request.name, tags)
        return registry_pb2.ImportModelResponse(operation=operation_to_proto(op))

    # ---- benchmarks and the leaderboard ----------------------------------------------------
    async def refresh_leaderboard(self) -> int:
        """Recomputes the leaderboard (the schedule's job; GetLeaderboard's `refresh`)."""
        await self.ready()
        return await leaderboard.refresh(self._db)

    async def CreateBenchmarkResult(
        self, request: registry_pb2.CreateBenchmarkResultRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.CreateBenchmarkResultResponse:
        """Records a result for a registry model (`model_id`, in the path or the result) or for a
        deployment's model the catalogue does not hold (`result.model_name`). Platform admins.
        It reaches the leaderboard at its next refresh."""
        await self._callers.admin(context, "record benchmark results")
        result = request.result
        if request.model_id and result.model_id and request.model_id != result.model_id:
            raise invalid_argument(
                "model_id and result.model_id name different models", param="result.model_id"
            )
        model_id = request.model_id or result.model_id
        benchmarks.check_result(result)
        name = result.model_name.strip()
        row = benchmarks.new_row(new_id(benchmarks.RESULT), model_id, name, result)
        if not model_id and not name:
            raise invalid_argument(
                "model_id (a registry entry) or result.model_name is required", param="model_id"
            )
        await self.ready()
        async with self._db.transaction() as session:
            if model_id:
                row.model_name = name or (await self._get(session, model_id)).name
            session.add(row)
        return registry_pb2.CreateBenchmarkResultResponse(result=benchmarks.to_proto(row))

    async def ListBenchmarkResults(
        self, request: registry_pb2.ListBenchmarkResultsRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.ListBenchmarkResultsResponse:
        """Results newest first, filtered by model, deployment and hardware, paginated. Any
        logged-in user (results are published by platform admins)."""
        await self._callers.caller(context)
        size = _page_size(request.page_size)
        scope = benchmarks.list_scope(request)
        before = decode_page_token(request.page_token, scope)
        await self.ready()
        async with self._db.transaction() as session:
            stmt = benchmarks.list_query(request, before).limit(size + 1)
            rows = (await session.scalars(stmt)).all()
            token = encode_page_token(scope, rows[size - 1].id) if len(rows) > size else ""
            return registry_pb2.ListBenchmarkResultsResponse(
                results=[benchmarks.to_proto(r) for r in rows[:size]], next_page_token=token
            )

    async def GetLeaderboard(
        self, request: registry_pb2.GetLeaderboardRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.GetLeaderboardResponse:
        """The boards the request selects as last computed; `refresh` recomputes first (platform
        admins). Computed on the first read when it never was. Any logged-in user reads."""
        if request.refresh:
            await self._callers.admin(context, "refresh the leaderboard")
        else:
            await self._callers.caller(context)
        if request.limit < 0:
            raise invalid_argument("limit must not be negative", param="limit")
        limit = min(request.limit or leaderboard.DEFAULT_LIMIT, leaderboard.MAX_LIMIT)
        await self.ready()
        if request.refresh or not await leaderboard.refresh_time_ms(self._db):
            await leaderboard.refresh(self._db)
        entries, refreshed = await leaderboard.read(self._db, request, limit)
        answer = registry_pb2.GetLeaderboardResponse(
            entries=entries, next_refresh_time=self.schedule.next_time()
        )
        if refreshed:
            answer.refresh_time.CopyFrom(timestamp(refreshed))
        return answer
