"""Telegram end to end: the real python-telegram-bot against a fake Bot API over HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import itertools
import logging
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from bot.assistant import bank_name, build_channels, build_core, build_service, staffed
from bot.channels.telegram import HELP, NOT_TEXT, SECRET_HEADER, WEBHOOK_PATH, TelegramChannel, help_text
from bot.core import NO_PERSON, UNSTAFFED, TellerCore
from bot.service import TellerService
from bot.settings import Settings, get_settings
from bot.storage import Database, DeliveryState
from bot.web.app import create_app
from tests import fake_telegram as tg
from tests.servers import serve_in_thread

TOKEN = "123456:TEST-TOKEN"


# ------------------------------------------------------------------------------------ harness
# Shared by test_telegram_dialect.py and test_telegram_delivery.py: one core and one running
# channel per module (building a core takes seconds), against the fake Bot API.


def module_settings(
    tmp_path_factory: pytest.TempPathFactory,
    home_template: Path,
    trained_models_dir: Path,
    embedder_cache: Path,
) -> Settings:
    """Settings for a fresh copy of the template TELLER_HOME (what ``teller_env`` gives a test)."""
    home = tmp_path_factory.mktemp("telegram") / "home"
    shutil.copytree(home_template, home)
    values: dict[str, Any] = {
        "TELLER_HOME": home,
        "TELLER_MODELS": trained_models_dir,
        "TELLER_CACHE": embedder_cache,
        "_env_file": None,  # not the working directory's .env
    }
    return Settings(**values)


class _Errors(logging.Handler):
    """The channel's error records (a handler that failed, a delivery that did not arrive)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class Stack:
    """A running channel (its event loop in a background thread) and the fake it talks to."""

    api: tg.FakeTelegram
    core: TellerCore
    service: TellerService
    channel: TelegramChannel
    errors: _Errors
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(100))

    def uid(self) -> int:
        """A fresh update (and message) id: getUpdates never returns ids below its offset."""
        return next(self._ids)

    def push(self, *updates: dict[str, Any]) -> None:
        self.api.push(*updates)

    def to(self, chat_id: int) -> list[dict[str, Any]]:
        """Messages delivered to ``chat_id``."""
        return [m for m in self.api.sent() if str(m["chat_id"]) == str(chat_id)]

    def replies(self, chat_id: int, count: int = 1, timeout: float = 20.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(found := self.to(chat_id)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} messages to {chat_id}, got {found}")
            time.sleep(0.02)
        return found

    def settle(self, seconds: float = 0.3) -> None:
        """Give a reply that should not come the time to come (before asserting it did not)."""
        time.sleep(seconds)

    def until(self, check: Any, timeout: float = 20.0) -> Any:
        deadline = time.monotonic() + timeout
        while not (value := check()):
            if time.monotonic() > deadline:
                raise AssertionError("timed out")
            time.sleep(0.02)
        return value


@contextmanager
def running_stack(
    api: tg.FakeTelegram, api_url: str, core: TellerCore, service: TellerService, **options: Any
) -> Iterator[Stack]:
    """``TelegramChannel`` polling the fake, started on an event loop of its own thread."""
    channel = TelegramChannel(core, TOKEN, api_url=api_url, poll_timeout=1, service=service, **options)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="telegram-loop", daemon=True)
    thread.start()
    errors = _Errors()
    logging.getLogger("bot.channels.telegram").addHandler(errors)
    try:
        asyncio.run_coroutine_threadsafe(channel.start(), loop).result(30)
        try:
            yield Stack(api, core, service, channel, errors)
        finally:
            asyncio.run_coroutine_threadsafe(channel.stop(), loop).result(60)
    finally:
        logging.getLogger("bot.channels.telegram").removeHandler(errors)
        asyncio.run_coroutine_threadsafe(loop.shutdown_default_executor(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@contextmanager
def telegram_stack(settings: Settings, api: tg.FakeTelegram | None = None, **options: Any) -> Iterator[Stack]:
    """A core and the full service (review queue, deliveries) for ``settings``, a fake Bot API and
    a running channel."""
    api = api or tg.FakeTelegram()
    core = build_core(settings)
    service = build_service(settings, core)
    try:
        with (
            serve_in_thread(api.app) as url,
            running_stack(api, f"{url}/bot", core, service, **options) as stack,
        ):
            yield stack
    finally:
        service.close()
        core.close()


# ------------------------------------------------------------------------------------ tests


@pytest.fixture()
def fake() -> Iterator[tuple[tg.FakeTelegram, str]]:
    fake = tg.FakeTelegram()
    with serve_in_thread(fake.app) as url:
        yield fake, f"{url}/bot"


@pytest.fixture()
def core(teller_env: Path) -> Iterator[TellerCore]:
    core = build_core(get_settings())
    yield core
    core.close()


def test_polling_conversation(fake: tuple[tg.FakeTelegram, str], core: TellerCore) -> None:
    api, api_url = fake
    channel = TelegramChannel(core, TOKEN, api_url=api_url, poll_timeout=1)

    async def scenario() -> None:
        await channel.start()
        try:
            api.push(tg.text(1, 42, 1, "/start"))
            await asyncio.to_thread(api.wait_for, "sendMessage", 1)
            api.push(tg.text(2, 42, 2, "What's the overdraft fee?"))
            await asyncio.to_thread(api.wait_for, "sendMessage", 2)
            # A redelivered update, a sticker, an edit and a group join: one polite reply, nothing else.
            api.push(
                tg.text(2, 42, 2, "What's the overdraft fee?"),
                tg.sticker(3, 42, 3),
                tg.edited(4, 42, 2, "What's the overdraft fee? (edited)"),
                tg.joined(5, -100, 4),
            )
            await asyncio.to_thread(api.wait_for, "sendMessage", 3)
            answer = api.sent()[1]
            buttons = [b for row in answer["reply_markup"]["inline_keyboard"] for b in row]
            not_helpful = next(b["callback_data"] for b in buttons if b["text"] == "Not helpful")
            api.push(tg.pressed(6, 42, not_helpful, "q1"), tg.pressed(6, 42, not_helpful, "q1"))
            await asyncio.to_thread(api.wait_for, "answerCallbackQuery", 1)
            api.push(tg.text(7, 42, 5, "/human"))
            await asyncio.to_thread(api.wait_for, "sendMessage", 4)
            # A forged thumbs on the handoff's reply (which offered none): told so, nothing recorded.
            history = await asyncio.to_thread(core.store.conversations.history)
            handoff_id = [m.id for m in history if m.direction == "out"][-1]
            api.push(tg.pressed(8, 42, f"fb:1:{handoff_id}", "q2"))
            await asyncio.to_thread(api.wait_for, "answerCallbackQuery", 2)
            await asyncio.sleep(0.5)  # anything else would have arrived by now
        finally:
            await channel.stop()

    asyncio.run(scenario())
    sent = api.sent()
    assert [m["chat_id"] for m in sent] == [42, 42, 42, 42]
    assert sent[0]["text"] == HELP
    assert "overdraft" in sent[1]["text"].lower()
    assert sent[2]["text"] == NOT_TEXT
    assert "no one from our team can take over" in sent[3]["text"].lower()  # no ops channel here
    answered = api.sent("answerCallbackQuery")
    assert len(answered) == 2 and answered[1]["text"] == "This reply can't be rated."
    assert len(api.sent("editMessageReplyMarkup")) == 1
    [(entry, message)] = core.store.feedback.feedback()
    assert entry.helpful is False and message.kb_id == "overdraft_fee" and entry.user_id == "42"
    routes = [m.route for m in core.store.conversations.history() if m.direction == "out"]
    assert routes == ["faq", "handoff"]
    assert all(m.channel == "telegram" for m in core.store.conversations.history())
    # Both stored replies were delivered and recorded so (help and "text only" are not stored).
    assert core.store.deliveries.states()[DeliveryState.DELIVERED] == 2


def test_without_an_ops_channel_the_help_offers_no_person(
    fake: tuple[tg.FakeTelegram, str], core: TellerCore
) -> None:
    """The help Teller's composition root gives the channel where nobody can take over (no Slack
    ops channel): no /human, and where to turn instead; /human typed anyway is told the same."""
    api, api_url = fake
    settings = get_settings().model_copy(
        update={"telegram_bot_token": SecretStr(TOKEN), "telegram_api_url": api_url}
    )
    assert not staffed(settings)
    service = build_service(settings, core)
    [channel] = build_channels(settings, core, service)
    assert isinstance(channel, TelegramChannel)
    channel.poll_timeout = 1

    async def scenario() -> None:
        await channel.start()
        try:
            api.push(tg.text(1, 42, 1, "/help"))
            await asyncio.to_thread(api.wait_for, "sendMessage", 1)
            api.push(tg.text(2, 42, 2, "/human"))
            await asyncio.to_thread(api.wait_for, "sendMessage", 2)
        finally:
            await channel.stop()

    try:
        asyncio.run(scenario())
    finally:
        service.close()
    said, human = (m["text"] for m in api.sent())
    assert said == help_text(bank_name(settings, core.policy.kb), staffed=False) != HELP
    assert "/human" not in said and NO_PERSON in said
    assert human == UNSTAFFED


@pytest.mark.parametrize("webhook", [True, False])
def test_the_channel_starts_through_a_429_on_its_start_up_calls(
    fake: tuple[tg.FakeTelegram, str], core: TellerCore, webhook: bool
) -> None:
    """A reviewer: with the rate limiter's retries off (a 429 is the courier's), one 429 on
    setWebhook (or, polling, deleteWebhook) raised out of ``start`` and left the channel stopped."""
    api, api_url = fake
    api.fail_next("setWebhook" if webhook else "deleteWebhook", 429, n=1, retry_after=1)
    hook = {"webhook_url": "https://t.example/telegram/webhook", "webhook_secret": "s"} if webhook else {}
    channel = TelegramChannel(core, TOKEN, api_url=api_url, poll_timeout=1, **hook)  # type: ignore[arg-type]

    async def start_and_stop() -> None:
        await channel.start()
        await channel.stop()

    asyncio.run(start_and_stop())
    statuses = [a.status for a in api.attempted("setWebhook" if webhook else "deleteWebhook")]
    assert statuses[:2] == [429, 200]


def test_webhook_mode_checks_the_secret(fake: tuple[tg.FakeTelegram, str], core: TellerCore) -> None:
    api, api_url = fake
    channel = TelegramChannel(
        core,
        TOKEN,
        api_url=api_url,
        webhook_url="https://teller.example/telegram/webhook",
        webhook_secret="s3cret",
    )
    with serve_in_thread(create_app(core, [channel])) as teller:
        [hook] = api.wait_for("setWebhook", 1)
        assert hook["url"] == "https://teller.example/telegram/webhook" and hook["secret_token"] == "s3cret"
        update = tg.text(10, 7, 1, "hello")
        assert (
            httpx.post(teller + WEBHOOK_PATH, json=update, headers={SECRET_HEADER: "wrong"}).status_code
            == 403
        )
        assert httpx.post(teller + WEBHOOK_PATH, json=update).status_code == 403
        assert (
            httpx.post(teller + WEBHOOK_PATH, json=update, headers={SECRET_HEADER: "s3cret"}).status_code
            == 200
        )
        [reply] = api.wait_for("sendMessage", 1)
        # Bodies that are not updates: a clear 400 (logged), never a 500 that Telegram would redeliver.
        deep, huge_date = (
            b"[" * 5000 + b"]" * 5000,
            b'{"update_id": 1, "message": {"date": 1' + b"0" * 30 + b"}}",
        )
        surrogate = b'{"update_id": 2, "message": {"message_id": 1, "date": 1, "chat": {"id": 7, "type": '
        surrogate += b'"private"}, "text": "\\ud83d card"}}'
        for bad in (
            b"[1, 2, 3]",
            b"null",
            b'{"message": {"text": "hi"}}',
            b'"text"',
            b"{not json",
            deep,
            huge_date,
            surrogate,
        ):
            response = httpx.post(
                teller + WEBHOOK_PATH,
                content=bad,
                headers={SECRET_HEADER: "s3cret", "content-type": "application/json"},
            )
            assert response.status_code == 400 and "Update" in response.json()["detail"], bad
    assert reply["chat_id"] == 7 and "Teller" in reply["text"]
    assert not api.sent("getUpdates") and len(api.sent()) == 1


def standing_by(core: TellerCore, api_url: str, databases: list[Database]) -> list[TelegramChannel]:
    """One polling-mode channel per database object (one per replica), contending for the lock."""
    return [
        TelegramChannel(
            core,
            TOKEN,
            api_url=api_url,
            poll_timeout=1,
            leadership=lambda d=d: d.try_lock("telegram-polling"),  # type: ignore[misc]
            lead_interval=0.2,
        )
        for d in databases
    ]


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_one_replica_polls_and_another_takes_over_when_it_stops(
    fake: tuple[tg.FakeTelegram, str], core: TellerCore, database: str, request: pytest.FixtureRequest
) -> None:
    """Two replicas on one database: only the lock holder polls; when it goes, the other polls."""
    api, api_url = fake
    url = (
        str(core.store.database.url.database)
        if database == "sqlite"
        else request.getfixturevalue("fresh_postgresql_url")
    )
    databases = [Database(url), Database(url)]
    replicas = standing_by(core, api_url, databases)

    async def scenario() -> None:
        first, second = replicas
        await first.start()
        await asyncio.sleep(0.5)
        await second.start()
        await asyncio.sleep(0.8)
        assert first.polling and not second.polling
        api.push(tg.text(1, 42, 1, "What's the overdraft fee?"))
        await asyncio.to_thread(api.wait_for, "sendMessage", 1)
        await first.stop()  # the leader goes away
        for _ in range(50):
            if second.polling:
                break
            await asyncio.sleep(0.1)
        assert second.polling
        api.push(tg.text(2, 42, 2, "/start"))
        await asyncio.to_thread(api.wait_for, "sendMessage", 2)
        await second.stop()

    asyncio.run(scenario())
    assert len(api.sent()) == 2
    for d in databases:
        d.close()


def test_a_leader_whose_database_session_dies_stops_polling_and_another_takes_over(
    fake: tuple[tg.FakeTelegram, str], core: TellerCore, fresh_postgresql_url: str
) -> None:
    """PostgreSQL drops a dead session's advisory locks; the old leader notices it lost the lock
    (its session is gone) and stops polling, so two replicas never poll at once."""
    from sqlalchemy import text

    api, api_url = fake
    databases = [Database(fresh_postgresql_url), Database(fresh_postgresql_url)]
    first, second = standing_by(core, api_url, databases)

    async def scenario() -> None:
        await first.start()
        await asyncio.sleep(0.5)
        await second.start()
        await asyncio.sleep(0.5)
        assert first.polling and not second.polling
        with databases[1].transaction() as connection:  # the leader's session is cut (a crash, a network cut)
            connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_locks "
                    "WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()"
                )
            )
        for _ in range(50):
            if second.polling and not first.polling:
                break
            await asyncio.sleep(0.1)
        assert second.polling and not first.polling
        api.push(tg.text(1, 42, 1, "/start"))
        await asyncio.to_thread(api.wait_for, "sendMessage", 1)
        await first.stop()
        await second.stop()

    asyncio.run(scenario())
    assert len(api.sent()) == 1
    for d in databases:
        d.close()


def test_a_leader_that_fails_to_start_polling_lets_go_of_the_lock(
    fake: tuple[tg.FakeTelegram, str], core: TellerCore, fresh_postgresql_url: str
) -> None:
    """deleteWebhook times out once on the first replica: it must not keep the lock without
    polling (nobody would poll); the lock goes to whoever starts polling next."""
    api, api_url = fake
    databases = [Database(fresh_postgresql_url), Database(fresh_postgresql_url)]
    first, second = standing_by(core, api_url, databases)
    real = first._start_polling
    failures = [1]

    async def flaky() -> None:
        if failures:
            failures.pop()
            raise TimeoutError("deleteWebhook timed out")
        await real()

    first._start_polling = flaky  # type: ignore[method-assign]

    async def scenario() -> None:
        await first.start()
        await asyncio.sleep(0.3)
        await second.start()
        for _ in range(50):
            if first.polling or second.polling:
                break
            await asyncio.sleep(0.1)
        assert first.polling != second.polling  # exactly one polls
        api.push(tg.text(1, 42, 1, "/start"))
        await asyncio.to_thread(api.wait_for, "sendMessage", 1)
        await first.stop()
        await second.stop()

    asyncio.run(scenario())
    for d in databases:
        d.close()
