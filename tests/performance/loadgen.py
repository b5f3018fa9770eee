"""An open-loop (constant arrival rate) HTTP/1.1 load generator on one asyncio loop (uvloop).

Why not wrk/ab/hey: they are closed-loop (a slow server slows the senders and hides its own
latency); wrk2 and vegeta are not packaged where this project can install from. This tool keeps
the property that matters:

- Request i is *scheduled* at `start + i / rate`, whatever happened before it. A Linux timerfd
  (ns resolution) wakes the loop at those instants; uvloop/asyncio timers are ms-granular, which
  would add up to 1 ms of the tool's own lateness to every sample.
- Latency is measured from the scheduled instant to the last byte of the response, so a server
  (or a tool) that stalls shows up as latency instead of as fewer requests: no coordinated
  omission. The tool's own lateness (scheduled instant → the sender handling it, before any wait
  for a free connection) is reported separately (`send_lags`), so you can see when the tool or the
  whole machine, not the target, was stalled.
- One pool of persistent keep-alive connections, pre-opened; a request takes an idle one, opens
  another up to `max_connections` (256: enough for 1000 rps at 250 ms; a cap keeps a stalled
  server from also paying for a connection storm), else waits (FIFO) — the wait counts as latency.
- A request not answered `timeout` seconds after its scheduled instant is an error (its
  connection is closed); so is a connection reset or any non-2xx status.

Responses are parsed with httptools (the parser uvicorn uses), chunked or content-length.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

import httptools

# ---- timerfd via ctypes (os.timerfd_* arrives only in Python 3.13) ------------------------------
_CLOCK_MONOTONIC = 1
_TFD_NONBLOCK = 0o4000
_TFD_CLOEXEC = 0o2000000
_TFD_TIMER_ABSTIME = 1


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.timerfd_create  # noqa: B018 (presence check)
        return libc
    except (OSError, AttributeError):
        return None


def _ts(seconds: float) -> _Timespec:
    ns = int(round(seconds * 1e9))
    return _Timespec(ns // 1_000_000_000, ns % 1_000_000_000)


class PeriodicTimer:
    """A CLOCK_MONOTONIC timerfd firing every `interval` from absolute `start` (time.monotonic
    clock). `fd` becomes readable on expiry; `expirations()` says how many happened since."""

    def __init__(self, start: float, interval: float) -> None:
        libc = _libc()
        if libc is None:
            raise OSError("timerfd unavailable")
        fd = libc.timerfd_create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create failed")
        spec = _Itimerspec(_ts(interval), _ts(start))
        if libc.timerfd_settime(fd, _TFD_TIMER_ABSTIME, ctypes.byref(spec), None) != 0:
            os.close(fd)
            raise OSError(ctypes.get_errno(), "timerfd_settime failed")
        self.fd = fd

    def expirations(self) -> int:
        try:
            return int.from_bytes(os.read(self.fd, 8), "little")
        except BlockingIOError:
            return 0

    def close(self) -> None:
        os.close(self.fd)


# ---- results --------------------------------------------------------------------------------------
@dataclass
class Result:
    """What one open-loop run saw. Latencies are seconds, from the scheduled instant."""

    rate: float
    duration: float
    scheduled: int = 0
    ok_latencies: list[float] = field(default_factory=list)
    send_lags: list[float] = field(default_factory=list)  # seconds late the sender took each request up
    errors: Counter[str] = field(default_factory=Counter)
    max_connections_used: int = 0
    wall: float = 0.0

    @property
    def completed(self) -> int:
        return len(self.ok_latencies)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def error_rate(self) -> float:
        return self.error_count / self.scheduled if self.scheduled else 0.0

    def percentile_with_errors(self, q: float, timeout: float) -> float:
        """Nearest-rank percentile over every scheduled request, an error counting as `timeout`
        (so a lower bound once errors pass 100 - q percent)."""
        data = self.ok_latencies + [timeout] * (self.scheduled - len(self.ok_latencies))
        return self.percentile(q, data)

    def percentile(self, q: float, values: list[float] | None = None) -> float:
        """Nearest-rank percentile (q in 0..100) of the successful latencies, in seconds; errors
        are not latencies (they are reported as the error rate)."""
        data = sorted(self.ok_latencies if values is None else values)
        if not data:
            return float("nan")
        rank = max(1, min(len(data), int(-(-q * len(data) // 100))))  # ceil(q/100 * n)
        return data[rank - 1]


async def dispatch_on_schedule(
    start: float, interval: float, total: int, dispatch: Callable[[float], None]
) -> None:
    """Calls `dispatch(scheduled_instant)` for `total` instants `interval` apart from `start`
    (time.monotonic clock), on a timerfd when there is one; returns once all are dispatched."""
    loop = asyncio.get_running_loop()
    sent = 0
    try:
        timer = PeriodicTimer(start, interval)
    except OSError:
        timer = None
    if timer is not None:
        done = loop.create_future()

        def on_tick() -> None:
            nonlocal sent
            due = timer.expirations()
            for _ in range(due):
                if sent >= total:
                    break
                dispatch(start + sent * interval)
                sent += 1
            if sent >= total and not done.done():
                done.set_result(None)

        loop.add_reader(timer.fd, on_tick)
        try:
            await done
        finally:
            loop.remove_reader(timer.fd)
            timer.close()
        return
    while sent < total:  # portable fallback: ms-granular sleeps (adds the tool's lateness to latency)
        now = time.monotonic()
        while sent < total and start + sent * interval <= now:
            dispatch(start + sent * interval)
            sent += 1
        if sent < total:
            await asyncio.sleep(max(0.0, start + sent * interval - time.monotonic()))


# ---- the connection -------------------------------------------------------------------------------
class _Conn(asyncio.Protocol):
    __slots__ = ("gen", "transport", "parser", "status", "scheduled", "deadline", "alive", "connected")

    def __init__(self, gen: OpenLoop) -> None:
        self.gen = gen
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.scheduled = 0.0  # of the request in flight; 0 when idle
        self.deadline = 0.0
        self.alive = True
        self.connected: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if not self.connected.done():
            self.connected.set_result(None)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._fail("bad-response")

    def connection_lost(self, exc: Exception | None) -> None:
        was_alive, self.alive = self.alive, False
        if not self.connected.done():
            self.connected.set_exception(exc or ConnectionError("closed"))
        if was_alive:
            self.gen._lost(self, "connection-closed")

    # parser callbacks
    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_message_complete(self) -> None:
        self.gen._done(self, self.status)

    # helpers
    def send(self, payload: bytes, scheduled: float) -> None:
        self.scheduled = scheduled
        self.deadline = scheduled + self.gen.timeout
        self.transport.write(payload)  # type: ignore[union-attr]

    def _fail(self, reason: str) -> None:
        if self.alive:
            self.alive = False
            self.gen._lost(self, reason)
            if self.transport is not None:
                self.transport.abort()


class OpenLoop:
    """One open-loop run: `rate` requests/s of `payload` (raw HTTP/1.1 bytes) for `duration` s."""

    def __init__(
        self,
        host: str,
        port: int,
        payload: bytes,
        rate: float,
        duration: float,
        timeout: float = 5.0,
        max_connections: int = 256,
        warm_connections: int = 8,
    ) -> None:
        self.host, self.port, self.payload = host, port, payload
        self.rate, self.duration, self.timeout = rate, duration, timeout
        self.max_connections = max_connections
        self.warm_connections = warm_connections
        self.result = Result(rate, duration)
        self._idle: deque[_Conn] = deque()
        self._busy: set[_Conn] = set()
        self._opening = 0
        self._waiting: deque[float] = deque()  # scheduled instants of requests with no connection yet
        self._outstanding = 0
        self._finished: asyncio.Future[None] | None = None
        self._all_scheduled = False

    # ---- bookkeeping called by connections ----
    def _done(self, conn: _Conn, status: int) -> None:
        now = time.monotonic()
        if conn.scheduled == 0.0:
            return  # a stray response (never expected)
        if 200 <= status < 300:
            self.result.ok_latencies.append(now - conn.scheduled)
        else:
            self.result.errors[f"http-{status}"] += 1
        conn.scheduled = 0.0
        self._busy.discard(conn)
        self._outstanding -= 1
        self._release(conn)

    def _lost(self, conn: _Conn, reason: str) -> None:
        self._idle_remove(conn)
        if conn.scheduled:
            self.result.errors[reason] += 1
            conn.scheduled = 0.0
            self._outstanding -= 1
        self._busy.discard(conn)
        self._check_finished()
        self._pump()

    def _idle_remove(self, conn: _Conn) -> None:
        with contextlib.suppress(ValueError):
            self._idle.remove(conn)

    def _release(self, conn: _Conn) -> None:
        if conn.alive:
            self._idle.append(conn)
        self._pump()
        self._check_finished()

    def _check_finished(self) -> None:
        if self._all_scheduled and self._outstanding == 0 and self._finished and not self._finished.done():
            self._finished.set_result(None)

    # ---- sending ----
    def _pump(self) -> None:
        """Gives idle connections to waiting requests (oldest first), dropping expired ones."""
        now = time.monotonic()
        while self._waiting:
            scheduled = self._waiting[0]
            if now - scheduled >= self.timeout:
                self._waiting.popleft()
                self.result.errors["timeout"] += 1
                self._outstanding -= 1
                continue
            conn = self._take()
            if conn is None:
                return
            self._waiting.popleft()
            self._send(conn, scheduled, now)
        self._check_finished()

    def _take(self) -> _Conn | None:
        while self._idle:
            conn = self._idle.popleft()
            if conn.alive:
                return conn
        if len(self._busy) + self._opening < self.max_connections:
            self._opening += 1
            asyncio.get_running_loop().create_task(self._open())
        return None

    async def _open(self) -> None:
        try:
            await self._connect()
        except OSError:
            self.result.errors["connect-failed"] += 1
        finally:
            self._opening -= 1
        self._pump()

    async def _connect(self) -> _Conn:
        loop = asyncio.get_running_loop()
        conn = _Conn(self)
        await loop.create_connection(lambda: conn, self.host, self.port)
        await conn.connected
        self._idle.append(conn)
        used = len(self._idle) + len(self._busy)
        self.result.max_connections_used = max(self.result.max_connections_used, used)
        return conn

    def _send(self, conn: _Conn, scheduled: float, now: float) -> None:
        self._busy.add(conn)
        conn.send(self.payload, scheduled)

    def _dispatch(self, scheduled: float) -> None:
        self.result.send_lags.append(time.monotonic() - scheduled)  # the tool's own lateness
        self.result.scheduled += 1
        self._outstanding += 1
        self._waiting.append(scheduled)
        self._pump()

    def _sweep(self) -> None:
        """Closes connections whose request is past its deadline (a timeout error each)."""
        now = time.monotonic()
        for conn in [c for c in self._busy if c.scheduled and now >= c.deadline]:
            conn._fail("timeout")
        self._pump()

    async def run(self) -> Result:
        loop = asyncio.get_running_loop()
        self._finished = loop.create_future()
        for _ in range(self.warm_connections):
            await self._connect()
        total = max(1, int(round(self.rate * self.duration)))
        interval = 1.0 / self.rate
        start = time.monotonic() + 0.05
        sweeper_stop = asyncio.Event()

        async def sweeper() -> None:
            while not sweeper_stop.is_set():
                await asyncio.sleep(0.05)
                self._sweep()

        sweep_task = loop.create_task(sweeper())
        began = time.monotonic()
        try:
            await dispatch_on_schedule(start, interval, total, self._dispatch)
            self._all_scheduled = True
            self._check_finished()
            # every request either completes or hits its timeout: wait a little past that
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._finished), self.timeout + 1.0)
            if self._waiting:  # what still waits never got a connection
                self.result.errors["timeout"] += len(self._waiting)
            self._waiting.clear()
            for conn in list(self._busy):
                if conn.scheduled:
                    conn._fail("timeout")
        finally:
            sweeper_stop.set()
            await sweep_task
            for conn in [*self._idle, *self._busy]:
                conn.alive = False
                if conn.transport is not None:
                    conn.transport.close()
            self.result.wall = time.monotonic() - began
        return self.result


def http_request(
    host: str, port: int, path: str, body: bytes, headers: dict[str, str] | None = None
) -> bytes:
    """Raw HTTP/1.1 POST bytes (keep-alive) for `OpenLoop`."""
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: keep-alive",
    ]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def open_loop(
    host: str,
    port: int,
    payload: bytes,
    rate: float,
    duration: float,
    timeout: float = 5.0,
    max_connections: int = 256,
    warm_connections: int = 8,
) -> Result:
    """Runs one open-loop load (see module doc) and returns what it saw."""
    return await OpenLoop(
        host, port, payload, rate, duration, timeout, max_connections, warm_connections
    ).run()


async def grpc_open_loop(
    address: str,
    method: str,
    request: bytes,
    rate: float,
    duration: float,
    timeout: float = 5.0,
    metadata: tuple[tuple[str, str], ...] = (),
) -> Result:
    """The same open-loop load as `open_loop`, as unary gRPC calls (`request`: serialized bytes)
    over one `grpc.aio` channel: what a bare Python gRPC hop costs at that rate, no HTTP, no
    gateway. Latency is from the scheduled instant to the reply; any non-OK status is an error."""
    import grpc

    from budrt.grpc_server import service_channel

    result = Result(rate, duration)
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task[None]] = set()
    async with service_channel(address) as channel:
        call = channel.unary_unary(method)  # bytes in, bytes out
        for _ in range(8):
            await call(request, metadata=metadata, timeout=30, wait_for_ready=True)

        async def one(scheduled: float) -> None:
            try:
                await call(
                    request, metadata=metadata, timeout=max(0.001, scheduled + timeout - time.monotonic())
                )
            except grpc.aio.AioRpcError as err:
                code = err.code()
                result.errors[
                    "timeout" if code == grpc.StatusCode.DEADLINE_EXCEEDED else f"grpc-{code.name.lower()}"
                ] += 1
                return
            result.ok_latencies.append(time.monotonic() - scheduled)

        def dispatch(scheduled: float) -> None:
            result.send_lags.append(time.monotonic() - scheduled)
            result.scheduled += 1
            task = loop.create_task(one(scheduled))
            pending.add(task)
            task.add_done_callback(pending.discard)

        began = time.monotonic()
        await dispatch_on_schedule(
            time.monotonic() + 0.05, 1.0 / rate, max(1, int(round(rate * duration))), dispatch
        )
        await asyncio.gather(*list(pending))
        result.wall = time.monotonic() - began
    return result
