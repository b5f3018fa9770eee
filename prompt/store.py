"""Prompt bodies in memory, fed by the app's `PromptService.WatchPrompts` stream (a snapshot, then
the prompts that changed, resumable from a revision) — no database read per request — and each
version compiled once (templates, input model, output spec) the first time it runs.

:class:`PromptWatcher` keeps a :class:`PromptStore` in step the way the gateway's RoutingWatcher
keeps its tables: watch, apply, and on failure reconnect with backoff from the last revision
applied. The store is ready (`loaded`) after the first snapshot.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from jinja2 import Template, meta
from pydantic import BaseModel

from bud.prompt.v1 import prompt_pb2, prompt_pb2_grpc
from budrt.errors import Reason, ServiceError, echo, internal, not_found, unavailable
from budrt.grpc_server import service_channel
from budrt.prompt_checks import Document
from prompt.inputs import UNSTRUCTURED_INPUT, input_model
from prompt.outputs import OutputSpec, output_spec, output_validation
from prompt.render import SANDBOX, TemplateRuntimeFailure, compile_template

P = prompt_pb2
log = logging.getLogger(__name__)

# The label a prompt names no version with when its default label is unset.
LATEST = "latest"
# Versions fetched on a miss (an unlabelled older version named by number) kept compiled, at most:
# versions are immutable, so a cached one is never stale; the least recently used goes first.
MAX_FETCHED = 256
# How long one FetchPromptVersion may take before the run answers 503.
FETCH_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class CompiledVersion:
    """A version ready to run: its body, compiled templates (role, template; the system prompt
    first), input model and output spec."""

    prompt: P.Prompt
    version: P.PromptVersion
    templates: list[tuple[str, Template]]
    inputs: type[BaseModel]
    output: OutputSpec | None
    # Declared variable types by name (text values of non-string variables are read as JSON).
    types: dict[str, int]
    # The output's custom validation (a constraint document); None without one.
    validation: Document | None = None

    @property
    def checked(self) -> bool:
        """Whether an answer is checked (and so, streamed, released only once checked)."""
        return self.output is not None or self.validation is not None


def compile_version(prompt: P.Prompt, version: P.PromptVersion) -> CompiledVersion:
    """Compiles a version's templates and builds its models (once per version)."""
    templates: list[tuple[str, Template]] = []
    used: set[str] = set()
    sources = [("system", "system_prompt", version.system_prompt)] if version.system_prompt else []
    sources += [(m.role, f"messages[{i}].template", m.template) for i, m in enumerate(version.messages)]
    for role, name, source in sources:
        try:
            templates.append((role, compile_template(source, name)))
        except TemplateRuntimeFailure as err:  # saved bodies compiled at save time: a bug
            raise internal(
                f"prompt {prompt.id} version {version.version}: {err.where()}: {err.message}"
            ) from None
        used |= meta.find_undeclared_variables(SANDBOX.parse(source))
    structured = version.input.mode == P.IO_MODE_STRUCTURED
    types = (
        {v.name: v.type for v in version.input.variables}
        if structured
        else {UNSTRUCTURED_INPUT: P.VARIABLE_TYPE_STRING}
    )
    return CompiledVersion(
        prompt=prompt,
        version=version,
        templates=templates,
        inputs=input_model(version.input, frozenset(used)),
        output=output_spec(version.output),
        types=types,
        validation=output_validation(version.output),
    )


@dataclass
class _Entry:
    snapshot: P.PromptSnapshot
    compiled: dict[int, CompiledVersion] = field(default_factory=dict)


