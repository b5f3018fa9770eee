"""Scans gate deployment: the registry scans a model after it is registered (and on ScanModel)
against a real clamd (tests/support/clamd.py), stores the status, report and hashes, and a
deployment of a registry model is created only when its scan is CLEAN and its files unchanged;
the app then asks the engine to load the recorded files with their hashes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2

import tests.support.clamd
from bud.app.v1 import deployment_pb2, deployment_pb2_grpc, project_pb2, project_pb2_grpc
from bud.registry.v1 import registry_pb2 as R
from budrt.tls import LocalCa
from tests.app.conftest import EngineHost
from tests.registry.conftest import RegistryStack, running_registry
from tests.registry.models_on_disk import small_llama
from tests.registry.test_registry_service import expect, make_user, register
from tests.registry.test_scanning_formats import evil_pickle
from tests.support.clamd import EICAR, STREAM_MAX_BYTES, ClamdServer
from tests.support.mesh import free_port

pytestmark = pytest.mark.integration

clamd_server = tests.support.clamd.clamd_server  # the session fixture


def clamd_settings(server: ClamdServer, **changes: Any) -> dict[str, Any]:
    """Registry settings scanning with the test clamd (its stream limit), after registration."""
    return {
        "clamav_host": server.host,
        "clamav_port": server.port,
        "clamav_stream_max_bytes": STREAM_MAX_BYTES,
        "clamav_segment_overlap_bytes": 64 * 1024,
        "registry_scan_on_register": True,
        **changes,
    }


@pytest.fixture
async def scanning(
    app_settings: Any, tmp_path: Path, process_tls: LocalCa, clamd_server: ClamdServer
) -> AsyncIterator[RegistryStack]:
    async with running_registry(app_settings, tmp_path, process_tls, **clamd_settings(clamd_server)) as stack:
        yield stack


async def scanned(stack: RegistryStack, registry: Any, model_id: str) -> R.RegistryModel:
    """The model once its running scan has ended."""
    await stack.servicer.scans.wait()
    return (await registry.GetModel(R.GetModelRequest(model_id=model_id))).model


class Deployer:
    """An admin's project and DeploymentService stub on the stack's app."""

    def __init__(self, stack: RegistryStack) -> None:
        self.stack = stack

    async def open(self) -> Deployer:
        self.registry, _ = await self.stack.client()
        chan = self.stack._channels[-1]  # the admin's channel, bearer token and all
        self.deployments = deployment_pb2_grpc.DeploymentServiceStub(chan)
        projects = project_pb2_grpc.ProjectServiceStub(chan)
        self.project = (
            await projects.CreateProject(
                project_pb2.CreateProjectRequest(project=project_pb2.Project(name="p1"))
            )
        ).project
        return self

    def create(self, model_id: str, name: str = "d") -> Any:
        return self.deployments.CreateDeployment(
            deployment_pb2.CreateDeploymentRequest(
                project_id=self.project.id,
                deployment=deployment_pb2.Deployment(
                    name=name, model=deployment_pb2.ModelSource(registry_model_id=model_id)
                ),
            )
        )


async def test_clean_model_is_scanned_after_registration_and_deployed(
    scanning: RegistryStack, engine_host: EngineHost
) -> None:
    deployer = await Deployer(scanning).open()
    registry = deployer.registry
    directory = small_llama(scanning.models_root / "clean")
    created = await register(registry, directory)
    assert created.scan_status == R.SCAN_STATUS_PENDING  # the scan runs in the background
    model = await scanned(scanning, registry, created.id)
    assert model.scan_status == R.SCAN_STATUS_CLEAN, model.scan.summary
    report = model.scan
    assert report.status == R.SCAN_STATUS_CLEAN and report.verdict == R.SCAN_VERDICT_CLEAN
    assert report.clamav_version.startswith("ClamAV") and report.files_scanned == 3
    assert {f.path: f.sha256 for f in report.files} == {f.path: f.sha256 for f in model.files}

    deployment = (await deployer.create(model.id)).deployment
    assert deployment.model.registry_model_id == model.id  # the id shows, never the pin
    for _ in range(200):
        got = await deployer.deployments.GetDeployment(
            deployment_pb2.GetDeploymentRequest(project_id=deployer.project.id, deployment_id=deployment.id)
        )
        if got.deployment.status == deployment_pb2.DEPLOYMENT_STATUS_READY:
            break
        await asyncio.sleep(0.05)
    assert got.deployment.status == deployment_pb2.DEPLOYMENT_STATUS_READY, got.deployment.status_message
    loads = [c for c in engine_host.engine.load_calls if c.source.WhichOneof("kind") == "registry"]
    assert loads, engine_host.engine.load_calls
    source = loads[-1].source.registry
    assert source.model_id == model.id and source.local_path == str(directory)
    assert dict(source.sha256) == {f.path: f.sha256 for f in model.files}

    # The files change: new deployments are refused, the existing one keeps its pin (an update
    # repeating its model is not refused; its engine would refuse changed files on a reload).
    (directory / "README.md").write_text("# edited\n")
    await expect(deployer.create(model.id, "d2"), grpc.StatusCode.FAILED_PRECONDITION)
    updated = await deployer.deployments.UpdateDeployment(
        deployment_pb2.UpdateDeploymentRequest(
            deployment=deployment_pb2.Deployment(
                id=deployment.id,
                project_id=deployer.project.id,
                name="renamed",
                model=deployment_pb2.ModelSource(registry_model_id=model.id),
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["name", "model"]),
        )
    )
    assert updated.deployment.name == "renamed" and updated.deployment.model.registry_model_id == model.id
    in_use = await expect(
        deployer.registry.DeleteModel(R.DeleteModelRequest(model_id=model.id)),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert in_use.reason == "MODEL_IN_USE" and "p1/renamed" in in_use.message


async def test_eicar_model_is_infected_and_its_deployment_refused(scanning: RegistryStack) -> None:
    deployer = await Deployer(scanning).open()
    directory = small_llama(scanning.models_root / "eicar")
    (directory / "notes.txt").write_bytes(EICAR)
    model = await scanned(scanning, deployer.registry, (await register(deployer.registry, directory)).id)
    assert model.scan_status == R.SCAN_STATUS_INFECTED
    assert [(f.path, f.scanner, f.detail) for f in model.scan.findings] == [
        ("notes.txt", "clamav", "eicar.com.UNOFFICIAL")
    ]
    err = await expect(
        deployer.create(model.id), grpc.StatusCode.FAILED_PRECONDITION, "deployment.model.registry_model_id"
    )
    assert err.reason == "MODEL_SCAN_NOT_CLEAN"
    assert "INFECTED: notes.txt: clamav eicar.com.UNOFFICIAL" in err.message, err.message


async def test_malicious_pickle_is_unsafe_and_its_deployment_refused(
    scanning: RegistryStack, tmp_path: Path
) -> None:
    deployer = await Deployer(scanning).open()
    directory = small_llama(scanning.models_root / "pickled")
    marker = tmp_path / "pwned"
    (directory / "pytorch_model.bin").write_bytes(evil_pickle(marker))
    model = await scanned(scanning, deployer.registry, (await register(deployer.registry, directory)).id)
    assert model.scan_status == R.SCAN_STATUS_UNSAFE, model.scan.summary
    findings = [(f.path, f.scanner, f.detail, f.severity) for f in model.scan.findings]
    assert ("pytorch_model.bin", "picklescan", "posix.system", "error") in findings
    err = await expect(deployer.create(model.id), grpc.StatusCode.FAILED_PRECONDITION)
    assert "UNSAFE: pytorch_model.bin: picklescan posix.system" in err.message, err.message
    assert not marker.exists()  # never unpickled


async def test_changed_files_send_the_model_back_to_pending_and_are_refused(scanning: RegistryStack) -> None:
    deployer = await Deployer(scanning).open()
    directory = small_llama(scanning.models_root / "changing")
    model = await scanned(scanning, deployer.registry, (await register(deployer.registry, directory)).id)
    assert model.scan_status == R.SCAN_STATUS_CLEAN
    (directory / "README.md").write_text("# edited after the scan\n")
    err = await expect(deployer.create(model.id), grpc.StatusCode.FAILED_PRECONDITION)
    assert err.reason == "MODEL_FILES_CHANGED" and "changed: README.md" in err.message
    got = (await deployer.registry.GetModel(R.GetModelRequest(model_id=model.id))).model
    assert got.scan_status == R.SCAN_STATUS_PENDING
    pending = await expect(deployer.create(model.id), grpc.StatusCode.FAILED_PRECONDITION)
    assert pending.reason == "MODEL_SCAN_NOT_CLEAN" and "PENDING" in pending.message

    (directory / "extra.py").write_text("print('unscanned')\n")  # an added file, then a rescan
    started = await deployer.registry.ScanModel(R.ScanModelRequest(model_id=model.id))
    assert started.operation.stage == "scan" and started.operation.model_id == model.id
    assert started.report.status == R.SCAN_STATUS_CLEAN  # the previous report
    rescanned = await scanned(scanning, deployer.registry, model.id)
    assert rescanned.scan_status == R.SCAN_STATUS_CLEAN
    assert "extra.py" in {f.path for f in rescanned.files}  # the scanned set is what is recorded
    op = (
        await deployer.registry.GetImportOperation(
            R.GetImportOperationRequest(operation_id=started.operation.id)
        )
    ).operation
    assert op.state == R.IMPORT_STATE_SUCCEEDED and op.stage == "done" and op.bytes_done > 0
    await deployer.create(model.id)  # deployable again


async def test_scan_needs_an_admin_and_a_model_with_files(scanning: RegistryStack) -> None:
    registry, users = await scanning.client()
    await make_user(users, "alice")
    alice, _ = await scanning.client("alice", "password-of-alice")
    model = await register(registry, small_llama(scanning.models_root / "m"))
    await expect(alice.ScanModel(R.ScanModelRequest(model_id=model.id)), grpc.StatusCode.PERMISSION_DENIED)
    await expect(registry.ScanModel(R.ScanModelRequest(model_id="rm_x")), grpc.StatusCode.NOT_FOUND)
    api = (
        await registry.CreateModel(
            R.CreateModelRequest(
                model=R.RegistryModel(name="remote", provider=R.MODEL_PROVIDER_OPENAI_COMPATIBLE)
            )
        )
    ).model
    await expect(registry.ScanModel(R.ScanModelRequest(model_id=api.id)), grpc.StatusCode.FAILED_PRECONDITION)
    await scanning.servicer.scans.wait()


async def test_resolve_is_for_the_app_identity_only(scanning: RegistryStack) -> None:
    """The test process holds a gateway's certificate: ResolveModelForDeployment refuses it."""
    anonymous = scanning.anonymous()
    err = await expect(
        anonymous.ResolveModelForDeployment(R.ResolveModelForDeploymentRequest(model_id="rm_x")),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert err.reason == "SERVICE_NOT_ALLOWED"


async def test_clamd_down_is_error_never_clean(
    app_settings: Any, tmp_path: Path, process_tls: LocalCa, clamd_server: ClamdServer
) -> None:
    settings = clamd_settings(clamd_server, clamav_port=free_port())  # nothing listens there
    async with running_registry(app_settings, tmp_path, process_tls, **settings) as stack:
        deployer = await Deployer(stack).open()
        model = await register(deployer.registry, small_llama(stack.models_root / "m"))
        model = await scanned(stack, deployer.registry, model.id)
        assert model.scan_status == R.SCAN_STATUS_ERROR
        assert "unreachable" in model.scan.reason and model.scan.verdict == R.SCAN_VERDICT_ERROR
        err = await expect(deployer.create(model.id), grpc.StatusCode.FAILED_PRECONDITION)
        assert "ERROR" in err.message and "unreachable" in err.message


async def test_builtin_models_are_catalogued_and_the_defaults_work_without_clamd(
    app_settings: Any, tmp_path: Path, process_tls: LocalCa, tiny_model_dir: Path
) -> None:
    """`budrt up` on a machine without clamd: the built-in models are catalogued (scan ERROR,
    clamd unreachable), and the default deployments, built-in sources, are served all the same."""
    (app_settings.data_dir / "models").mkdir(parents=True)
    (app_settings.data_dir / "models" / "tiny-llama").symlink_to(tiny_model_dir)  # as the engine built it
    settings = {
        "clamav_port": free_port(),  # no clamd
        "registry_scan_on_register": True,
        "registry_register_builtin_models": True,
    }
    async with running_registry(app_settings, tmp_path, process_tls, **settings) as stack:
        registry, _ = await stack.client()
        listed = (await registry.ListModels(R.ListModelsRequest())).models
        assert {m.name for m in listed} == {"tiny-llama", "all-minilm-l6-v2"}
        assert all(list(m.tags) == ["builtin"] for m in listed)
        await stack.servicer.scans.wait()
        for model in (await registry.ListModels(R.ListModelsRequest())).models:
            assert model.scan_status == R.SCAN_STATUS_ERROR and "unreachable" in model.scan.reason
        again = (await registry.ListModels(R.ListModelsRequest())).models
        assert len(again) == 2  # catalogued once

        chan = stack._channels[-1]
        projects = project_pb2_grpc.ProjectServiceStub(chan)
        deployments = deployment_pb2_grpc.DeploymentServiceStub(chan)
        default = next(
            p
            for p in (await projects.ListProjects(project_pb2.ListProjectsRequest())).projects
            if p.name == "default"
        )
        for _ in range(200):
            served = (
                await deployments.ListDeployments(
                    deployment_pb2.ListDeploymentsRequest(project_id=default.id)
                )
            ).deployments
            if served and all(d.status == deployment_pb2.DEPLOYMENT_STATUS_READY for d in served):
                break
            await asyncio.sleep(0.05)
        assert served and all(d.model.WhichOneof("source") == "builtin" for d in served)
        assert all(d.status == deployment_pb2.DEPLOYMENT_STATUS_READY for d in served), served


async def test_an_import_is_scanned_when_it_succeeds(scanning: RegistryStack) -> None:
    registry, _ = await scanning.client()
    directory = small_llama(scanning.models_root / "imported")
    started = await registry.ImportModel(R.ImportModelRequest(source=str(directory)))
    await scanning.servicer.imports.wait()
    op = (
        await registry.GetImportOperation(R.GetImportOperationRequest(operation_id=started.operation.id))
    ).operation
    assert op.state == R.IMPORT_STATE_SUCCEEDED, op.error
    model = await scanned(scanning, registry, op.model_id)
    assert model.scan_status == R.SCAN_STATUS_CLEAN, model.scan.summary
    assert model.scan.summary == "CLEAN (3 files)"
    clean = (await registry.ListModels(R.ListModelsRequest(scan_status=R.SCAN_STATUS_CLEAN))).models
    assert [m.id for m in clean] == [model.id]
