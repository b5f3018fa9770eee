"""The OpenAI-compatible service: authenticates the project API key, resolves `model` to one of
the project's deployments, forwards to an engine replica, and accounts usage. It runs inside the
gateway process, called in-process by the transcoder (REST) and by the gateway's gRPC server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import Message

from auth.bearer import BearerError, bearer_credential
from auth.prompt_run import PromptRun, claim_of
from auth.service_identity import acting_project
from bud.app.v1 import response_store_pb2
from bud.engine.v1 import engine_service_pb2
from bud.openai.v1 import (
    chat_pb2,
    completion_pb2,
    embedding_pb2,
    model_pb2,
    openai_service_pb2_grpc,
    response_pb2,
)
from bud.prompt.v1 import prompt_pb2
from budrt.call_headers import pass_answer_headers
from budrt.errors import (
    Reason,
    ServiceError,
    echo,
    http_status,
    invalid_argument,
    not_found,
    resource_exhausted,
    unauthenticated,
    unavailable,
    unimplemented,
)
from budrt.interceptors import call_request_id
from budrt.money import format_nanos
from gateway import conversation, observe, responses
from gateway.budgets import BudgetEnforcer, Hold
from gateway.cold_start import ColdStarts
from gateway.concurrency import RETRY_AFTER_S, ConcurrencyLimiter, MemoryConcurrencyLimiter, Slot
from gateway.engines import EngineConnection, EnginePool, engine_error, engine_metadata
from gateway.images.checks import IMAGE_OPERATIONS, check_image_request, check_kind, image_count
from gateway.images.service import ImageConfig, ImageOps
from gateway.load import LoadTracker
from gateway.ratelimit import Decision, Limit, RateLimiter
from gateway.response_cache import (
    ANSWERS,
    Lookup,
    ResponseCache,
    cache_key,
    deterministic,
    pack,
    restamp,
    unpack,
)
from gateway.response_store import ResponseStore
from gateway.settings import (
    DEFAULT_KEY_REQUESTS_PER_MINUTE,
    DEFAULT_KEY_TOKENS_PER_MINUTE,
    DEFAULT_MAX_CHOICES,
    DEFAULT_MAX_TOTAL_TOKENS,
)
from gateway.tables import DeploymentEntry, KeyEntry, RoutingTables
from gateway.usage import UsageRecorder

# The stream events that carry the finished response (the one stored).
_FINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})
# Requests larger than this have their Python-heavy conversions run off the event loop.
LARGE_REQUEST_BYTES = 64 * 1024
# Output tokens reserved against a tokens-per-minute limit when the request sets no maximum.
DEFAULT_RESERVED_OUTPUT_TOKENS = 256

# The fields bounding how many tokens a request generates per choice (chat, completions, Responses).
_MAX_TOKEN_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
# The fields multiplying it: choices returned (n) and candidates generated (completions' best_of).
_CHOICE_FIELDS = ("n", "best_of")

# How long a charge waits for the engine's counts of a cancelled or failed call (off the
# client's path) before it charges what the gateway saw itself.
CHARGE_TIMEOUT_S = 2.0

log = logging.getLogger(__name__)


@dataclass
class _Charge:
    """What one request is charged: identity, outcome and the tokens known so far."""

    client_request_id: str
    key: KeyEntry
    deployment: DeploymentEntry
    operation: str
    started: float
    decision: Decision | None
    usage_id: str
    request: Any  # what was sent to the engine (its prompt estimate is a fallback charge)
    code: grpc.StatusCode = grpc.StatusCode.OK
    prompt_tokens: int = 0  # from the engine's usage, once seen
    completion_tokens: int = 0  # from the engine's usage, or a lower bound from the chunks seen
    usage_seen: bool = False
    slot: Slot | None = None  # the deployment's concurrency slot, held until the call ends
    # A model call of a prompt run (the executor's signed claim): the prompt, version, deployment.
    prompt_run: PromptRun | None = None
    cache: Lookup | None = None  # a cacheable request's entry (the response cache; None: not cacheable)
    cached: bool = False  # answered from the response cache
    # A stream admitted before its generator runs (`_stream(begun=...)`): set once it runs, so
    # that a stream given up before that is still settled.
    opened: bool = False
    budget: Hold | None = None  # its reservation against the project's (and key's) budgets
    # What it cost in nano-dollars (its deployment's price; set when it is accounted): the usage
    # record's `cost_usd` and the budgets' settlement.
    cost_nanos: int = 0
    first_token: float = 0.0  # perf_counter of a stream's first generated token (TTFT)
    ended: float = 0.0  # perf_counter when the engine call ended (the request's duration)
    # An image call's images, their size ("WxH") and denoising steps (usage and cost).
    images: int = 0
    image_size: str = ""
    image_steps: int = 0


@dataclass(frozen=True)
class GenerationCaps:
    """How much one request may ask an engine to generate (`max_choices`, `max_total_tokens` in
    `GatewaySettings`): checked before rate limits are reserved and before any engine is called,
    so `n=1000` costs nothing but the answer."""

    max_choices: int = DEFAULT_MAX_CHOICES
    max_total_tokens: int = DEFAULT_MAX_TOTAL_TOKENS

    def check(self, request: Message) -> None:
        """INVALID_ARGUMENT (param: the field) for `n` or `best_of` outside 1..max_choices, or a
        per-choice token maximum that, times the choices, exceeds max_total_tokens."""
        fields = request.DESCRIPTOR.fields_by_name
        choices = 1
        for name in _CHOICE_FIELDS:
            if name in fields and request.HasField(name):
                value = getattr(request, name)
                if not 1 <= value <= self.max_choices:
                    raise invalid_argument(
                        f"Invalid '{name}': expected a value between 1 and {self.max_choices}, "
                        f"but got {value} instead.",
                        param=name,
                    )
                choices = max(choices, value)
        for name in _MAX_TOKEN_FIELDS:
            if name in fields and request.HasField(name):
                value = getattr(request, name)
                if value * choices > self.max_total_tokens:
                    times = f"{choices} choices × {value} tokens" if choices > 1 else f"{value} tokens"
                    raise invalid_argument(
                        f"Invalid '{name}': a request may generate at most {self.max_total_tokens} "
                        f"tokens in all, but asked for up to {times}.",
                        param=name,
                    )


class OpenAiServicer(ImageOps, openai_service_pb2_grpc.OpenAiServiceServicer):
    """OpenAI operations over the engine contract."""

    def __init__(
        self,
        tables: RoutingTables,
        engines: EnginePool,
        key_hash_secret: str,
        usage: UsageRecorder | None = None,
        limiter: RateLimiter | None = None,
        caps: GenerationCaps | None = None,
        response_store: ResponseStore | None = None,
        prompts: Callable[[], Any] | None = None,
        concurrency: ConcurrencyLimiter | None = None,
        default_key_requests_per_minute: int = DEFAULT_KEY_REQUESTS_PER_MINUTE,
        default_key_tokens_per_minute: int = DEFAULT_KEY_TOKENS_PER_MINUTE,
        response_cache: ResponseCache | None = None,
        cold_starts: ColdStarts | None = None,
        budgets: BudgetEnforcer | None = None,
        images: ImageConfig | None = None,
    ) -> None:
        self.tables = tables
        # The image store and links (gateway/images/); a temporary local store when not given.
        self.image_config = images
        # Projects' spending budgets (gateway/budgets.py); in this process when not given.
        self.budgets = budgets if budgets is not None else BudgetEnforcer()
        # Deployments with `caching` on: deterministic requests' answers (gateway/response_cache.py).
        self.response_cache = response_cache
        # Stored responses (`store`, `previous_response_id`); None: nothing is stored.
        self.response_store = response_store
        # The prompt executor (PromptExecutionService) as a stub, looked up per call: a
        # LocalBackend when co-hosted, a gRPC stub otherwise; None (or None returned): not here.
        self.prompts = prompts
        self.engines = engines
        self.key_hash_secret = key_hash_secret
        self.usage = usage
        self.limiter = limiter
        self.caps = caps or GenerationCaps()
        # Deployments' max_concurrency (gateway/concurrency.py); in this process when not given.
        self.concurrency = concurrency if concurrency is not None else MemoryConcurrencyLimiter()
        # The limits of a key without its own (0: none).
        self.default_key_limits = (default_key_requests_per_minute, default_key_tokens_per_minute)
        # Requests for deployments scaled to zero wait here for them (gateway/cold_start.py); with
        # none given they wait for the tables without asking the control plane to wake them.
        self.cold_starts = cold_starts if cold_starts is not None else ColdStarts(tables)
        # The load reported to the control plane (gateway/load.py): admissions and prompt runs
        # here, engine calls from the pool's leases, waiters from the two queues.
        self.load = LoadTracker(engines, queued=self._queued)
        # The charges of cancelled or failed calls under way (held until they are recorded).
        self._charges: set[asyncio.Task[None]] = set()

    # ---- auth and routing -----------------------------------------------------------------
    def _authenticate(self, context: Any) -> KeyEntry:
        if not self.tables.loaded.is_set():
            raise unavailable("The gateway is starting; retry shortly.", reason=Reason.NOT_READY)
        project = acting_project(context)
        if project is not None:
            # The prompt executor running a studio run for a user the app authorised: the
            # project's deployments, their limits, usage charged to the project (no key).
            return KeyEntry("", "", b"", project, frozenset(), None, 0, 0)
        try:
            # The first of several authorization entries counts, as the gateway has always done.
            token = bearer_credential(context.invocation_metadata(), first_of_many=True)
        except BearerError:
            observe.auth_failed("missing_key")
            raise unauthenticated(
                "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.",
                reason=Reason.INVALID_API_KEY,
            ) from None
        key = self.tables.authenticate(token, self.key_hash_secret)
        if key is None:
            observe.auth_failed("invalid_key", token)
            raise unauthenticated("Incorrect API key provided.", reason=Reason.INVALID_API_KEY)
        observe.authenticated(key.prefix)
        return key

    def _route(self, key: KeyEntry, model: str) -> DeploymentEntry:
        if not model:
            raise invalid_argument(
                "you must provide a model parameter", reason=Reason.MISSING_MODEL, param="model"
            )
        deployment = self.tables.resolve(key, model)
        if deployment is None:
            raise not_found(
                f"The model `{model}` does not exist or you do not have access to it.",
                reason=Reason.MODEL_NOT_FOUND,
                param="model",
            )
        if deployment.prompt_id:
            raise invalid_argument(
                f"`{model}` is a prompt deployment: run it with a prompt reference, "
                f'"prompt": {{"id": "{model}"}}.',
                param="model",
            )
        if not deployment.serving and not deployment.cold_start:
            raise unavailable(
                f"The model `{model}` is not ready to serve yet.",
                reason=Reason.MODEL_NOT_READY,
                param="model",
            )
        return deployment

    def _target(
        self, context: Any, request: Message, checked: Message | None = None, operation: str = ""
    ) -> tuple[KeyEntry, DeploymentEntry]:
        """Authenticates, routes, and checks the generation caps on `checked` (the client's own
        request, when `request` was converted from it; else `request`); the deployment is of the
        operation's kind (image or text) and an image request fits its image settings."""
        with observe.step("bud.authenticate"):
            key = self._authenticate(context)
        with observe.step("bud.route", {"gen_ai.request.model": request.model}):  # type: ignore[attr-defined]
            deployment = self._route(key, request.model)  # type: ignore[attr-defined]
            observe.annotate(deployment=deployment.name, project=key.project_id)
        check_kind(operation, deployment, request.model)  # type: ignore[attr-defined]
        if operation in IMAGE_OPERATIONS:
            check_image_request(request, deployment.image)  # type: ignore[arg-type]
            return key, deployment  # `n` is bounded by the deployment's max_images
        self.caps.check(request if checked is None else checked)
        return key, deployment

    def _prompt_run(self, context: Any, key: KeyEntry) -> tuple[PromptRun | None, DeploymentEntry | None]:
        """The prompt run a call belongs to (the executor's signed claim, for the key's project
        only; a claim that does not verify is ignored) and its prompt deployment, if any."""
        run = claim_of(context.invocation_metadata(), self.key_hash_secret)
        if run is None or run.project_id != key.project_id:
            return None, None
        prompt_deployment = self.tables.deployments.get(run.deployment_id) if run.deployment_id else None
        if prompt_deployment is not None and prompt_deployment.project_id != key.project_id:
            prompt_deployment = None
        return run, prompt_deployment

    async def _admit(
        self,
        context: Any,
        key: KeyEntry,
        deployment: DeploymentEntry,
        request: Any,
        prompt_deployment: DeploymentEntry | None = None,
        cache: Lookup | None = None,
    ) -> Decision | None:
        """Checks the key's (or the defaults for keys without their own) and the deployment's
        limits (and, for a prompt run's model call, its prompt deployment's); None when none has
        any. A response cache hit counts as a request and reserves no tokens; its `x-bud-cache`
        header (a hit or a miss) goes out with the limits' headers."""
        extra = [cache.header] if cache is not None else []
        limits: list[Limit] = []
        default_rpm, default_tpm = self.default_key_limits
        owners = [(f"dep:{deployment.id}", deployment.requests_per_minute, deployment.tokens_per_minute)]
        if key.id:  # a studio run acting for a project has no key: its deployment's limits only
            rpm, tpm = key.requests_per_minute or default_rpm, key.tokens_per_minute or default_tpm
            owners.insert(0, (f"key:{key.id}", rpm, tpm))
        if prompt_deployment is not None:
            owners.append(
                (
                    f"dep:{prompt_deployment.id}",
                    prompt_deployment.requests_per_minute,
                    prompt_deployment.tokens_per_minute,
                )
            )
        for owner, rpm, tpm in owners:
            if rpm:
                limits.append(Limit(f"{owner}:req", rpm, "requests"))
            if tpm:
                limits.append(Limit(f"{owner}:tok", tpm, "tokens"))
        if deployment.image is not None and deployment.image.images_per_minute:
            # Each image counts against the deployment's images per minute (the call is one request).
            limits.append(
                Limit(
                    f"dep:{deployment.id}:img",
                    deployment.image.images_per_minute,
                    "images",
                    amount=image_count(request),
                )
            )
        if not limits or self.limiter is None:
            if extra:
                await context.send_initial_metadata(extra)
            return None
        reserved = 0 if cache is not None and cache.hit else _reserved_tokens(request)
        decision = await self.limiter.admit(limits, reserved)
        if not decision.allowed:
            context.set_trailing_metadata(decision.headers)
            error = resource_exhausted(
                f"Rate limit reached for {request.model}; retry after {decision.retry_after}s.",
                reason=Reason.RATE_LIMIT_EXCEEDED,
            )
            error.retry_after = decision.retry_after  # RetryInfo over gRPC
            raise error
        await context.send_initial_metadata([*decision.headers, *extra])
        return decision

    async def _settle(self, decision: Decision | None, tokens: int) -> None:
        if decision is not None and self.limiter is not None:
            await self.limiter.settle(decision, tokens)

    def _account(self, charge: _Charge) -> None:
        # The cost at the deployment's price: tokens, plus the per-request and per-image prices
        # of a served call (as the app costs the usage record); a cache hit ran nothing and costs
        # nothing.
        status = http_status(charge.code)
        charge.cost_nanos = (
            0
            if charge.cached
            else charge.deployment.price.cost_nanos(
                charge.prompt_tokens, charge.completion_tokens, per_request=status < 400, images=charge.images
            )
        )
        # The request's series and its log line (gateway/observe.py), usage or not.
        observe.finished(charge, self.tables.projects.get(charge.key.project_id, charge.key.project_id))
        if self.usage is None:
            return
        # The record's key is the recorder's own; the client's id (accepted at the edge, or the
        # one generated in its place) is only kept beside it.
        self.usage.record(
            charge.client_request_id,
            charge.key.project_id,
            charge.key.id,
            charge.deployment.id,
            charge.operation,
            charge.prompt_tokens,
            charge.completion_tokens,
            charge.started,
            status,
            prompt=charge.prompt_run,
            cached=charge.cached,
            cost_usd=format_nanos(charge.cost_nanos),
            images=charge.images,
            image_size=charge.image_size,
            image_steps=charge.image_steps,
        )

    async def _finish(self, charge: _Charge, conn: EngineConnection | None) -> None:
        """Records the request's usage and settles its rate limits. A request that ended
        normally has the engine's usage; one that was cancelled or failed is charged off the
        client's path (`_charge_unfinished`) with what the engine processed."""
        charge.ended = time.perf_counter()
        observe.released(charge.deployment)
        if charge.slot is not None:
            self.concurrency.release(charge.slot)  # the engine call is over (or never began)
        if charge.code == grpc.StatusCode.OK or conn is None:
            self._account(charge)
            await self._settle(charge.decision, charge.prompt_tokens + charge.completion_tokens)
            await self.budgets.settle(charge.budget, charge.cost_nanos)
            return
        task = asyncio.get_running_loop().create_task(self._charge_unfinished(charge, conn))
        self._charges.add(task)
        task.add_done_callback(self._charges.discard)
        if self.usage is not None:
            self.usage.track(task)  # its record is made before the recorder's last flush

    async def _charge_unfinished(self, charge: _Charge, conn: EngineConnection) -> None:
        """Charges a cancelled or failed call the tokens the engine processed for it (vLLM's own
        counts: prompt, and generated up to the abort), from GetRequestUsage; its rate limits
        settle to that count, however much was reserved. Always ends in one usage record."""
        engine_counts = None
        try:
            async with asyncio.timeout(CHARGE_TIMEOUT_S):
                engine_counts = await conn.stub.GetRequestUsage(
                    engine_service_pb2.GetRequestUsageRequest(usage_id=charge.usage_id),
                    metadata=(("x-request-id", charge.client_request_id),),
                    timeout=CHARGE_TIMEOUT_S,
                )
        except (grpc.aio.AioRpcError, TimeoutError) as err:
            log.warning(
                "the engine's counts of an unfinished call are unavailable; charging what the gateway saw",
                extra={
                    "usage_id": charge.usage_id,
                    "error": err.code().name if isinstance(err, grpc.aio.AioRpcError) else "timeout",
                },
            )
        except Exception:
            log.exception("asking the engine for an unfinished call's counts failed")
        finally:
            if engine_counts is not None:
                # Never below what the gateway itself saw arrive.
                charge.prompt_tokens = max(charge.prompt_tokens, engine_counts.prompt_tokens)
                charge.completion_tokens = max(charge.completion_tokens, engine_counts.completion_tokens)
            elif not charge.usage_seen and not (
                charge.code == grpc.StatusCode.UNAVAILABLE and not charge.completion_tokens
            ):
                # The engine cannot say (unreachable, restarted, or too slow): charge the tokens
                # streamed to the gateway (a lower bound: one per content delta) plus the prompt
                # estimate the request reserved for. An UNAVAILABLE call that streamed nothing
                # never reached a serving model, so it is charged nothing.
                charge.prompt_tokens = max(charge.prompt_tokens, _prompt_estimate(charge.request))
            self._account(charge)
            await self._settle(charge.decision, charge.prompt_tokens + charge.completion_tokens)
            await self.budgets.settle(charge.budget, charge.cost_nanos)

    async def drain(self) -> None:
        """Waits for the charges of unfinished calls still being made (bounded by their timeout)."""
        if self._charges:
            await asyncio.wait(set(self._charges), timeout=CHARGE_TIMEOUT_S * 2)

    # ---- forwarding -----------------------------------------------------------------------
    async def _begin(
        self, context: Any, operation: str, request: Any, checked: Message | None
    ) -> tuple[_Charge, DeploymentEntry]:
        """Authenticates, routes, checks the caps and the limits: the request's charge (with a
        new usage id for the engine call) and its deployment."""
        started = time.perf_counter()
        key: KeyEntry | None = None
        deployment: DeploymentEntry | None = None
        try:
            key, deployment = self._target(context, request, checked, operation)
            run, prompt_deployment = self._prompt_run(context, key)
            cache = await self._cache_lookup(operation, key, deployment, request, prompt_deployment)
            # A cache hit runs nothing on the engines: it takes no concurrency slot, wakes nothing
            # and costs nothing.
            hit = cache is not None and cache.hit
            hold = None if hit else await self._reserve_budget(context, key, deployment, request)
            try:
                with observe.step("bud.rate_limit"):
                    decision = await self._admit(context, key, deployment, request, prompt_deployment, cache)
                self.load.note(deployment.id)
                if not hit and not deployment.serving:
                    # Scaled to zero: wait for the wake (gateway/cold_start.py), refunding the
                    # reserved tokens of a request refused or gone meanwhile (it ran nothing).
                    try:
                        deployment = await self.cold_starts.wait(deployment, request.model, context)
                    except BaseException:
                        await self._settle(decision, 0)
                        raise
                slot = None if hit else await self._occupy(context, deployment, decision, request.model)
            except BaseException:
                await self.budgets.release(hold)  # refused or gone before it ran: nothing spent
                raise
        except ServiceError as err:
            project = self.tables.projects.get(key.project_id, key.project_id) if key is not None else ""
            observe.refused(operation, deployment, project, err.reason or "", http_status(err.code))
            raise
        observe.admitted(deployment)
        charge = _Charge(
            call_request_id(context),
            key,
            deployment,
            operation,
            started,
            decision,
            uuid.uuid4().hex,
            request,
            slot=slot,
            prompt_run=run,
            cache=cache,
            budget=hold,
        )
        return charge, deployment

    async def _reserve_budget(
        self, context: Any, key: KeyEntry, deployment: DeploymentEntry, request: Any
    ) -> Hold | None:
        """Reserves the request's worst-case cost (its prompt estimate and most output tokens at
        the deployment's price) against its project's and key's budgets; None when none applies.
        429 `budget_exceeded` when a hard-stop budget is spent."""
        budgets = self.tables.budgets.get(key.project_id)
        if not budgets:
            return None
        prompt = _prompt_estimate(request)
        images = image_count(request) if deployment.image is not None else 0
        worst = deployment.price.cost_nanos(prompt, _reserved_tokens(request) - prompt, images=images)
        try:
            return await self.budgets.reserve(key.project_id, key.id, budgets, worst, request.model)
        except ServiceError as err:
            # Retry-After over REST (the period's end); RetryInfo over gRPC from err.retry_after.
            context.set_trailing_metadata((("retry-after", str(err.retry_after)),))
            raise

    async def _occupy(
        self, context: Any, deployment: DeploymentEntry, decision: Decision | None, model: str
    ) -> Slot | None:
        """A slot under the deployment's max_concurrency (None when it has none), waiting in its
        queue; refused (429, Retry-After) when the queue is full or the wait times out. A
        request refused or gone while waiting has its reserved tokens refunded: it ran nothing."""
        if deployment.max_concurrency <= 0:
            return None
        try:
            with observe.step("bud.concurrency"), observe.queued(deployment):
                slot = await self.concurrency.acquire(f"dep:{deployment.id}", deployment.max_concurrency)
        except BaseException:
            await self._settle(decision, 0)
            raise
        if slot is None:
            await self._settle(decision, 0)
            context.set_trailing_metadata((("retry-after", str(RETRY_AFTER_S)),))
            error = resource_exhausted(
                f"Too many concurrent requests for {model}; retry after {RETRY_AFTER_S}s.",
                reason=Reason.CONCURRENCY_LIMIT_EXCEEDED,
            )
            error.retry_after = RETRY_AFTER_S  # RetryInfo over gRPC; Retry-After over REST
            raise error
        return slot

    def _queued(self, deployment_id: str) -> int:
        """The requests waiting for the deployment here: for a concurrency slot or a cold start."""
        return self.concurrency.queued(f"dep:{deployment_id}") + self.cold_starts.queued(deployment_id)

    # ---- the response cache (gateway/response_cache.py) -------------------------------------
    async def _cache_lookup(
        self,
        operation: str,
        key: KeyEntry,
        deployment: DeploymentEntry,
        request: Any,
        prompt_deployment: DeploymentEntry | None = None,
    ) -> Lookup | None:
        """The request's cache entry when its deployment caches — or, for a prompt run's model
        call, its prompt deployment does: a prompt deployment caches on the rendered request —
        and it is cacheable (None otherwise, or when the cache cannot be read: the engine
        answers, as if uncached)."""
        caching = deployment.caching or (prompt_deployment is not None and prompt_deployment.caching)
        if self.response_cache is None or not caching or self.response_cache.max_bytes <= 0:
            return None
        if operation not in ANSWERS or not deterministic(operation, request):
            return None  # not cacheable: no header
        # The replicas' served names; a deployment scaled to zero keeps its last ones, so that a
        # hit answers without waking it.
        names = [e.served_model_name for e in deployment.endpoints] or list(deployment.served_names)
        args = (operation, key.project_id, deployment.id, names, request)
        # Hashing a large request (8 MiB: ~25 ms) is done on a thread, off the event loop.
        large = request.ByteSize() > LARGE_REQUEST_BYTES
        entry = await asyncio.to_thread(cache_key, *args) if large else cache_key(*args)
        if entry is None:
            return None
        try:
            found = Lookup(entry, await self.response_cache.get(entry))
            observe.cache_lookup(deployment, found.hit)
            return found
        except Exception as err:
            log.warning("the response cache cannot be read; the engine answers", extra={"error": repr(err)})
            return None

    async def _cache_store(self, charge: _Charge, value: bytes) -> None:
        """Stores a complete answer (never fails the request that made it)."""
        if charge.cache is None or self.response_cache is None:
            return
        try:
            await self.response_cache.put(charge.cache.key, value)
        except Exception as err:
            log.warning("the response cache cannot be written", extra={"error": repr(err)})

    def _cached_answers(self, charge: _Charge, model: str) -> list[Any]:
        """The stored answer of a hit (a stream's chunks), re-stamped for this call."""
        assert charge.cache is not None and charge.cache.value is not None
        answer = ANSWERS[charge.operation]
        values = unpack(charge.cache.value) if charge.operation.startswith("Stream") else [charge.cache.value]
        messages = [answer.FromString(v) for v in values]
        restamp(messages, model)
        charge.cached = True
        return messages

    async def _unary(self, operation: str, request: Any, context: Any, checked: Message | None = None) -> Any:
        charge, deployment = await self._begin(context, operation, request, checked)
        client_model = request.model
        if charge.cache is not None and charge.cache.hit:
            try:
                if len(charge.cache.value or b"") > LARGE_REQUEST_BYTES:  # an embeddings batch: off the loop
                    (answer,) = await asyncio.to_thread(self._cached_answers, charge, client_model)
                else:
                    (answer,) = self._cached_answers(charge, client_model)
            finally:
                await self._finish(charge, None)
            return answer
        response = None
        conn: EngineConnection | None = None
        try:
            candidates = self.engines.candidates(deployment.endpoints)
            for attempt, (endpoint, conn) in enumerate(candidates, start=1):
                request.model = endpoint.served_model_name
                observe.annotate(replica=endpoint.address, attempt=attempt)
                try:
                    with self.engines.lease(conn, endpoint, deployment.id):
                        response = await getattr(conn.stub, operation)(
                            request, metadata=engine_metadata(context, charge.usage_id)
                        )
                    break
                except grpc.aio.AioRpcError as err:
                    if err.code() == grpc.StatusCode.UNAVAILABLE and attempt < len(candidates):
                        self.engines.mark_unhealthy(endpoint)  # fail over: nothing reached the client yet
                        continue
                    charge.code = err.code()
                    raise engine_error(err, client_model, endpoint.served_model_name) from None
        except BaseException:
            if charge.code == grpc.StatusCode.OK:
                # The client left (the transcoder cancels the call on disconnect), or the call
                # broke here: still charged what the engine processed.
                charge.code = grpc.StatusCode.CANCELLED
            raise
        finally:
            usage = response.usage if response is not None else None
            if usage:
                charge.prompt_tokens = usage.prompt_tokens
                charge.completion_tokens = getattr(usage, "completion_tokens", 0)
                charge.usage_seen = True
            await self._finish(charge, conn)
        response.model = client_model
        if charge.cache is not None:
            large = response.ByteSize() > LARGE_REQUEST_BYTES
            value = (
                await asyncio.to_thread(response.SerializeToString) if large else response.SerializeToString()
            )
            await self._cache_store(charge, value)
        return response

    async def _stream(
        self,
        operation: str,
        request: Any,
        context: Any,
        checked: Message | None = None,
        begun: tuple[_Charge, DeploymentEntry] | None = None,
    ) -> AsyncIterator[Any]:
        """`begun`: the request already admitted by `_begin` (whose charge this stream then
        finishes)."""
        if begun is None:
            begun = await self._begin(context, operation, request, checked)
        charge, deployment = begun
        charge.opened = True
        client_model = request.model
        # The gateway always asks for usage (its own accounting); the client gets it only if asked.
        wants_usage = request.stream_options.include_usage
        request.stream_options.include_usage = True
        if charge.cache is not None and charge.cache.hit:
            async for chunk in self._replay(charge, client_model, wants_usage):
                yield chunk
            return
        # A cacheable stream's chunks as the engine sent them, stored once it completes.
        kept: list[bytes] | None = None
        candidates = self.engines.candidates(deployment.endpoints)
        conn: EngineConnection | None = None
        try:
            for attempt, (endpoint, conn) in enumerate(candidates, start=1):
                request.model = endpoint.served_model_name
                observe.annotate(replica=endpoint.address, attempt=attempt)
                sent = False
                kept = [] if charge.cache is not None else None
                with self.engines.lease(conn, endpoint, deployment.id):
                    call = getattr(conn.stub, operation)(
                        request, metadata=engine_metadata(context, charge.usage_id)
                    )
                    try:
                        async for chunk in call:
                            if kept is not None:
                                kept.append(chunk.SerializeToString())
                            if chunk.HasField("usage"):
                                charge.prompt_tokens = chunk.usage.prompt_tokens
                                charge.completion_tokens = chunk.usage.completion_tokens
                                charge.usage_seen = True
                                if not wants_usage:
                                    if not chunk.choices:
                                        continue  # the usage-only chunk the client did not ask for
                                    chunk.ClearField("usage")
                            elif not charge.usage_seen:
                                charge.completion_tokens += _streamed_tokens(chunk)
                            if not charge.first_token and chunk.choices:
                                charge.first_token = time.perf_counter()
                            chunk.model = client_model
                            sent = True
                            yield chunk
                        if kept is not None and charge.usage_seen:  # complete: the engine's last chunk came
                            await self._cache_store(charge, pack(kept))
                        return
                    except grpc.aio.AioRpcError as err:
                        if (
                            err.code() == grpc.StatusCode.UNAVAILABLE
                            and not sent
                            and attempt < len(candidates)
                        ):
                            self.engines.mark_unhealthy(endpoint)  # fail over before the first byte
                            continue
                        charge.code = err.code()
                        raise engine_error(err, client_model, endpoint.served_model_name) from None
                    finally:
                        call.cancel()  # a client that went away aborts the generation
        except BaseException as err:
            if charge.code == grpc.StatusCode.OK and not isinstance(err, ServiceError):
                charge.code = grpc.StatusCode.CANCELLED
            raise
        finally:
            await self._finish(charge, conn)

    async def _replay(self, charge: _Charge, client_model: str, wants_usage: bool) -> AsyncIterator[Any]:
        """A cache hit's stored chunks as a stream (the usage chunk only when asked for)."""
        try:
            for chunk in self._cached_answers(charge, client_model):
                if chunk.HasField("usage") and not wants_usage:
                    if not chunk.choices:
                        continue
                    chunk.ClearField("usage")
                yield chunk
        except BaseException:
            charge.code = grpc.StatusCode.CANCELLED  # the client left during the replay
            raise
        finally:
            await self._finish(charge, None)

    # ---- RPCs -----------------------------------------------------------------------------
    async def CreateChatCompletion(
        self, request: chat_pb2.ChatCompletionRequest, context: Any
    ) -> chat_pb2.ChatCompletion:
        return await self._unary("CreateChatCompletion", request, context)

    async def StreamChatCompletion(
        self, request: chat_pb2.ChatCompletionRequest, context: Any
    ) -> AsyncIterator[chat_pb2.ChatCompletionChunk]:
        async for chunk in self._stream("StreamChatCompletion", request, context):
            yield chunk

    async def CreateCompletion(
        self, request: completion_pb2.CompletionRequest, context: Any
    ) -> completion_pb2.Completion:
        return await self._unary("CreateCompletion", request, context)

    async def StreamCompletion(
        self, request: completion_pb2.CompletionRequest, context: Any
    ) -> AsyncIterator[completion_pb2.Completion]:
        async for chunk in self._stream("StreamCompletion", request, context):
            yield chunk

    async def CreateEmbedding(
        self, request: embedding_pb2.EmbeddingRequest, context: Any
    ) -> embedding_pb2.EmbeddingList:
        return await self._unary("CreateEmbedding", request, context)

    async def CreateResponse(
        self, request: response_pb2.ResponseRequest, context: Any
    ) -> response_pb2.Response:
        if request.HasField("prompt"):
            return await self._prompt_response(request, context)
        asked, own_items, key = request, None, None
        if self._stores(request):
            request, own_items, key = await self._with_conversation(request, context)
        chat = await _to_chat_request(request)
        response_id, created = responses.new_ids()
        completion = await self._unary("CreateChatCompletion", chat, context, checked=request)
        out = responses.to_response(request, completion, response_id, created)
        if key is not None:
            self._keep(asked, out, own_items, key)
        return out

    async def StreamResponse(
        self, request: response_pb2.ResponseRequest, context: Any
    ) -> AsyncIterator[response_pb2.ResponseStreamEvent]:
        if request.HasField("prompt"):
            async for event in self._prompt_events(request, context):
                yield event
            return
        asked, own_items, key = request, None, None
        if self._stores(request):
            request, own_items, key = await self._with_conversation(request, context)
        chat = await _to_chat_request(request)
        chat.stream_options.include_usage = True  # the completed event carries usage
        # The events begin before the engine is called: a request refused by the key, the model,
        # the generation caps or the rate limits is refused here, as a plain error, as chat
        # streams are; and the limits' and the response cache's headers (initial metadata) go out
        # before the first event, which sends the metadata on the gRPC face.
        begun = await self._begin(context, "StreamChatCompletion", chat, request)
        response_id, created = responses.new_ids()
        chunks = self._stream("StreamChatCompletion", chat, context, checked=request, begun=begun)
        try:
            async for event in responses.to_events(request, chunks, response_id, created):
                if key is not None and event.HasField("response"):
                    # Kept before the last event goes out: a GET right after it finds it.
                    self._keep(asked, event.response, own_items, key, final=event.type in _FINAL_EVENTS)
                yield event
        finally:
            await chunks.aclose()
            charge = begun[0]
            if not charge.opened:  # given up before the engine was called: settled, charged nothing
                charge.code = grpc.StatusCode.CANCELLED
                await self._finish(charge, None)

    # ---- stored responses -----------------------------------------------------------------
    def _stores(self, request: response_pb2.ResponseRequest) -> bool:
        """Whether the request is stored or continues a stored response (a store configured; a
        prompt reference is the prompt path's business)."""
        return (
            self.response_store is not None
            and not request.HasField("prompt")
            and ((not request.HasField("store") or request.store) or request.HasField("previous_response_id"))
        )

    async def _with_conversation(
        self, request: response_pb2.ResponseRequest, context: Any
    ) -> tuple[response_pb2.ResponseRequest, list[response_pb2.ResponseInputItem], KeyEntry]:
        """The request the model is asked (the earlier turns of `previous_response_id` prepended),
        the request's own input items to store, and the caller's key."""
        assert self.response_store is not None
        key = self._authenticate(context)
        own = conversation.input_items(request)
        if request.HasField("previous_response_id"):
            try:
                turns = await self.response_store.conversation(key.project_id, request.previous_response_id)
            except ServiceError as err:
                if err.code != grpc.StatusCode.NOT_FOUND:
                    raise
                # OpenAI's answer: the request's field is at fault, not a path of the URL.
                raise not_found(
                    f"Previous response with id {echo(request.previous_response_id)} not found.",
                    param="previous_response_id",
                ) from None
            request = conversation.continued(request, conversation.history(turns), own)
        return request, own, key

    def _keep(
        self,
        asked: response_pb2.ResponseRequest,
        out: response_pb2.Response,
        own_items: list[response_pb2.ResponseInputItem] | None,
        key: KeyEntry,
        final: bool = True,
    ) -> None:
        """Marks `out` as the request asked (store, previous_response_id) and, when it is stored
        and `final`, queues it for the app (`ResponseStore.put`: no wait)."""
        store = not asked.HasField("store") or asked.store
        out.store = store
        if asked.HasField("previous_response_id"):
            out.previous_response_id = asked.previous_response_id
        if store and final and self.response_store is not None:
            self.response_store.put(
                response_store_pb2.StoredResponse(
                    project_id=key.project_id, api_key_id=key.id, response=out, input_items=own_items or ()
                )
            )

    # ---- prompt references (the prompt executor renders, then calls CreateResponse back) ------
    def _prompt_executor(self) -> Any:
        executor = self.prompts() if self.prompts is not None else None
        if executor is None:
            raise unimplemented(
                "Prompt references need the prompt service, which this gateway does not reach.",
                reason=None,
                param="prompt",
            )
        return executor

    def _prompt_deployment(
        self, key: KeyEntry, request: response_pb2.ResponseRequest
    ) -> prompt_pb2.PromptDeploymentRef | None:
        """The prompt deployment the reference's `id` names in the key's project (a deployment's
        name wins over a prompt id; a key limited to other deployments does not see it), or None:
        the executor then reads `id` as a prompt id. 503 while it is not ready."""
        name = request.prompt.id
        entry = self.tables.resolve(key, name)
        if entry is None or not entry.prompt_id:
            return None
        if not entry.ready:
            raise unavailable(
                f"The prompt deployment `{name}` is not ready to serve (its prompt version or label is gone).",
                reason=Reason.MODEL_NOT_READY,
                param="prompt.id",
            )
        return prompt_pb2.PromptDeploymentRef(
            deployment_id=entry.id,
            prompt_id=entry.prompt_id,
            version=entry.prompt_version,
            label=entry.prompt_label,
        )

    async def _prompt_response(
        self, request: response_pb2.ResponseRequest, context: Any
    ) -> response_pb2.Response:
        """A Responses request naming a stored prompt: handed to the prompt executor with the
        authenticated key's project (its prompts only) and the caller's credentials, which its
        model call (back through this service) is limited and charged by. The prompt's response
        is the one stored (`store`): its prompt reference, the run's input (the rendered messages
        and the caller's own items) and its output; the model call itself is not stored. The
        model call's rate-limit headers are the caller's."""
        key = self._authenticate(context)
        executor = self._prompt_executor()
        target = self._prompt_deployment(key, request)
        run = prompt_pb2.ExecutePromptRequest(project_id=key.project_id, request=request, deployment=target)
        call = executor.ExecutePrompt(run, metadata=_forward_caller(context))
        try:
            with self._running(target):
                answer = await call
        except grpc.aio.AioRpcError as err:
            raise ServiceError.from_rpc_error(err) from None
        await pass_answer_headers(call, context)
        out = answer.response
        if self.response_store is not None:
            self._keep(request, out, conversation.input_items(answer.model_request), key)
        return out

    async def _prompt_events(
        self, request: response_pb2.ResponseRequest, context: Any
    ) -> AsyncIterator[response_pb2.ResponseStreamEvent]:
        """A streamed prompt run: the executor's Responses events, in order."""
        key = self._authenticate(context)
        executor = self._prompt_executor()
        target = self._prompt_deployment(key, request)
        run = prompt_pb2.StreamExecutePromptRequest(
            project_id=key.project_id, request=request, deployment=target
        )
        call = executor.StreamExecutePrompt(run, metadata=_forward_caller(context))
        own_items: list[response_pb2.ResponseInputItem] | None = None
        try:
            with self._running(target):
                async for item in call:
                    if own_items is None:
                        own_items = conversation.input_items(item.model_request)
                        await pass_answer_headers(call, context)
                    event = item.event
                    if self.response_store is not None and event.HasField("response"):
                        # Kept before the last event goes out: a GET right after it finds it.
                        self._keep(request, event.response, own_items, key, final=event.type in _FINAL_EVENTS)
                    yield event
        except grpc.aio.AioRpcError as err:
            raise ServiceError.from_rpc_error(err) from None
        finally:
            call.cancel()  # a client that went away ends the run and its generation

    def _running(
        self, target: prompt_pb2.PromptDeploymentRef | None
    ) -> contextlib.AbstractContextManager[None]:
        """Counts a prompt deployment's run (admitted, in flight) for the load reports."""
        return self.load.run(target.deployment_id) if target is not None else contextlib.nullcontext()

    async def GetResponse(
        self, request: response_pb2.GetResponseRequest, context: Any
    ) -> response_pb2.Response:
        key = self._authenticate(context)
        if self.response_store is None:
            raise responses.not_stored(request.response_id)
        stored = await self.response_store.get(key.project_id, request.response_id)
        return stored.response

    async def DeleteResponse(
        self, request: response_pb2.DeleteResponseRequest, context: Any
    ) -> response_pb2.DeleteResponseResponse:
        key = self._authenticate(context)
        if self.response_store is None:
            raise responses.not_stored(request.response_id)
        await self.response_store.delete(key.project_id, request.response_id)
        return response_pb2.DeleteResponseResponse(id=request.response_id, object="response", deleted=True)

    async def ListInputItems(
        self, request: response_pb2.ListInputItemsRequest, context: Any
    ) -> response_pb2.InputItemList:
        key = self._authenticate(context)
        if self.response_store is None:
            raise responses.not_stored(request.response_id)
        stored = await self.response_store.get(key.project_id, request.response_id)
        return conversation.page(stored.input_items, request)

    async def ListModels(self, request: model_pb2.ListModelsRequest, context: Any) -> model_pb2.ModelList:
        key = self._authenticate(context)
        owner = self.tables.projects.get(key.project_id, key.project_id)
        return model_pb2.ModelList(
            object="list",
            data=[
                model_pb2.Model(id=d.name, object="model", created=d.created, owned_by=owner)
                for d in self.tables.visible(key)
                if not d.prompt_id  # a prompt deployment is run by a prompt reference, not a model
            ],
        )

    async def GetModel(self, request: model_pb2.GetModelRequest, context: Any) -> model_pb2.Model:
        key = self._authenticate(context)
        d = self.tables.resolve(key, request.model)
        if d is None or d.prompt_id:
            raise not_found(
                f"The model `{request.model}` does not exist or you do not have access to it.",
                reason=Reason.MODEL_NOT_FOUND,
                param="model",
            )
        return model_pb2.Model(
            id=d.name,
            object="model",
            created=d.created,
            owned_by=self.tables.projects.get(key.project_id, key.project_id),
        )


