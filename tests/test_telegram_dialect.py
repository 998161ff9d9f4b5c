"""Telegram's dialect through the real python-telegram-bot against the fake Bot API: groups and
supergroups (answered only when mentioned, replied to or commanded; the mention stripped first),
forum topics, captions, edits; and the pure functions behind them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from telegram import Bot, Message, MessageEntity, Update, User

from bot.channels.telegram import HELP, NOT_TEXT
from bot.channels.telegram import dialect as d
from bot.channels.telegram.transport import TelegramTransport
from bot.core import Outgoing
from bot.policy import ENTRY_GONE
from bot.storage import Direction, StoredMessage
from tests import fake_telegram as tg
from tests.test_telegram import Stack, module_settings, telegram_stack

GROUP = tg.GROUP_ID
FEE = "what's the overdraft fee?"


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


@pytest.fixture(autouse=True)
def no_errors(stack: Stack) -> Iterator[None]:
    """No handler fails and no delivery goes astray in any of these scenarios."""
    before = len(stack.errors.records)
    yield
    assert [r.getMessage() for r in stack.errors.records[before:]] == []


def customer_messages(stack: Stack, conversation: str) -> list[StoredMessage]:
    """The customer's side of a conversation as stored (its id is Telegram's address)."""
    stored = stack.core.store.conversations.conversation_id("telegram", conversation)
    if stored is None:
        return []
    return [m for m in stack.core.store.conversations.history(stored) if m.direction == Direction.IN]


def mention(stack: Stack, chat: int, words: str = FEE, **options: Any) -> dict[str, Any]:
    return tg.mention(stack.uid(), chat, stack.uid(), words, **options)


# ---------------------------------------------------------------------------------------- groups


def test_a_group_is_answered_only_when_it_addresses_teller(stack: Stack) -> None:
    chat = GROUP - 1
    stack.push(
        tg.group_text(stack.uid(), chat, stack.uid(), FEE),  # talk among members
        tg.message(stack.uid(), chat, stack.uid(), chat_type="supergroup", from_id=5, sticker=_sticker()),
        tg.photo(stack.uid(), chat, stack.uid(), caption="Why was my card declined?", chat_type="supergroup"),
        tg.text(stack.uid(), chat, stack.uid(), "/help@another_bot", chat_type="supergroup", from_id=5),
        tg.text(stack.uid(), chat, stack.uid(), "/weather", chat_type="supergroup", from_id=5),
        tg.group_edited(stack.uid(), chat, words=f"{tg.BOT_MENTION} {FEE}"),
        mention(stack, chat, "my card hasn't arrived"),  # the one to answer, last
    )
    [answer] = stack.replies(chat)
    assert answer["text"] != NOT_TEXT and "message_thread_id" not in answer
    stack.settle()
    # Nothing else was answered: the member's talk, the sticker, the photo, another bot's commands.
    assert len(stack.to(chat)) == 1
    [stored] = customer_messages(stack, str(chat))
    # The mention is gone before classification: same decision as for the words alone.
    assert stored.text == "my card hasn't arrived"
    reply = stack.core.store.conversations.exchange(stored.id)[1]
    expected = stack.core.policy.answer("my card hasn't arrived")
    assert reply is not None and (reply.route, reply.intent) == (expected.route.value, expected.intent)


def test_mentions_are_cut_out_by_utf16_offsets(stack: Stack) -> None:
    chat = GROUP - 2
    stack.push(mention(stack, chat, FEE, before="👋 hi "))
    [answer] = stack.replies(chat)
    assert "overdraft" in answer["text"].lower()
    assert [m.text for m in customer_messages(stack, str(chat))] == [f"👋 hi {FEE}"]


def test_a_text_mention_of_the_bot_counts_and_a_bare_mention_gets_the_help(stack: Stack) -> None:
    chat = GROUP - 3
    named = tg.group_text(stack.uid(), chat, stack.uid(), f"Teller, {FEE}")
    named["message"]["entities"] = [
        {"type": "text_mention", "offset": 0, "length": 6, "user": tg.BOT_USER},
    ]
    stack.push(named)
    stack.replies(chat, 1)
    stack.push(tg.mention(stack.uid(), chat, stack.uid(), ""))
    first, second = stack.replies(chat, 2)
    assert "overdraft" in first["text"].lower() and second["text"] == HELP
    assert [m.text for m in customer_messages(stack, str(chat))] == [FEE]


def test_a_reply_to_teller_is_answered_in_a_group(stack: Stack) -> None:
    chat = GROUP - 4
    stack.push(tg.reply_to_bot(stack.uid(), chat, stack.uid(), FEE))
    [answer] = stack.replies(chat)
    assert "overdraft" in answer["text"].lower()
    # A reply to a member is not for Teller; a sticker replying to Teller gets the "text only" note.
    to_member = tg.reply_to_bot(stack.uid(), chat, stack.uid(), "thanks!")
    to_member["message"]["reply_to_message"]["from"] = tg.user(6, "Cy")
    sticker_reply = tg.reply_to_bot(stack.uid(), chat, stack.uid(), "x")
    del sticker_reply["message"]["text"]
    sticker_reply["message"]["sticker"] = _sticker()
    stack.push(to_member, sticker_reply)
    assert stack.replies(chat, 2)[1]["text"] == NOT_TEXT
    stack.settle()
    assert len(stack.to(chat)) == 2


def test_commands_addressed_to_teller_in_a_group(stack: Stack) -> None:
    chat = GROUP - 5
    stack.push(tg.group_command(stack.uid(), chat, stack.uid(), "help"))
    assert stack.replies(chat)[0]["text"] == HELP
    stack.push(tg.group_command(stack.uid(), chat, stack.uid(), "weather"))  # ours, but unknown
    assert stack.replies(chat, 2)[1]["text"] == HELP
    stack.push(tg.text(stack.uid(), chat, stack.uid(), "/human", chat_type="group", from_id=5))
    assert "no one from our team can take over" in stack.replies(chat, 3)[2]["text"].lower()  # no ops channel


def test_an_answer_in_a_group_replies_to_the_members_message_and_in_a_private_chat_does_not(
    stack: Stack,
) -> None:
    chat = GROUP - 9
    first, second = mention(stack, chat), mention(stack, chat, "my card hasn't arrived", from_id=6)
    stack.push(first)
    stack.replies(chat, 1)
    stack.push(second)
    answers = stack.replies(chat, 2)
    # Two members share the chat's conversation: each answer says whose question it answers.
    asked = [u["message"]["message_id"] for u in (first, second)]
    assert [a["reply_parameters"]["message_id"] for a in answers] == asked
    assert all(a["reply_parameters"]["allow_sending_without_reply"] for a in answers)
    private = 4216
    stack.push(tg.text(stack.uid(), private, stack.uid(), FEE))
    [answer] = stack.replies(private)
    assert "reply_parameters" not in answer and "reply_to_message_id" not in answer


def test_a_deep_links_entry_is_answered_and_any_other_start_payload_gets_the_help(stack: Stack) -> None:
    """``t.me/<bot>?start=<entry id>`` on the bank's site opens the chat on that entry's answer,
    stored as the customer asking its question (so review, a correction and a handoff's operators
    read a question, not ``entry:overdraft_fee``: a reviewer's finding); a payload that names no
    entry (renamed since) is told the option is gone; an account-linking token or a payload
    Telegram would not send is neither stored nor read."""
    chat = 4217
    stack.push(tg.text(stack.uid(), chat, stack.uid(), "/start overdraft_fee"))
    [answer] = stack.replies(chat)
    assert "overdraft" in answer["text"].lower()
    [stored] = customer_messages(stack, str(chat))
    reply = stack.core.store.conversations.exchange(stored.id)[1]
    assert reply is not None and reply.kb_id == "overdraft_fee" and reply.route == "faq"
    stack.push(tg.text(stack.uid(), chat, stack.uid(), "/start no_such_entry"))
    assert stack.replies(chat, 2)[1]["text"].startswith(ENTRY_GONE)
    for other in ("/start", "/start a.b", "/start two words", "/start " + "x" * 65):
        stack.push(tg.text(stack.uid(), chat, stack.uid(), other))
    assert [m["text"] for m in stack.replies(chat, 6)[2:]] == [HELP] * 4
    stack.settle()
    question = stack.core.policy.kb.get("overdraft_fee").questions[0]
    assert [m.text for m in customer_messages(stack, str(chat))] == [question, "entry:no_such_entry"]


def test_a_group_answer_whose_question_was_deleted_is_sent_all_the_same(stack: Stack) -> None:
    """Telegram refuses a reply to a message it no longer has unless the send allows it; Teller's
    does (a member may delete the question before the answer goes)."""
    chat = GROUP - 10
    stack.api.note_chats(tg.group_text(stack.uid(), chat, stack.uid(), FEE))
    gone = f"{chat}/999999"
    sent = stack.service.courier.send(stack.channel.transport, gone, Outgoing("", "About your question"))
    assert sent.delivered
    [answer] = stack.to(chat)
    assert answer["reply_parameters"]["message_id"] == 999999


def test_a_forum_topic_is_its_own_conversation_and_gets_the_replies(stack: Stack) -> None:
    chat = GROUP - 6
    in_topic = tg.topic_message(stack.uid(), chat, stack.uid(), f"{tg.BOT_MENTION} {FEE}", thread_id=7)
    in_topic["message"]["entities"] = [{"type": "mention", "offset": 0, "length": len(tg.BOT_MENTION)}]
    unaddressed = tg.topic_message(stack.uid(), chat, stack.uid(), FEE, thread_id=9)
    other = tg.topic_message(stack.uid(), chat, stack.uid(), "/help", thread_id=9)
    stack.push(unaddressed, in_topic, other)
    stack.replies(chat, 2)
    stack.settle()
    replies = stack.to(chat)
    by_topic = {m["message_thread_id"]: m["text"] for m in replies}
    assert "overdraft" in by_topic[7].lower() and by_topic[9] == HELP and len(replies) == 2
    assert [m.text for m in customer_messages(stack, f"{chat}:7")] == [FEE]
    delivery = stack.until(lambda: stack.core.store.deliveries.recent(limit=500))
    assert f"{chat}:7/{in_topic['message']['message_id']}" in {x.address for x in delivery}


def test_a_press_on_an_old_post_in_a_forum_topic_is_answered_in_that_topic(stack: Stack) -> None:
    """A button pressed on a post older than 48 hours comes as an InaccessibleMessage: its chat, but
    no topic. It was answered in the forum's General topic, where every member reads it; the topic
    is now the one Teller's post was in (a review's finding)."""
    chat = GROUP - 8
    asked = tg.topic_message(stack.uid(), chat, stack.uid(), f"{tg.BOT_MENTION} {FEE}", thread_id=11)
    asked["message"]["entities"] = [{"type": "mention", "offset": 0, "length": len(tg.BOT_MENTION)}]
    stack.push(asked)
    stack.replies(chat)
    conversation = f"{chat}:11"
    post = stack.until(
        lambda: next(
            (
                m.platform_id
                for m in stack.core.store.conversations.history()
                if m.direction == Direction.OUT and m.platform_id and m.platform_id.startswith(f"{chat}:")
            ),
            None,
        )
    )
    old = tg.pressed(stack.uid(), tg.MEMBER_ID, "handoff", "q-old")
    old["callback_query"]["message"] = {
        "message_id": int(post.rpartition(":")[2]),
        "date": 0,  # Telegram's mark of an inaccessible message
        "chat": {"id": chat, "type": "supergroup", "title": "Lumen customers", "is_forum": True},
    }
    stack.push(old)
    second = stack.replies(chat, 2)[1]
    assert second.get("message_thread_id") == 11
    assert [m.text for m in customer_messages(stack, conversation)] == [FEE, "handoff"]
    # Its keyboard is not edited away: Telegram refuses to edit an inaccessible message.
    edits = stack.api.sent("editMessageReplyMarkup")
    assert all(str(e.get("message_id")) != post.rpartition(":")[2] for e in edits)


# ---------------------------------------------------------------------------------- private chats


def test_a_caption_is_read_as_text(stack: Stack) -> None:
    chat = 4201
    stack.push(tg.photo(stack.uid(), chat, stack.uid(), caption="Why was my card declined?"))
    [answer] = stack.replies(chat)
    assert answer["text"] != NOT_TEXT
    assert [m.text for m in customer_messages(stack, str(chat))] == ["Why was my card declined?"]
    # In a group, a captioned photo that mentions Teller is answered, the mention cut out.
    group = GROUP - 7
    caption = f"{tg.BOT_MENTION} Why was my card declined?"
    entity = {"type": "mention", "offset": 0, "length": len(tg.BOT_MENTION)}
    stack.push(
        tg.photo(stack.uid(), group, stack.uid(), caption, [entity], chat_type="supergroup", from_id=5)
    )
    stack.replies(group)
    assert [m.text for m in customer_messages(stack, str(group))] == ["Why was my card declined?"]


def test_edits_and_channel_posts_are_ignored(stack: Stack) -> None:
    chat = 4202
    post = tg.text(stack.uid(), -1009, stack.uid(), FEE, chat_type="channel")
    post["channel_post"] = post.pop("message")
    edited_post = tg.text(stack.uid(), -1009, stack.uid(), FEE, chat_type="channel")
    edited_post["edited_channel_post"] = {**edited_post.pop("message"), "edit_date": 1}
    stack.push(
        tg.edited(stack.uid(), chat, 1, FEE),
        tg.edited(stack.uid(), chat, 2, "/human"),
        post,
        edited_post,
        tg.text(stack.uid(), chat, stack.uid(), "/start"),
    )
    stack.replies(chat)
    stack.settle()
    assert [m["text"] for m in stack.to(chat)] == [HELP]
    assert not stack.to(-1009) and customer_messages(stack, str(chat)) == []


#: Telegram's placeholder ``from`` of every group's anonymous administrators.
ANONYMOUS_ADMIN = {"id": 1087968824, "is_bot": True, "first_name": "Group", "username": "GroupAnonymousBot"}


def anonymous(update: dict[str, Any], sender_chat: dict[str, Any]) -> dict[str, Any]:
    """``update`` as sent on behalf of ``sender_chat`` (Telegram's placeholder user in ``from``)."""
    update["message"]["from"] = dict(ANONYMOUS_ADMIN)
    update["message"]["sender_chat"] = sender_chat
    return update


def test_anonymous_administrators_of_two_groups_are_two_customers(stack: Stack) -> None:
    """Every group's anonymous administrators come with one placeholder user in ``from``: they were
    one customer across groups (one history, one set of abuse limits: a second group's question went
    unanswered, a trial's finding). The chat they speak for is the customer."""
    first, second = -1009000000001, -1009000000002
    for chat in (first, second):
        stack.push(anonymous(mention(stack, chat), {"id": chat, "type": "supergroup", "title": "g"}))
        stack.replies(chat)
    speakers = {m.user_id for chat in (first, second) for m in customer_messages(stack, str(chat))}
    assert speakers == {str(first), str(second)}


def test_a_channels_post_copied_into_its_discussion_group_is_not_answered(stack: Stack) -> None:
    """The bank's channel announces "ask @teller_bot ..."; Telegram copies the post into the
    channel's discussion group (``is_automatic_forward``), where Teller answered it under the
    announcement as a customer's question (a trial's finding)."""
    group, channel = -1009000000031, {"id": -1009000000032, "type": "channel", "title": "Bank news"}
    post = anonymous(mention(stack, group, "ask about your card, fees and transfers, any time!"), channel)
    post["message"]["from"] = {"id": 777000, "is_bot": False, "first_name": "Telegram"}
    post["message"]["is_automatic_forward"] = True
    # A post that is a command, copied likewise, opened a handoff for the bank's own channel (review).
    command = anonymous(tg.text(stack.uid(), group, stack.uid(), "/human Our team is here for you"), channel)
    command["message"]["chat"]["type"] = "supergroup"
    command["message"]["from"] = {"id": 777000, "is_bot": False, "first_name": "Telegram"}
    command["message"]["is_automatic_forward"] = True
    stack.push(post, command, mention(stack, group))  # a member's question after them is answered
    [answer] = stack.replies(group)
    assert "overdraft" in answer["text"].lower()
    stack.settle()
    assert len(stack.to(group)) == 1 and [m.text for m in customer_messages(stack, str(group))] == [FEE]


def test_private_chats_need_no_mention_and_unknown_commands_get_the_help(stack: Stack) -> None:
    chat = 4203
    stack.push(
        tg.text(stack.uid(), chat, stack.uid(), "/weather"), tg.sticker(stack.uid(), chat, stack.uid())
    )
    stack.replies(chat, 2)
    stack.settle()
    assert [m["text"] for m in stack.to(chat)] == [HELP, NOT_TEXT]


def test_a_conversation_is_answered_in_order_while_others_go_on(stack: Stack) -> None:
    """Updates are handled concurrently, but one conversation's in the order they came: the quick
    help does not overtake the answer to the question before it."""
    chat, other = 4204, 4205
    stack.push(
        tg.text(stack.uid(), chat, stack.uid(), FEE),
        tg.text(stack.uid(), other, stack.uid(), FEE),
        tg.text(stack.uid(), chat, stack.uid(), "/help"),
        tg.text(stack.uid(), chat, stack.uid(), "I lost my card"),
        tg.text(stack.uid(), chat, stack.uid(), "/help"),
    )
    texts = [m["text"] for m in stack.replies(chat, 4)]
    assert "overdraft" in texts[0].lower() and texts[1] == HELP and texts[3] == HELP
    assert texts[2] not in (HELP, NOT_TEXT) and stack.replies(other)


def test_a_customer_whose_replies_are_stuck_holds_up_no_other_customer(stack: Stack) -> None:
    """Telegram keeps failing for one chat (502s the courier retries with growing pauses): that
    customer's queued messages wait their turn, but every slot of the channel stays free for the
    others, who are answered at once."""
    stuck, others = 4206, [4207, 4208, 4209, 4210, 4211]
    stack.api.fail_chat(stuck, status=502)
    try:
        stack.push(*(tg.text(stack.uid(), stuck, stack.uid(), FEE) for _ in range(6)))
        stack.until(lambda: len(stack.api.rejected("sendMessage")) >= 2)  # it is retrying now
        stack.push(*(tg.text(stack.uid(), chat, stack.uid(), FEE) for chat in others))
        for chat in others:
            stack.replies(chat, timeout=10)
        assert stack.to(stuck) == []
    finally:
        stack.api.clear_failures()
    assert len(stack.replies(stuck, 6, timeout=60)) == 6  # all of them, once the platform is back


# ------------------------------------------------------------------------------------ functions

BOT = User(999, "Teller", is_bot=True, username="teller_test_bot")


def as_message(update: dict[str, Any]) -> Message:
    parsed = Update.de_json(update, Bot("1:x"))
    assert parsed is not None and parsed.effective_message is not None
    return parsed.effective_message


@pytest.mark.parametrize(
    ("text", "spans", "expected"),
    [
        ("@teller_test_bot my card hasn't arrived", [(0, 16)], "my card hasn't arrived"),
        ("@teller_test_bot, my card", [(0, 16)], "my card"),
        ("Hey @teller_test_bot, my card", [(4, 16)], "Hey, my card"),
        ("my card @teller_test_bot", [(8, 16)], "my card"),
        ("👋 @teller_test_bot hi", [(3, 16)], "👋 hi"),  # the emoji is 2 UTF-16 units
        ("a @teller_test_bot b @teller_test_bot c", [(21, 16), (2, 16)], "a b c"),
        ("@teller_test_bot\nline one\nline two", [(0, 16)], "line one\nline two"),
        ("  just words  ", [], "just words"),
        ("@teller_test_bot", [(0, 16)], ""),
    ],
)
def test_cut(text: str, spans: list[tuple[int, int]], expected: str) -> None:
    assert d.cut(text, spans) == expected


def test_who_a_message_is_for() -> None:
    mentioned = as_message(tg.mention(1, GROUP, 1, "hi"))
    other = as_message(tg.group_text(2, GROUP, 2, "@someone_else hi"))  # not an entity of ours
    assert d.addressed(mentioned, BOT) and d.words(mentioned, BOT) == "hi"
    assert not d.addressed(other, BOT) and d.words(other, BOT) == "@someone_else hi"
    upper = tg.group_text(4, GROUP, 4, "@Teller_Test_Bot hi")
    upper["message"]["entities"] = [{"type": MessageEntity.MENTION, "offset": 0, "length": 16}]
    assert d.addressed(as_message(upper), BOT) and d.words(as_message(upper), BOT) == "hi"
    # A forum topic's messages reply to the topic's creation message: not a reply to Teller.
    topic = as_message(tg.topic_message(5, GROUP, 5, "hi", thread_id=7))
    assert not d.addressed(topic, BOT) and d.address_of(topic) == f"{GROUP}:7"
    assert d.addressed(as_message(tg.text(6, 42, 6, "hi")), BOT)
    # Who speaks: the chat a message is sent on behalf of, not Telegram's placeholder user.
    plain = as_message(tg.mention(9, GROUP, 9, "hi"))
    assert d.sender(plain).id == tg.MEMBER_ID
    admin = as_message(anonymous(tg.mention(10, GROUP, 10, "hi"), {"id": GROUP, "type": "supergroup"}))
    assert d.sender(admin).id == GROUP
    assert d.words(as_message(tg.sticker(7, 42, 7)), BOT) is None
    # A reply chain in an ordinary supergroup has a message_thread_id but is no topic.
    chain = tg.reply_to_bot(8, GROUP, 8, "hi")
    chain["message"]["message_thread_id"] = 1
    assert d.address_of(as_message(chain)) == str(GROUP) and d.replies_to(as_message(chain), BOT)


def test_reply_addresses_and_only_an_answers_first_part_replies() -> None:
    assert d.parse_reply_address("-100:7/55") == (-100, 7, 55) and d.parse_address("-100:7/55") == (-100, 7)
    assert d.parse_reply_address("-100/55") == (-100, None, 55)
    assert d.parse_reply_address("42") == (42, None, None)
    for bad in ("-100/", "-100/x", "x/5"):
        with pytest.raises(ValueError):
            d.parse_reply_address(bad)
    transport = TelegramTransport(Bot("123:x"))
    parts = transport.parts("-100/55", Outgoing("m", "word " * 2000))
    assert len(parts) == 3 and [p.reply_to for p in parts] == [55, None, None]
    assert [p.reply_to for p in transport.parts("-100", Outgoing("m", "hello"))] == [None]


def test_addresses() -> None:
    assert d.address(-100, 7) == "-100:7" and d.parse_address("-100:7") == (-100, 7)
    assert d.address(42) == "42" and d.parse_address("42") == (42, None)
    with pytest.raises(ValueError):
        d.parse_address("C123:1.5")


def _sticker() -> dict[str, Any]:
    return tg.sticker(0, 1, 1)["message"]["sticker"]
