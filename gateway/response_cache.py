"""The exact-match response cache: a deployment with `caching` on has its deterministic requests
answered from the answers the gateways stored for the same request.

What is cached:
- chat completions and completions, unary and streamed, when the request is **deterministic**:
  `temperature` 0, or a `seed` given (`n` > 1 included). A request without either samples at the
  model's default temperature and is never cached (no `x-bud-cache` header);
- embeddings, always (an embedding model has no sampling);
- the Responses API through the chat request it is mapped to (so a prompt run, whose model call
  comes back through the OpenAI service with the rendered request, is cached on that request).

The key is the project, the deployment, the served names of its replicas (they change with each
new generation of the model, so a redeployed model never answers from its predecessor's
entries), the operation (a stream's entry is its chunk sequence, a unary call's its answer: they
are kept apart) and the canonical request: the request message serialised deterministically (map
entries sorted) without the fields that do not change the output — `model` (the deployment
stands for it), `stream`, `stream_options` (the gateway always asks the engine for usage; the
client's choice is applied on replay), `user`, `metadata` and `store`. Everything else is in it,
`n`, `seed`, `max_tokens`, `logprobs`, tools and response formats included; two requests that
differ only in a way JSON does not distinguish (e.g. `stop: "x"` and `stop: ["x"]`) are two
entries — a miss, never a wrong answer.

Only a complete answer is stored: a unary call that succeeded, a stream that ran to its end (the
engine's usage chunk seen). A failed, cancelled or cut call is never stored. An answer that stopped
at the request's own `max_tokens` (finish_reason `length`; a Responses `incomplete`) is complete
for that request — the same request gets the same answer — and is stored. A hit is answered
with a new id and `created` (each chunk of a replayed stream shares them), `model` as the client
named it, and the stored `usage` (what producing the answer took; the usage record of a hit has
zero tokens and `cached` set).

Entries live in this process (`MemoryResponseCache`: LRU bounded by bytes) or, with `redis_url`,
in Redis (`RedisResponseCache`, shared by every gateway: LRU bounded by bytes across them, kept
by one script). Both expire entries after `response_cache_ttl_s`. A Redis failure is logged and
the request is served by the engine as if uncached: the cache is never on the failure path.
"""

from __future__ import annotations

import hashlib
import logging
import struct
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from google.protobuf.message import Message

from bud.openai.v1 import chat_pb2, completion_pb2, embedding_pb2

log = logging.getLogger(__name__)

# The response header naming a cacheable request's outcome ("hit" or "miss").
CACHE_HEADER = "x-bud-cache"
# The answer message of each cacheable operation (a stream's entry holds a sequence of them).
ANSWERS: dict[str, type[Message]] = {
    "CreateChatCompletion": chat_pb2.ChatCompletion,
    "StreamChatCompletion": chat_pb2.ChatCompletionChunk,
    "CreateCompletion": completion_pb2.Completion,
    "StreamCompletion": completion_pb2.Completion,
    "CreateEmbedding": embedding_pb2.EmbeddingList,
}
STREAMS = frozenset({"StreamChatCompletion", "StreamCompletion"})
# Operations whose every request is deterministic.
ALWAYS_DETERMINISTIC = frozenset({"CreateEmbedding"})
# Request fields that do not change the answer: left out of the key.
IGNORED_FIELDS = ("model", "stream", "stream_options", "user", "metadata", "store")
# The id prefix of each answer kind (an embedding list has no id).
_ID_PREFIX = {"ChatCompletion": "chatcmpl-", "ChatCompletionChunk": "chatcmpl-", "Completion": "cmpl-"}
# What an entry costs besides its key and value (the bookkeeping of one entry), in bytes.
ENTRY_OVERHEAD = 96


def deterministic(operation: str, request: Message) -> bool:
    """Whether the request's answer is fixed by the request: temperature 0, or a seed given."""
    if operation in ALWAYS_DETERMINISTIC:
        return True
    if request.HasField("seed"):  # type: ignore[arg-type]
        return True
    return request.HasField("temperature") and request.temperature == 0  # type: ignore[arg-type,attr-defined]


def cache_key(
    operation: str, project_id: str, deployment_id: str, served_names: Sequence[str], request: Message
) -> str | None:
    """The request's entry key, or None when the request is not cacheable (its operation is not
    cached, or it is not deterministic)."""
    if operation not in ANSWERS or not deterministic(operation, request):
        return None
    canonical = type(request)()
    canonical.CopyFrom(request)
    fields = canonical.DESCRIPTOR.fields_by_name
    for name in IGNORED_FIELDS:
        if name in fields:
            canonical.ClearField(name)
    digest = hashlib.sha256()
    for part in (operation, *sorted(set(served_names))):
        digest.update(part.encode())
        digest.update(b"\0")
    digest.update(canonical.SerializeToString(deterministic=True))
    return f"{project_id}:{deployment_id}:{digest.hexdigest()}"


def pack(messages: Sequence[bytes]) -> bytes:
    """A stream's chunks as one value: each serialised chunk after its length (4 bytes)."""
    return b"".join(struct.pack(">I", len(m)) + m for m in messages)


def unpack(value: bytes) -> list[bytes]:
    """The chunks of a packed stream (`pack`)."""
    out, at = [], 0
    while at < len(value):
        (size,) = struct.unpack_from(">I", value, at)
        out.append(value[at + 4 : at + 4 + size])
        at += 4 + size
    return out


