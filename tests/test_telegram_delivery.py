"""Telegram delivery: replies split at Telegram's limits (never cut), buttons within 64 bytes,
Telegram's errors mapped once, rate limits and 5xx retried, a reply that finally fails recorded and
filed for review, and a measurement under injected failures. The real python-telegram-bot against
the fake Bot API (tests/fake_telegram.py)."""

from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from telegram import Bot
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TimedOut,
)

from bot.channels.telegram.transport import (
    MAX_TEXT,
    TelegramTransport,
    callback_data,
    choice_token,
    delivery_error,
    feedback_token,
)
from bot.choices import Choice, feedback_choices
from bot.core import Outgoing
from bot.delivery import utf16_length
from bot.errors import DeliveryError
from bot.storage import DeliveryState, NewExchange, ReviewReason
from retrieval.entry import KBEntry
from tests import fake_telegram as tg
from tests.servers import serve_in_thread
from tests.test_telegram import Stack, module_settings, running_stack, telegram_stack

FEE = "What's the overdraft fee?"
#: Answers of about 700 characters per paragraph, 9 paragraphs: about 6,300 characters in all.
PARAGRAPH = (
    "Your archive holds every statement since the account was opened, one file per month, and each "
    "file lists the payments, transfers, top-ups and fees of that month with their dates. "
) * 4
LONG_ANSWER = "\n\n".join(f"Part {word}. {PARAGRAPH.strip()}" for word in "ABCDEFGHI")
ARCHIVE_QUESTION = "How do I download the complete archive of all my account statements since opening?"


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    home_template: Path,
    trained_models_dir: Path,
    embedder_cache: Path,
) -> Iterator[Stack]:
    settings = module_settings(tmp_path_factory, home_template, trained_models_dir, embedder_cache)
    with telegram_stack(settings) as running:
        yield running


def delivered(stack: Stack, message_id: str, state: DeliveryState = DeliveryState.DELIVERED) -> None:
    stack.until(lambda: (d := stack.core.store.deliveries.get(message_id)) is not None and d.state == state)


def reply_to(stack: Stack, chat: int) -> str:
    """The id of Teller's latest stored reply in a private chat."""
    stored = stack.core.store.conversations.conversation_id("telegram", str(chat))
    assert stored is not None
    return [m for m in stack.core.store.conversations.history(stored) if m.direction == "out"][-1].id


# ------------------------------------------------------------------------------------ splitting


def test_a_long_answer_is_split_never_cut_with_the_buttons_on_the_last_part(stack: Stack) -> None:
    assert 6000 < len(LONG_ANSWER) < 6600
    stack.core.policy.kb.add([KBEntry.build("statement_archive", [ARCHIVE_QUESTION], LONG_ANSWER)])
    chat = 5101
    stack.push(tg.text(stack.uid(), chat, stack.uid(), ARCHIVE_QUESTION))
    first, second = stack.replies(chat, 2)
    assert all(utf16_length(m["text"]) <= MAX_TEXT for m in (first, second))
    assert f"{first['text']}\n\n{second['text']}" == LONG_ANSWER  # split at a paragraph break
    assert "reply_markup" not in first and second["reply_markup"]["inline_keyboard"]
    reply = reply_to(stack, chat)
    delivered(stack, reply)
    record = stack.core.store.deliveries.get(reply)
    assert record is not None and record.parts == 2 and len(record.platform_ids) == 2
    assert stack.core.store.conversations.message(reply).kb_id == "statement_archive"


def test_parts_split_by_utf16_units_and_keep_every_character() -> None:
    transport = TelegramTransport(Bot("1:x"))
    emoji = "🏦" * 3000  # 6,000 UTF-16 units, 3,000 characters, no place to break
    parts = transport.parts("42", Outgoing("m_1", emoji, feedback_choices()))
    assert [utf16_length(p.text) for p in parts] == [4096, 1904]
    assert "".join(p.text for p in parts) == emoji
    assert parts[0].keyboard is None and parts[1].keyboard is not None
    with pytest.raises(DeliveryError, match="empty"):
        transport.parts("42", Outgoing("m_1", "  "))


# -------------------------------------------------------------------------------------- buttons


