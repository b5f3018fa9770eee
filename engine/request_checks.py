"""Rules vLLM does not check but must hold before a request reaches it: each broke a request
after vLLM accepted it (a 5xx for bad client input), so each is refused up front as an
INVALID_ARGUMENT naming the field at fault."""

from __future__ import annotations

from typing import Any

from budrt.errors import invalid_argument

# How many `$ref` hops a chain of reference-only schemas may take before it is called a cycle
# (a real schema refers through a few definitions, never hundreds).
_MAX_REF_HOPS = 64


def check_completion(request: Any) -> None:
    """A completion request (vLLM's pydantic model) the contract can answer.

    `echo` with `logprobs` answers a `null` log probability for the first prompt token (it has no
    context), which the contract's `repeated double token_logprobs` cannot carry: the answer
    failed to convert after the whole generation ran (a 500).
    """
    if getattr(request, "echo", False) and getattr(request, "logprobs", None) is not None:
        raise invalid_argument(
            "`echo` with `logprobs` is not supported: the first prompt token has no log probability.",
            param="echo",
        )
    check_response_format(request)


def check_response_format(request: Any) -> None:
    """A `response_format` JSON schema that describes at least one value.

    A schema that is only a `$ref` into a chain of reference-only schemas that loops back (the
    smallest is `{"$ref": "#"}`) compiles to a grammar with no finite sentence (`root ::= root`):
    vLLM's validation accepts it, then every token is masked during decoding.
    """
    response_format = getattr(request, "response_format", None)
    spec = getattr(response_format, "json_schema", None)
    schema = getattr(spec, "json_schema", None)
    if isinstance(schema, dict) and _ref_cycle(schema):
        raise invalid_argument(
            "The JSON schema's `$ref` chain loops back to itself and never reaches a schema.",
            param="response_format.json_schema.schema",
        )


def _ref_cycle(root: dict[str, Any]) -> bool:
    """Whether some reference-only subschema of `root` leads, through references only, back to
    itself (or past `_MAX_REF_HOPS`). Only local refs (`#`, `#/...`) are followed."""
    for node in _subschemas(root):
        seen: set[int] = set()
        current: Any = node
        for _ in range(_MAX_REF_HOPS):
            if not _ref_only(current):
                break
            if id(current) in seen:
                return True
            seen.add(id(current))
            current = _resolve(root, current["$ref"])
            if current is None:
                break
        else:
            return True
    return False


def _ref_only(node: Any) -> bool:
    """A schema whose meaning is only its `$ref` (annotations aside): it adds no base case."""
    ignored = {"$ref", "title", "description", "$comment", "examples", "default", "$defs", "definitions"}
    return isinstance(node, dict) and isinstance(node.get("$ref"), str) and set(node) <= ignored


def _resolve(root: dict[str, Any], ref: str) -> Any:
    """The subschema a local JSON pointer names, or None (remote, malformed or missing)."""
    if ref == "#":
        return root
    if not ref.startswith("#/"):
        return None
    node: Any = root
    for raw in ref[2:].split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def _subschemas(root: Any) -> list[dict[str, Any]]:
    """Every object in the schema, iteratively (the gateway already bounds the nesting depth)."""
    found: list[dict[str, Any]] = []
    stack = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            found.append(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found
