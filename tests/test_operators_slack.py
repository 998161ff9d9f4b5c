"""Operators end to end: the allowlist, flag / review / correct in the Slack ops channel, and the human
handoff relayed between a Telegram (or web chat) customer and a Slack thread. Real slack-bolt with
signed requests against a fake Slack Web API, real python-telegram-bot against a fake Bot API."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.assistant import build_channels, build_core, build_service
from bot.channels.slack import EVENTS_PATH, REVIEW_CHOOSE, REVIEW_WRONG, WRONG_ANSWER_VIEW
from bot.choices import HANDOFF_CHOICE
from bot.core import Incoming, Outgoing, TellerCore
from bot.ops_desk import CLOSED_NOTICE, UNREACHABLE_ACTOR, UNREACHABLE_NOTICE
from bot.service import TellerService
from bot.settings import get_settings
from bot.storage import Handoff
from bot.web.app import create_app
from tests import fake_slack as sl
from tests import fake_telegram as tg
from tests.servers import serve_in_thread, wait_for
from tests.webclient import stored_user_id

SECRET = "signing-secret"
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
OPS = "COPS"
OPERATOR = "UOPS"


@dataclass
class Stack:
    slack: sl.FakeSlack
    telegram: tg.FakeTelegram
    teller: str
    core: TellerCore
    service: TellerService
    _updates: int = 0

    def post(self, body: str, content_type: str) -> httpx.Response:
        response = httpx.post(
            self.teller + EVENTS_PATH, content=body, headers=sl.signed(SECRET, body, content_type)
        )
        assert response.status_code == 200, response.text
        return response

    def event(self, event: dict[str, Any]) -> None:
        self.post(sl.event_body(f"Ev{time.monotonic_ns()}", event), JSON)

    def command(self, text: str, user: str = OPERATOR) -> str:
        return self.post(sl.command_body(text, f"{self.teller}/unused", user=user, channel=OPS), FORM).text

    def ops_posts(self, count: int) -> list[dict[str, Any]]:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            found = [m for m in self.slack.sent() if m["channel"] == OPS]
            if len(found) >= count:
                return [{**m, "blocks": _blocks(m)} for m in found]
            time.sleep(0.05)
        raise AssertionError(f"expected {count} posts in the ops channel, got {self.slack.sent()}")

    def telegram_update_id(self) -> int:
        """A fresh Telegram update id (getUpdates never returns ids below its offset)."""
        self._updates += 1
        return self._updates

    def ephemerals(self, count: int) -> list[dict[str, Any]]:
        return self.slack.wait_for("chat.postEphemeral", count)


def _blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    raw = message.get("blocks", [])
    return json.loads(raw) if isinstance(raw, str) else list(raw)


def element(message: dict[str, Any], action_id: str) -> dict[str, Any]:
    return next(
        e
        for b in message["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
        if e["action_id"] == action_id
    )


def press(
    stack: Stack, message: dict[str, Any], action: dict[str, Any], user: str = OPERATOR, ts: str = "9.0"
) -> None:
    block = next(b for b in message["blocks"] if b["type"] == "actions")
    shown = {**message, "ts": ts}
    body = sl.interaction_body(action, shown, channel=OPS, user=user, block_id=block["block_id"])
    stack.post(body, FORM)


@pytest.fixture()
def stack(teller_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    slack, telegram = sl.FakeSlack(), tg.FakeTelegram()
    with serve_in_thread(slack.app) as slack_api, serve_in_thread(telegram.app) as telegram_api:
        for name, value in {
            "SLACK_BOT_TOKEN": "xoxb-test",
            "SLACK_SIGNING_SECRET": SECRET,
            "SLACK_API_URL": f"{slack_api}/api/",
            "TELEGRAM_BOT_TOKEN": "123456:TEST-TOKEN",
            "TELEGRAM_API_URL": f"{telegram_api}/bot",
            "TELLER_OPS_CHANNEL": OPS,
            "TELLER_OPERATORS": f"{OPERATOR},UOPS2,telegram:7",
        }.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        settings = get_settings()
        core = build_core(settings)
        service = build_service(settings, core)
        channels = build_channels(settings, core, service)
        app = create_app(core, channels, owns_core=True, service=service)
        with serve_in_thread(app) as teller:
            yield Stack(slack, telegram, teller, core, service)


def test_flag_review_and_correct_in_slack(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="bot.operators")
    customer = "UCUSTOMER"
    stack.event(sl.dm("What's the overdraft fee?", "1700000001.000100", user=customer))
    stack.slack.wait_for("chat.postMessage", 1)
    stack.event(sl.dm("my new card still hasn't arrived", "1700000002.000100", user=customer))
    stack.slack.wait_for("chat.postMessage", 2)
    time.sleep(0.3)
    replies = [m for m in stack.core.store.conversations.history() if m.direction == "out"]
    assert len(replies) == 2 and all(r.platform_id and r.platform_id.startswith("D1:") for r in replies)
    first, second = replies

    # A customer's :x: is refused (only to them) and logged; an operator's flags the answer.
    channel, ts = (first.platform_id or "").split(":")
    stack.event(sl.reaction_event("x", channel, ts, customer))
    [refusal] = stack.ephemerals(1)
    assert refusal["user"] == customer and "only operators can flag answers" in refusal["text"].lower()
    assert "operator_refused" in caplog.text
    stack.event(sl.reaction_event("thumbsup", channel, ts, OPERATOR))  # not the flag emoji: nothing
    stack.event(sl.reaction_event("x", channel, ts, OPERATOR))
    [item_post] = stack.ops_posts(1)
    assert (
        "Review #" in item_post["blocks"][0]["text"]["text"]
        and "flag" in item_post["blocks"][0]["text"]["text"]
    )

    # Choose another intent from the select menu: stored as a correction by that operator.
    chooser = element(item_post, REVIEW_CHOOSE)
    labels = [o["value"] for o in chooser["options"]]
    intent = next(label for label in labels if label != first.intent)
    press(stack, item_post, {**chooser, "selected_option": {"value": intent}}, user="UINTRUDER")
    assert "only operators can choose intents" in stack.ephemerals(2)[-1]["text"].lower()
    press(stack, item_post, {**chooser, "selected_option": {"value": intent}})
    [update] = stack.slack.wait_for("chat.update", 1)
    assert update["ts"] == "9.0" and "by <@UOPS>" in update["text"] + json.dumps(update.get("blocks", ""))
    [correction] = stack.service.ops.review.corrections()  # type: ignore[union-attr]
    assert (correction.label, correction.author) == (intent, "slack:UOPS")

    # /teller flag by command: refused for a customer, filed for an operator.
    assert "only operators" in stack.command(f"flag {second.id} wrong card answer", user=customer).lower()
    reply = stack.command(f"flag {second.id} wrong card answer")
    assert reply.startswith("Flagged; filed as review item #")
    assert stack.command("flag m_missing") == "No message 'm_missing'."
    assert "`/teller flag <message id> [reason]`" in stack.command("help")  # the ops desk runs here
    second_post = stack.ops_posts(2)[-1]
    [flag] = stack.core.store.feedback.flags(message_id=second.id)
    assert (flag.reason, flag.actor, flag.source) == ("wrong card answer", "slack:UOPS", "command")

    # "Answer is wrong": a modal takes the corrected answer, which becomes a KB entry at once.
    wrong = element(second_post, REVIEW_WRONG)
    press(stack, second_post, wrong, ts="10.0")
    [opened] = stack.slack.wait_for("views.open", 1)
    view = json.loads(opened["view"]) if isinstance(opened["view"], str) else opened["view"]
    assert view["callback_id"] == WRONG_ANSWER_VIEW
    answer = "New cards arrive within 5 working days; you can follow the delivery in the Lumen app."
    values = {"answer": {"answer": {"type": "plain_text_input", "value": answer}}}
    stack.post(sl.view_submission_body(view, values), FORM)
    [*_, updated] = stack.slack.wait_for("chat.update", 2)
    # The settled post names what the new entry overlaps (only reported) and how to resolve it.
    blocks = json.loads(updated["blocks"]) if isinstance(updated["blocks"], str) else updated["blocks"]
    note = blocks[-1]["elements"][0]["text"]
    assert "nothing superseded" in note and "teller kb supersede" in note
    assert "--by op_new_cards_arrive" in note
    kb = stack.core.policy.kb
    hits = kb.search("my new card still hasn't arrived", k=3)
    assert any(h.entry.answer == answer for h in hits)
    kinds = {c.action for c in stack.service.ops.review.corrections()}  # type: ignore[union-attr]
    assert kinds == {"choose", "answer"}
    # Flagged again once its item is settled: said so, not "filed as review item" (a reviewer's finding).
    again = stack.command(f"flag {second.id} still wrong")
    assert again.startswith("Flagged, but that answer's review item #") and "was corrected by" in again


def telegram_handoff(stack: Stack, chat: int = 42) -> tuple[Handoff, dict[str, Any]]:
    """A Telegram customer in ``chat`` asks for a person: ``(handoff, its ops-channel post)``, the
    thread posted."""
    api = stack.telegram
    sent, posts = len(api.sent()), len([m for m in stack.slack.sent() if m["channel"] == OPS])
    api.push(tg.text(stack.telegram_update_id(), chat, 1, "/human"))
    connecting = api.wait_for("sendMessage", sent + 1)[-1]
    assert "connect you" in connecting["text"].lower()
    opened = stack.ops_posts(posts + 1)[-1]
    assert (
        "Handoff" in opened["blocks"][0]["text"]["text"] and "telegram" in opened["blocks"][0]["text"]["text"]
    )
    handoff = wait_for(lambda: stack.core.store.handoffs.active_for("telegram", str(chat)))
    wait_for(lambda: stack.core.store.handoffs.get(handoff.id).thread_ts)
    return stack.core.store.handoffs.get(handoff.id), opened


def in_thread(handoff: Handoff, text: str, user: str, ts: str) -> dict[str, Any]:
    """A message event in ``handoff``'s ops thread."""
    return {
        "type": "message",
        "channel": OPS,
        "channel_type": "channel",
        "user": user,
        "text": text,
        "ts": ts,
        "thread_ts": handoff.thread_ts,
    }