def test_callback_data_stays_within_64_bytes_and_is_never_cut() -> None:
    long_value = "What's the overdraft fee when my current account goes below zero at the end of a month?"
    accented = "Überweisungen ins Ausland: wie lange dauern sie für Kundinnen? ✓"  # 64 characters, 68 bytes
    choices = (
        Choice("Fee", "intent:overdraft_fee"),
        Choice("Long", long_value),
        Choice("Accented", accented),
        Choice("Looks like a token", "ch:m_other:0"),
        *feedback_choices(),
        Choice("Exactly 64 bytes", "a" * 64),
    )
    reply = Outgoing("m_0123456789abcdef", "Which one?", choices)
    data = [callback_data(reply, i) for i in range(len(choices))]
    assert data == [
        "intent:overdraft_fee",
        "ch:m_0123456789abcdef:1",
        "ch:m_0123456789abcdef:2",
        "ch:m_0123456789abcdef:3",
        "fb:1:m_0123456789abcdef",
        "fb:0:m_0123456789abcdef",
        "a" * 64,
    ]
    assert choice_token(data[1]) == ("m_0123456789abcdef", 1) and feedback_token(data[1]) is None
    assert feedback_token(data[4]) == ("m_0123456789abcdef", True)
    assert feedback_token(data[5]) == ("m_0123456789abcdef", False) and choice_token(data[5]) is None
    assert choice_token("intent:overdraft_fee") is None and choice_token("ch:nonsense") is None
    # A forged press: "²" is a digit to str.isdigit but not to int (the handler failed, a trial's).
    assert choice_token("ch:m_1:²") is None and choice_token("ch:m_1:\u0661") is None
    with pytest.raises(DeliveryError, match="64 bytes"):
        callback_data(Outgoing("m_" + "x" * 70, "?", (Choice("Long", long_value),)), 0)


def test_a_choice_too_long_for_a_button_comes_back_when_pressed(stack: Stack) -> None:
    chat = 5102
    value = "What's the overdraft fee when my current account goes below zero at the end of a month?"
    _, stored = stack.core.store.conversations.record_exchange(
        NewExchange(
            "telegram", str(chat), str(chat), "overdraft?", "Did you mean this?", route="clarify",
            choices=(("That one", value),),
        )
    )  # fmt: skip
    reply = Outgoing(stored.id, "Did you mean this?", (Choice("That one", value), *feedback_choices()))
    sent = stack.service.deliver(reply, stack.channel.transport, str(chat))
    assert sent.delivered
    [offer] = stack.replies(chat)
    buttons = [b["callback_data"] for row in offer["reply_markup"]["inline_keyboard"] for b in row]
    assert buttons[0] == f"ch:{stored.id}:0" and all(len(b.encode()) <= 64 for b in buttons)
    stack.push(tg.pressed(stack.uid(), chat, buttons[0], "q-long"))
    answer = stack.replies(chat, 2)[1]
    assert "overdraft" in answer["text"].lower()
    customer = next(m for m in stack.core.store.conversations.history() if m.text == value)
    assert customer.direction == "in" and (customer.platform_id or "").startswith(f"press:{chat}:1001:")
    # A token whose reply is gone: the press is answered, nothing is sent.
    stack.push(tg.pressed(stack.uid(), chat, "ch:m_gone:0", "q-gone"))
    [alert] = stack.api.wait_for("answerCallbackQuery", 2)[1:]
    assert "no longer" in alert["text"] and len(stack.to(chat)) == 2


def test_a_stale_suggestion_button_says_the_option_is_gone(stack: Stack) -> None:
    """A platform trial pressed `entry:card_arrival` on a post none of the recent answers offered
    (erased, purged or pushed out in a busy group) and got "I'm not sure I understood", the value
    filed for review as the customer's words. A real press says the option is no longer available."""
    chat = 5108
    stack.push(tg.pressed(stack.uid(), chat, "entry:card_arrival", "q-stale"))
    [answer] = stack.replies(chat)
    assert answer["text"].startswith("That option is no longer available")
    stored = stack.core.store.conversations.history()
    reply = next(m for m in stored if m.direction == "out" and m.text.startswith("That option"))
    assert reply.route == "clarify"
    # The same value typed is still read as the words it is (a client could send any value).
    stack.push(tg.text(stack.uid(), chat, stack.uid(), "entry:card_arrival"))
    typed = stack.replies(chat, 2)[1]
    assert not typed["text"].startswith("That option is no longer available")


# ------------------------------------------------------------------------------------- failures


def test_errors_are_mapped_once() -> None:
    cases = {
        RetryAfter(3): (True, 3.0),
        TimedOut(): (True, None),
        NetworkError("Bad Gateway"): (True, None),
        BadRequest("Bad Request: message is too long"): (False, None),
        Forbidden("Forbidden: bot was blocked by the user"): (False, None),
        InvalidToken("Unauthorized"): (False, None),
        ChatMigrated(-1001): (False, None),
        TimeoutError(): (True, None),
    }
    for error, (transient, retry_after) in cases.items():
        mapped = delivery_error(error)
        assert (mapped.transient, mapped.retry_after) == (transient, retry_after), error
    assert (
        delivery_error(BadRequest("Bad Request: message is too long")).reason
        == "Bad Request: Message is too long"
    )
    assert "blocked" in delivery_error(Forbidden("Forbidden: bot was blocked by the user")).reason


