"""The gateway believes a model call's prompt-run claim (its usage record names the prompt, and
the prompt deployment's limits apply) only when it verifies and names the key's project: a client
sending its own `x-bud-prompt-run` gets a plain direct call."""

from __future__ import annotations

from typing import Any

from auth import keys
from auth.prompt_run import PROMPT_RUN_KEY, PromptRun, sign
from bud.auth.v1 import routing_pb2
from gateway.engines import EnginePool
from gateway.openai_service import OpenAiServicer
from gateway.tables import RoutingTables

SECRET = "test-hash-secret"


class _Context:
    def __init__(self, metadata: list[tuple[str, str]]) -> None:
        self.metadata = metadata

    def invocation_metadata(self) -> Any:
        return self.metadata


def _servicer() -> tuple[OpenAiServicer, Any]:
    key = keys.mint_key(SECRET)
    tables = RoutingTables()
    snapshot = routing_pb2.WatchRoutingResponse(revision=1, reset=True)
    snapshot.upsert_keys.add(id="k1", prefix=key.prefix, key_hash=key.key_hash, project_id="p1")
    snapshot.upsert_deployments.add(id="pd", project_id="p1", name="pd", ready=True, prompt_id="pmpt_1")
    snapshot.upsert_deployments.add(id="po", project_id="p2", name="po", ready=True, prompt_id="pmpt_2")
    tables.apply(snapshot)
    entry = tables.keys_by_prefix[key.prefix]
    return OpenAiServicer(tables, EnginePool(), SECRET), entry


def _claim(run: PromptRun, secret: str = SECRET) -> _Context:
    return _Context([("authorization", "Bearer x"), (PROMPT_RUN_KEY, sign(run, secret))])


def test_a_verified_claim_names_the_run_and_its_deployment() -> None:
    servicer, key = _servicer()
    run, deployment = servicer._prompt_run(_claim(PromptRun("p1", "pmpt_1", 2, "pd")), key)
    assert run == PromptRun("p1", "pmpt_1", 2, "pd") and deployment is not None and deployment.id == "pd"
    assert deployment.prompt_id == "pmpt_1"


def test_a_forged_or_foreign_claim_is_ignored() -> None:
    servicer, key = _servicer()
    assert servicer._prompt_run(_claim(PromptRun("p1", "pmpt_1", 2, "pd"), "guessed"), key) == (None, None)
    assert servicer._prompt_run(_Context([(PROMPT_RUN_KEY, "v1.e30.AAAA")]), key) == (None, None)
    # signed, but for another project than the key's
    assert servicer._prompt_run(_claim(PromptRun("p2", "pmpt_2", 1, "po")), key) == (None, None)
    # the key's project, but another project's deployment: the run counts, that deployment not
    run, deployment = servicer._prompt_run(_claim(PromptRun("p1", "pmpt_1", 1, "po")), key)
    assert run is not None and deployment is None
