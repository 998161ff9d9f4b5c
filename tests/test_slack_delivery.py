"""Slack delivery: replies split at Slack's limits, rate limits and server errors retried, refusals
recorded and reported; malformed signed payloads refused with a 4xx.

Everything goes through the real slack-bolt and slack_sdk to the fake Web API, which enforces
Slack's documented limits (tests/fake_slack.py) and injects 429s and 5xx on demand.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.assistant import build_channels, build_core, build_service
from bot.channels.slack import EVENTS_PATH, reply_parts
from bot.channels.slack.blocks import MAX_BLOCKS, MAX_TEXT, SECTION_TEXT, handoff_blocks
from bot.choices import HANDOFF_CHOICE, Choice, feedback_choices
from bot.core import Outgoing, TellerCore
from bot.service import TellerService
from bot.settings import get_settings
from bot.storage import DeliveryState, Direction, Handoff, HandoffStatus, ReviewReason, StoredMessage
from bot.web.app import create_app
from tests import fake_slack as sl
from tests.servers import serve_in_thread

SECRET = "signing-secret"
OPS = "COPS"
OPERATOR = "UOPS"
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


def prose(characters: int, seed: str = "fee") -> str:
    """Sentences and paragraphs adding up to about ``characters`` (with `<`, `&` to escape)."""
    sentence = f"The {seed} is < 5 GBP & waived for premium accounts when paid on time. "
    paragraphs, text = [], ""
    while len(text) < characters:
        paragraph = sentence * 7
        paragraphs.append(paragraph.strip())
        text = "\n\n".join(paragraphs)
    return text[:characters].rsplit(" ", 1)[0]


def words(text: str) -> list[str]:
    return re.sub(r"\s+", " ", text).strip().split(" ")


def section_texts(blocks: list[dict[str, Any]]) -> list[str]:
    return [b["text"]["text"] for b in blocks if b["type"] == "section"]


def unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


# ---------------------------------------------------------------------------------- rendering


def test_a_long_reply_is_split_into_sections_never_cut() -> None:
    text = prose(6300)
    reply = Outgoing("m_1", text, (Choice("Talk to a person", HANDOFF_CHOICE), *feedback_choices()))
    [part] = reply_parts(reply)
    sections = section_texts(part.blocks)
    assert len(sections) == 3 and all(len(s) <= SECTION_TEXT for s in sections)
    assert words(unescape(" ".join(sections))) == words(text)  # every word, in order, nothing cut
    assert part.blocks[-1]["type"] == "actions"  # the buttons come after all of the text
    assert sl.message_error({"text": part.text, "blocks": json.dumps(part.blocks)}) is None


def test_a_reply_over_one_message_becomes_several_within_every_limit() -> None:
    text = prose(95_000)
    reply = Outgoing("m_2", text, feedback_choices(), note="Source: the bank's fee schedule")
    parts = reply_parts(reply)
    assert len(parts) >= 3
    for part in parts:
        assert len(part.blocks) <= MAX_BLOCKS and len(part.text) <= MAX_TEXT
        assert sl.message_error({"text": part.text, "blocks": json.dumps(part.blocks)}) is None
    assert all(b["type"] == "section" for p in parts[:-1] for b in p.blocks)  # buttons only on the last
    assert [b["type"] for b in parts[-1].blocks][-2:] == ["actions", "context"]
    shown = " ".join(s for p in parts for s in section_texts(p.blocks))
    assert words(unescape(shown)) == words(text)


def test_a_choice_value_too_long_for_a_button_refers_to_the_stored_reply() -> None:
    long_value = "intent:" + "x" * 2500
    [part] = reply_parts(Outgoing("m_3", "Which one?", (Choice("This", long_value),)))
    [button] = next(b for b in part.blocks if b["type"] == "actions")["elements"]
    assert button["value"] == "ch:m_3:0"


# ---------------------------------------------------------------------------------- end to end


@dataclass
class Stack:
    slack: sl.FakeSlack
    teller: str
    core: TellerCore
    service: TellerService

    def post(self, body: str, content_type: str = JSON) -> httpx.Response:
        return httpx.post(
            self.teller + EVENTS_PATH, content=body, headers=sl.signed(SECRET, body, content_type), timeout=30
        )

    def event(self, event: dict[str, Any]) -> httpx.Response:
        response = self.post(sl.event_body(f"Ev{event['ts']}{event.get('user', '')}", event))
        assert response.status_code == 200, response.text
        return response

    def to(self, channel: str) -> list[dict[str, Any]]:
        return [m for m in self.slack.sent() if m.get("channel") == channel]

    def wait(self, channel: str, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(found := self.to(channel)) >= count:
                return [{**m, "blocks": _blocks(m)} for m in found]
            time.sleep(0.05)
        raise AssertionError(f"expected {count} posts to {channel}, got {self.to(channel)}")

    def handoff(self, channel: str, user: str, ts: str) -> str:
        """Open a handoff for the customer of DM ``channel``; returns the ops thread's ts."""
        self.event(sl.dm(HANDOFF_CHOICE, ts, user=user, channel=channel))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            handoff = self.core.store.handoffs.active_for("slack", channel)
            if handoff is not None and handoff.thread_ts is not None:
                return handoff.thread_ts
            time.sleep(0.05)
        raise AssertionError(f"no handoff thread for {channel}")


