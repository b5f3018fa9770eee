"""Per-RPC authorisation by service identity: which services may call which internal RPCs.

Mutual TLS (`budrt.tls`) establishes who calls: the ``spiffe://bud/<service>`` URI of the client
certificate, verified against the mesh's CA (a caller without a certificate from it never
completes the handshake). :class:`ServiceIdentityPolicy` decides what that caller may do, as the
authorisation interceptor a component gives its `GrpcServer` (`authorization=`):

- the engine's RPCs (inference, LoadModel/UnloadModel, ListModels, GetStats): gateways and the
  app (its control plane loads and unloads models); `GetRequestUsage` (what a cancelled call
  cost) gateways only;
- `WatchRouting` (every key's hash, every project and engine) and `RecordUsage`: gateways only;
- prompt execution and the stored responses (ResponseStoreService): gateways only; the prompt
  studio's runs on the executor (`RunPromptBody`, `StreamRunPromptBody`, `GenerateValidationDocument`): the app only
  (it has checked the user's token and role);
- calling the gateway's OpenAI service for a project named in metadata instead of with an API key
  (:func:`acting_project`, the studio's model calls): the prompt executor only;
- the management RPCs (projects, deployments, keys, users, usage queries, prompts, registry):
  gateways (their REST face) and the operator's tools (grpcurl with the operator certificate);
  the user's JWT is still checked by each RPC on top; the app too for GetUser, ListProjects and
  ListDeployments, which the registry (hosted in its process) calls with its caller's token;
- an engine's announcement of itself (EngineRegistryService.AnnounceEngine): engines only;
- the registry's ResolveModelForDeployment (the files and scanned hashes of a registry model a
  deployment names): the app only.

A method the table does not name is refused to everyone (a new service must be given its
callers here). In-process calls (`budrt.inprocess.LocalContext`) carry the host process's own
identity and are judged by the same table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from budrt.errors import Reason, permission_denied
from budrt.interceptors import Behavior, CallInterceptor
from budrt.tls import OPERATOR, peer_identity

APP = "app"
ENGINE = "engine"
GATEWAY = "gateway"
PROMPT = "prompt"

_MANAGEMENT = frozenset({GATEWAY, OPERATOR})

# Metadata naming the project a model call is charged to, in place of an API key (the prompt
# studio's runs: the app checked the user, the executor makes the call).
ACTING_PROJECT_HEADER = "x-bud-acting-project"
ACT_FOR_PROJECT = "bud.openai.v1.OpenAiService#acting-project"

# Service ("package.Service") or method ("package.Service/Method") → the identities that may call
# it; a method's own entry wins over its service's.
POLICY: Mapping[str, frozenset[str]] = {
    "bud.engine.v1.EngineService": frozenset({GATEWAY, APP}),
    # What a cancelled call cost is the gateways' business (they charge it), not the app's.
    "bud.engine.v1.EngineService/GetRequestUsage": frozenset({GATEWAY}),
    "bud.auth.v1.RoutingService/WatchRouting": frozenset({GATEWAY}),
    # The gateways' load (autoscaling, idleness, draining) and their wake-ups of a deployment
    # scaled to zero.
    "bud.auth.v1.RoutingService/ReportLoad": frozenset({GATEWAY}),
    "bud.auth.v1.RoutingService/WakeDeployment": frozenset({GATEWAY}),
    "bud.app.v1.UsageService/RecordUsage": frozenset({GATEWAY}),
    "bud.app.v1.UsageService/QueryUsage": _MANAGEMENT,
    "bud.prompt.v1.PromptExecutionService": frozenset({GATEWAY}),
    # The studio's runs: the app authorised the user (editor in the project) and names the
    # project; nobody else may have a model call charged to a project without its key.
    "bud.prompt.v1.PromptExecutionService/RunPromptBody": frozenset({APP}),
    "bud.prompt.v1.PromptExecutionService/StreamRunPromptBody": frozenset({APP}),
    "bud.prompt.v1.PromptExecutionService/GenerateValidationDocument": frozenset({APP}),
    # Not an RPC: who may call the gateway's OpenAI service for the project in ACTING_PROJECT_HEADER
    # without an API key (the executor, running a studio run the app asked for).
    ACT_FOR_PROJECT: frozenset({PROMPT}),
    # Stored responses (tenant data, the project named by the gateway that checked its key).
    "bud.app.v1.ResponseStoreService": frozenset({GATEWAY}),
    "bud.app.v1.ProjectService": _MANAGEMENT,
    "bud.app.v1.DeploymentService": _MANAGEMENT,
    "bud.app.v1.BudgetService": _MANAGEMENT,
    "bud.app.v1.EngineRegistryService": _MANAGEMENT,
    # An engine registers itself and renews its lease (the address it announces must be in its
    # own certificate: app.services.engines checks that).
    "bud.app.v1.EngineRegistryService/AnnounceEngine": frozenset({ENGINE}),
    "bud.auth.v1.ApiKeyService": _MANAGEMENT,
    "bud.auth.v1.UserService": _MANAGEMENT,
    "bud.prompt.v1.PromptService": _MANAGEMENT,
    # Prompt bodies for the executing side (the prompt executor: in a gateway's process, or its
    # own `budrt serve prompt`): no token on it.
    "bud.prompt.v1.PromptService/WatchPrompts": frozenset({GATEWAY, PROMPT, APP}),
    "bud.prompt.v1.PromptService/FetchPromptVersion": frozenset({GATEWAY, PROMPT, APP}),
    "bud.registry.v1.RegistryService": _MANAGEMENT,
    # A deployment's registry model: the files and scanned hashes, for the app only (it checked
    # the user who deploys; the registry refuses a model whose scan is not CLEAN).
    "bud.registry.v1.RegistryService/ResolveModelForDeployment": frozenset({APP}),
    # The registry (a guest of the app's process: the app's identity) asks the app, with its
    # caller's own token, whether that token is still current and which deployments use a model.
    "bud.auth.v1.UserService/GetUser": _MANAGEMENT | {APP},
    "bud.app.v1.ProjectService/ListProjects": _MANAGEMENT | {APP},
    "bud.app.v1.DeploymentService/ListDeployments": _MANAGEMENT | {APP},
}


def allowed_callers(method: str, policy: Mapping[str, frozenset[str]] = POLICY) -> frozenset[str]:
    """The identities that may call `method` ("package.Service/Method"); empty: nobody."""
    if method in policy:
        return policy[method]
    return policy.get(method.split("/", 1)[0], frozenset())


def caller_identity(context: Any) -> str | None:
    """The service identity of a call's peer (None: no verified identity)."""
    auth_context = getattr(context, "auth_context", None)
    return peer_identity(auth_context()) if auth_context is not None else None


