"""Page sizes and page tokens of the List RPCs.

Lists are ordered by id (ids start with their creation time) and paged by keyset: a token holds
the last id of the previous page and the listing it belongs to, so it stays valid while rows are
added or removed and is refused by any other listing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from budrt.errors import invalid_argument
from budrt.page_tokens import decode_page_token, encode_page_token

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000

T = TypeVar("T")


class PageRequest(Protocol):
    """The paging fields every List request has."""

    @property
    def page_size(self) -> int: ...

    @property
    def page_token(self) -> str: ...


def page_size(requested: int) -> int:
    """The page size to use: 50 when unset, at most 1000."""
    if requested < 0:
        raise invalid_argument("page_size must not be negative", param="page_size")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


async def fetch_page(
    session: AsyncSession,
    stmt: Select[tuple[T]],
    id_column: InstrumentedAttribute[str],
    scope: str,
    request: PageRequest,
    *,
    newest_first: bool = False,
) -> tuple[Sequence[T], str]:
    """Runs `stmt` for the page `request` asks for; returns the rows and the next page's token
    ("" at the end). `newest_first`: in descending id order (events)."""
    size = page_size(request.page_size)
    after = decode_page_token(request.page_token, scope)
    if after is not None:
        stmt = stmt.where(id_column < after if newest_first else id_column > after)
    order = id_column.desc() if newest_first else id_column
    rows = (await session.scalars(stmt.order_by(order).limit(size + 1))).all()
    if len(rows) <= size:
        return rows, ""
    rows = rows[:size]
    return rows, encode_page_token(scope, getattr(rows[-1], id_column.key))


async def fetch_project_page(
    session: AsyncSession, model: Any, scope: str, project_id: str, request: PageRequest
) -> tuple[Sequence[Any], str]:
    """The page `request` asks for of one project's rows of `model` (a table with `id` and
    `project_id`: ApiKey, Deployment), in creation order; the listing is `<scope>/<project_id>`."""
    return await fetch_page(
        session,
        select(model).where(model.project_id == project_id),
        model.id,
        f"{scope}/{project_id}",
        request,
    )
