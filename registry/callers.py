"""Who calls a registry RPC, and what the app says about the deployments using a model.

The registry owns no users: a caller's JWT (`authorization: Bearer`) is checked here
(`auth.tokens.Authenticator`: signature and expiry), then the app is asked over the service
channel — `UserService.GetUser("me")` with the caller's own token — whether the token is still
current (not revoked, user not disabled) and whether the user is a platform admin now. The
same channel answers which deployments use a model (DeleteModel): the caller's (an admin's)
`ListProjects` and `ListDeployments`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc

from auth.bearer import bearer_credential
from auth.tokens import Authenticator, Caller
from bud.app.v1 import deployment_pb2, deployment_pb2_grpc, project_pb2, project_pb2_grpc
from bud.auth.v1 import user_pb2, user_pb2_grpc
from budrt.errors import ServiceError, permission_denied, unavailable
from budrt.grpc_server import service_channel

# How long a question to the app may take.
APP_TIMEOUT_S = 10.0


class AppClient:
    """Calls to the app's management services on behalf of the registry's caller (their token)."""

    def __init__(self, address: Callable[[], str]) -> None:
        self._address = address
        self._channel: grpc.aio.Channel | None = None
        self._lock = asyncio.Lock()

    async def _open(self) -> grpc.aio.Channel:
        async with self._lock:
            if self._channel is None:
                self._channel = service_channel(self._address())
            return self._channel

    async def call(self, stub_class: Any, method: str, request: Any, token: str) -> Any:
        """One unary call; the app's refusal is raised as the same ServiceError, and a failure
        to reach it as UNAVAILABLE."""
        stub = stub_class(await self._open())
        try:
            return await getattr(stub, method)(
                request, metadata=(("authorization", f"Bearer {token}"),), timeout=APP_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as err:
            if err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise unavailable(f"the app cannot be reached to check this call: {err.details()}") from None
            raise ServiceError.from_rpc_error(err) from None

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None


class Callers:
    """The registry's caller check: a valid token (here), still current (the app)."""

    def __init__(self, jwt_secret: Callable[[], str], app: AppClient) -> None:
        self._secret = jwt_secret
        self._authenticator: Authenticator | None = None
        self.app = app

    @property
    def _auth(self) -> Authenticator:
        # Made at the first call: reading (or generating) the secret is no side effect of binding.
        if self._authenticator is None:
            self._authenticator = Authenticator(self._secret())
        return self._authenticator

    async def caller(self, context: Any) -> tuple[Caller, str]:
        """The caller and their token; UNAUTHENTICATED as the app would answer it."""
        caller = self._auth.caller(context)  # UNAUTHENTICATED before any network call
        token = bearer_credential(context.invocation_metadata())
        answer = await self.app.call(
            user_pb2_grpc.UserServiceStub, "GetUser", user_pb2.GetUserRequest(user_id="me"), token
        )
        return Caller(answer.user.id, answer.user.platform_admin, caller.generation), token

    async def admin(self, context: Any, what: str) -> tuple[Caller, str]:
        """The caller, who must be a platform admin (PERMISSION_DENIED otherwise)."""
        caller, token = await self.caller(context)
        if not caller.admin:
            raise permission_denied(f"only platform admins may {what}")
        return caller, token

    async def deployments_using(
        self, token: str, hugging_face_id: str, local_path: str, model_id: str
    ) -> list[str]:
        """ "project/deployment" names of the deployments whose model is this registry model:
        by registry id, by Hugging Face id, or by local directory."""
        using: list[str] = []
        page = ""
        while True:
            projects = await self.app.call(
                project_pb2_grpc.ProjectServiceStub,
                "ListProjects",
                project_pb2.ListProjectsRequest(page_size=1000, page_token=page),
                token,
            )
            for project in projects.projects:
                dpage = ""
                while True:
                    answer = await self.app.call(
                        deployment_pb2_grpc.DeploymentServiceStub,
                        "ListDeployments",
                        deployment_pb2.ListDeploymentsRequest(
                            project_id=project.id, page_size=1000, page_token=dpage
                        ),
                        token,
                    )
                    for deployment in answer.deployments:
                        source = deployment.model
                        if (
                            (source.registry_model_id and source.registry_model_id == model_id)
                            or (hugging_face_id and source.hugging_face_id == hugging_face_id)
                            or (local_path and source.local_path.rstrip("/") == local_path.rstrip("/"))
                        ):
                            using.append(f"{project.name}/{deployment.name}")
                    dpage = answer.next_page_token
                    if not dpage:
                        break
            page = projects.next_page_token
            if not page:
                return using