def held_relay(stack: Stack) -> tuple[Handoff, dict[str, Any], int]:
    """A Telegram handoff whose operator's first relay ("Your refund of £50 was approved.") Telegram
    holds back (429, retry after 2 s), 0.3 s into its wait: ``(handoff, its ops post, messages sent
    to Telegram before the relay)``."""
    handoff, opened = telegram_handoff(stack)
    before = len(stack.telegram.sent())
    stack.telegram.fail_next("sendMessage", 429, n=1, retry_after=2)
    stack.event(in_thread(handoff, "Your refund of £50 was approved.", OPERATOR, "1800000001.000001"))
    time.sleep(0.3)
    return handoff, opened, before


def test_an_operators_messages_reach_the_customer_in_order_through_a_rate_limit(stack: Stack) -> None:
    """The first relay held back by Telegram (429, retry after 2 s) was overtaken by the operator's
    next message, on another listener thread (a reviewer's trial)."""
    api = stack.telegram
    handoff, _, before = held_relay(stack)
    stack.event(in_thread(handoff, "Sorry, correction: it was £15, not £50.", OPERATOR, "1800000001.000002"))
    sent = api.wait_for("sendMessage", before + 2)[before:]
    assert [m["text"] for m in sent] == [
        "Your refund of £50 was approved.",
        "Sorry, correction: it was £15, not £50.",
    ]


