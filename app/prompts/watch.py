"""The prompt state WatchPrompts streams: every prompt with its labels and the versions the
executing side may be asked to run (those its labels, "latest" included, and its deployments point
at), read in one snapshot at a routing revision. Prompt writes bump the routing revision (they are
`Database.mutation` transactions), so the watch follows the revision exactly as WatchRouting does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select, tuple_

from app.db import models
from app.db.session import Database, current_revision
from app.prompts import body, store
from app.prompts.cipher import KeyCipher
from bud.prompt.v1 import prompt_pb2
from budrt.errors import not_found

P = prompt_pb2


@dataclass
class PromptState:
    """Every prompt's snapshot at one revision, by prompt id."""

    revision: int
    prompts: dict[str, P.PromptSnapshot] = field(default_factory=dict)

    def snapshot(self) -> P.WatchPromptsResponse:
        """All of it, as a reset message."""
        return P.WatchPromptsResponse(
            revision=self.revision, reset=True, upsert_prompts=list(self.prompts.values())
        )

    def changes_since(self, old: PromptState) -> P.WatchPromptsResponse:
        """What turns `old` into this state (no upserts or deletes when nothing differs)."""
        return P.WatchPromptsResponse(
            revision=self.revision,
            upsert_prompts=[m for i, m in self.prompts.items() if old.prompts.get(i) != m],
            delete_prompt_ids=[i for i in old.prompts if i not in self.prompts],
        )


async def load_state(db: Database, cipher: KeyCipher, *, reveal: bool = False) -> PromptState:
    """The state and its revision, read in one consistent snapshot; `reveal`: the integration
    tools' access keys in plaintext (the prompt executor's watch only)."""
    async with db.snapshot() as session:
        state = PromptState(revision=await current_revision(session))
        prompts = list((await session.scalars(select(models.Prompt).order_by(models.Prompt.id))).all())
        labels = await store.labels_of(session, [p.id for p in prompts])
        wanted: dict[str, set[int]] = {p.id: {p.latest_version} for p in prompts}
        for prompt_id, rows in labels.items():
            wanted[prompt_id] |= {r.version for r in rows}
        pinned = await session.execute(
            select(models.Deployment.prompt_id, models.Deployment.prompt_version).where(
                models.Deployment.prompt_version.is_not(None)
            )
        )
        for prompt_id, version in pinned:
            if prompt_id in wanted:
                wanted[prompt_id].add(version)
        keys = [(p, v) for p, versions in wanted.items() for v in versions]
        rows = (
            (
                await session.scalars(
                    select(models.PromptVersion).where(
                        tuple_(models.PromptVersion.prompt_id, models.PromptVersion.version).in_(keys)
                    )
                )
            ).all()
            if keys
            else []
        )
        versions: dict[str, list[models.PromptVersion]] = {}
        for row in sorted(rows, key=lambda r: (r.prompt_id, -r.version)):
            versions.setdefault(row.prompt_id, []).append(row)
        for prompt in prompts:
            by_version: dict[int, list[str]] = {prompt.latest_version: [body.LATEST]}
            for label in labels[prompt.id]:
                by_version.setdefault(label.version, []).append(label.name)
            state.prompts[prompt.id] = P.PromptSnapshot(
                prompt=store.prompt_to_proto(prompt, labels[prompt.id]),
                versions=[
                    store.version_to_proto(r, cipher, by_version.get(r.version, ()), reveal=reveal)
                    for r in versions.get(prompt.id, [])
                ],
            )
    return state


async def fetch_version(db: Database, cipher: KeyCipher, prompt_id: str, number: int) -> P.PromptVersion:
    """One version of a prompt as the watch would carry it (keys masked, its labels), for the
    executing side's FetchPromptVersion; NOT_FOUND when the prompt or the version is absent."""
    async with db.snapshot() as session:
        prompt = await session.get(models.Prompt, prompt_id)
        if prompt is None:
            raise not_found(f"prompt {prompt_id!r} not found", param="prompt_id")
        row = await store.get_version(session, prompt, number)
        labels = await store.labels_at(session, prompt, [number])
        return store.version_to_proto(row, cipher, labels[number])