def _blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    raw = message.get("blocks", [])
    return json.loads(raw) if isinstance(raw, str) else list(raw or [])


@pytest.fixture()
def stack(teller_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    slack = sl.FakeSlack(seed=7)
    with serve_in_thread(slack.app) as slack_api:
        for name, value in {
            "SLACK_BOT_TOKEN": "xoxb-test",
            "SLACK_SIGNING_SECRET": SECRET,
            "SLACK_API_URL": f"{slack_api}/api/",
            "TELLER_OPS_CHANNEL": OPS,
            "TELLER_OPERATORS": OPERATOR,
        }.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        settings = get_settings()
        core = build_core(settings)
        service = build_service(settings, core)
        app = create_app(core, build_channels(settings, core, service), owns_core=True, service=service)
        with serve_in_thread(app) as teller:
            yield Stack(slack, teller, core, service)


def test_an_operators_long_reply_reaches_a_slack_customer_whole(stack: Stack) -> None:
    thread = stack.handoff("D7", "U7", "1700000100.000100")
    long = prose(6300, seed="transfer fee")
    stack.event(
        {
            "type": "message",
            "channel": OPS,
            "user": OPERATOR,
            "text": long,
            "ts": "1700000101.0",
            "thread_ts": thread,
        }
    )
    posts = stack.wait("D7", 2)  # the handoff reply, then the operator's words
    relayed = posts[-1]
    sections = section_texts(relayed["blocks"])
    assert len(sections) == 3 and all(len(s) <= SECTION_TEXT for s in sections)
    assert words(unescape(" ".join(sections))) == words(long)
    assert not stack.slack.rejected("chat.postMessage")  # nothing Slack had to refuse


def test_every_reply_is_delivered_once_through_injected_429s_and_5xx(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    questions = [
        "my card hasn't arrived yet",
        "how do I top up by bank transfer",
        "what is the exchange rate for euros",
        "I was charged twice for one purchase",
        "can I get a virtual card",
    ]
    count = 60
    stack.slack.fail_rate = 0.10
    for i in range(count):
        stack.event(
            sl.dm(questions[i % len(questions)], f"1700001{i:03d}.000100", user=f"U{i}", channel=f"D{i}")
        )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and sum(1 for i in range(count) if stack.to(f"D{i}")) < count:
        time.sleep(0.1)
    stack.slack.clear_failures()
    per_customer = [len(stack.to(f"D{i}")) for i in range(count)]
    assert per_customer == [1] * count, per_customer  # 100 % delivered, 0 duplicates
    # The ops channel: one post per handoff opened (the same redacted words for every customer, so
    # told apart by count, not text), never a second one for the same handoff. Ops posts go out on
    # the ops worker after the customer's reply, each through its own retries: wait for them too.
    handoffs = stack.core.store.handoffs.recent(limit=count)

    def ops_posts_now() -> list[dict[str, Any]]:
        return [p for p in stack.slack.sent("chat.postMessage") if p.get("channel") == OPS]

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (
        sum(1 for p in ops_posts_now() if str(p.get("text")).startswith("Handoff:")) < len(handoffs)
    ):
        time.sleep(0.1)
    time.sleep(0.5)  # a second post of the same handoff, were there one, would show by now
    ops_posts = ops_posts_now()
    handoff_posts = [p for p in ops_posts if str(p.get("text")).startswith("Handoff:")]
    others = [str(p.get("text")) for p in ops_posts if p not in handoff_posts]
    assert (len(handoff_posts), len(others)) == (len(handoffs), len(set(others))), (
        len(handoff_posts),
        len(handoffs),
        others,
    )
    assert [d for d in stack.slack.duplicates() if not d[2].startswith("Handoff:")] == []
    injected = [a for a in stack.slack.rejected() if a.injected]
    # Both kinds, or the test proves less than it says.
    assert {a.status == 429 for a in injected} == {True, False}, injected
    replies = [m for m in stack.core.store.conversations.history(limit=1000) if m.direction == "out"]
    states = [stack.core.store.deliveries.get(m.id) for m in replies]
    assert len(replies) == count and all(s is not None and s.state == DeliveryState.DELIVERED for s in states)
    customer_attempts = [a for a in stack.slack.attempted() if str(a.channel).startswith("D")]
    with capsys.disabled():
        print(
            f"\nslack delivery under 10 % injected 429/5xx: {count}/{count} replies delivered, "
            f"0 duplicates; {len(customer_attempts)} postMessage attempts to customers, "
            f"{sum(1 for a in injected if a.status == 429)} x 429 and "
            f"{sum(1 for a in injected if a.status >= 500)} x 5xx injected in all"
        )


def test_a_reply_slack_refuses_is_recorded_failed_and_filed_for_review(stack: Stack) -> None:
    stack.slack.fail_channel("D9", error="channel_not_found")
    stack.event(sl.dm("my card hasn't arrived yet", "1700000200.000100", user="U9", channel="D9"))
    deadline = time.monotonic() + 30
    failed = []
    while time.monotonic() < deadline and not failed:
        failed = stack.core.store.deliveries.recent(DeliveryState.FAILED)
        time.sleep(0.05)
    [delivery] = failed
    assert (
        delivery.reason == "channel_not_found"
        and delivery.channel == "slack"
        and delivery.address == "D9:1700000200.000100"
    )
    assert delivery.attempts == 1  # not worth retrying: a permanent refusal
    review = stack.service.ops.review if stack.service.ops else None
    assert review is not None
    deadline = time.monotonic() + 30
    filed: list[Any] = []
    while time.monotonic() < deadline and not filed:
        filed = [i for i in review.items() if ReviewReason.UNDELIVERED in i.reasons]
        time.sleep(0.05)
    [item] = filed
    assert delivery.message_id in item.message_ids


def test_a_transient_failure_is_retried_until_delivered(stack: Stack) -> None:
    stack.slack.fail_next("chat.postMessage", 503, n=2, channel="D3")
    stack.slack.fail_next("chat.postMessage", 429, n=1, channel="D3", retry_after=1)
    stack.event(sl.dm("how do I top up by bank transfer", "1700000300.000100", user="U3", channel="D3"))
    stack.wait("D3", 1)
    assert len(stack.slack.rejected("chat.postMessage")) == 3
    time.sleep(0.5)
    assert len(stack.to("D3")) == 1
    [out] = [m for m in stack.core.store.conversations.history() if m.direction == "out"]
    delivery = stack.core.store.deliveries.get(out.id)
    assert delivery is not None and delivery.state == DeliveryState.DELIVERED and delivery.platform_ids


def test_a_relay_slack_refuses_is_reported_in_the_operators_thread(stack: Stack) -> None:
    thread = stack.handoff("D5", "U5", "1700000400.000100")
    stack.slack.fail_channel("D5", error="is_archived")
    before = len(stack.to(OPS))
    stack.event(
        {
            "type": "message",
            "channel": OPS,
            "user": OPERATOR,
            "text": "Your refund is on its way.",
            "ts": "1700000401.0",
            "thread_ts": thread,
        }
    )
    warning = stack.wait(OPS, before + 1)[-1]
    assert warning.get("thread_ts") == thread
    assert "not delivered" in warning["text"].lower() and "is_archived" in warning["text"]
    # A refusal no retry mends: the operator is not told to try again (a trial's finding).
    assert "try again" not in warning["text"] and "will refuse them again" in warning["text"]


@pytest.mark.parametrize(
    ("body", "content_type", "says"),
    [
        (sl.event_body_without_event(), JSON, "event"),
        (sl.interaction_body_without("actions"), FORM, "actions"),
        (sl.interaction_body_without("actions_items"), FORM, "actions"),
        (sl.interaction_body_without("user"), FORM, "user"),
        (sl.command_body_without("command"), FORM, "slash command"),
        (sl.command_body_without("user_id"), FORM, "user_id"),
    ],
)
def test_signed_payloads_missing_fields_get_a_clear_400(
    stack: Stack, body: str, content_type: str, says: str
) -> None:
    response = stack.post(body, content_type)
    assert response.status_code == 400
    assert "malformed slack payload" in response.text.lower() and says in response.text
    assert stack.core.store.counts().messages == 0


def test_not_helpful_on_slack_is_filed_for_review_and_posted_to_the_ops_channel(stack: Stack) -> None:
    stack.event(sl.dm("my card hasn't arrived yet", "1700000500.000100", user="U4", channel="D4"))
    [reply] = stack.wait("D4", 1)
    no = next(
        e
        for b in reply["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
        if e["action_id"] == "teller_feedback_no"
    )
    shown = {"type": "message", "ts": "1700000501.000100", "text": reply["text"], "blocks": reply["blocks"]}
    response = stack.post(sl.interaction_body(no, shown, channel="D4", user="U4"), FORM)
    assert response.status_code == 200
    deadline = time.monotonic() + 30
    posted: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not posted:
        posted = [p for p in stack.to(OPS) if "not_helpful" in json.dumps(_blocks(p))]
        time.sleep(0.05)
    assert posted, stack.to(OPS)
    [out] = [m for m in stack.core.store.conversations.history() if m.direction == "out"]
    assert out.id == no["value"]


def test_a_thread_broadcast_in_a_dm_is_read_as_a_message(stack: Stack) -> None:
    stack.event(
        sl.thread_broadcast(
            "my card hasn't arrived yet",
            "1700000601.0",
            "1700000600.0",
            user="U6",
            channel="D6",
            channel_type="im",
        )
    )
    [reply] = stack.wait("D6", 1)
    assert reply["thread_ts"] == "1700000600.0"


def test_a_reply_left_pending_by_a_stopped_replica_is_sent_by_a_running_one(stack: Stack) -> None:
    from sqlalchemy import update

    from bot.core import Incoming
    from bot.recovery import DeliveryRecovery
    from bot.storage import DeliveryKind, schema

    store = stack.core.store
    # A replica stored this reply, marked it pending, and died before Slack took it.
    reply = stack.service.handle(
        Incoming("slack", "D8", "U8", "D8:1700000700.0", "my card hasn't arrived yet")
    )
    store.deliveries.begin(reply.message_id, DeliveryKind.REPLY, "slack", "D8:1700000700.0")
    recovery = DeliveryRecovery(stack.service)
    assert recovery.sweep() == 0  # pending, but touched just now: its sender may be alive
    with store.database.transaction() as connection:
        connection.execute(
            update(schema.deliveries)
            .where(schema.deliveries.c.message_id == reply.message_id)
            .values(updated_at=store.database.clock.ago(600))
        )
    assert recovery.sweep() == 1
    [sent] = stack.wait("D8", 1)
    assert sent["thread_ts"] == "1700000700.0" and section_texts(sent["blocks"])[0] == reply.text
    delivery = store.deliveries.get(reply.message_id)
    assert delivery is not None and delivery.state == DeliveryState.DELIVERED
    assert recovery.sweep() == 0 and len(stack.to("D8")) == 1  # once


def test_an_operators_relay_cut_off_mid_send_is_sent_again_as_written(stack: Stack) -> None:
    from sqlalchemy import update

    from bot.recovery import DeliveryRecovery
    from bot.storage import DeliveryKind, Direction, schema

    store = stack.core.store
    thread = stack.handoff("D2", "U2", "1700000800.000100")
    handoff = store.handoffs.by_thread(thread, OPS)
    assert handoff is not None
    relay = store.handoffs.record_relay(
        handoff.id, Direction.OUT, "Call us on +44 20 7946 0958", author="slack:UOPS"
    )
    assert "[PHONE]" in relay.text  # what is kept is redacted ...
    assert store.outbox.text(relay.id) == "Call us on +44 20 7946 0958"  # ... until it is delivered
    store.deliveries.begin(relay.id, DeliveryKind.RELAY, "slack", "D2")
    with store.database.transaction() as connection:
        connection.execute(
            update(schema.deliveries)
            .where(schema.deliveries.c.message_id == relay.id)
            .values(updated_at=store.database.clock.ago(600))
        )
    assert DeliveryRecovery(stack.service).sweep() == 1
    sent = [m for m in stack.to("D2") if "7946" in str(m)]
    assert len(sent) == 1 and "+44 20 7946 0958" in str(sent[0])
    assert not [m for m in stack.to("D2") if "[PHONE]" in str(m)]  # never the redacted copy
    delivery = store.deliveries.get(relay.id)
    assert delivery is not None and delivery.state == DeliveryState.DELIVERED
    assert store.outbox.text(relay.id) is None  # delivered: the text as written is gone
    assert DeliveryRecovery(stack.service).sweep() == 0


def test_a_notice_cut_off_mid_send_warns_the_operators_only_if_it_could_be_theirs(stack: Stack) -> None:
    """A stale notice is marked failed (it is not stored, so cannot be sent again); the handoff's
    thread hears of it unless it was Teller's own (a thank-you for feedback, an interview's turn)."""
    from sqlalchemy import update

    from bot.recovery import DeliveryRecovery
    from bot.storage import DeliveryKind, schema

    store = stack.core.store
    thread = stack.handoff("D6", "U6", "1700000900.000100")
    notices = ["fb:slack:D6:1.0", "iv:slack:D6:2.0", "n-3"]
    for notice in notices:
        store.deliveries.begin(notice, DeliveryKind.NOTICE, "slack", "D6")
    with store.database.transaction() as connection:
        connection.execute(
            update(schema.deliveries)
            .where(schema.deliveries.c.message_id.in_(notices))
            .values(updated_at=store.database.clock.ago(600))
        )
    before = len(stack.to(OPS))
    assert DeliveryRecovery(stack.service).sweep() == 3
    for notice in notices:
        delivery = store.deliveries.get(notice)
        assert delivery is not None and delivery.state == DeliveryState.FAILED
    warning = stack.wait(OPS, before + 1)[-1]
    assert warning.get("thread_ts") == thread and "may not have reached" in warning["text"]
    time.sleep(0.5)  # the desk posts from its worker: the other two would have come with this one
    assert len(stack.to(OPS)) == before + 1


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        (b"{not json", JSON),
        (b"[1, 2, 3]", JSON),
        (b"null", JSON),
        (b"payload=%7Bnot-json", FORM),
        (b"\xff\xfe\x00 not utf-8", JSON),
        (b"\xff\xfe\x00 not utf-8", FORM),
    ],
)
def test_signed_bodies_bolt_cannot_read_get_a_400_and_unsigned_ones_a_401(
    stack: Stack, raw: bytes, content_type: str
) -> None:
    timestamp = str(int(time.time()))
    digest = hmac.new(SECRET.encode(), f"v0:{timestamp}:".encode() + raw, hashlib.sha256).hexdigest()
    signature = f"v0={digest}"  # Slack's v0 scheme, over the raw bytes
    headers = {
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": signature,
        "Content-Type": content_type,
    }
    response = httpx.post(stack.teller + EVENTS_PATH, content=raw, headers=headers)
    assert response.status_code == 400 and "malformed slack payload" in response.text.lower()
    unsigned = httpx.post(stack.teller + EVENTS_PATH, content=raw, headers={"Content-Type": content_type})
    assert unsigned.status_code in (400, 401) and "Traceback" not in unsigned.text


def test_an_operator_naming_teller_in_a_handoff_thread_is_relayed_not_answered(stack: Stack) -> None:
    thread = stack.handoff("D11", "U11", "1700000900.000100")
    words = "<@UTELLER> the customer asks about the overdraft fee"
    reply = {
        "type": "message",
        "channel": OPS,
        "user": OPERATOR,
        "text": words,
        "ts": "1700000901.0",
        "thread_ts": thread,
    }
    before = len(stack.to(OPS))
    stack.event(reply)
    stack.event({**reply, "type": "app_mention"})  # Slack sends both for a mention
    relayed = stack.wait("D11", 2)[-1]
    assert "overdraft fee" in relayed["text"]
    time.sleep(0.5)
    assert len(stack.to(OPS)) == before  # Teller did not answer the operator in the thread
    assert stack.core.store.conversations.conversation_id("slack", f"{OPS}:{thread}") is None


def test_an_empty_button_label_does_not_make_slack_refuse_the_reply() -> None:
    [part] = reply_parts(
        Outgoing("m_4", "Pick one", (Choice("", "intent:card_arrival"), Choice("  ", HANDOFF_CHOICE)))
    )
    assert sl.message_error({"text": part.text, "blocks": json.dumps(part.blocks)}) is None


def _age(stack: Stack, conversation_id: str, seconds: float) -> None:
    """Make a conversation and its handoffs look ``seconds`` old (nothing said since)."""
    from sqlalchemy import update

    from bot.storage import schema

    store = stack.core.store
    then = store.database.clock.ago(seconds)
    with store.database.transaction() as connection:
        connection.execute(
            update(schema.conversations)
            .where(schema.conversations.c.id == conversation_id)
            .values(updated_at=then)
        )
        connection.execute(
            update(schema.handoffs)
            .where(schema.handoffs.c.conversation_id == conversation_id)
            .values(opened_at=then)
        )


def test_a_handoff_nobody_answers_tells_the_customer_the_wait_then_closes_itself(stack: Stack) -> None:
    from bot.handoff_expiry import HandoffExpiry
    from bot.ops_desk import EXPIRED_NOTICE, IDLE_ACTOR

    thread = stack.handoff("D5", "U5", "1700000900.000100")
    told = stack.wait("D5", 1)[-1]["text"]
    # No history yet: no promise of minutes, but when Teller takes over again.
    assert "as soon as one is free" in told and f"within {stack.service.ops.idle_minutes} minutes" in told
    store = stack.core.store
    handoff = store.handoffs.active_for("slack", "D5")
    assert handoff is not None
    expiry = HandoffExpiry(stack.service)
    assert expiry.sweep() == 0  # not idle yet
    _age(stack, handoff.conversation_id, 31 * 60)
    before = len(stack.to(OPS))
    assert expiry.sweep() == 1 and expiry.sweep() == 0  # closed once
    closed = store.handoffs.get(handoff.id)
    assert not closed.is_open and closed.closed_by == IDLE_ACTOR
    assert stack.wait("D5", 2)[-1]["text"] == EXPIRED_NOTICE  # the customer is told
    warning = stack.wait(OPS, before + 1)[-1]  # and the operators see it expired, in its thread
    assert warning.get("thread_ts") == thread and "nobody replied in time" in warning["text"]
    stack.event(sl.dm("What's the overdraft fee?", "1700000901.000100", user="U5", channel="D5"))
    assert "overdraft" in stack.wait("D5", 3)[-1]["text"].lower()  # Teller answers again


def test_a_message_keeps_a_handoff_open_and_the_wait_comes_from_recent_first_replies(stack: Stack) -> None:
    from bot.ops_desk import waiting_notice
    from bot.storage import Direction

    store = stack.core.store
    stack.handoff("D6", "U6", "1700000950.000100")
    handoff = store.handoffs.active_for("slack", "D6")
    assert handoff is not None
    _age(stack, handoff.conversation_id, 31 * 60)
    store.handoffs.record_relay(handoff.id, Direction.IN, "hello? anyone?", platform_id="D6:1700000951.0")
    assert stack.service.ops.expire_idle() == []  # the customer just wrote: still open
    store.handoffs.record_relay(handoff.id, Direction.OUT, "Here now, sorry!", author="slack:UOPS")
    [wait] = store.handoffs.first_reply_waits()
    assert 31 * 60 - 5 < wait < 31 * 60 + 60
    assert "about 32 minutes" in stack.service.ops.waiting_notice()
    assert waiting_notice([30.0, 200.0, 90.0], 30).startswith(
        "Colleagues usually reply within about 2 minutes."
    )
    assert waiting_notice([], 45).endswith("If nobody has replied within 45 minutes, I'll answer you again.")


def test_a_handoffs_first_post_keeps_within_slacks_characters_and_blocks() -> None:
    """A reviewer's finding: twelve long answers made a handoff's first post of 47,640 characters
    (27 blocks), over Slack's 40,000; the newest part is kept and the older named as not shown."""
    handoff = Handoff(
        "h_1", "telegram", "c_1", "42", "42", HandoffStatus.OPEN, "2026-12-05T09:00:00.000000Z", "m_0"
    )
    transcript = [
        StoredMessage(
            f"m_{i}",
            "c_1",
            Direction.IN if i % 2 == 0 else Direction.OUT,
            "telegram",
            "42",
            f"message {i} " + "x" * 7_990,
            f"2026-12-05T08:{i:02d}:00.000000Z",
        )
        for i in range(12)
    ]
    blocks = handoff_blocks(handoff, transcript)
    texts = [str(b.get("text", {}).get("text", "")) for b in blocks if b["type"] == "section"]
    assert len(blocks) <= MAX_BLOCKS and sum(map(len, texts)) <= MAX_TEXT
    assert any("message 11" in t for t in texts) and not any("message 0 " in t for t in texts)
    assert any("not shown" in str(b) for b in blocks if b["type"] == "context")
    assert blocks[-1]["type"] == "actions"
