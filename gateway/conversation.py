"""What stored responses mean in the Responses API: a request's input as stored items (each with
an id), a response's output as the input items of the next turn, a request continued from its
`previous_response_id`, and the input items' pages. Pure functions over the messages; the
storage itself is `gateway.response_store`."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from bud.app.v1 import response_store_pb2
from bud.openai.v1 import response_pb2
from budrt.errors import echo, invalid_argument

# GET /v1/responses/{id}/input_items: the page size when none is asked, and the largest (OpenAI's).
DEFAULT_PAGE = 20
MAX_PAGE = 100

_ID_PREFIX = {"message": "msg", "function_call": "fc", "function_call_output": "fco"}


def input_items(request: response_pb2.ResponseRequest) -> list[response_pb2.ResponseInputItem]:
    """The request's own input as stored items, as OpenAI lists them: a string input is one user
    message; message text becomes one text part; every item has an id and a status."""
    which = request.WhichOneof("input")
    if which == "input_text":
        items = [response_pb2.ResponseInputItem(type="message", role="user", content_text=request.input_text)]
    elif which == "input_items":
        items = [response_pb2.ResponseInputItem() for _ in request.input_items.values]
        for item, given in zip(items, request.input_items.values, strict=True):
            item.CopyFrom(given)
    else:
        items = []
    for item in items:
        kind = item.type if item.HasField("type") else "message"
        item.type = kind
        if kind == "message":
            item.role = item.role or "user"
            if item.WhichOneof("content") == "content_text":
                text = item.content_text
                part = "output_text" if item.role == "assistant" else "input_text"
                item.content_parts.values.add(type=part, text=text)
        if not item.id:
            item.id = f"{_ID_PREFIX.get(kind, 'item')}_{uuid.uuid4().hex}"
        if not item.HasField("status"):
            item.status = "completed"
    return items


def output_as_input(response: response_pb2.Response) -> list[response_pb2.ResponseInputItem]:
    """A response's output items as the input items of the turn that continues it."""
    items = []
    for out in response.output:
        if out.type == "message":
            item = response_pb2.ResponseInputItem(
                type="message", role=out.role or "assistant", id=out.id, status=out.status or "completed"
            )
            for part in out.content:
                if part.type == "output_text":
                    item.content_parts.values.add(type="output_text", text=part.text)
            items.append(item)
        elif out.type == "function_call":
            items.append(
                response_pb2.ResponseInputItem(
                    type="function_call",
                    id=out.id,
                    status=out.status or "completed",
                    call_id=out.call_id,
                    name=out.name,
                    arguments=out.arguments,
                )
            )
    return items


def history(turns: Sequence[response_store_pb2.StoredResponse]) -> list[response_pb2.ResponseInputItem]:
    """The earlier turns of a conversation, oldest first, as input items: each turn's own input,
    then its output. (Instructions are not carried over, as OpenAI: each request gives its own.)"""
    items: list[response_pb2.ResponseInputItem] = []
    for turn in turns:
        items.extend(turn.input_items)
        items.extend(output_as_input(turn.response))
    return items


def continued(
    request: response_pb2.ResponseRequest,
    earlier: Sequence[response_pb2.ResponseInputItem],
    own: Sequence[response_pb2.ResponseInputItem],
) -> response_pb2.ResponseRequest:
    """`request` with the conversation's earlier items prepended to its own, and no
    previous_response_id left to resolve: what the model is asked."""
    merged = response_pb2.ResponseRequest()
    merged.CopyFrom(request)
    merged.ClearField("previous_response_id")
    merged.ClearField("input_text")
    merged.ClearField("input_items")
    merged.input_items.values.extend(earlier)
    merged.input_items.values.extend(own)
    return merged


def page(
    items: Sequence[response_pb2.ResponseInputItem], request: response_pb2.ListInputItemsRequest
) -> response_pb2.InputItemList:
    """One page of a response's input items, as OpenAI's list: `order` (default "desc"), `after`
    an item id (exclusive), `limit` 1..100 (default 20)."""
    order = request.order if request.HasField("order") else "desc"
    if order not in ("asc", "desc"):
        raise invalid_argument(f"order must be 'asc' or 'desc', got {echo(order)}", param="order")
    limit = request.limit if request.HasField("limit") else DEFAULT_PAGE
    if not 1 <= limit <= MAX_PAGE:
        raise invalid_argument(f"limit must be between 1 and {MAX_PAGE}, got {limit}", param="limit")
    ordered = list(items) if order == "asc" else list(reversed(items))
    start = 0
    if request.HasField("after"):
        ids = [item.id for item in ordered]
        if request.after not in ids:
            raise invalid_argument(
                f"after: no input item {echo(request.after)} in this response", param="after"
            )
        start = ids.index(request.after) + 1
    data = ordered[start : start + limit]
    return response_pb2.InputItemList(
        object="list",
        data=data,
        first_id=data[0].id if data else "",
        last_id=data[-1].id if data else "",
        has_more=start + limit < len(ordered),
    )
