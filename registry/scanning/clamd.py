"""A clamd client for the scanner: INSTREAM streamed in chunks over asyncio streams (never the
whole file in memory, never blocking the event loop), and `pyclamd` for PING, VERSION and
`SCAN <path>` (blocking, so run in a worker thread).

pyclamd's own `scan_stream` takes the whole file as one bytes object, which is why INSTREAM is
spoken here directly: ``zINSTREAM\\0``, then chunks each prefixed by their length as a 4-byte
big-endian integer, then a zero length; clamd answers ``stream: OK``, ``stream: <signature>
FOUND`` or ``<reason> ERROR`` (``INSTREAM size limit exceeded. ERROR`` past its StreamMaxLength).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from dataclasses import dataclass

import pyclamd

from registry.scanning.settings import ScanSettings

# clamd's answer when a signature's name says it stopped at a limit, not that it found malware
# (with `AlertExceedsMax yes`): the file was not fully scanned.
LIMITS_EXCEEDED_PREFIX = "Heuristics.Limits.Exceeded"


class ClamdError(Exception):
    """clamd could not be reached, or answered with an error: the scan is ERROR, never CLEAN."""


@dataclass(frozen=True)
class ClamdResult:
    """clamd's verdict on one stream or file: the signature found, or None when clean."""

    signature: str | None


def _parse(answer: str, *, what: str) -> ClamdResult:
    # "stream: OK" / "stream: Eicar-Signature FOUND" / "... ERROR" (also "/path: ..." for SCAN).
    answer = answer.strip().rstrip("\0").strip()
    if answer.endswith(" ERROR") or answer == "ERROR":
        raise ClamdError(f"clamd refused {what}: {answer}")
    _, _, verdict = answer.rpartition(": ")
    if verdict == "OK":
        return ClamdResult(None)
    if verdict.endswith(" FOUND"):
        return ClamdResult(verdict[: -len(" FOUND")])
    raise ClamdError(f"clamd answered {what} with {answer!r}")


class ClamdClient:
    """Talks to one clamd (TCP or unix socket) as `settings` says."""

    def __init__(self, settings: ScanSettings) -> None:
        self._settings = settings

    def _pyclamd(self) -> pyclamd.ClamdNetworkSocket | pyclamd.ClamdUnixSocket:
        s = self._settings
        if s.clamav_socket:
            return pyclamd.ClamdUnixSocket(filename=s.clamav_socket, timeout=s.clamav_timeout_s)
        return pyclamd.ClamdNetworkSocket(host=s.clamav_host, port=s.clamav_port, timeout=s.clamav_timeout_s)

    async def version(self) -> str:
        """PING then VERSION (engine and signature-database versions); ClamdError when clamd
        is unreachable or does not answer PONG."""

        def ask() -> str:
            client = self._pyclamd()
            client.ping()
            return str(client.version())

        try:
            return await asyncio.wait_for(asyncio.to_thread(ask), self._settings.clamav_connect_timeout_s * 2)
        except (OSError, pyclamd.ConnectionError, TimeoutError) as err:
            raise ClamdError(
                f"clamd at {self._settings.clamd_address} is unreachable: {err or type(err).__name__}"
            ) from err

    async def scan_path(self, path: str) -> ClamdResult:
        """`SCAN <path>`: clamd reads the file itself (it must see the same filesystem)."""
        if "\n" in path or "\0" in path:
            raise ClamdError(f"cannot ask clamd to scan a path with a newline or NUL: {path!r}")
        try:
            found = await asyncio.to_thread(self._pyclamd().scan_file, path)
        except (OSError, pyclamd.ConnectionError) as err:
            raise ClamdError(
                f"clamd at {self._settings.clamd_address} failed scanning {path}: {err}"
            ) from err
        if not found:
            return ClamdResult(None)
        status, reason = next(iter(found.values()))
        if status == "ERROR":
            raise ClamdError(f"clamd could not scan {path}: {reason}")
        return ClamdResult(reason)

    async def open_stream(self) -> InStream:
        """A new INSTREAM session (one connection)."""
        s = self._settings
        try:
            if s.clamav_socket:
                opening = asyncio.open_unix_connection(s.clamav_socket)
            else:
                opening = asyncio.open_connection(s.clamav_host, s.clamav_port)
            reader, writer = await asyncio.wait_for(opening, s.clamav_connect_timeout_s)
        except (OSError, TimeoutError) as err:
            raise ClamdError(
                f"clamd at {s.clamd_address} is unreachable: {err or type(err).__name__}"
            ) from err
        stream = InStream(reader, writer, s.clamav_timeout_s)
        await stream.start()
        return stream


class InStream:
    """One INSTREAM session: `send` chunks, then `finish` for clamd's verdict.

    clamd answers as soon as it refuses a stream (past its StreamMaxLength) and hangs up; the
    answer is read by a task that waits for it from the start, so it is not lost when the hang-up
    makes the next write fail."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout_s: float) -> None:
        self._reader, self._writer, self._timeout = reader, writer, timeout_s
        self._answer: asyncio.Future[bytes] | None = None
        self.sent = 0

    async def start(self) -> None:
        self._answer = asyncio.ensure_future(self._reader.readuntil(b"\0"))
        self._writer.write(b"zINSTREAM\0")
        await self._drain()

    async def send(self, chunk: bytes) -> None:
        """Sends one chunk (clamd reads it as it arrives: only the socket buffers hold it)."""
        if not chunk:
            return
        if self._answer is not None and self._answer.done():
            # clamd answered before the end of the stream: a refusal.
            raise ClamdError(f"clamd refused the stream: {await self._reason()}")
        self._writer.write(struct.pack(">I", len(chunk)))
        self._writer.write(chunk)
        self.sent += len(chunk)
        await self._drain()

    async def finish(self) -> ClamdResult:
        """Ends the stream (a zero length) and returns clamd's verdict."""
        assert self._answer is not None
        try:
            self._writer.write(struct.pack(">I", 0))
            await self._drain()
            try:
                answer = await asyncio.wait_for(asyncio.shield(self._answer), self._timeout)
            except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as err:
                raise ClamdError(f"clamd gave no verdict: {err or type(err).__name__}") from err
        finally:
            await self.close()
        return _parse(answer.decode(errors="replace"), what="the stream")

    async def close(self) -> None:
        """Closes the connection (idempotent)."""
        if self._answer is not None and not self._answer.done():
            self._answer.cancel()
        self._writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(self._writer.wait_closed(), 1.0)

    async def _drain(self) -> None:
        try:
            await asyncio.wait_for(self._writer.drain(), self._timeout)
        except (OSError, TimeoutError) as err:
            # clamd hung up: its answer, when there is one, is the real reason.
            reason = await self._reason()
            await self.close()
            raise ClamdError(f"clamd refused the stream: {reason or err or type(err).__name__}") from err

    async def _reason(self) -> str:
        if self._answer is None:
            return ""
        with contextlib.suppress(
            OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError
        ):
            answer = await asyncio.wait_for(asyncio.shield(self._answer), 1.0)
            return answer.decode(errors="replace").rstrip("\0").strip()
        return ""