def test_posting_while_stopped_fails_permanently() -> None:
    transport = TelegramTransport(Bot("1:x"))
    [part] = transport.parts("42", Outgoing("m_1", "hello"))
    with pytest.raises(DeliveryError, match="not running") as failed:
        transport.post("42", part)
    assert not failed.value.transient
    with pytest.raises(DeliveryError, match="not a Telegram chat"):
        transport.post("C123", part)


def test_a_refused_reply_is_recorded_filed_for_review_and_sent_when_redelivered(stack: Stack) -> None:
    chat = 5103
    stack.api.fail_chat(chat, 403)  # the customer blocked the bot
    message_id = stack.uid()
    stack.push(tg.text(stack.uid(), chat, message_id, FEE))
    reply = stack.until(lambda: _reply_or_none(stack, chat))
    delivered(stack, reply, DeliveryState.FAILED)
    record = stack.core.store.deliveries.get(reply)
    assert record is not None and record.reason == "Forbidden: bot was blocked by the user"
    assert record.attempts == 1 and record.address == str(chat)  # permanent: not retried
    assert stack.service.ops is not None
    # The delivering thread records FAILED, then queues the filing (TellerService.deliver): seeing
    # FAILED does not mean the filing is queued yet, so drain() alone may return before it.
    stack.until(lambda: ReviewReason.UNDELIVERED in _filed(stack, reply))
    stack.service.ops.drain()
    [item] = [i for i in stack.service.ops.review.items() if reply in i.message_ids]
    assert ReviewReason.UNDELIVERED in item.reasons
    # The customer unblocks; Telegram redelivers the message (a restart lost the update id): the
    # stored reply is sent, once, and nothing is answered twice.
    stack.api.clear_failures()
    stack.push(tg.text(stack.uid(), chat, message_id, FEE))
    [answer] = stack.replies(chat)
    assert "overdraft" in answer["text"].lower()
    delivered(stack, reply)
    assert len(stack.core.store.conversations.history(_conversation(stack, chat))) == 2


def test_a_reply_to_a_group_upgraded_to_a_supergroup_reaches_the_supergroup(stack: Stack) -> None:
    """Telegram refuses a send to a group that became a supergroup and names its new id
    (``migrate_to_chat_id``): the reply goes there, once (a reviewer's trial: it was recorded failed,
    filed for review, and never reached the supergroup)."""
    group, supergroup = -4205, -1004205
    stack.api.note_chats(
        {"update_id": 0, "message": {"message_id": 1, "chat": {"id": supergroup, "type": "supergroup"}}}
    )
    stack.api.migrate(group, supergroup)
    stack.push(tg.mention(stack.uid(), chat_id=group, message_id=stack.uid(), chat_type="group"))
    [answer] = stack.replies(supergroup)
    assert "overdraft" in answer["text"].lower() and "reply_parameters" not in answer
    reply = stack.until(lambda: _reply_or_none(stack, group))
    delivered(stack, reply)
    record = stack.core.store.deliveries.get(reply)
    assert record is not None and [p.split(":")[0] for p in record.platform_ids] == [str(supergroup)]
    tried = [
        (str(a.params.get("chat_id")), a.status) for a in stack.api.attempted() if a.method == "sendMessage"
    ]
    assert [t for t in tried if t[0] in (str(group), str(supergroup))] == [
        (str(group), 400),
        (str(supergroup), 200),
    ]
    stack.api.clear_failures()


def test_a_groups_conversation_goes_on_in_its_supergroup(stack: Stack) -> None:
    """Telegram's service messages of the upgrade (``migrate_to_chat_id`` in the old group,
    ``migrate_from_chat_id`` in the supergroup, either first) move the conversation once; the
    supergroup's next message continues it (it started a new one, a reviewer's trial)."""
    for group, supergroup, first in ((-4207, -1004207, "to"), (-4208, -1004208, "from")):
        stack.push(tg.mention(stack.uid(), chat_id=group, message_id=stack.uid(), chat_type="group"))
        stack.replies(group)
        before = stack.until(lambda g=group: _conversation(stack, g))
        to_new = tg.message(stack.uid(), group, stack.uid(), chat_type="group", migrate_to_chat_id=supergroup)
        from_old = tg.message(
            stack.uid(), supergroup, stack.uid(), chat_type="supergroup", migrate_from_chat_id=group
        )
        stack.push(*((to_new, from_old) if first == "to" else (from_old, to_new)))
        stack.until(lambda s=supergroup: _conversation(stack, s))
        stack.push(tg.mention(stack.uid(), chat_id=supergroup, message_id=stack.uid()))
        stack.replies(supergroup)
        assert _conversation(stack, supergroup) == before and _conversation(stack, group) is None
        assert len(stack.core.store.conversations.history(before)) == 4  # two questions, two answers
    # Nothing under the old id (or the new id taken already): nothing moves.
    assert not stack.service.conversation_moved("telegram", "-4209", "-1004209")
    assert not stack.service.conversation_moved("telegram", str(-1004207), str(-1004208))


