"""JSON logging on stderr that never prints secrets (API keys, bearer tokens, passwords); each line
names its process and, inside an RPC, the call's request id (`budrt.interceptors`) and, when
tracing is on, the current span's `trace_id` and `span_id` (`budrt.tracing`)."""

from __future__ import annotations

import logging
import re
import sys
import time

import orjson

from budrt import tracing
from budrt.interceptors import request_id

# API keys look like bud-<prefix>-<secret>; anything after "Bearer " or a password=/secret= is
# masked too, wherever it appears in a message or an argument.
_SECRET_PATTERNS = [
    (re.compile(r"\bbud-([A-Za-z0-9]{8})-[A-Za-z0-9_\-]+"), r"bud-\1-***"),
    (re.compile(r"(?i)(bearer\s+)[^\s\"',]+"), r"\1***"),
    (re.compile(r"(?i)((?:password|secret|token)[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+"), r"\1***"),
]


# What each of those patterns needs to find: text without any of these words is returned as is
# after one search (most log values: ids, names, numbers as text), not three substitutions.
_SECRET_HINT = re.compile(r"(?i)bud-|bearer|password|secret|token")


def redact(text: str) -> str:
    """Masks anything in `text` that looks like a secret."""
    if _SECRET_HINT.search(text) is None:
        return text
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp, level, logger, message and any `extra` fields."""

    _RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for key, value in record.__dict__.items():
            if key not in self._RESERVED and not key.startswith("_"):
                entry[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(entry, default=str).decode()


def setup_logging(level: str = "INFO", service: str = "") -> None:
    """Routes the root logger to stderr as JSON; `service` names the process in each line."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(_ContextFilter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


class _ContextFilter(logging.Filter):
    """Adds the process's service name, the current call's request id and (tracing on) the
    current span's ids to each record."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def filter(self, record: logging.LogRecord) -> bool:
        if self._service:
            record.service = self._service
        current = request_id.get()
        if current and not hasattr(record, "request_id"):
            record.request_id = current
        if tracing.enabled() and not hasattr(record, "trace_id"):
            ids = tracing.current_ids()
            if ids is not None:
                record.trace_id, record.span_id = ids
        return True
