"""A stand-in gateway process for the usage spool's crash tests: records usage with a spooled
`UsageRecorder` and sends it to the app at argv[1], spooling in argv[2]. It records three
requests, starts flushing, records two more (all with one client request id) and prints
"recorded"; SIGTERM stops it the way the gateway stops (the recorder's run task is cancelled)."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

from gateway.usage import UsageRecorder
from gateway.usage_spool import UsageSpool


def _record(recorder: UsageRecorder) -> None:
    recorder.record(
        "client-id", "prj_a", "key_a", "dep_a", "CreateChatCompletion", 10, 5, time.perf_counter(), 200
    )


async def main(app_address: str, spool_dir: Path) -> None:
    recorder = UsageRecorder(app_address, flush_interval=0.05, spool=UsageSpool(spool_dir))
    for _ in range(3):
        _record(recorder)
    task = asyncio.create_task(recorder.run())
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    await asyncio.sleep(0.2)  # the first batch is on its way (the test's app holds it)
    for _ in range(2):
        _record(recorder)
    print("recorded", flush=True)
    try:
        await task
    except asyncio.CancelledError:
        pass


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2])))