def test_a_groups_messages_queued_before_its_upgrade_stay_in_its_conversation(stack: Stack) -> None:
    """The move waits its turn behind the group's messages still queued (one held by a rate
    limit): they ran after it and started a new conversation under the old id (found in review)."""
    group, supergroup = -4307, -1004307
    stack.push(tg.mention(stack.uid(), chat_id=group, message_id=stack.uid(), chat_type="group"))
    stack.replies(group)
    before = stack.until(lambda: _conversation(stack, group))
    stack.api.fail_next("sendMessage", 429, n=1, chat_id=group, retry_after=2)
    for _ in range(2):
        stack.push(tg.mention(stack.uid(), chat_id=group, message_id=stack.uid(), chat_type="group"))
    time.sleep(0.5)
    stack.push(tg.message(stack.uid(), group, stack.uid(), chat_type="group", migrate_to_chat_id=supergroup))
    stack.until(lambda: _conversation(stack, supergroup))
    stack.replies(group, 3, timeout=30)
    assert _conversation(stack, supergroup) == before and _conversation(stack, group) is None
    assert len(stack.core.store.conversations.history(before)) == 6


def test_a_supergroups_first_message_waits_for_its_groups_conversation_to_move(stack: Stack) -> None:
    """The supergroup spoke while the group's queue was busy (a reply waiting out a rate limit):
    its message started a conversation of its own, and the move then found the new id taken,
    leaving history and handoff under the old one (found in review)."""
    group, supergroup = -4308, -1004308
    stack.push(tg.mention(stack.uid(), chat_id=group, message_id=stack.uid(), chat_type="group"))
    stack.replies(group)
    before = stack.until(lambda: _conversation(stack, group))
    stack.api.fail_next("sendMessage", 429, n=1, chat_id=group, retry_after=2)
    stack.push(tg.mention(stack.uid(), chat_id=group, message_id=stack.uid(), chat_type="group"))
    time.sleep(0.3)
    stack.push(
        tg.message(stack.uid(), group, stack.uid(), chat_type="group", migrate_to_chat_id=supergroup),
        tg.message(stack.uid(), supergroup, stack.uid(), chat_type="supergroup", migrate_from_chat_id=group),
        tg.mention(stack.uid(), chat_id=supergroup, message_id=stack.uid()),
    )
    stack.replies(supergroup, timeout=30)
    assert _conversation(stack, supergroup) == before and _conversation(stack, group) is None


def test_server_errors_and_429_are_retried_by_the_courier(stack: Stack) -> None:
    chat = 5104
    stack.api.fail_next("sendMessage", 502, n=2, chat_id=chat)
    stack.push(tg.text(stack.uid(), chat, stack.uid(), FEE))
    assert len(stack.replies(chat)) == 1
    reply = reply_to(stack, chat)
    delivered(stack, reply)
    record = stack.core.store.deliveries.get(reply)
    assert record is not None and record.attempts == 3
    assert [a.status for a in stack.api.attempted() if str(a.chat_id) == str(chat)] == [502, 502, 200]

    chat = 5105
    stack.api.fail_next("sendMessage", 429, n=1, chat_id=chat, retry_after=1)
    started = time.monotonic()
    stack.push(tg.text(stack.uid(), chat, stack.uid(), FEE))
    stack.replies(chat)
    waited = time.monotonic() - started
    reply = reply_to(stack, chat)
    delivered(stack, reply)
    record = stack.core.store.deliveries.get(reply)
    # The courier waited Telegram's retry_after for this conversation and tried again (not
    # python-telegram-bot's limiter, which would have held every chat's requests meanwhile).
    assert record is not None and record.attempts == 2 and waited >= 1.0
    assert [a.status for a in stack.api.attempted() if str(a.chat_id) == str(chat)] == [429, 200]