@dataclass
class PromptStore:
    """Every prompt the executor may run, by id, at one revision."""

    revision: int = 0
    loaded: asyncio.Event = field(default_factory=asyncio.Event)
    prompts: dict[str, _Entry] = field(default_factory=dict)
    # FetchPromptVersion on the app (set by the watcher while it is connected); None: a version
    # the watch does not carry is 404.
    fetch: Callable[[str, int], Awaitable[P.PromptVersion]] | None = None
    # Versions fetched on a miss, compiled, by (prompt id, number); and the fetches under way, so
    # that concurrent misses of one version make one call.
    fetched: OrderedDict[tuple[str, int], CompiledVersion] = field(default_factory=OrderedDict)
    _fetching: dict[tuple[str, int], asyncio.Future[CompiledVersion]] = field(default_factory=dict)

    def apply(self, update: P.WatchPromptsResponse) -> None:
        """Applies a snapshot (reset) or a batch of changes; a changed prompt's compiled versions
        are kept (versions are immutable) when it still carries them."""
        if update.reset:
            old = self.prompts
            self.prompts = {}
        else:
            old = self.prompts
        for prompt_id in update.delete_prompt_ids:
            self.prompts.pop(prompt_id, None)
        for snapshot in update.upsert_prompts:
            previous = old.get(snapshot.prompt.id)
            entry = _Entry(snapshot)
            if previous is not None:
                held = {v.version for v in snapshot.versions}
                entry.compiled = {n: c for n, c in previous.compiled.items() if n in held}
            self.prompts[snapshot.prompt.id] = entry
        for held in [k for k in self.fetched if k[0] not in self.prompts]:
            del self.fetched[held]  # its prompt is gone
        self.revision = update.revision
        self.loaded.set()

    def resolve(self, project_id: str | None, prompt_id: str, version: str | None) -> CompiledVersion:
        """The compiled version a reference names: `version` a number, a label, or None (the
        prompt's default label). A prompt of another project than `project_id` is NOT_FOUND, as if
        absent (None: any project's — a prompt deployment's target, which the app allowed). Only
        the versions the watch carries or fetched ones: see :meth:`resolve_fetching`."""
        entry, number = self._locate(project_id, prompt_id, version)
        compiled = self._held(entry, number)
        if compiled is None:
            raise self._absent(prompt_id, number)
        return compiled

    async def resolve_fetching(
        self, project_id: str | None, prompt_id: str, version: str | None
    ) -> CompiledVersion:
        """As :meth:`resolve`, and a version the watch does not carry (an unlabelled older one,
        named by number) is fetched from the app once, then served from memory."""
        entry, number = self._locate(project_id, prompt_id, version)
        compiled = self._held(entry, number)
        if compiled is not None:
            return compiled
        if self.fetch is None or not 1 <= number <= entry.snapshot.prompt.latest_version:
            raise self._absent(prompt_id, number)
        key = (prompt_id, number)
        pending = self._fetching.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._fetch_one(entry.snapshot.prompt, number))
            self._fetching[key] = pending
            pending.add_done_callback(lambda _: self._fetching.pop(key, None))
        return await asyncio.shield(pending)

    async def _fetch_one(self, prompt: P.Prompt, number: int) -> CompiledVersion:
        assert self.fetch is not None
        try:
            async with asyncio.timeout(FETCH_TIMEOUT_S):
                body = await self.fetch(prompt.id, number)
        except TimeoutError:
            raise unavailable(
                f"Version {number} of prompt {prompt.id} could not be fetched in time; retry.",
                reason=Reason.NOT_READY,
            ) from None
        compiled = compile_version(prompt, body)
        if prompt.id in self.prompts:  # not deleted meanwhile
            self.fetched[(prompt.id, number)] = compiled
            while len(self.fetched) > MAX_FETCHED:
                self.fetched.popitem(last=False)
        return compiled

    def _locate(self, project_id: str | None, prompt_id: str, version: str | None) -> tuple[_Entry, int]:
        if not self.loaded.is_set():
            raise unavailable("The prompt service is starting; retry shortly.", reason=Reason.NOT_READY)
        entry = self.prompts.get(prompt_id)
        if entry is None or (project_id is not None and entry.snapshot.prompt.project_id != project_id):
            raise not_found(f"Prompt with id {echo(prompt_id)} not found.", param="prompt.id")
        return entry, self._version_number(entry.snapshot.prompt, version)

    def _held(self, entry: _Entry, number: int) -> CompiledVersion | None:
        """The version compiled, from the watch's bodies or the fetched ones; None if neither."""
        compiled = entry.compiled.get(number)
        if compiled is not None:
            return compiled
        body = next((v for v in entry.snapshot.versions if v.version == number), None)
        if body is not None:
            compiled = entry.compiled[number] = compile_version(entry.snapshot.prompt, body)
            return compiled
        fetched = self.fetched.get((entry.snapshot.prompt.id, number))
        if fetched is not None:
            self.fetched.move_to_end((entry.snapshot.prompt.id, number))
        return fetched

    @staticmethod
    def _absent(prompt_id: str, number: int) -> ServiceError:
        return not_found(f"Version {number} of prompt {prompt_id} not found.", param="prompt.version")

    @staticmethod
    def _version_number(prompt: P.Prompt, version: str | None) -> int:
        if version is None or version == "":
            label = prompt.default_label or LATEST
        elif version.isdigit():
            return int(version)
        else:
            label = version
        if label == LATEST:
            return prompt.latest_version
        for item in prompt.labels:
            if item.name == label:
                return item.version
        raise not_found(f"Prompt {prompt.id} has no label {echo(label)}.", param="prompt.version")


class PromptWatcher:
    """Keeps a PromptStore in step with the app's WatchPrompts stream."""

    def __init__(
        self,
        app_address: str,
        store: PromptStore,
        watcher_id: str,
        channel_factory: Callable[[str], Any] = service_channel,
    ) -> None:
        self.app_address = app_address
        self.store = store
        self.watcher_id = watcher_id
        self.channel_factory = channel_factory

    async def run(self) -> None:
        """Runs until cancelled."""
        backoff = 0.1
        channel = self.channel_factory(self.app_address)
        stub = prompt_pb2_grpc.PromptServiceStub(channel)
        try:
            while True:
                self.store.fetch = lambda prompt_id, number: _fetch(stub, prompt_id, number)
                try:
                    # The integration tools' keys in plaintext: this is the executor (the app
                    # checks that by the channel's service identity; the channel is mutual TLS).
                    request = P.WatchPromptsRequest(
                        since_revision=self.store.revision,
                        watcher_id=self.watcher_id,
                        include_access_keys=True,
                    )
                    async for update in stub.WatchPrompts(request):
                        self.store.apply(update)
                        backoff = 0.1
                    log.warning("prompt watch ended; reconnecting")
                except grpc.aio.AioRpcError as err:
                    log.warning(
                        "prompt watch failed: %s; serving from revision %d",
                        err.code().name,
                        self.store.revision,
                    )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
        finally:
            self.store.fetch = None
            await channel.close()


async def _fetch(stub: Any, prompt_id: str, number: int) -> P.PromptVersion:
    """One version from the app (FetchPromptVersion); its NOT_FOUND is the caller's 404, any other
    failure a 503."""
    try:
        answer = await stub.FetchPromptVersion(
            P.FetchPromptVersionRequest(prompt_id=prompt_id, version=number), timeout=FETCH_TIMEOUT_S
        )
    except grpc.aio.AioRpcError as err:
        if err.code() == grpc.StatusCode.NOT_FOUND:
            raise not_found(
                f"Version {number} of prompt {prompt_id} not found.", param="prompt.version"
            ) from None
        log.warning("fetching a prompt version failed: %s", err.code().name)
        raise unavailable(
            f"Version {number} of prompt {prompt_id} could not be fetched; retry.", reason=Reason.NOT_READY
        ) from None
    return answer.version