def test_close_waits_for_a_relay_on_its_way_and_a_relay_after_it_is_told_it_came_too_late(
    stack: Stack,
) -> None:
    """Close pressed while a relay waited out a rate limit: the "closed" notice reached the
    customer first, and the relay queued behind got only "Handoff ... is closed" (found in review)."""
    api = stack.telegram
    handoff, opened, before = held_relay(stack)
    press(stack, opened, element(opened, "teller_handoff_close"), ts=handoff.thread_ts or "")
    time.sleep(0.3)
    posts = len(stack.ops_posts(1))
    stack.event(in_thread(handoff, "One more thing: it takes 3 days.", OPERATOR, "1800000003.000002"))
    sent = api.wait_for("sendMessage", before + 2)[before:]
    assert [m["text"] for m in sent] == ["Your refund of £50 was approved.", CLOSED_NOTICE]
    late = stack.ops_posts(posts + 1)[-1]
    assert late["thread_ts"] == handoff.thread_ts and "One more thing" not in json.dumps(api.sent())
    # A relay cut off mid-send is found by its message, whatever its address says (a group's names
    # the message it replies to; a group moved to a supergroup has a new id).
    reopened, _ = telegram_handoff(stack, chat=43)
    stack.event(in_thread(reopened, "Hello again.", OPERATOR, "1800000003.000003"))
    relay = wait_for(
        lambda: next((m for m in stack.core.store.handoffs.transcript(reopened.id) if m.author), None)
    )
    warnings = len(stack.ops_posts(1))
    assert stack.service.ops is not None
    stack.service.ops.relay_interrupted("telegram", "not-its-address", relay.id)
    assert "may not have reached the customer" in stack.ops_posts(warnings + 1)[-1]["text"]


