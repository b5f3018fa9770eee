"""What the gateway tells operators about each OpenAI request: the Prometheus series
(`budrt.metrics`), the per-request JSON log line, the authentication attempts, and the spans of
its steps (`budrt.tracing`). `OpenAiServicer` calls these at the points a request passes; they
never raise and never see a key, a password or a message body.

The per-request line (event `completion_generated`, `embeddings_generated`, `request_failed`,
`request_cancelled`) carries request_id, duration_ms, tokens {prompt, completion, total},
deployment, project, route, status, cached, key_prefix, cost_usd when the request's price is
known (the charge's `cost_nanos`, at its deployment's price), and trace_id/span_id (`budrt.logs`, tracing on).
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from auth import keys
from budrt import metrics, tracing
from budrt.errors import http_status

log = logging.getLogger("gateway.requests")
auth_log = logging.getLogger("gateway.auth")

# The route label of each operation (bounded: the OpenAI endpoints).
_ROUTES = {
    "CreateChatCompletion": "chat.completions",
    "StreamChatCompletion": "chat.completions",
    "CreateCompletion": "completions",
    "StreamCompletion": "completions",
    "CreateEmbedding": "embeddings",
    "CreateResponse": "responses",
    "StreamResponse": "responses",
}
_NULL = contextlib.nullcontext()
# Rejection reasons counted in bud_rejected_requests_total, by the error's reason.
_REJECTIONS = {
    "RATE_LIMIT_EXCEEDED": "rate_limit",
    "CONCURRENCY_LIMIT_EXCEEDED": "concurrency",
    "BUDGET_EXCEEDED": "budget",
}


def route(operation: str) -> str:
    return _ROUTES.get(operation, operation)


def step(name: str, attributes: dict[str, Any] | None = None) -> Any:
    """A span around one step of a request (authentication, routing, admission...), inside the
    request's span when it records; tracing off (or the trace not sampled), a shared do-nothing
    context."""
    if not tracing.enabled():
        return _NULL
    return tracing.child_span(name, attributes)


def annotate(**attributes: Any) -> None:
    """Attributes on the current span (tracing on and sampled), e.g. the replica chosen."""
    if tracing.enabled():
        current = tracing.trace.get_current_span()
        if current.is_recording():
            current.set_attributes({f"bud.{k}": v for k, v in attributes.items()})


def key_prefix(token: str) -> str:
    """The public part of an API key (`bud-<8 characters>`), or "" for anything else: all a
    log line may say about a credential."""
    prefix = keys.key_prefix(token)
    return f"bud-{prefix}" if prefix else ""


def authenticated(prefix: str) -> None:
    _child(metrics.AUTH_ATTEMPTS, "success").inc()
    if auth_log.isEnabledFor(logging.DEBUG):
        auth_log.debug(
            "authentication", extra={"event": "authentication", "outcome": "success", "key_prefix": prefix}
        )


def auth_failed(outcome: str, token: str = "") -> None:
    """A refused API key (`outcome`: missing_key, invalid_key), logged with its prefix only."""
    metrics.AUTH_ATTEMPTS.labels(outcome).inc()
    auth_log.info(
        "authentication failed",
        extra={"event": "authentication", "outcome": outcome, "key_prefix": key_prefix(token)},
    )


def cache_lookup(deployment: Any, hit: bool) -> None:
    metrics.CACHE_LOOKUPS.labels(deployment.name, "hit" if hit else "miss").inc()


def admitted(deployment: Any) -> None:
    _child(metrics.IN_FLIGHT, deployment.name).inc()


def released(deployment: Any) -> None:
    _child(metrics.IN_FLIGHT, deployment.name).dec()


@contextlib.contextmanager
def queued(deployment: Any) -> Any:
    """Counts a request waiting for its deployment's concurrency slot."""
    gauge = metrics.QUEUED.labels(deployment.name)
    gauge.inc()
    try:
        yield
    finally:
        gauge.dec()


def refused(operation: str, deployment: Any, project: str, reason: str, status: int) -> None:
    """A request refused before its engine call (key, model, caps, limits, concurrency)."""
    name = deployment.name if deployment is not None else ""
    metrics.REQUESTS.labels(route(operation), name, project, str(status)).inc()
    kind = _REJECTIONS.get(reason)
    if kind is not None:
        metrics.REJECTIONS.labels(kind, name).inc()


# Label children by their label values: `labels()` validates and locks on every call, a dict
# lookup does not (the values are bounded, so are these).
_children: dict[tuple[Any, ...], Any] = {}


def _child(metric: Any, *values: str) -> Any:
    key = (metric, *values)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*values)
    return child


def finished(charge: Any, project: str) -> None:
    """One request's end: its series and its log line. `charge`: the servicer's `_Charge`
    (identity, outcome, tokens, times; `cost_nanos`, its cost at its deployment's price)."""
    status = http_status(charge.code)
    deployment = charge.deployment.name
    op_route = route(charge.operation)
    ended = charge.ended or time.perf_counter()
    duration = ended - charge.started
    _child(metrics.REQUESTS, op_route, deployment, project, str(status)).inc()
    _child(metrics.REQUEST_DURATION, op_route, deployment).observe(duration)
    if charge.prompt_tokens:
        _child(metrics.INPUT_TOKENS, deployment, project).inc(charge.prompt_tokens)
    if charge.completion_tokens:
        _child(metrics.OUTPUT_TOKENS, deployment, project).inc(charge.completion_tokens)
    if charge.first_token:
        _child(metrics.TIME_TO_FIRST_TOKEN, deployment).observe(charge.first_token - charge.started)
        if charge.completion_tokens > 1:
            per_token = (ended - charge.first_token) / (charge.completion_tokens - 1)
            _child(metrics.TIME_PER_OUTPUT_TOKEN, deployment).observe(per_token)
    # Exact nano-dollars on the charge (budrt/money.py); a float only for the series and the line.
    nanos = getattr(charge, "cost_nanos", None)
    cost = None if nanos is None else nanos / 1e9
    if cost:
        metrics.COST.labels(deployment, project).inc(cost)
    if not log.isEnabledFor(logging.INFO):
        return
    if status == 200:
        event = "embeddings_generated" if op_route == "embeddings" else "completion_generated"
    else:
        event = "request_cancelled" if status == 499 else "request_failed"
    entry: dict[str, Any] = {
        "event": event,
        "request_id": charge.client_request_id,
        "duration_ms": round(duration * 1000, 3),
        "tokens": {
            "prompt": charge.prompt_tokens,
            "completion": charge.completion_tokens,
            "total": charge.prompt_tokens + charge.completion_tokens,
        },
        "deployment": deployment,
        "project": project,
        "route": op_route,
        "status": status,
        "cached": charge.cached,
        "key_prefix": f"bud-{charge.key.prefix}" if charge.key.prefix else "",
    }
    if charge.first_token:
        entry["ttft_ms"] = round((charge.first_token - charge.started) * 1000, 3)
    if cost is not None:
        entry["cost_usd"] = cost
    log.log(logging.WARNING if status >= 500 else logging.INFO, event, extra=entry)