def test_a_429_on_one_chat_holds_up_no_other_chat(stack: Stack) -> None:
    """A platform trial: one group rate-limited with retry_after 5 s delayed three private
    customers' replies by 5.1-5.3 s (python-telegram-bot's limiter waited it out for all chats)."""
    limited, other = 5106, 5107
    stack.api.fail_next("sendMessage", 429, n=1, chat_id=limited, retry_after=4)
    stack.push(tg.text(stack.uid(), limited, stack.uid(), FEE))
    deadline = time.monotonic() + 10
    while not any(str(a.chat_id) == str(limited) for a in stack.api.attempted()):
        assert time.monotonic() < deadline, "the rate-limited chat was never tried"
        time.sleep(0.02)
    started = time.monotonic()
    stack.push(tg.text(stack.uid(), other, stack.uid(), FEE))
    assert len(stack.replies(other)) == 1
    assert time.monotonic() - started < 3.0  # not behind the other chat's 4 s
    assert len(stack.replies(limited)) == 1  # and the limited chat's reply still arrives, once


# ---------------------------------------------------------------------------------- measurement

QUESTIONS = (
    FEE,
    "My card still hasn't arrived",
    "I lost my card",
    "What exchange rate do you use?",
    "My top up failed",
    "How do I get a new card?",
    "Someone stole my card yesterday",
    "Why did my top-up not go through?",
    "When will my card be delivered?",
    "What's the rate for euros?",
)


def test_every_reply_arrives_exactly_once_under_ten_percent_failures(stack: Stack) -> None:
    """60 customers, each asking one question, while 10 % of sendMessage calls fail (half 429 with
    retry_after 1 s, half 502). Every reply must arrive, once."""
    customers = 60
    api = tg.FakeTelegram(fail_rate=0.1, seed=20261130, retry_after=1)
    chats = [7000 + n for n in range(customers)]
    started = time.monotonic()
    with (
        serve_in_thread(api.app) as url,
        running_stack(api, f"{url}/bot", stack.core, stack.service) as busy,
    ):
        for n, chat in enumerate(chats):
            busy.push(tg.text(busy.uid(), chat, busy.uid(), QUESTIONS[n % len(QUESTIONS)]))
        busy.until(lambda: len(api.sent()) >= customers, timeout=45)
        replies = [reply_to(stack, chat) for chat in chats]
        busy.until(lambda: all(_state(stack, r) == DeliveryState.DELIVERED for r in replies), timeout=20)
        time.sleep(0.3)  # a duplicate would have arrived by now
    elapsed = time.monotonic() - started
    per_chat = Counter(str(m["chat_id"]) for m in api.sent())
    attempts = api.attempted()
    statuses = Counter(a.status for a in attempts)
    records = [stack.core.store.deliveries.get(r) for r in replies]
    courier_attempts = [r.attempts for r in records if r is not None]
    print(
        f"\nTelegram delivery under {api.fail_rate:.0%} injected failures: {customers} replies, "
        f"{sum(per_chat.values())} delivered, {len(api.duplicates())} duplicates, "
        f"{customers - len(per_chat)} missing; {len(attempts)} sendMessage attempts "
        f"({dict(sorted(statuses.items()))}); courier attempts per reply: "
        f"max {max(courier_attempts)}, mean {statistics.mean(courier_attempts):.2f} "
        f"(429s and 502s retried by the courier); {elapsed:.1f} s"
    )
    assert statuses[429] + statuses[502] > 0  # failures were injected
    assert per_chat == Counter({str(c): 1 for c in chats})  # all delivered, none twice
    assert api.duplicates() == []
    assert all(r is not None and r.state == DeliveryState.DELIVERED for r in records)
    assert len(attempts) == customers + statuses[429] + statuses[502]


def _state(stack: Stack, message_id: str) -> DeliveryState | None:
    record = stack.core.store.deliveries.get(message_id)
    return record.state if record is not None else None


def _reply_or_none(stack: Stack, chat: int) -> str | None:
    stored = stack.core.store.conversations.conversation_id("telegram", str(chat))
    if stored is None:
        return None
    out = [m for m in stack.core.store.conversations.history(stored) if m.direction == "out"]
    return out[-1].id if out else None


def _filed(stack: Stack, reply: str) -> set[ReviewReason]:
    """The reasons ``reply`` is filed for review under (none while it is not filed)."""
    assert stack.service.ops is not None
    return {r for i in stack.service.ops.review.items() if reply in i.message_ids for r in i.reasons}


def _conversation(stack: Stack, chat: int) -> str | None:
    return stack.core.store.conversations.conversation_id("telegram", str(chat))