def test_an_operator_is_told_an_edit_or_deletion_does_not_reach_the_customer(stack: Stack) -> None:
    """An operator's edit in a handoff's thread (a corrected figure) never reached the customer, and
    nothing said so (a reviewer's trial). Teller's own edits and someone else's say nothing."""
    api = stack.telegram
    handoff, _ = telegram_handoff(stack)
    stack.event(in_thread(handoff, "Your refund of £50 was approved.", OPERATOR, "1800000002.000001"))
    api.wait_for("sendMessage", 2)
    posts = len(stack.ops_posts(1))

    def changed(user: str, *, again: bool = False, unfurled: bool = False, **extra: Any) -> dict[str, Any]:
        event = sl.message_changed(
            "Your refund of £15 was approved.",
            "1800000002.000001",
            "Your refund of £50 was approved.",
            user=user,
            channel=OPS,
            channel_type="channel",
            thread_ts=handoff.thread_ts,
        )
        event["message"] |= extra
        if unfurled:  # Slack's unfurl of a link: the same message, no ``edited``
            del event["message"]["edited"]
        if again:
            event["previous_message"]["edited"] = {"user": user, "ts": "1800000002.000008"}
        return event

    stack.event(changed("UINTRUDER"))  # not an operator: their chatter
    stack.event(changed("UBOT", bot_id="B1"))  # Teller's own posts are updated so
    stack.event(changed(OPERATOR, unfurled=True, attachments=[{"title": "Fees"}]))  # no edit
    stack.event(changed(OPERATOR))
    edit_note = stack.ops_posts(posts + 1)[-1]
    assert edit_note["thread_ts"] == handoff.thread_ts and "did not reach the customer" in edit_note["text"]
    # The same message edited again: noted once (a note for each edit flooded the thread).
    stack.event(changed(OPERATOR, again=True))
    deleted = sl.message_deleted(
        "1800000002.000001",
        "x",
        user=OPERATOR,
        channel=OPS,
        channel_type="channel",
        thread_ts=handoff.thread_ts,
    )
    stack.event(deleted)
    delete_note = stack.ops_posts(posts + 2)[-1]
    assert "does not take it back" in delete_note["text"]
    time.sleep(0.5)
    assert len(stack.ops_posts(posts + 2)) == posts + 2 and len(api.sent()) == 2  # nothing else said