def acting_project(context: Any, policy: Mapping[str, frozenset[str]] = POLICY) -> str | None:
    """The project a call names in ACTING_PROJECT_HEADER (None: it names none, and presents its
    own credentials). PERMISSION_DENIED unless the caller's identity may act for a project
    (ACT_FOR_PROJECT: the prompt executor) and names exactly one. The gateway's public faces
    carry no such identity: a client sending the header is refused, never believed."""
    values = [v for k, v in context.invocation_metadata() if k == ACTING_PROJECT_HEADER]
    if not values:
        return None
    identity = caller_identity(context)
    if identity not in policy.get(ACT_FOR_PROJECT, frozenset()):
        who = f"service identity {identity!r}" if identity else "a caller without a service identity"
        raise permission_denied(
            f"{who} may not call for a project without its API key", reason=Reason.SERVICE_NOT_ALLOWED
        )
    if len(values) != 1 or not isinstance(values[0], str) or not values[0]:
        raise permission_denied(
            f"{ACTING_PROJECT_HEADER} must name exactly one project", reason=Reason.SERVICE_NOT_ALLOWED
        )
    return values[0]


class ServiceIdentityPolicy(CallInterceptor):
    """Refuses, with PERMISSION_DENIED, a call whose peer identity the policy does not allow for
    its method. The allowed set is looked up once per method; a call pays one auth-context read."""

    def __init__(self, policy: Mapping[str, frozenset[str]] = POLICY) -> None:
        self.policy = policy

    def _check(self, allowed: frozenset[str], method: str, context: Any) -> None:
        identity = caller_identity(context)
        if identity not in allowed:
            who = f"service identity {identity!r}" if identity else "a caller without a service identity"
            raise permission_denied(f"{who} may not call {method}", reason=Reason.SERVICE_NOT_ALLOWED)

    def wrap_unary(self, behavior: Behavior, method: str) -> Behavior:
        allowed = allowed_callers(method, self.policy)

        async def authorised(request: Any, context: Any) -> Any:
            self._check(allowed, method, context)
            return await behavior(request, context)

        return authorised

    def wrap_stream(self, behavior: Behavior, method: str) -> Behavior:
        allowed = allowed_callers(method, self.policy)

        async def authorised(request: Any, context: Any) -> Any:
            self._check(allowed, method, context)
            items = behavior(request, context)
            try:
                async for item in items:
                    yield item
            finally:
                await items.aclose()

        return authorised