def _prompt_estimate(request: Any) -> int:
    """The prompt's tokens as the gateway guesses them: 4 bytes of the request a token (the usual
    rule of thumb)."""
    return request.ByteSize() // 4


async def _to_chat_request(request: response_pb2.ResponseRequest) -> chat_pb2.ChatCompletionRequest:
    """The chat request of a Responses request; a large one (thousands of items and parts: a
    second of Python) is converted on a thread, off the event loop."""
    if request.ByteSize() > LARGE_REQUEST_BYTES:
        return await asyncio.to_thread(responses.to_chat_request, request)
    return responses.to_chat_request(request)


def _reserved_tokens(request: Any) -> int:
    """Tokens to reserve before the request runs: a prompt estimate plus the most it may generate."""
    prompt = _prompt_estimate(request)
    for name in ("max_completion_tokens", "max_tokens"):
        if name in request.DESCRIPTOR.fields_by_name and request.HasField(name):
            return prompt + getattr(request, name) * max(1, getattr(request, "n", 1) or 1)
    if request.DESCRIPTOR.name in ("EmbeddingRequest", "ImageGenerationRequest"):
        return prompt
    return prompt + DEFAULT_RESERVED_OUTPUT_TOKENS


def _streamed_tokens(chunk: Any) -> int:
    """A lower bound of the tokens one streamed chunk carries: one per choice with new text
    (chat content, reasoning or tool-call arguments; completion text)."""
    count = 0
    for choice in chunk.choices:
        delta = getattr(choice, "delta", None)
        if delta is None:
            count += bool(choice.text)
        else:
            count += bool(delta.content or delta.reasoning_content or delta.tool_calls)
    return count


def _forward_caller(context: Any) -> tuple[tuple[str, str], ...]:
    """The caller's credentials and request id, for a call made on its behalf."""
    metadata = [(k, v) for k, v in context.invocation_metadata() if k == "authorization"]
    return (*metadata, ("x-request-id", call_request_id(context)))
