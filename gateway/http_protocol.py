"""uvicorn's httptools protocol with a header-read timeout.

uvicorn bounds the idle time between requests (`timeout_keep_alive`) but not the time a client
takes to send a request's headers: a client that connects and sends nothing, or half a request
line, holds its connection (and a slot of `limit_concurrency`) forever. This protocol arms a
timer when a connection opens and when a later request begins, disarms it when the headers are
complete, and closes the connection (answering 408 when nothing else is being answered on it)
if it fires. Body reads are bounded by the transcoder (`gateway/transcoder.py`)."""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"content-length: 15\r\n"
    b"connection: close\r\n"
    b"\r\n"
    b"Request Timeout"
)


class _HeaderTimeoutProtocol(HttpToolsProtocol):
    """HttpToolsProtocol closing connections whose headers take longer than `header_timeout`."""

    header_timeout: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._header_timed_out)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        # A response still being sent on this connection (a pipelined request's headers are
        # late) must not be interleaved with ours: then the connection is only closed.
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(_TIMEOUT_RESPONSE)
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()  # a client that connects and sends nothing is timed too

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._disarm_header_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)


def header_timeout_protocol(header_timeout: float) -> type[HttpToolsProtocol]:
    """The protocol class to give `uvicorn.Config(http=...)`: httptools with the timeout."""
    return type("HeaderTimeoutProtocol", (_HeaderTimeoutProtocol,), {"header_timeout": header_timeout})
