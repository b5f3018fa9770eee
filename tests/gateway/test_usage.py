"""The gateway's usage recorder against the app's real UsageService (SQLite): one record per
request under the gateway's own key, refused records quarantined (logged, counted, never resent)
while the rest of the batch is stored, no double count when a batch is resent, and the spool
handing undelivered records to the next process — after a SIGTERM or a SIGKILL in the middle of a
batch (a subprocess), and after a simulated crash in process."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import select

from app.db import models
from app.db.migrate import upgrade_database
from app.db.session import Database
from app.services.usage import UsageServicer
from auth.tokens import Authenticator
from bud.app.v1 import usage_pb2, usage_pb2_grpc
from budrt.errors import unavailable
from budrt.grpc_server import GrpcServer, ServiceBinding
from budrt.tls import LocalCa
from gateway.usage import UsageRecorder
from gateway.usage_spool import UsageSpool, frame, read_frames
from tests.support.tls import tls_file_env

REPO = Path(__file__).resolve().parents[2]


class GatedUsage(UsageServicer):
    """The app's UsageService, watched: every call's keys in `calls`, `received` set on each call;
    a call stores its records and then waits for `gate` (so the answer can be lost), and
    `fail_after_store` calls answer UNAVAILABLE after storing (a lost answer)."""

    def __init__(self, db: Database) -> None:
        super().__init__(db, Authenticator("unused-jwt-secret-of-at-least-32-bytes"))
        self.calls: list[list[str]] = []
        self.received = asyncio.Event()
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail_after_store = 0

    async def RecordUsage(
        self, request: usage_pb2.RecordUsageRequest, context: grpc.aio.ServicerContext
    ) -> usage_pb2.RecordUsageResponse:
        self.calls.append([r.request_id for r in request.records])
        reply = await super().RecordUsage(request, context)
        self.received.set()
        await self.gate.wait()
        if self.fail_after_store:
            self.fail_after_store -= 1
            raise unavailable("the answer is lost")
        return reply


@dataclass
class UsageApp:
    address: str
    servicer: GatedUsage
    db: Database

    async def rows(self) -> list[tuple[str, str, int]]:
        """(key, client request id, prompt tokens) of every stored record."""
        record = models.UsageRecord
        async with self.db.snapshot() as session:
            result = await session.execute(
                select(record.request_id, record.client_request_id, record.prompt_tokens)
            )
            return sorted(tuple(r) for r in result.all())  # type: ignore[misc]


@pytest.fixture
async def usage_app(tmp_path: Path) -> AsyncIterator[UsageApp]:
    """The app's UsageService on a fresh SQLite database, on a loopback port."""
    db = Database(f"sqlite:///{tmp_path / 'bud.db'}")
    await upgrade_database(db)
    servicer = GatedUsage(db)
    server = GrpcServer(
        "127.0.0.1:0",
        [
            ServiceBinding(
                servicer,
                usage_pb2_grpc.add_UsageServiceServicer_to_server,
                usage_pb2.DESCRIPTOR.services_by_name["UsageService"],
            )
        ],
    )
    await server.start()
    try:
        yield UsageApp(f"127.0.0.1:{server.port}", servicer, db)
    finally:
        servicer.gate.set()
        await server.stop(0)
        await db.dispose()


def _record(recorder: UsageRecorder, client_id: str = "client-id", prompt_tokens: int = 10) -> None:
    recorder.record(
        client_id,
        "prj_a",
        "key_a",
        "dep_a",
        "CreateChatCompletion",
        prompt_tokens,
        5,
        time.perf_counter(),
        200,
    )


