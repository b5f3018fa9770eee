"""prompt/store.py: the watch-fed store (snapshot, changes, resume, reconnect), reference
resolution (numbers, labels, the default label, another project's prompt) and versions compiled
once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from bud.prompt.v1 import prompt_pb2 as P
from bud.prompt.v1 import prompt_pb2_grpc
from budrt.errors import ServiceError
from budrt.grpc_server import GrpcServer, ServiceBinding
from prompt.store import PromptStore, PromptWatcher

SERVICE = P.DESCRIPTOR.services_by_name["PromptService"]


def _version(prompt_id: str, number: int, text: str) -> P.PromptVersion:
    return P.PromptVersion(
        prompt_id=prompt_id,
        version=number,
        model="chat",
        messages=[P.PromptMessage(role="user", template=text)],
    )


def _snapshot(prompt_id: str = "pmpt_1", project: str = "prj_a", default_label: str = "") -> P.PromptSnapshot:
    prompt = P.Prompt(
        id=prompt_id,
        project_id=project,
        latest_version=3,
        default_label=default_label,
        labels=[P.PromptLabel(name="prod", version=2)],
    )
    versions = [_version(prompt_id, 3, "three {{ input }}"), _version(prompt_id, 2, "two {{ input }}")]
    return P.PromptSnapshot(prompt=prompt, versions=versions)


def _store(*snapshots: P.PromptSnapshot) -> PromptStore:
    store = PromptStore()
    store.apply(P.WatchPromptsResponse(revision=1, reset=True, upsert_prompts=list(snapshots)))
    return store


def test_not_ready_before_the_first_snapshot() -> None:
    with pytest.raises(ServiceError) as err:
        PromptStore().resolve("prj_a", "pmpt_1", None)
    assert err.value.code == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize(
    ("version", "default_label", "expected"),
    [(None, "", 3), ("latest", "", 3), ("2", "", 2), ("prod", "", 2), (None, "prod", 2), ("3", "prod", 3)],
)
def test_resolution(version: str | None, default_label: str, expected: int) -> None:
    store = _store(_snapshot(default_label=default_label))
    assert store.resolve("prj_a", "pmpt_1", version).version.version == expected


@pytest.mark.parametrize(
    ("project", "prompt_id", "version", "param"),
    [
        ("prj_b", "pmpt_1", None, "prompt.id"),  # another project's: as if absent
        ("prj_a", "pmpt_2", None, "prompt.id"),
        ("prj_a", "pmpt_1", "1", "prompt.version"),  # not held: no label points at it
        ("prj_a", "pmpt_1", "9", "prompt.version"),
        ("prj_a", "pmpt_1", "staging", "prompt.version"),
    ],
)
def test_not_found(project: str, prompt_id: str, version: str | None, param: str) -> None:
    with pytest.raises(ServiceError) as err:
        _store(_snapshot()).resolve(project, prompt_id, version)
    assert err.value.code == grpc.StatusCode.NOT_FOUND and err.value.param == param


def test_versions_compile_once_and_survive_changes() -> None:
    store = _store(_snapshot())
    first = store.resolve("prj_a", "pmpt_1", "2")
    assert store.resolve("prj_a", "pmpt_1", "prod") is first
    moved = _snapshot()
    moved.prompt.labels[0].version = 3
    store.apply(P.WatchPromptsResponse(revision=2, upsert_prompts=[moved]))
    assert store.resolve("prj_a", "pmpt_1", "2") is first  # still held: kept compiled
    assert store.resolve("prj_a", "pmpt_1", "prod").version.version == 3
    store.apply(P.WatchPromptsResponse(revision=3, delete_prompt_ids=["pmpt_1"]))
    with pytest.raises(ServiceError):
        store.resolve("prj_a", "pmpt_1", None)
    assert store.revision == 3


def test_a_reset_drops_what_it_does_not_name() -> None:
    store = _store(_snapshot("pmpt_1"), _snapshot("pmpt_2"))
    store.apply(P.WatchPromptsResponse(revision=5, reset=True, upsert_prompts=[_snapshot("pmpt_2")]))
    assert set(store.prompts) == {"pmpt_2"}


class _FlakyPrompts(prompt_pb2_grpc.PromptServiceServicer):
    """WatchPrompts: the first stream sends a snapshot then breaks; later ones resume."""

    def __init__(self) -> None:
        self.requests: list[P.WatchPromptsRequest] = []

    async def WatchPrompts(
        self, request: P.WatchPromptsRequest, context: Any
    ) -> AsyncIterator[P.WatchPromptsResponse]:
        self.requests.append(request)
        if len(self.requests) == 1:
            yield P.WatchPromptsResponse(revision=7, reset=True, upsert_prompts=[_snapshot()])
            await context.abort(grpc.StatusCode.UNAVAILABLE, "app restarting")
        yield P.WatchPromptsResponse(revision=8, delete_prompt_ids=["pmpt_1"])
        await asyncio.Event().wait()


async def test_the_watcher_resumes_from_its_revision_after_a_failure() -> None:
    servicer = _FlakyPrompts()
    server = GrpcServer(
        "127.0.0.1:0",
        [ServiceBinding(servicer, prompt_pb2_grpc.add_PromptServiceServicer_to_server, SERVICE)],
    )
    await server.start()
    store = PromptStore()
    task = asyncio.create_task(PromptWatcher(f"127.0.0.1:{server.port}", store, "test").run())
    try:
        async with asyncio.timeout(10):
            await store.loaded.wait()
            while store.revision != 8:
                await asyncio.sleep(0.01)
        assert store.prompts == {}
        assert [r.since_revision for r in servicer.requests] == [0, 7]
        assert servicer.requests[0].watcher_id == "test"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await server.stop(0)


async def test_an_unlabelled_older_version_is_fetched_once_and_cached() -> None:
    """Version 1 is not in the watch (no label, no deployment): named by number it is fetched
    from the app once — concurrent misses included — then served from memory."""
    store = _store(_snapshot())
    calls: list[tuple[str, int]] = []
    release = asyncio.Event()

    async def fetch(prompt_id: str, number: int) -> P.PromptVersion:
        calls.append((prompt_id, number))
        await release.wait()
        return _version(prompt_id, number, "one {{ input }}")

    with pytest.raises(ServiceError) as err:  # without a fetcher: 404, as before
        await store.resolve_fetching("prj_a", "pmpt_1", "1")
    assert err.value.code == grpc.StatusCode.NOT_FOUND
    store.fetch = fetch
    waiting = [asyncio.create_task(store.resolve_fetching("prj_a", "pmpt_1", "1")) for _ in range(5)]
    await asyncio.sleep(0.01)
    release.set()
    results = await asyncio.gather(*waiting)
    assert calls == [("pmpt_1", 1)] and all(r is results[0] for r in results)
    assert results[0].version.version == 1 and results[0].templates[0][1].render(input="x") == "one x"
    assert await store.resolve_fetching("prj_a", "pmpt_1", "1") is results[0]
    assert store.resolve("prj_a", "pmpt_1", "1") is results[0]  # the sync path sees it too
    assert calls == [("pmpt_1", 1)]
    # held versions never fetch; a number past the latest is 404 without asking; so is another
    # project's prompt
    await store.resolve_fetching("prj_a", "pmpt_1", "2")
    for project, version in (("prj_a", "9"), ("prj_b", "1")):
        with pytest.raises(ServiceError) as err:
            await store.resolve_fetching(project, "pmpt_1", version)
        assert err.value.code == grpc.StatusCode.NOT_FOUND
    assert calls == [("pmpt_1", 1)]
    # the prompt deleted: its fetched versions go
    store.apply(P.WatchPromptsResponse(revision=2, delete_prompt_ids=["pmpt_1"]))
    assert store.fetched == {}


async def test_a_failed_fetch_is_the_callers_error_and_not_cached() -> None:
    store = _store(_snapshot())
    answers: list[Any] = [
        ServiceError.from_status(grpc.StatusCode.UNAVAILABLE, "app down"),
        _version("pmpt_1", 1, "one"),
    ]

    async def fetch(prompt_id: str, number: int) -> P.PromptVersion:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    store.fetch = fetch
    with pytest.raises(ServiceError) as err:
        await store.resolve_fetching("prj_a", "pmpt_1", "1")
    assert err.value.code == grpc.StatusCode.UNAVAILABLE
    assert (await store.resolve_fetching("prj_a", "pmpt_1", "1")).version.version == 1  # asked again


async def test_fetched_versions_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from prompt import store as store_module

    monkeypatch.setattr(store_module, "MAX_FETCHED", 2)
    snapshot = _snapshot()
    snapshot.prompt.latest_version = 10
    store = _store(snapshot)

    async def fetch(prompt_id: str, number: int) -> P.PromptVersion:
        return _version(prompt_id, number, "v")

    store.fetch = fetch
    for number in (1, 4, 5):
        await store.resolve_fetching("prj_a", "pmpt_1", str(number))
    assert list(store.fetched) == [("pmpt_1", 4), ("pmpt_1", 5)]  # the least recently used went
