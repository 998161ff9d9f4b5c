"""kill -9 under load: every message acknowledged before the kill is in the database after a restart."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from bot.loadtest import check_store, run_load
from tests.servers import free_port


def start_server(port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "serve", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=os.environ.copy(),
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise AssertionError("teller serve did not come up")


def test_kill_9_under_load_loses_no_acknowledged_message(teller_env: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(port)
    texts = ["where is my card", "what's the overdraft fee", "hello", "my transfer failed", "thanks"]
    result = {}

    def load() -> None:
        result["run"] = asyncio.run(run_load(url, texts, users=20, messages=200, timeout=5))

    worker = threading.Thread(target=load)
    worker.start()
    time.sleep(3)  # well into the run
    os.kill(server.pid, signal.SIGKILL)
    server.wait(timeout=10)
    worker.join(timeout=60)
    run = result["run"]
    assert 0 < run.acknowledged < run.sent and run.errors > 0  # the kill really cut the run short

    restarted = start_server(port)
    try:
        check = check_store(teller_env / "teller.db", run.run_id, run.acknowledged_ids)
        assert check.missing == 0 and check.duplicated == 0
        assert check.stored >= check.acknowledged  # at most the in-flight ones more
        # The restarted server answers, and does not answer a retried message twice.
        first = httpx.post(
            url + "/api/messages", json={"user_id": "after", "text": "hi", "client_message_id": "1"}
        )
        again = httpx.post(
            url + "/api/messages", json={"user_id": "after", "text": "hi", "client_message_id": "1"}
        )
        assert first.status_code == 200 and first.json() == again.json()

        # SIGTERM with messages in flight: every one of them is still answered, then the database
        # is closed cleanly (SQLite folds the write-ahead log back in and removes it).
        async def burst() -> list[int]:
            async with httpx.AsyncClient(timeout=30) as client:
                requests = [
                    client.post(
                        url + "/api/messages", json={"user_id": f"late{i}", "text": "where is my card"}
                    )
                    for i in range(20)
                ]
                tasks = [asyncio.ensure_future(r) for r in requests]
                await asyncio.sleep(0.05)
                restarted.send_signal(signal.SIGTERM)
                return [(await t).status_code for t in tasks]

        assert asyncio.run(burst()) == [200] * 20
        restarted.wait(timeout=30)
        wal = teller_env / "teller.db-wal"
        assert not wal.exists() or wal.stat().st_size == 0
    finally:
        if restarted.poll() is None:
            restarted.kill()