def restamp(messages: Sequence[Any], model: str) -> None:
    """Gives replayed answers a new id and `created` (shared by a stream's chunks) and the model
    name the client used."""
    if not messages:
        return
    prefix = _ID_PREFIX.get(messages[0].DESCRIPTOR.name)
    new_id = f"{prefix}{uuid.uuid4().hex}" if prefix else ""
    created = int(time.time())
    for message in messages:
        fields = message.DESCRIPTOR.fields_by_name
        if new_id and "id" in fields:
            message.id = new_id
        if "created" in fields:
            message.created = created
        message.model = model


@dataclass(frozen=True)
class Lookup:
    """A cacheable request's key and, on a hit, the stored value."""

    key: str
    value: bytes | None

    @property
    def hit(self) -> bool:
        return self.value is not None

    @property
    def header(self) -> tuple[str, str]:
        return (CACHE_HEADER, "hit" if self.hit else "miss")


class ResponseCache(Protocol):
    """Entries by key, with a time to live and a bound on their bytes."""

    max_bytes: int

    async def get(self, key: str) -> bytes | None: ...

    async def put(self, key: str, value: bytes) -> None: ...


class MemoryResponseCache:
    """Entries in this process: least recently used first out once `max_bytes` (keys, values and
    `ENTRY_OVERHEAD` each) is passed; an entry older than `ttl_s` is gone. `ttl_s` and `max_bytes`
    may be changed on a running cache (a smaller bound evicts at the next put)."""

    def __init__(self, ttl_s: float, max_bytes: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.max_bytes = max_bytes
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self.bytes = 0  # what the entries held now cost

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def _cost(key: str, value: bytes) -> int:
        return len(key) + len(value) + ENTRY_OVERHEAD

    def _drop(self, key: str) -> None:
        _, value = self._entries.pop(key)
        self.bytes -= self._cost(key, value)

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        stored, value = entry
        if self._clock() - stored >= self.ttl_s:
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return value

    async def put(self, key: str, value: bytes) -> None:
        cost = self._cost(key, value)
        if cost > self.max_bytes:
            return  # larger than the whole cache: never stored
        if key in self._entries:
            self._drop(key)
        self._entries[key] = (self._clock(), value)
        self.bytes += cost
        while self.bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))


# Stores one entry and keeps the bytes of all entries under the bound, atomically. KEYS: the
# entry, the LRU index (score: the tick of its last use), the expiry index (score: expiry), the
# sizes (hash), the total, the tick (a counter: uses in the order Redis saw them, never a tie).
# ARGV: value, ttl (ms), now (ms), max bytes, the entry's cost.
_PUT = """
local now = tonumber(ARGV[3])
local max = tonumber(ARGV[4])
local cost = tonumber(ARGV[5])
local function forget(k)
  local s = tonumber(redis.call('HGET', KEYS[4], k) or '0')
  redis.call('HDEL', KEYS[4], k)
  redis.call('ZREM', KEYS[2], k)
  redis.call('ZREM', KEYS[3], k)
  return redis.call('DECRBY', KEYS[5], s)
end
for _, k in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 512)) do
  forget(k)
end
if redis.call('HEXISTS', KEYS[4], KEYS[1]) == 1 then
  forget(KEYS[1])
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('HSET', KEYS[4], KEYS[1], cost)
redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[6]), KEYS[1])
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[2]), KEYS[1])
local total = redis.call('INCRBY', KEYS[5], cost)
while total > max do
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
  if not oldest then break end
  redis.call('DEL', oldest)
  total = forget(oldest)
end
return total
"""

# Reads one entry and marks it used. KEYS: the entry, the LRU index, the tick.
_GET = """
local v = redis.call('GET', KEYS[1])
if v then
  redis.call('ZADD', KEYS[2], 'XX', redis.call('INCR', KEYS[3]), KEYS[1])
end
return v
"""


class RedisResponseCache:
    """Entries in Redis, shared by every gateway that points at it: each expires after `ttl_s`
    (Redis' own expiry) and, across all gateways, the least recently used go once the entries'
    bytes pass `max_bytes` (kept exact by `_PUT`, which also forgets expired entries' sizes)."""

    def __init__(self, url: str, ttl_s: float, max_bytes: int, prefix: str = "bud:rc:") -> None:
        import redis.asyncio as redis

        self.ttl_s = ttl_s
        self.max_bytes = max_bytes
        self._redis = redis.from_url(url)
        self._prefix = prefix
        self._books = [
            f"{prefix}@lru",
            f"{prefix}@expiry",
            f"{prefix}@sizes",
            f"{prefix}@total",
            f"{prefix}@tick",
        ]
        self._put = self._redis.register_script(_PUT)
        self._get = self._redis.register_script(_GET)

    async def get(self, key: str) -> bytes | None:
        full = self._prefix + key
        value = await self._get(keys=[full, self._books[0], self._books[4]])
        return bytes(value) if value is not None else None

    async def put(self, key: str, value: bytes) -> None:
        full = self._prefix + key
        cost = len(full) + len(value) + ENTRY_OVERHEAD
        if cost > self.max_bytes:
            return
        ttl_ms = max(1, int(self.ttl_s * 1000))
        await self._put(
            keys=[full, *self._books],
            args=[value, ttl_ms, int(time.time() * 1000), self.max_bytes, cost],
        )

    async def total_bytes(self) -> int:
        """What the entries held now cost (tests, metrics)."""
        return int(await self._redis.get(self._books[3]) or 0)

    async def close(self) -> None:
        """Closes the connection pool."""
        await self._redis.aclose()