def test_an_ops_channel_the_bot_cannot_post_in_tells_the_customer_at_once(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    """The bot was never invited to the ops channel (Slack's ``not_in_channel``; or the channel is
    gone or archived): a trial's customer was told a colleague would join, and their next message
    ("my card was stolen") went nowhere, the post retried every five minutes. The handoff closes, the
    customer is told no colleague can be reached (after "I'll connect you", also when that reply is
    held by a rate limit: a review saw the notice overtake it), and Teller answers again. Another
    customer's handoff is not held up meanwhile (the notice was first sent on the ops worker)."""
    api = stack.telegram
    stack.slack.fail_next("chat.postMessage", 200, n=1, channel=OPS, error="not_in_channel")
    api.fail_next("sendMessage", 429, n=2, chat_id=4701, retry_after=2)
    caplog.set_level(logging.ERROR, logger="bot.ops_desk")
    api.push(tg.text(stack.telegram_update_id(), 4701, 1, "/human"))
    api.wait_for_attempts("sendMessage", 1)
    api.push(tg.text(stack.telegram_update_id(), 4702, 1, "/human"))  # the channel works again
    stack.ops_posts(1)  # its thread, while the first customer's words are still held
    assert [m for m in api.sent() if m["chat_id"] == 4701] == []
    connecting, told = [m["text"] for m in api.wait_for("sendMessage", 3, timeout=30) if m["chat_id"] == 4701]
    assert "connect you" in connecting.lower() and told == UNREACHABLE_NOTICE
    conversation = stack.core.store.conversations.conversation_id("telegram", "4701")
    [handoff] = [h for h in stack.core.store.handoffs.recent() if h.conversation_id == conversation]
    assert not handoff.is_open and handoff.closed_by == UNREACHABLE_ACTOR and handoff.thread_ts is None
    [line] = [r for r in caplog.records if r.getMessage() == "handoff_ops_unreachable"]
    assert "not_in_channel" in line.fields["error"]  # type: ignore[attr-defined]
    api.push(tg.text(stack.telegram_update_id(), 4701, 2, "What's the overdraft fee?"))
    assert "overdraft" in api.wait_for("sendMessage", 4)[-1]["text"].lower()

    # An ops channel archived in the middle of a handoff: the customer's next words are refused
    # there, and the customer is told the same (they waited, unanswered, until it went idle).
    handoff, _ = telegram_handoff(stack, chat=4902)
    stack.slack.fail_channel(OPS, "is_archived")
    sent = len(api.sent())
    api.push(tg.text(stack.telegram_update_id(), 4902, 2, "my card was stolen, please block it now"))
    assert api.wait_for("sendMessage", sent + 1)[-1]["text"] == UNREACHABLE_NOTICE
    assert stack.core.store.handoffs.get(handoff.id).closed_by == UNREACHABLE_ACTOR
    stack.slack.clear_failures()


def test_a_web_customer_is_told_no_colleague_can_be_reached(stack: Stack) -> None:
    """The web chat polls during a handoff: one the ops channel refused closed before the first poll
    said "Our colleague has closed this conversation" (no colleague ever saw it), in review."""
    stack.slack.fail_channel(OPS, "not_in_channel")
    auth = {"Authorization": "Bearer " + httpx.post(f"{stack.teller}/api/sessions").json()["token"]}
    first = httpx.post(f"{stack.teller}/api/messages", json={"text": HANDOFF_CHOICE}, headers=auth).json()
    wait_for(lambda: [h for h in stack.core.store.handoffs.recent() if h.closed_by == UNREACHABLE_ACTOR])
    query = {"after": first["message_id"]}
    polled = httpx.get(f"{stack.teller}/api/messages", params=query, headers=auth).json()
    assert polled["handoff_open"] is False and polled["closed_notice"] == UNREACHABLE_NOTICE
    stack.slack.clear_failures()
    # A later poll after the customer's next message is not told again.
    later = httpx.post(
        f"{stack.teller}/api/messages", json={"text": "What's the overdraft fee?"}, headers=auth
    )
    polled = httpx.get(
        f"{stack.teller}/api/messages", params={"after": later.json()["message_id"]}, headers=auth
    ).json()
    assert polled["closed_notice"] is None


def posted_at(stack: Stack, reply_id: str) -> str:
    """The platform id (``chat:post``) Teller's reply ``reply_id`` was delivered under."""
    conversations = stack.core.store.conversations
    return str(wait_for(lambda: conversations.message(reply_id).platform_id))


def press_helpful(stack: Stack, group: int, answer: dict[str, Any], by: int, post: int | None = None) -> None:
    """Member ``by`` presses "Helpful" under ``answer`` (its post, or ``post``) in the Telegram
    supergroup ``group``."""
    buttons = [b for row in answer["reply_markup"]["inline_keyboard"] for b in row]
    helpful = next(b["callback_data"] for b in buttons if b["text"] == "Helpful")
    press = tg.pressed(stack.telegram_update_id(), by, helpful, f"q-{by}")
    message = press["callback_query"]["message"]
    message["chat"] = {"id": group, "type": "supergroup", "title": "g"}
    message["message_id"] = post or int(posted_at(stack, helpful.rsplit(":", 1)[1]).split(":")[1])
    stack.telegram.push(press)


def test_rating_another_members_answer_in_a_shared_chat_says_who_may(stack: Stack) -> None:
    """Everyone in a group or channel sees an answer's feedback buttons; a member pressing them on
    another member's answer was told "That answer is no longer on record" (Telegram) or nothing
    (Slack), a trial's finding. They are told only the person who asked can rate it; nothing is
    recorded, and the asker still can."""
    stack.event(sl.mention("What's the overdraft fee?", "1700000005.000200", channel="C1", user="UANN"))
    reply = stack.slack.wait_for("chat.postMessage", 1)[-1]
    blocks = json.loads(reply["blocks"]) if isinstance(reply["blocks"], str) else reply["blocks"]
    actions = next(b for b in blocks if b["type"] == "actions")["elements"]
    no = next(a for a in actions if a["action_id"] == "teller_feedback_no")
    message = {
        "ts": posted_at(stack, no["value"]).split(":", 1)[1],
        "thread_ts": "1700000005.000200",
        "text": reply["text"],
        "blocks": blocks,
    }
    stack.post(sl.interaction_body(no, message, channel="C1", user="UBOB"), FORM)
    [told] = stack.slack.wait_for("chat.postEphemeral", 1)
    assert told["user"] == "UBOB" and told["text"] == "Only the person who asked can rate this answer."
    assert told["thread_ts"] == "1700000005.000200"  # where the press was made (a review's finding)
    assert stack.core.store.feedback.feedback() == [] and stack.slack.sent("chat.update") == []
    stack.post(sl.interaction_body(no, message, channel="C1", user="UANN"), FORM)
    stack.slack.wait_for("chat.update", 1)
    assert [f.helpful for f, _ in stack.core.store.feedback.feedback()] == [False]
    # A Telegram group's member, likewise (the answer to member 5, pressed by member 6).
    api, group = stack.telegram, -1009000000021
    api.push(tg.mention(stack.telegram_update_id(), group, 5, "What's the overdraft fee?", from_id=5))
    answer = api.wait_for("sendMessage", 1)[-1]
    press_helpful(stack, group, answer, by=6)
    [said] = api.wait_for("answerCallbackQuery", 1)
    assert said["text"] == "Only the person who asked can rate this answer."
    # A forged press naming that answer from another post learns nothing of it (as before).
    press_helpful(stack, group, answer, by=6, post=99999)
    said = api.wait_for("answerCallbackQuery", 2)[-1]
    assert said["text"] == "That answer is no longer on record."
    assert len(stack.core.store.feedback.feedback()) == 1
    # The group's anonymous administrators speak as the group: their answer is theirs to rate,
    # though each press names the person (a review's finding: they were told they had not asked).
    asked = tg.mention(stack.telegram_update_id(), group, 7, "What's the overdraft fee?")
    asked["message"]["sender_chat"] = {"id": group, "type": "supergroup", "title": "g"}
    api.push(asked)
    press_helpful(stack, group, api.wait_for("sendMessage", 2)[-1], by=31337)
    said = api.wait_for("answerCallbackQuery", 3)[-1]
    assert said["text"] != "Only the person who asked can rate this answer."
    assert len(stack.core.store.feedback.feedback()) == 2


def test_a_handoff_follows_its_group_to_the_supergroup(stack: Stack) -> None:
    """A group with an open handoff upgraded to a supergroup: the operator's relays go to the
    supergroup at once (each was sent to the old group first and refused, session 61's note)."""
    api = stack.telegram
    group, supergroup = -4601, -1004601
    handoff, _ = telegram_handoff(stack, chat=group)
    api.migrate(group, supergroup)
    api.push(
        tg.message(stack.telegram_update_id(), group, 9, chat_type="group", migrate_to_chat_id=supergroup)
    )
    moved = wait_for(lambda: stack.core.store.handoffs.active_for("telegram", str(supergroup)))
    assert moved.id == handoff.id and moved.customer_chat_id == str(supergroup)
    sent = len(api.sent())
    stack.event(in_thread(handoff, "Your new card is on its way.", OPERATOR, "1800000000.000101"))
    relayed = api.wait_for("sendMessage", sent + 1)[-1]
    assert relayed["chat_id"] == supergroup and relayed["text"] == "Your new card is on its way."
    assert [a for a in api.attempted() if str(a.params.get("chat_id")) == str(group) and not a.ok] == []
    api.clear_failures()


def test_handoff_relay_between_telegram_and_a_slack_thread(stack: Stack) -> None:
    api = stack.telegram
    handoff, opened = telegram_handoff(stack)

    # The customer's next message goes to the thread, not to the policy (and gets no bot reply).
    api.push(tg.text(2, 42, 2, "I was charged twice for my coffee, card 4111 1111 1111 1111"))
    posted = stack.ops_posts(2)[-1]
    assert posted["thread_ts"] == handoff.thread_ts and "charged twice" in posted["text"]
    assert "4111 1111 1111 1111" not in posted["text"]  # what reaches Slack is redacted
    time.sleep(0.5)
    assert len(api.sent()) == 1

    # Someone who is not an operator cannot speak for the bank; an operator's reply reaches Telegram.
    def thread_message(text: str, user: str, ts: str) -> dict[str, Any]:
        return in_thread(handoff, text, user, ts)

    stack.event(thread_message("lol", "UINTRUDER", "1800000000.000001"))
    assert "only operators can reply" in stack.ephemerals(1)[0]["text"].lower()
    stack.event(
        thread_message(
            "Hi, I'm Sam from Lumen. I've *refunded* the second charge: "
            "see <https://lumen.example/my_refunds|_your refunds_>.",
            OPERATOR,
            "1800000000.000002",
        )
    )
    relayed = api.wait_for("sendMessage", 2)[-1]
    # Slack's marks do not reach Telegram, which shows text as typed; the link's own underscores stay.
    assert relayed["chat_id"] == 42 and relayed["text"] == (
        "Hi, I'm Sam from Lumen. I've refunded the second charge: "
        "see your refunds (https://lumen.example/my_refunds)."
    )

    # Close: the customer is told, and Teller answers again.
    close = element(opened, "teller_handoff_close")
    press(stack, opened, close, ts=handoff.thread_ts or "")
    assert api.wait_for("sendMessage", 3)[-1]["text"] == CLOSED_NOTICE
    api.push(tg.text(3, 42, 3, "What's the overdraft fee?"))
    assert "overdraft" in api.wait_for("sendMessage", 4)[-1]["text"].lower()

    closed = stack.core.store.handoffs.get(handoff.id)
    assert closed.status == "closed" and closed.closed_by == "slack:UOPS"
    # A second operator's press (a stale button, or both at once) names who closed it, and the
    # customer is not told twice (both presses read "Closed by" themselves, a reviewer's finding).
    updates = len(stack.slack.sent("chat.update"))
    press(stack, opened, close, user="UOPS2", ts=handoff.thread_ts or "")
    *_, note = stack.slack.wait_for("chat.update", updates + 1)
    assert "Closed by <@UOPS>" in json.dumps(note["blocks"]) and "UOPS2" not in json.dumps(note["blocks"])
    time.sleep(0.5)
    assert len(api.sent()) == 4
    transcript = stack.core.store.handoffs.transcript(handoff.id)
    human = [(m.direction, m.author) for m in transcript if m.route == "human"]
    assert human == [("in", None), ("out", "slack:UOPS")]
    assert next(m.text for m in transcript if m.route == "human").endswith("card [CARD]")


def test_web_chat_customer_gets_operator_replies_by_polling(stack: Stack) -> None:
    auth = {"Authorization": "Bearer " + httpx.post(f"{stack.teller}/api/sessions").json()["token"]}
    user = stored_user_id(stack.core, headers=auth)
    first = httpx.post(f"{stack.teller}/api/messages", json={"text": HANDOFF_CHOICE}, headers=auth).json()
    assert first["route"] == "handoff"
    [opened] = stack.ops_posts(1)
    handoff = wait_for(lambda: stack.core.store.handoffs.active_for("web", user))
    thread = wait_for(lambda: stack.core.store.handoffs.get(handoff.id).thread_ts)

    quiet = httpx.post(f"{stack.teller}/api/messages", json={"text": "Still there?"}, headers=auth).json()
    assert quiet["reply"] == "" and quiet["route"] == "human"
    # A retried message during the handoff is answered with the stored message's id, which the page
    # may poll after (an id of another form would be refused, and the page would see nothing more).
    retry = {"text": "Hello?", "client_message_id": "k-relay"}
    sent, again = (httpx.post(f"{stack.teller}/api/messages", json=retry, headers=auth).json() for _ in "12")
    assert sent["message_id"] == again["message_id"] and sent["message_id"].startswith("m_")
    after_retry = {"after": again["message_id"]}
    assert httpx.get(f"{stack.teller}/api/messages", params=after_retry, headers=auth).status_code == 200
    # The id again with other words is a client's mistake, not a retry: 409, whether the first
    # attempt was stored before this one was looked up or (a race) only while it was relayed.
    reused = {"text": "Another question", "client_message_id": "k-relay"}
    assert httpx.post(f"{stack.teller}/api/messages", json=reused, headers=auth).status_code == 409
    replay, stale = stack.service.core.replay, [True]

    def racing(incoming: Incoming) -> Outgoing | None:
        if stale and stale.pop():
            return None  # looked up before the first attempt was stored
        return replay(incoming)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(stack.service.core, "replay", racing)
        raced = httpx.post(f"{stack.teller}/api/messages", json=reused, headers=auth)
        assert raced.status_code == 409 and "different message" in raced.json()["detail"]
        stale.append(True)
        same = httpx.post(f"{stack.teller}/api/messages", json=retry, headers=auth).json()
        assert same["message_id"] == sent["message_id"]
    stack.event(
        {
            "type": "message",
            "channel": OPS,
            "channel_type": "channel",
            "user": OPERATOR,
            "text": "Yes, I'm looking at your account now. Call me on +44 20 7946 0958.",
            "ts": "1800000001.000001",
            "thread_ts": thread,
        }
    )
    polled = wait_for(
        lambda: httpx.get(
            f"{stack.teller}/api/messages", params={"after": first["message_id"]}, headers=auth
        ).json()["messages"]
    )
    # The customer reads the operator's words as written; the store keeps them redacted.
    assert [m["reply"] for m in polled] == [
        "Yes, I'm looking at your account now. Call me on +44 20 7946 0958."
    ]
    relay_id = polled[0]["message_id"]
    assert stack.core.store.conversations.message(relay_id).text.endswith("Call me on [PHONE].")
    fetched = stack.core.store.deliveries.get(relay_id)  # fetched is delivered
    assert fetched is not None and fetched.delivered and fetched.channel == "web"
    assert stack.core.store.outbox.text(relay_id) is None  # and its text as written is gone
    press(stack, opened, element(opened, "teller_handoff_close"), ts=thread)
    state = wait_for(
        lambda: (
            (s := httpx.get(f"{stack.teller}/api/messages", headers=auth).json())["handoff_open"] is False
            and s
        )
    )
    assert state["closed_notice"] == CLOSED_NOTICE


def test_retrain_from_slack_is_for_operators_and_reports_in_the_ops_channel(stack: Stack) -> None:
    assert "only operators can retrain the model" in stack.command("retrain", user="UCUSTOMER").lower()
    assert (
        stack.command("retrain")
        == "Retraining started; progress and the result are posted in the ops channel."
    )
    [announced] = stack.ops_posts(1)
    assert announced["text"] == (
        "Retraining (continuing from the active model) requested by slack:UOPS: starting..."
    )
    # With no corrections in the queue there is nothing to learn: said so, and nothing changes.
    [final] = wait_for(lambda: [u for u in stack.slack.sent("chat.update") if "did not promote" in u["text"]])
    assert final["channel"] == OPS and final["text"].startswith("Retraining did not promote a model")
    assert "nothing to learn" in final["text"] and "The active model is unchanged" in final["text"]
    assert stack.command("retrain sideways").startswith("Usage: `/teller retrain`")
    assert stack.command("retrain from-scratch").startswith("Retraining started")
    assert stack.ops_posts(2)[-1]["text"] == "Retraining (from scratch) requested by slack:UOPS: starting..."


def test_slack_text_is_translated_at_the_boundary_both_ways(stack: Stack) -> None:
    """A customer's ``<!channel>`` pings nobody in the ops channel; an operator's "< £5 & waived"
    (escaped by Slack) reaches a web customer as written."""
    auth = {"Authorization": "Bearer " + httpx.post(f"{stack.teller}/api/sessions").json()["token"]}
    user = stored_user_id(stack.core, headers=auth)
    first = httpx.post(
        f"{stack.teller}/api/messages",
        json={"text": "<!channel> I want to talk to a person"},
        headers=auth,
    ).json()
    if first["route"] != "handoff":
        first = httpx.post(f"{stack.teller}/api/messages", json={"text": HANDOFF_CHOICE}, headers=auth).json()
    posts = stack.ops_posts(1)
    handoff = wait_for(lambda: stack.core.store.handoffs.active_for("web", user))
    thread = wait_for(lambda: stack.core.store.handoffs.get(handoff.id).thread_ts)
    shown = json.dumps([p["blocks"] for p in posts]) + json.dumps([p.get("text") for p in stack.slack.sent()])
    assert "<!channel>" not in shown and "&lt;!channel&gt;" in shown
    httpx.post(f"{stack.teller}/api/messages", json={"text": "fee < 5 & <@U99>?"}, headers=auth)
    relayed = wait_for(
        lambda: [m for m in stack.slack.sent() if m.get("thread_ts") == thread and "fee" in m.get("text", "")]
    )
    assert relayed[0]["text"].endswith("fee &lt; 5 &amp; &lt;@U99&gt;?")
    stack.event(
        {
            "type": "message",
            "channel": OPS,
            "channel_type": "channel",
            "user": OPERATOR,
            "text": "The fee is &lt; £5 &amp; waived, see <https://lumen.example/fees|the fee table>",
            "ts": "1800000002.000001",
            "thread_ts": thread,
        }
    )
    polled = wait_for(
        lambda: httpx.get(
            f"{stack.teller}/api/messages", params={"after": first["message_id"]}, headers=auth
        ).json()["messages"]
    )
    assert [m["reply"] for m in polled] == [
        "The fee is < £5 & waived, see the fee table (https://lumen.example/fees)"
    ]


def test_slack_messages_from_people_are_answered_and_from_bots_ignored(stack: Stack) -> None:
    def dm(text: str, ts: str, **extra: Any) -> None:
        stack.event({**sl.dm(text, ts, channel="D7"), **extra})

    dm("Why was my card declined?", "1800000003.000001", subtype="file_share", files=[{"id": "F1"}])
    dm("old text", "1800000003.000002", subtype="message_changed")
    dm("bye", "1800000003.000003", subtype="message_deleted")
    dm("I am a bot, answer me", "1800000003.000004", bot_id="B9")
    stack.event({**sl.mention("<@UTELLER> what is the overdraft fee?", "1800000003.000005"), "bot_id": "B9"})
    stack.event(
        {**sl.mention("<@UTELLER> what is the overdraft fee?", "1800000003.000006"), "subtype": "bot_message"}
    )
    wait_for(lambda: [m for m in stack.slack.sent() if m["channel"] == "D7"])
    time.sleep(1.0)  # anything else would have been posted by now
    to_customers = [m for m in stack.slack.sent() if m["channel"] != OPS]
    assert [m["channel"] for m in to_customers] == ["D7"]
    assert to_customers[0]["thread_ts"] == "1800000003.000001"