async def _until(condition: Callable[[], Any], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def _deliver(recorder: UsageRecorder, app: UsageApp, expected: int) -> None:
    """Runs the recorder until the app holds `expected` records, then stops it."""
    task = asyncio.create_task(recorder.run())

    async def stored() -> bool:
        return len(await app.rows()) >= expected and recorder.pending == 0

    try:
        await _until(stored)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_one_record_per_request_under_the_gateways_key(usage_app: UsageApp, tmp_path: Path) -> None:
    """Five requests sent with one X-Request-Id are five records (they were stored as one); a
    client id of any length is kept, cut to 128 characters, and never refuses the record."""
    recorder = UsageRecorder(usage_app.address, flush_interval=0.05, spool=UsageSpool(tmp_path / "spool"))
    for _ in range(5):
        _record(recorder, "same-id")
    _record(recorder, "x" * 129)
    await _deliver(recorder, usage_app, 6)
    rows = await usage_app.rows()
    assert sorted(client for _, client, _ in rows) == ["same-id"] * 5 + ["x" * 128]
    keys = [key for key, _, _ in rows]
    assert len(set(keys)) == 6 and all(len(k) == 32 and k != "same-id" for k in keys)
    assert recorder.quarantined == 0
    assert list((tmp_path / "spool").iterdir()) == []  # delivered: the spool is gone


async def test_a_stopping_recorder_waits_for_the_charges_under_way(
    usage_app: UsageApp, tmp_path: Path
) -> None:
    """A cancelled call's record is made once the engine has said what it processed: a gateway
    stopping meanwhile still delivers it (the last flush waits for the charge); a charge that
    outlives the wait is cancelled, and records what it knows (its `finally`)."""
    recorder = UsageRecorder(usage_app.address, flush_interval=60, spool=UsageSpool(tmp_path / "spool"))
    task = asyncio.create_task(recorder.run())
    await asyncio.sleep(0.05)

    async def charge(delay: float, client_id: str) -> None:
        try:
            await asyncio.sleep(delay)  # asking the engine
        finally:
            _record(recorder, client_id)

    recorder.track(asyncio.create_task(charge(0.3, "answered")))
    recorder.track(asyncio.create_task(charge(60, "never-answered")))
    task.cancel()  # the gateway stops
    await asyncio.gather(task, return_exceptions=True)
    assert sorted(client for _, client, _ in await usage_app.rows()) == ["answered", "never-answered"]


async def test_refused_record_is_quarantined_and_the_batch_stored(
    usage_app: UsageApp, caplog: pytest.LogCaptureFixture
) -> None:
    """A record the app refuses (a 129-character key, as the attack's id was; negative tokens)
    is logged with the reason, counted and never sent again; the rest of its batch is stored once.
    (The whole batch used to be refused and resent forever, freezing every project's usage.)"""
    recorder = UsageRecorder(usage_app.address, flush_interval=0.05)
    bad_key = usage_pb2.UsageRecord(request_id="k" * 129, project_id="prj_a")
    bad_tokens = usage_pb2.UsageRecord(request_id="neg", project_id="prj_a", prompt_tokens=-1)
    _record(recorder)
    recorder.add(bad_key)
    recorder.add(bad_tokens)
    _record(recorder)
    with caplog.at_level(logging.ERROR, logger="gateway.usage"):
        await _deliver(recorder, usage_app, 2)
        await asyncio.sleep(0.2)  # several flush intervals: nothing is resent
    assert len(await usage_app.rows()) == 2
    assert recorder.quarantined == 2
    assert len(usage_app.servicer.calls) == 1  # sent once, never retried
    quarantined = [r for r in caplog.records if "quarantined" in r.getMessage()]
    assert [(r.field, r.reason) for r in quarantined] == [  # type: ignore[attr-defined]
        ("records[1].request_id", "INVALID_ARGUMENT"),
        ("records[2].prompt_tokens", "INVALID_ARGUMENT"),
    ]
    assert quarantined[1].usage_record["requestId"] == "neg"  # type: ignore[attr-defined]

    # A later batch goes through as usual.
    _record(recorder)
    await _deliver(recorder, usage_app, 3)
    assert len(await usage_app.rows()) == 3


async def test_a_batch_whose_answer_was_lost_is_stored_once(usage_app: UsageApp) -> None:
    """The app stored the batch but the gateway saw UNAVAILABLE: the batch is resent and the app
    dedups on the gateway's keys."""
    usage_app.servicer.fail_after_store = 2
    recorder = UsageRecorder(usage_app.address, flush_interval=0.05)
    for _ in range(4):
        _record(recorder, "same-id")
    task = asyncio.create_task(recorder.run())

    async def answered() -> bool:
        # Not "the rows are stored": they are after the first call, whose answer is lost; a stop
        # then could cancel the second send before it leaves.
        return len(usage_app.servicer.calls) >= 3 and recorder.pending == 0

    try:
        await _until(answered)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    # Two lost answers, so at least three sends of the same batch (a fourth when the stop caught
    # the third in flight and the last flush sent it again).
    assert len(usage_app.servicer.calls) >= 3 and len(set(map(tuple, usage_app.servicer.calls))) == 1
    assert len(await usage_app.rows()) == 4


@pytest.mark.integration
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
async def test_spool_survives_the_gateway_process_dying_mid_batch(
    usage_app: UsageApp, tmp_path: Path, sig: signal.Signals, process_tls: LocalCa
) -> None:
    """A gateway process (tests/gateway/usage_child.py) sends a batch; the app stores it but its
    answer is held; two more requests are recorded; the process gets `sig`. The next recorder on
    the same spool delivers all five, each stored exactly once."""
    spool_dir = tmp_path / "spool"
    usage_app.servicer.gate.clear()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
        **tls_file_env(process_tls, "gateway"),  # the app trusts the test's CA
    }
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.gateway.usage_child",
        usage_app.address,
        str(spool_dir),
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        assert (await asyncio.wait_for(child.stdout.readline(), 30)).strip() == b"recorded"
        await asyncio.wait_for(usage_app.servicer.received.wait(), 30)
        assert len(await usage_app.rows()) == 3  # stored, but the gateway never heard so
        child.send_signal(sig)
        await asyncio.wait_for(child.wait(), 30)
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    assert child.returncode == (-signal.SIGKILL if sig == signal.SIGKILL else 0)
    spooled = [p for p in spool_dir.iterdir() if p.suffix == ".spool"]
    assert len(spooled) == 1
    assert len(list(read_frames(spooled[0].read_bytes()))) == 5

    usage_app.servicer.gate.set()
    recorder = UsageRecorder(usage_app.address, flush_interval=0.05, spool=UsageSpool(spool_dir))
    assert recorder.pending == 5
    await _deliver(recorder, usage_app, 5)
    rows = await usage_app.rows()
    assert len(rows) == 5 and len({key for key, _, _ in rows}) == 5
    assert {client for _, client, _ in rows} == {"client-id"}
    assert list(spool_dir.iterdir()) == []


