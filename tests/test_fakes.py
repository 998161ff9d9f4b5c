"""The fake platform servers themselves: the documented limits they enforce, the failures they inject,
and that the real client libraries read their answers as they read Telegram's and Slack's."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
import telegram
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from telegram.error import BadRequest, NetworkError, RetryAfter

from tests import fake_slack as sl
from tests import fake_telegram as tg
from tests.servers import serve_in_thread

TOKEN = "123456:TEST-TOKEN"


# ------------------------------------------------------------------------------------ Telegram


@pytest.fixture()
def telegram_api() -> Iterator[tuple[tg.FakeTelegram, str]]:
    fake = tg.FakeTelegram()
    with serve_in_thread(fake.app) as url:
        yield fake, f"{url}/bot{TOKEN}"


def tg_call(url: str, method: str, **params: Any) -> httpx.Response:
    """A call as python-telegram-bot makes it: form fields, non-strings JSON-encoded."""
    form = {k: v if isinstance(v, str) else json.dumps(v) for k, v in params.items()}
    return httpx.post(f"{url}/{method}", data=form)


def keyboard(*data: str) -> dict[str, Any]:
    return {"inline_keyboard": [[{"text": f"b{i}", "callback_data": d} for i, d in enumerate(data)]]}


def test_telegram_text_limits_count_utf16_after_parsing(telegram_api: tuple[tg.FakeTelegram, str]) -> None:
    fake, url = telegram_api
    accepted = [
        "x" * 4096,
        "😀" * 2048,  # 2048 characters, 4096 UTF-16 code units
        f"<b>{'x' * 4096}</b>",  # with parse_mode=HTML: 4096 once the tags are gone
    ]
    for i, words in enumerate(accepted):
        extra = {"parse_mode": "HTML"} if i == 2 else {}
        response = tg_call(url, "sendMessage", chat_id=42, text=words, **extra)
        assert response.status_code == 200 and response.json()["ok"], i
    for words in ("x" * 4097, "😀" * 2049, "x" * 5000):
        response = tg_call(url, "sendMessage", chat_id=42, text=words)
        assert response.status_code == 400
        assert response.json() == {
            "ok": False,
            "error_code": 400,
            "description": "Bad Request: message is too long",
        }
    for words in ("", "   \n"):
        response = tg_call(url, "sendMessage", chat_id=42, text=words)
        assert response.status_code == 400
        assert response.json()["description"] == "Bad Request: message text is empty"
    edit = tg_call(url, "editMessageText", chat_id=42, message_id=1001, text="y" * 4097)
    assert edit.status_code == 400 and edit.json()["description"] == "Bad Request: message is too long"
    # Only what Telegram accepted counts as sent; every attempt is on record with its status.
    assert len(fake.sent()) == 3
    statuses = [a.status for a in fake.attempted("sendMessage")]
    assert statuses == [200, 200, 200, 400, 400, 400, 400, 400]
    assert all(not a.injected for a in fake.rejected())
    assert len(fake.rejected("editMessageText")) == 1 and not fake.sent("editMessageText")


def test_telegram_callback_data_is_1_to_64_bytes(telegram_api: tuple[tg.FakeTelegram, str]) -> None:
    fake, url = telegram_api
    ok = tg_call(url, "sendMessage", chat_id=42, text="pick", reply_markup=keyboard("a" * 64, "é" * 32))
    assert ok.status_code == 200
    assert ok.json()["result"]["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "a" * 64
    for data in ("a" * 65, "é" * 33, ""):  # 65 bytes; 33 characters but 66 bytes; empty
        response = tg_call(url, "sendMessage", chat_id=42, text="pick", reply_markup=keyboard("ok", data))
        assert response.status_code == 400
        assert response.json()["description"] == "Bad Request: BUTTON_DATA_INVALID"
    bad_edit = tg_call(
        url, "editMessageReplyMarkup", chat_id=42, message_id=1001, reply_markup=keyboard("a" * 65)
    )
    assert bad_edit.status_code == 400
    assert len(fake.sent()) == 1 and len(fake.rejected()) == 4


def test_telegram_injected_failures_are_429_or_5xx_and_never_sent() -> None:
    fake = tg.FakeTelegram(fail_rate=1.0, seed=5)
    with serve_in_thread(fake.app) as base:
        check_telegram_injection(fake, f"{base}/bot{TOKEN}")


def check_telegram_injection(fake: tg.FakeTelegram, url: str) -> None:
    responses = [tg_call(url, "sendMessage", chat_id=42, text=f"hello {i}") for i in range(30)]
    assert {r.status_code for r in responses} == {429, 502}
    for response in responses:
        body = response.json()
        assert body["ok"] is False and body["error_code"] == response.status_code
        if response.status_code == 429:
            assert body["description"] == "Too Many Requests: retry after 1"
            assert body["parameters"] == {"retry_after": 1} and response.headers["Retry-After"] == "1"
        else:
            assert body["description"] == "Bad Gateway"
    assert not fake.sent() and len(fake.attempted()) == 30 and all(a.injected for a in fake.attempted())
    # getMe, getUpdates and webhooks are not in fail_methods: they never fail by default.
    for method in ("getMe", "getUpdates", "setWebhook", "deleteWebhook"):
        assert tg_call(url, method).status_code == 200, method
    assert tg_call(url, "answerCallbackQuery", callback_query_id="q").status_code in (429, 502)
    fake.clear_failures()
    assert tg_call(url, "sendMessage", chat_id=42, text="through").status_code == 200
    assert [m["text"] for m in fake.sent()] == ["through"]


def test_telegram_fail_rate_is_repeatable_with_a_seed() -> None:
    def run() -> list[int]:
        fake = tg.FakeTelegram(fail_rate=0.5, seed=11)
        with serve_in_thread(fake.app) as url:
            return [
                tg_call(f"{url}/bot{TOKEN}", "sendMessage", chat_id=1, text="x").status_code
                for _ in range(20)
            ]

    first = run()
    assert first == run() and set(first) == {200, 429, 502}


def test_telegram_forced_failures(telegram_api: tuple[tg.FakeTelegram, str]) -> None:
    fake, url = telegram_api
    fake.fail_next("sendMessage", 429, n=2, retry_after=3)
    fake.fail_next("sendMessage", 503)
    first, second, third, fourth = (tg_call(url, "sendMessage", chat_id=42, text="hi") for _ in range(4))
    assert first.status_code == second.status_code == 429 and first.json()["parameters"]["retry_after"] == 3
    assert third.status_code == 503 and third.json()["description"] == "Service Unavailable"
    assert fourth.status_code == 200
    fake.fail_chat(7)  # the user blocked the bot: every delivery to chat 7 fails, others go through
    for _ in range(3):
        blocked = tg_call(url, "sendMessage", chat_id=7, text="hi")
        assert blocked.status_code == 403
        assert blocked.json()["description"] == "Forbidden: bot was blocked by the user"
    assert tg_call(url, "sendMessage", chat_id=8, text="hi").status_code == 200
    fake.fail_next(None, 500, chat_id=8)  # any method, only this chat
    assert tg_call(url, "sendMessage", chat_id=42, text="hi").status_code == 200
    assert tg_call(url, "editMessageText", chat_id=8, message_id=1, text="hi").status_code == 500
    fake.clear_failures()
    assert tg_call(url, "sendMessage", chat_id=7, text="hi").status_code == 200
    assert [a.status for a in fake.attempted()] == [429, 429, 503, 200, 403, 403, 403, 200, 200, 200]
    assert [m["chat_id"] for m in fake.sent()] == [42, 8, 42, 7]
    assert fake.duplicates() == [("42", "hi")]


def test_telegram_html_bad_gateway_like_nginx() -> None:
    fake = tg.FakeTelegram(server_error_body="html")
    with serve_in_thread(fake.app) as url:
        fake.fail_next("sendMessage", 502)
        response = tg_call(f"{url}/bot{TOKEN}", "sendMessage", chat_id=1, text="x")
    assert response.status_code == 502 and response.headers["content-type"].startswith("text/html")
    assert "<title>502 Bad Gateway</title>" in response.text


def test_telegram_echo_keeps_chat_type_and_topic(telegram_api: tuple[tg.FakeTelegram, str]) -> None:
    fake, url = telegram_api
    fake.push(
        tg.group_text(1, -100500, 1, "hi", chat_type="group"), tg.topic_message(2, tg.GROUP_ID, 9, "hi", 7)
    )
    group = tg_call(url, "sendMessage", chat_id=-100500, text="hello group").json()["result"]
    assert group["chat"]["type"] == "group" and group["chat"]["title"]
    topic = tg_call(url, "sendMessage", chat_id=tg.GROUP_ID, text="hello topic", message_thread_id=7).json()[
        "result"
    ]
    assert (
        topic["chat"]["type"] == "supergroup"
        and topic["message_thread_id"] == 7
        and topic["is_topic_message"]
    )
    private = tg_call(url, "sendMessage", chat_id=42, text="hello you").json()["result"]
    assert private["chat"]["type"] == "private" and "message_thread_id" not in private
    edited = tg_call(url, "editMessageReplyMarkup", chat_id=-100500, message_id=group["message_id"]).json()
    assert edited["result"]["text"] == "hello group" and edited["result"]["chat"]["type"] == "group"


def test_telegram_update_builders_parse_as_telegram_objects() -> None:
    bot = telegram.Bot(TOKEN)
    mention = telegram.Update.de_json(tg.mention(1, words="fees?", before="👋 hi "), bot)
    assert mention.effective_chat is not None and mention.effective_chat.type == "supergroup"
    assert (
        mention.effective_chat.id < 0 and mention.effective_user is not None and mention.effective_user.id > 0
    )
    assert list(mention.effective_message.parse_entities().values()) == ["@teller_test_bot"]  # type: ignore[union-attr]
    assert mention.effective_message.entities[0].offset == 6  # type: ignore[union-attr]  # the emoji is 2 units

    command = telegram.Update.de_json(tg.group_command(2, command="help", args="now"), bot)
    assert list(command.effective_message.parse_entities().values()) == ["/help@teller_test_bot"]  # type: ignore[union-attr]

    reply = telegram.Update.de_json(tg.reply_to_bot(3, chat_type="group"), bot).effective_message
    assert reply is not None and reply.reply_to_message is not None
    assert reply.reply_to_message.from_user is not None and reply.reply_to_message.from_user.is_bot
    assert reply.chat.type == "group"

    topic = telegram.Update.de_json(tg.topic_message(4, thread_id=7), bot).effective_message
    assert (
        topic is not None and topic.is_topic_message and topic.message_thread_id == 7 and topic.chat.is_forum
    )

    bold = {"type": "bold", "offset": 0, "length": 4}
    photo = telegram.Update.de_json(tg.photo(5, 42, 1, "Look at this", [bold]), bot).effective_message
    assert photo is not None and len(photo.photo) == 3 and photo.caption == "Look at this"
    assert list(photo.parse_caption_entities().values()) == ["Look"]

    edited = telegram.Update.de_json(tg.group_edited(6, words="changed"), bot)
    assert edited.edited_message is not None and edited.edited_message.chat.type == "supergroup"
    assert edited.message is None and edited.edited_message.text == "changed"

    private = telegram.Update.de_json(tg.text(7, 42, 1, "/start"), bot).effective_message
    assert private is not None and private.chat.type == "private" and private.from_user.id == 42  # type: ignore[union-attr]


@pytest.mark.filterwarnings("ignore:.*retry_after.*:telegram.warnings.PTBDeprecationWarning")
def test_python_telegram_bot_reads_the_fakes_errors(telegram_api: tuple[tg.FakeTelegram, str]) -> None:
    fake, url = telegram_api
    base = url.removesuffix(TOKEN)

    async def scenario() -> None:
        async with telegram.Bot(TOKEN, base_url=base) as bot:
            fake.fail_next("sendMessage", 429)
            with pytest.raises(RetryAfter, match="Retry in 1 seconds"):
                await bot.send_message(42, "hello")
            with pytest.raises(BadRequest, match="Message is too long"):
                await bot.send_message(42, "x" * 4097)
            fake.fail_next("sendMessage", 502)
            with pytest.raises(NetworkError, match="Bad Gateway") as failed:
                await bot.send_message(42, "hello")
            assert not isinstance(failed.value, BadRequest)
            sent = await bot.send_message(42, "hello")
            assert sent.text == "hello" and sent.chat.type == "private"

    asyncio.run(scenario())
    assert [a.status for a in fake.attempted()] == [429, 400, 502, 200] and len(fake.sent()) == 1


# ------------------------------------------------------------------------------------ Slack


@pytest.fixture()
def slack_api() -> Iterator[tuple[sl.FakeSlack, str]]:
    fake = sl.FakeSlack()
    with serve_in_thread(fake.app) as url:
        yield fake, f"{url}/api"


def section(words: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": words}}


def button(label: str = "Yes", value: str = "v", action_id: str = "a") -> dict[str, Any]:
    return {
        "type": "button",
        "text": {"type": "plain_text", "text": label},
        "value": value,
        "action_id": action_id,
    }


def post(url: str, method: str = "chat.postMessage", **params: Any) -> httpx.Response:
    return httpx.post(f"{url}/{method}", json={"channel": "D1", **params})


def test_slack_block_limits(slack_api: tuple[sl.FakeSlack, str]) -> None:
    fake, url = slack_api
    fine: list[dict[str, Any]] = [
        {"blocks": [section("x")] * 50, "text": "fallback"},
        {"blocks": [section("x" * 3000)]},
        {"blocks": [{"type": "actions", "elements": [button(action_id=f"a{i}") for i in range(25)]}]},
        {"blocks": [{"type": "actions", "elements": [button("y" * 75, "v" * 2000)]}]},
        {"text": "x" * 40_000},
    ]
    for params in fine:
        response = post(url, **params)
        assert response.status_code == 200 and response.json()["ok"], response.json()
    invalid = {
        "51 blocks": [section("x")] * 51,
        "3001-character section": [section("x" * 3001)],
        "26 actions": [{"type": "actions", "elements": [button(action_id=f"a{i}") for i in range(26)]}],
        "2001-character value": [{"type": "actions", "elements": [button(value="v" * 2001)]}],
        "76-character button text": [{"type": "actions", "elements": [button("y" * 76)]}],
        "long accessory button": [{**section("pick"), "accessory": button("y" * 76)}],
        "empty section text": [section("")],
        "block without type": [{"text": {"type": "mrkdwn", "text": "x"}}],
    }
    for case, blocks in invalid.items():
        for method in ("chat.postMessage", "chat.update", "chat.postEphemeral"):
            response = post(url, method, blocks=blocks, text="fallback", ts="1.0", user="U1")
            body = response.json()
            assert (
                response.status_code == 200 and body["ok"] is False and body["error"] == "invalid_blocks"
            ), case
            assert body["response_metadata"]["messages"][0].startswith("[ERROR]"), case
    too_long = post(url, blocks=[section("x" * 3001)]).json()["response_metadata"]["messages"]
    assert too_long == ["[ERROR] must be less than 3001 characters [json-pointer:/blocks/0/text/text]"]
    assert post(url, text="x" * 40_001).json() == {"ok": False, "error": "msg_too_long"}
    assert post(url).json() == {"ok": False, "error": "no_text"}
    assert post(url, text="").json() == {"ok": False, "error": "no_text"}
    # Form-encoded calls carry blocks as a JSON string: checked the same.
    form = {"channel": "D1", "text": "t", "blocks": json.dumps([section("x")] * 51)}
    assert httpx.post(f"{url}/chat.postMessage", data=form).json()["error"] == "invalid_blocks"
    assert httpx.post(f"{url}/chat.postMessage", data={**form, "blocks": "[not json"}).json()["error"] == (
        "invalid_blocks_format"
    )
    assert len(fake.sent()) == 5 and not fake.sent("chat.update") and not fake.sent("chat.postEphemeral")
    assert len(fake.attempted()) == 5 + 8 + 1 + 3 + 2 and len(fake.rejected()) == 8 * 3 + 1 + 3 + 2


def test_slack_injected_failures_are_429_or_5xx_and_never_sent() -> None:
    fake = sl.FakeSlack(fail_rate=1.0, seed=5)
    with serve_in_thread(fake.app) as base:
        check_slack_injection(fake, f"{base}/api")


def check_slack_injection(fake: sl.FakeSlack, url: str) -> None:
    responses = [post(url, text=f"hello {i}") for i in range(30)]
    assert {r.status_code for r in responses} == {429, 500, 503}
    for response in responses:
        if response.status_code == 429:
            assert response.headers["Retry-After"] == "1"
            assert response.json() == {"ok": False, "error": "ratelimited"}
        else:
            assert response.json()["ok"] is False and response.json()["error"] in (
                "internal_error",
                "service_unavailable",
            )
    assert not fake.sent() and len(fake.attempted()) == 30 and all(a.injected for a in fake.rejected())
    for method in ("auth.test", "conversations.open", "views.open", "apps.connections.open"):
        assert post(url, method, users="U1").json()["ok"], method
    fake.clear_failures()
    assert post(url, text="through").json()["ok"] and [m["text"] for m in fake.sent()] == ["through"]


def test_slack_forced_failures(slack_api: tuple[sl.FakeSlack, str]) -> None:
    fake, url = slack_api
    fake.fail_next("chat.postMessage", 429, n=1, retry_after=2)
    fake.fail_next("chat.postMessage", 503)
    fake.fail_next("chat.update", 200, error="message_not_found")
    limited, unavailable, delivered = (post(url, text="hi") for _ in range(3))
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "2"
    assert unavailable.status_code == 503 and unavailable.json()["error"] == "service_unavailable"
    assert delivered.json()["ok"]
    missing = post(url, "chat.update", ts="1.0", text="new")
    assert missing.status_code == 200 and missing.json() == {"ok": False, "error": "message_not_found"}
    fake.fail_channel("D9")  # archived, gone: every call there fails, others go through
    assert post(url, channel="D9", text="hi").json() == {"ok": False, "error": "channel_not_found"}
    assert post(url, "chat.update", channel="D9", ts="1.0", text="hi").json()["error"] == "channel_not_found"
    assert post(url, channel="D2", text="hi").json()["ok"]
    fake.clear_failures()
    assert post(url, channel="D9", text="hi").json()["ok"]
    assert [m["channel"] for m in fake.sent()] == ["D1", "D2", "D9"]
    assert [(a.method, a.status, a.error) for a in fake.rejected()] == [
        ("chat.postMessage", 429, "ratelimited"),
        ("chat.postMessage", 503, "service_unavailable"),
        ("chat.update", 200, "message_not_found"),
        ("chat.postMessage", 200, "channel_not_found"),
        ("chat.update", 200, "channel_not_found"),
    ]
    # response_url posts fail only when asked to.
    fake.fail_methods.add("response_url")
    fake.fail_next("response_url", 500)
    assert httpx.post(url.removesuffix("/api") + "/response/k", json={"text": "x"}).status_code == 500
    assert httpx.post(url.removesuffix("/api") + "/response/k", json={"text": "x"}).status_code == 200
    assert len(fake.sent("response_url")) == 1


def test_slack_sdk_retries_through_the_fakes_429(slack_api: tuple[sl.FakeSlack, str]) -> None:
    fake, url = slack_api
    client = WebClient(
        token="xoxb-test",
        base_url=f"{url}/",
        retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=2)],
    )
    fake.fail_next("chat.postMessage", 429)
    started = time.monotonic()
    response = client.chat_postMessage(channel="D1", text="hello")
    assert response["ok"] and time.monotonic() - started >= 1.0  # it waited the Retry-After
    assert [a.status for a in fake.attempted()] == [429, 200] and len(fake.sent()) == 1

    plain = WebClient(token="xoxb-test", base_url=f"{url}/", retry_handlers=[])
    fake.fail_next("chat.postMessage", 429)
    with pytest.raises(SlackApiError) as limited:
        plain.chat_postMessage(channel="D1", text="hello")
    assert limited.value.response.status_code == 429 and limited.value.response["error"] == "ratelimited"
    assert limited.value.response.headers["Retry-After"] == "1"
    with pytest.raises(SlackApiError) as invalid:
        plain.chat_postMessage(channel="D1", text="t", blocks=[section("x" * 3001)])
    assert invalid.value.response.status_code == 200 and invalid.value.response["error"] == "invalid_blocks"


def test_slack_event_builders() -> None:
    shared = sl.file_share("here is my statement", "5.0")
    assert shared["subtype"] == "file_share" and shared["files"][0]["id"] and shared["channel_type"] == "im"
    broadcast = sl.thread_broadcast("also for everyone", "6.0", thread_ts="5.0")
    assert broadcast["subtype"] == "thread_broadcast" and broadcast["root"]["ts"] == "5.0"
    changed = sl.message_changed("new words", "5.0", previous_text="old words")
    assert "user" not in changed and "text" not in changed and changed["message"]["text"] == "new words"
    assert changed["previous_message"]["text"] == "old words" and changed["ts"] != changed["message"]["ts"]
    deleted = sl.message_deleted("5.0")
    assert (
        deleted["subtype"] == "message_deleted" and deleted["deleted_ts"] == "5.0" and "user" not in deleted
    )
    other = sl.bot_message("beep", "7.0")
    assert other["subtype"] == "bot_message" and other["bot_id"] == "BOTHER" and "user" not in other
    mention = sl.bot_mention("ping", "8.0")
    assert (
        mention["type"] == "app_mention" and mention["bot_id"] == "BOTHER" and sl.BOT_USER in mention["text"]
    )
    for event in (shared, broadcast, changed, deleted, other, mention):
        assert json.loads(sl.event_body("Ev1", event))["event"] == event


def test_slack_malformed_payload_builders() -> None:
    envelope = json.loads(sl.event_body_without_event())
    assert envelope["type"] == "event_callback" and "event" not in envelope

    def payload(body: str) -> dict[str, Any]:
        return dict(json.loads(dict(parse_qsl(body))["payload"]))

    assert "actions" not in payload(sl.interaction_body_without("actions"))
    assert "user" not in payload(sl.interaction_body_without("user"))
    assert payload(sl.interaction_body_without("actions_items"))["actions"] == []
    assert payload(sl.interaction_body_without("user"))["type"] == "block_actions"
    command = dict(parse_qsl(sl.command_body_without()))
    assert "command" not in command and command["text"] == "help"
    headers = sl.signed("secret", sl.event_body_without_event(), "application/json")
    assert headers["X-Slack-Signature"].startswith("v0=")
