"""Slack Socket Mode: slack-bolt's SocketModeHandler against a fake Socket Mode websocket on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from bot.assistant import build_core
from bot.channels.slack import SlackChannel
from bot.settings import get_settings
from tests import fake_slack as sl
from tests.servers import free_port, serve_in_thread


class FakeSocketMode:
    """Says hello to each connection, sends queued envelopes, and collects the acks."""

    def __init__(self) -> None:
        self.port = free_port()
        self.outbox: list[dict[str, Any]] = []
        self.acks: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _handler(self, ws: ServerConnection) -> None:
        await ws.send(json.dumps({"type": "hello", "num_connections": 1}))

        async def receive() -> None:
            async for raw in ws:
                envelope = json.loads(raw)
                if "envelope_id" in envelope:
                    self.acks.append(envelope["envelope_id"])

        reader = asyncio.ensure_future(receive())
        while not self._stop.is_set() and not reader.done():
            while self.outbox:
                await ws.send(json.dumps(self.outbox.pop(0)))
            await asyncio.sleep(0.05)
        reader.cancel()

    async def _main(self) -> None:
        async with serve(self._handler, "127.0.0.1", self.port):
            while not self._stop.is_set():
                await asyncio.sleep(0.05)

    def __enter__(self) -> FakeSocketMode:
        self._thread.start()
        time.sleep(0.3)
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@pytest.fixture()
def fake_api() -> Iterator[tuple[sl.FakeSlack, str]]:
    fake = sl.FakeSlack()
    with serve_in_thread(fake.app) as url:
        yield fake, url


def test_socket_mode_answers_a_direct_message(teller_env: Path, fake_api: tuple[sl.FakeSlack, str]) -> None:
    api, api_url = fake_api
    core = build_core(get_settings())
    with FakeSocketMode() as socket:
        api.socket_url = f"ws://127.0.0.1:{socket.port}/link"
        channel = SlackChannel(core, "xoxb-test", app_token="xapp-test", api_url=f"{api_url}/api/")
        assert channel.router() is None  # nothing is served over HTTP in Socket Mode

        async def scenario() -> None:
            await channel.start()
            try:
                body = json.loads(
                    sl.event_body("EvS1", sl.dm("What's the overdraft fee?", "1700000100.000100"))
                )
                socket.outbox.append(
                    {
                        "envelope_id": "env-1",
                        "type": "events_api",
                        "accepts_response_payload": False,
                        "payload": body,
                    }
                )
                await asyncio.to_thread(api.wait_for, "chat.postMessage", 1)
            finally:
                await channel.stop()

        asyncio.run(scenario())
    [reply] = api.sent()
    assert reply["thread_ts"] == "1700000100.000100" and "overdraft" in reply["text"].lower()
    assert "env-1" in socket.acks
    assert api.sent("apps.connections.open")
    core.close()
