"""RegistryService over gRPC, hosted in a real app's process (SQLite and PostgreSQL): every
logged-in user reads, platform admins write; CRUD, filters, pagination, licences, imports as
long-running operations, and deletion refused while a deployment uses the model."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import grpc
import pytest
from google.protobuf import field_mask_pb2

from bud.app.v1 import deployment_pb2, deployment_pb2_grpc, project_pb2, project_pb2_grpc
from bud.auth.v1 import user_pb2
from bud.registry.v1 import registry_pb2 as R
from budrt.errors import ServiceError
from budrt.grpc_server import service_channel
from tests.app.conftest import BearerToken
from tests.registry.conftest import RegistryStack
from tests.registry.models_on_disk import COMMIT, TINY_PARAMETERS, hf_cache, small_llama


async def expect(call: object, code: grpc.StatusCode, param: str | None = None) -> ServiceError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call  # type: ignore[misc]
    err = ServiceError.from_rpc_error(info.value)
    assert err.code == code, str(err)
    if param is not None:
        assert err.param == param, str(err)
    return err


async def make_user(users: object, name: str = "alice", admin: bool = False) -> None:
    await users.CreateUser(  # type: ignore[attr-defined]
        user_pb2.CreateUserRequest(username=name, password="password-of-" + name, platform_admin=admin)
    )


async def register(registry: object, directory: Path, **fields: object) -> R.RegistryModel:
    reply = await registry.CreateModel(  # type: ignore[attr-defined]
        R.CreateModelRequest(model=R.RegistryModel(local_path=str(directory), **fields))
    )
    return reply.model


async def test_register_read_update_delete(registry_stack: RegistryStack) -> None:
    registry, users = await registry_stack.client()
    model = await register(
        registry, small_llama(registry_stack.models_root / "llama-a", "llama3.1"), tags=["chat"]
    )
    assert model.id.startswith("rm_") and model.name == "llama-a"
    assert model.provider == R.MODEL_PROVIDER_CUSTOM and model.architecture == "LlamaForCausalLM"
    assert model.parameter_count == 6464 and model.context_length == 4096 and model.dtype == "bfloat16"
    assert model.license_id == "llama3.1" and model.license.user_threshold == 700_000_000
    assert model.scan_status == R.SCAN_STATUS_PENDING  # scanned later (off in these tests)
    assert model.requirements.kv_cache_bytes_per_1k_tokens == 2 * 3 * 16 * 2 * 1024
    assert {f.path for f in model.files} == {"README.md", "config.json", "model.safetensors"}
    assert all(len(f.sha256) == 64 for f in model.files)

    await make_user(users)
    reader, _ = await registry_stack.client("alice", "password-of-alice")
    got = (await reader.GetModel(R.GetModelRequest(model_id=model.id))).model
    assert got == model
    listed = await reader.ListModels(R.ListModelsRequest())
    assert [m.id for m in listed.models] == [model.id]
    licence = (await reader.GetModelLicense(R.GetModelLicenseRequest(model_id=model.id))).license
    assert licence.id == "llama3.1" and licence.known and licence.source == "card"
    assert len((await reader.ListLicenses(R.ListLicensesRequest())).licenses) > 25

    # Readers cannot write.
    for call in (
        reader.CreateModel(
            R.CreateModelRequest(model=R.RegistryModel(local_path=str(registry_stack.models_root)))
        ),
        reader.UpdateModel(R.UpdateModelRequest(model_id=model.id, model=R.RegistryModel(name="x"))),
        reader.DeleteModel(R.DeleteModelRequest(model_id=model.id)),
        reader.ImportModel(R.ImportModelRequest(source="org/name")),
    ):
        await expect(call, grpc.StatusCode.PERMISSION_DENIED)

    updated = (
        await registry.UpdateModel(
            R.UpdateModelRequest(
                model_id=model.id,
                model=R.RegistryModel(name="Llama A", tags=["chat", "small"], license_id="apache-2.0"),
                update_mask=field_mask_pb2.FieldMask(paths=["name", "tags", "license_id"]),
            )
        )
    ).model
    assert (updated.name, list(updated.tags), updated.license_id) == (
        "Llama A",
        ["chat", "small"],
        "Apache-2.0",
    )
    assert updated.update_time.ToMilliseconds() >= model.update_time.ToMilliseconds()
    await expect(
        registry.UpdateModel(
            R.UpdateModelRequest(
                model_id=model.id,
                model=R.RegistryModel(),
                update_mask=field_mask_pb2.FieldMask(paths=["parameter_count"]),
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "update_mask",
    )
    await expect(
        registry.UpdateModel(
            R.UpdateModelRequest(
                model_id=model.id,
                model=R.RegistryModel(license_id="my-licence"),
                update_mask=field_mask_pb2.FieldMask(paths=["license_id"]),
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "model.license_id",
    )

    await registry.DeleteModel(R.DeleteModelRequest(model_id=model.id))
    await expect(reader.GetModel(R.GetModelRequest(model_id=model.id)), grpc.StatusCode.NOT_FOUND, "model_id")


async def test_callers_must_be_logged_in_and_current(registry_stack: RegistryStack) -> None:
    anonymous = registry_stack.anonymous()
    await expect(anonymous.ListModels(R.ListModelsRequest()), grpc.StatusCode.UNAUTHENTICATED)
    registry, users = await registry_stack.client()
    await make_user(users, "bob")
    bob, bob_users = await registry_stack.client("bob", "password-of-bob")
    await bob.ListModels(R.ListModelsRequest())
    # A token revoked in the app (the user disabled) is refused by the registry at once.
    me = (await bob_users.GetUser(user_pb2.GetUserRequest(user_id="me"))).user
    await users.UpdateUser(
        user_pb2.UpdateUserRequest(
            user=user_pb2.User(id=me.id, disabled=True),
            update_mask=field_mask_pb2.FieldMask(paths=["disabled"]),
        )
    )
    await expect(bob.ListModels(R.ListModelsRequest()), grpc.StatusCode.UNAUTHENTICATED)


async def test_paths_outside_the_model_roots_are_refused(
    registry_stack: RegistryStack, tmp_path: Path
) -> None:
    registry, _ = await registry_stack.client()
    outside = small_llama(tmp_path / "outside")
    for path in (
        str(outside),
        str(registry_stack.models_root / ".." / "outside"),
        "relative",
        "/etc/passwd\0",
    ):
        await expect(
            registry.CreateModel(R.CreateModelRequest(model=R.RegistryModel(local_path=path))),
            grpc.StatusCode.INVALID_ARGUMENT,
            "model.local_path",
        )
        if path != "relative":  # that one is a Hugging Face id's shape
            await expect(
                registry.ImportModel(R.ImportModelRequest(source=path)), grpc.StatusCode.INVALID_ARGUMENT
            )
    link = registry_stack.models_root / "sneaky"
    link.symlink_to(outside)
    await expect(
        registry.CreateModel(R.CreateModelRequest(model=R.RegistryModel(local_path=str(link)))),
        grpc.StatusCode.INVALID_ARGUMENT,
        "model.local_path",
    )


async def test_filters_and_pagination(registry_stack: RegistryStack, tiny_model_dir: Path) -> None:
    registry, _ = await registry_stack.client()
    root = registry_stack.models_root
    shutil.copytree(tiny_model_dir, root / "tiny")
    tiny = await register(registry, root / "tiny")
    nc = await register(registry, small_llama(root / "nc", "cc-by-nc-4.0"))
    api = (
        await registry.CreateModel(
            R.CreateModelRequest(
                model=R.RegistryModel(
                    name="gpt-remote",
                    provider=R.MODEL_PROVIDER_OPENAI_COMPATIBLE,
                    license_id="mit",
                    parameter_count=10**12,
                )
            )
        )
    ).model
    assert tiny.parameter_count == TINY_PARAMETERS and tiny.license_id == "unknown"

    async def ids(**filters: object) -> list[str]:
        return [m.id for m in (await registry.ListModels(R.ListModelsRequest(**filters))).models]

    assert await ids() == [tiny.id, nc.id, api.id]
    assert await ids(license_id="cc-by-nc-4.0") == [nc.id]
    assert await ids(provider=R.MODEL_PROVIDER_OPENAI_COMPATIBLE) == [api.id]
    assert await ids(architecture="llama") == [tiny.id, nc.id]
    assert await ids(max_parameters=10_000) == [nc.id]
    assert await ids(scan_status=R.SCAN_STATUS_CLEAN) == []
    assert await ids(scan_status=R.SCAN_STATUS_PENDING) == [tiny.id, nc.id, api.id]

    first = await registry.ListModels(R.ListModelsRequest(page_size=2))
    assert [m.id for m in first.models] == [tiny.id, nc.id] and first.next_page_token
    second = await registry.ListModels(R.ListModelsRequest(page_size=2, page_token=first.next_page_token))
    assert [m.id for m in second.models] == [api.id] and not second.next_page_token
    await expect(
        registry.ListModels(R.ListModelsRequest(page_token=first.next_page_token, license_id="mit")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "page_token",
    )
    await expect(
        registry.ListModels(R.ListModelsRequest(page_size=-1)), grpc.StatusCode.INVALID_ARGUMENT, "page_size"
    )


async def test_import_from_the_offline_hf_cache_is_a_pollable_operation(
    registry_stack: RegistryStack, tiny_model_dir: Path, hub_offline: None
) -> None:
    hf_cache(registry_stack.hf_cache, "bud-test/tiny-llama", tiny_model_dir)
    registry, _ = await registry_stack.client()
    started = await registry.ImportModel(R.ImportModelRequest(source="bud-test/tiny-llama", tags=["tiny"]))
    assert not started.HasField("model") and started.operation.state == R.IMPORT_STATE_RUNNING
    op = started.operation
    for _ in range(200):
        op = (await registry.GetImportOperation(R.GetImportOperationRequest(operation_id=op.id))).operation
        if op.state != R.IMPORT_STATE_RUNNING:
            break
        await asyncio.sleep(0.05)
    assert op.state == R.IMPORT_STATE_SUCCEEDED, op.error
    model = (await registry.GetModel(R.GetModelRequest(model_id=op.model_id))).model
    assert model.provider == R.MODEL_PROVIDER_HUGGING_FACE and model.hugging_face_id == "bud-test/tiny-llama"
    assert (
        model.revision == COMMIT and model.parameter_count == TINY_PARAMETERS and list(model.tags) == ["tiny"]
    )

    failed = await registry.ImportModel(R.ImportModelRequest(source="bud-test/not-cached"))
    await registry_stack.servicer.imports.wait()
    op = (
        await registry.GetImportOperation(R.GetImportOperationRequest(operation_id=failed.operation.id))
    ).operation
    assert op.state == R.IMPORT_STATE_FAILED and "HF_HUB_OFFLINE" in op.error
    await expect(
        registry.GetImportOperation(R.GetImportOperationRequest(operation_id="rop_nope")),
        grpc.StatusCode.NOT_FOUND,
    )


async def test_delete_is_refused_while_a_deployment_uses_the_model(
    registry_stack: RegistryStack, tiny_model_dir: Path, hub_offline: None
) -> None:
    hf_cache(registry_stack.hf_cache, "bud-test/tiny-llama", tiny_model_dir)
    registry, _ = await registry_stack.client()
    started = await registry.ImportModel(R.ImportModelRequest(source="bud-test/tiny-llama"))
    await registry_stack.servicer.imports.wait()
    op = (
        await registry.GetImportOperation(R.GetImportOperationRequest(operation_id=started.operation.id))
    ).operation
    model_id = op.model_id

    bearer = BearerToken()
    channel = service_channel(registry_stack.app.address, interceptors=[bearer])
    try:
        from bud.auth.v1 import user_pb2_grpc

        bearer.token = (
            await user_pb2_grpc.UserServiceStub(channel).Login(
                user_pb2.LoginRequest(username="admin", password="test-admin-password")
            )
        ).access_token
        projects = project_pb2_grpc.ProjectServiceStub(channel)
        deployments = deployment_pb2_grpc.DeploymentServiceStub(channel)
        project = (
            await projects.CreateProject(
                project_pb2.CreateProjectRequest(project=project_pb2.Project(name="p1"))
            )
        ).project
        deployment = (
            await deployments.CreateDeployment(
                deployment_pb2.CreateDeploymentRequest(
                    project_id=project.id,
                    deployment=deployment_pb2.Deployment(
                        name="served", model=deployment_pb2.ModelSource(hugging_face_id="bud-test/tiny-llama")
                    ),
                )
            )
        ).deployment
        err = await expect(
            registry.DeleteModel(R.DeleteModelRequest(model_id=model_id)), grpc.StatusCode.FAILED_PRECONDITION
        )
        assert err.reason == "MODEL_IN_USE" and "p1/served" in err.message
        await registry.GetModel(R.GetModelRequest(model_id=model_id))  # still there
        await deployments.DeleteDeployment(
            deployment_pb2.DeleteDeploymentRequest(project_id=project.id, deployment_id=deployment.id)
        )
        await registry.DeleteModel(R.DeleteModelRequest(model_id=model_id))
    finally:
        await channel.close()


async def test_forced_delete(registry_stack: RegistryStack) -> None:
    registry, _ = await registry_stack.client()
    model = await register(registry, small_llama(registry_stack.models_root / "m"))
    await registry.DeleteModel(R.DeleteModelRequest(model_id=model.id, force=True))
    await expect(registry.DeleteModel(R.DeleteModelRequest(model_id=model.id)), grpc.StatusCode.NOT_FOUND)


async def test_unbuilt_rpcs_answer_unimplemented_and_scan_is_built(registry_stack: RegistryStack) -> None:
    registry, _ = await registry_stack.client()
    await expect(registry.ScanModel(R.ScanModelRequest(model_id="rm_x")), grpc.StatusCode.NOT_FOUND)