async def test_spool_after_a_crash_in_process(usage_app: UsageApp, tmp_path: Path) -> None:
    """In process: a recorder 'crashes' (its spool file left as a killed process leaves it:
    closed, not cleaned up, a torn frame at its end); the next recorder adopts its records (not
    the torn frame) and delivers them exactly once; a spool a live recorder holds is never
    adopted."""
    spool_dir = tmp_path / "spool"
    crashed = UsageRecorder(usage_app.address, spool=UsageSpool(spool_dir))
    for i in range(3):
        _record(crashed, prompt_tokens=i)
    spool = crashed._spool
    assert spool is not None
    os.write(spool._fd, frame(usage_pb2.UsageRecord(request_id="torn"))[:-3])  # killed mid-write
    os.close(spool._fd)  # the process is gone, and its lock with it

    live = UsageRecorder(usage_app.address, spool=UsageSpool(spool_dir))
    assert live.pending == 3  # adopted the crashed file (not the torn frame)
    _record(live, "live")
    other = UsageRecorder(usage_app.address, spool=UsageSpool(spool_dir))
    assert other.pending == 0  # `live` holds its file: nothing to adopt

    await _deliver(live, usage_app, 4)
    rows = await usage_app.rows()
    assert sorted(tokens for _, _, tokens in rows) == [0, 1, 2, 10]
    await _deliver(other, usage_app, 4)
    assert len(await usage_app.rows()) == 4
    assert list(spool_dir.iterdir()) == []


def test_spool_compaction_keeps_only_pending(tmp_path: Path) -> None:
    """With a backlog, the file is rewritten with just the pending records; a new spool reading
    it back finds those."""
    spool = UsageSpool(tmp_path)
    assert spool.open() == []
    records = [usage_pb2.UsageRecord(request_id=f"r{i}") for i in range(5)]
    for record in records:
        spool.append(record)
    spool.reset(records[3:])
    spool.append(usage_pb2.UsageRecord(request_id="r5"))
    os.close(spool._fd)  # crash
    again = UsageSpool(tmp_path)
    assert [r.request_id for r in again.open()] == ["r3", "r4", "r5"]
    again.reset()
    again.close()
    assert list(tmp_path.iterdir()) == []
    # What a crash can leave in a file: a torn frame, a corrupt one, zeros; all end the reading.
    good = frame(usage_pb2.UsageRecord(request_id="ok"))
    bad_crc = bytearray(frame(usage_pb2.UsageRecord(request_id="bad")))
    bad_crc[-1] ^= 0xFF
    for tail in (good[:-1], bytes(bad_crc), bytes(64)):
        assert [r.request_id for r, _ in read_frames(good + tail + good)] == ["ok"]
