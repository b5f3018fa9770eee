"""The usage spool: a gateway's undelivered usage records on disk, so that a restart — a SIGTERM,
or a SIGKILL in the middle of a batch — loses none.

Each running gateway owns one append-only file, ``<dir>/usage-<random>.spool`` (the directory is
``<data_dir>/usage-spool`` by default: mode 0700, files 0600), held with an exclusive `flock`
while it runs. A record is appended when it is recorded (one write(2): in the page cache, it
survives the process being killed), and the file is fsynced before a batch is sent (it survives
the machine too). Once the app has answered for everything pending, the file is truncated; with a
backlog it is rewritten with just the pending records when it has grown past a bound.

At start a gateway adopts every spool file no live gateway holds — its own from before a restart,
or a dead neighbour's sharing the directory: it copies their records into its own file, deletes
them and delivers the records. A record sent twice (a crash between the app's answer and the
truncation) is stored once: the app dedups on the record's key, made by the gateway.

Frame: 4-byte big-endian length, 4-byte CRC-32 of the payload, payload (a serialized
`UsageRecord`). A torn last frame (killed mid-write), a corrupt one or zeros end the reading.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import struct
import uuid
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from google.protobuf.message import Message

from bud.app.v1 import usage_pb2

log = logging.getLogger(__name__)

_HEADER = struct.Struct(">II")
_SUFFIX = ".spool"
_TMP_SUFFIX = ".spool-tmp"


def frame(record: Message) -> bytes:
    """One record as stored in a spool file."""
    payload = record.SerializeToString()
    return _HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def read_frames(
    data: bytes, message_type: type[Message] = usage_pb2.UsageRecord
) -> Iterator[tuple[Any, bytes]]:
    """The records (`message_type`) of a spool file's content, each with its frame; stops at a
    torn or corrupt frame (what a crash in the middle of a write leaves)."""
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, crc = _HEADER.unpack_from(data, offset)
        end = offset + _HEADER.size + length
        payload = data[offset + _HEADER.size : end]
        # Every record has a key, so an empty payload is not one: zeros a crash left behind.
        if length == 0 or end > len(data) or zlib.crc32(payload) != crc:
            return
        record = message_type()
        try:
            record.ParseFromString(payload)
        except Exception:  # noqa: BLE001  (a CRC collision on garbage: stop as for a torn frame)
            return
        yield record, data[offset:end]
        offset = end


def _lock(fd: int) -> bool:
    """Takes the exclusive lock of `fd` without waiting; False when another process holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class UsageSpool:
    """This gateway's spool file in `directory`: `open` it (getting back what earlier gateways
    left), `append` each record, `sync` before sending, `reset` once the app has answered.
    `message_type`: what a record is (usage records; the stored-responses spool keeps
    `bud.app.v1.StoredResponse`s in a directory of its own)."""

    def __init__(self, directory: Path, message_type: type[Message] = usage_pb2.UsageRecord) -> None:
        self.directory = Path(directory)
        self.message_type = message_type
        self.path = self.directory / f"usage-{uuid.uuid4().hex}{_SUFFIX}"
        self._fd = -1
        self._size = 0
        self._failing = False

    @property
    def size(self) -> int:
        """Bytes in this gateway's file."""
        return self._size

    def open(self) -> list[Any]:
        """Creates and locks this gateway's file, then adopts the files no live gateway holds;
        returns their records (already in this gateway's file), oldest first."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._fd = self._create_locked(self.path)
        adopted: list[Any] = []
        for path in sorted(self.directory.iterdir()):
            if path == self.path or not path.name.endswith((_SUFFIX, _TMP_SUFFIX)):
                continue
            adopted += self._adopt(path)
        if adopted:
            os.fsync(self._fd)
            log.info("usage spool: %d undelivered records recovered", len(adopted))
        return adopted

    def _create_locked(self, path: Path) -> int:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)  # a new name: nobody else can hold it
        return fd

    def _adopt(self, path: Path) -> list[Any]:
        """The records of another gateway's file, when no live gateway holds it: copied into this
        gateway's file (fsynced by `open`) before the file is deleted, so a crash in between
        leaves them twice (stored once), never nowhere."""
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return []  # another gateway adopted it meanwhile
        try:
            # Held (a live gateway), or replaced/deleted since we opened it (adopted by another).
            if not _lock(fd) or not path.exists() or os.stat(path).st_ino != os.fstat(fd).st_ino:
                return []
            if path.name.endswith(_TMP_SUFFIX):
                path.unlink()  # a compaction that never finished: its source still holds everything
                return []
            with os.fdopen(os.dup(fd), "rb") as f:
                data = f.read()
            records = list(read_frames(data, self.message_type))
            if records:
                chunk = b"".join(raw for _, raw in records)
                os.write(self._fd, chunk)
                self._size += len(chunk)
                os.fsync(self._fd)
            path.unlink()
            return [record for record, _ in records]
        finally:
            os.close(fd)

    def append(self, record: Message) -> None:
        """Adds one record to the file (never raises: a full or failing disk is logged, and the
        record is still delivered from memory)."""
        data = frame(record)
        try:
            written = os.write(self._fd, data)
            if written != len(data):
                raise OSError(f"short write ({written} of {len(data)} bytes)")
        except OSError as err:
            # Cut a partial frame off, or every later record would be unreadable after it.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._size)
            if not self._failing:
                log.error(
                    "usage spool: cannot write %s (%s); records are kept in memory only", self.path, err
                )
            self._failing = True
            return
        self._size += len(data)
        self._failing = False

    def sync(self) -> None:
        """Makes what was appended durable (blocking: run it in a thread)."""
        with contextlib.suppress(OSError):
            os.fsync(self._fd)

    def reset(self, pending: Iterable[Message] = ()) -> None:
        """Leaves just `pending` in the file: everything else was answered by the app. Empty:
        truncated in place; otherwise rewritten beside it (locked before it replaces the file, so
        no other gateway adopts it) and renamed over it."""
        data = b"".join(frame(record) for record in pending)
        try:
            if not data:
                os.ftruncate(self._fd, 0)
                self._size = 0
                return
            tmp = self.path.with_suffix(_TMP_SUFFIX)
            fd = self._create_locked(tmp)
            try:
                os.write(fd, data)
                os.fsync(fd)
                os.replace(tmp, self.path)
            except OSError:
                os.close(fd)
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise
            os.close(self._fd)
            self._fd, self._size = fd, len(data)
            _fsync_dir(self.directory)
        except OSError as err:
            log.error("usage spool: cannot compact %s (%s)", self.path, err)

    def close(self) -> None:
        """Releases the file: deleted when empty, else left for the next gateway to adopt."""
        if self._fd < 0:
            return
        if self._size == 0:
            with contextlib.suppress(OSError):
                self.path.unlink()
        os.close(self._fd)
        self._fd = -1
