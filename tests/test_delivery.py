"""The courier on its own: splitting, retries, resuming after accepted parts, one sender at a time,
and delivery states that survive database blips. A scripted in-memory transport stands for the
platform (the channel tests run the same courier against the fake Telegram and Slack servers)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from bot.core import Outgoing
from bot.delivery import Courier, split_text, utf16_length
from bot.errors import DeliveryError
from bot.storage import DeliveryKind, DeliveryState, NewExchange, Store, StoreError


class ScriptedTransport:
    """Takes parts of ``size`` characters; ``failures`` maps a part's text to the errors its next
    posts raise, in order. Records every accepted post."""

    name = "fake"

    def __init__(self, size: int = 10, delay: float = 0.0) -> None:
        self.size = size
        self.delay = delay
        self.failures: dict[str, list[DeliveryError]] = {}
        self.accepted: list[str] = []
        self.posts = 0
        self._lock = threading.Lock()

    def parts(self, address: str, outgoing: Outgoing) -> Sequence[str]:
        return split_text(outgoing.text, self.size)

    def post(self, address: str, part: str) -> str:
        time.sleep(self.delay)
        with self._lock:
            self.posts += 1
            pending = self.failures.get(part)
            if pending:
                raise pending.pop(0)
            self.accepted.append(part)
            return f"{address}:{len(self.accepted)}"


@pytest.fixture()
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "teller.db")


def reply_id(store: Store, text: str = "hello") -> str:
    _, reply = store.conversations.record_exchange(NewExchange("fake", "c1", "u1", text, "answer"))
    return reply.id


def courier(store: Store) -> Courier:
    return Courier(store.deliveries, sleep=lambda _: None)


THREE_PARTS = "alpha one. bravo two. charlie 3."  # three parts of at most 10 characters


def test_split_text_never_cuts_inside_a_word_when_a_break_fits_and_keeps_every_word() -> None:
    text = "The fee is 5 GBP.\n\nIt is waived for premium accounts. Ask us about it any time."
    pieces = split_text(text, 20)
    assert all(len(p) <= 20 for p in pieces)
    assert " ".join(pieces).split() == text.split()
    assert pieces[0] == "The fee is 5 GBP."  # the paragraph break came first
    assert split_text("x" * 25, 10) == ["x" * 10, "x" * 10, "x" * 5]  # no break at all: hard split
    emoji = "😀" * 3000  # two UTF-16 units each
    parts = split_text(emoji, 4096, utf16_length)
    assert [utf16_length(p) for p in parts] == [4096, 1904] and "".join(parts) == emoji
    with pytest.raises(ValueError):
        split_text("x", 0)


def test_a_refused_part_stops_the_delivery_and_a_later_send_resumes_after_the_accepted_ones(
    store: Store,
) -> None:
    transport, message_id = ScriptedTransport(), reply_id(store)
    transport.failures["charlie 3."] = [DeliveryError("Bad Request: chat not found")]
    first = courier(store).send(transport, "chat", Outgoing(message_id, THREE_PARTS), message_id)
    assert not first.delivered and first.platform_ids == ("chat:1", "chat:2")
    failed = store.deliveries.get(message_id)
    assert failed is not None and failed.state == DeliveryState.FAILED and failed.parts == 2
    # A redelivery sends only what the customer does not have yet.
    again = courier(store).send(transport, "chat", Outgoing(message_id, THREE_PARTS), message_id)
    assert again.delivered and transport.accepted == ["alpha one.", "bravo two.", "charlie 3."]
    done = store.deliveries.get(message_id)
    assert done is not None and done.state == DeliveryState.DELIVERED and done.parts == 3
    # Delivered is final: nothing is posted again.
    posts = transport.posts
    assert courier(store).send(transport, "chat", Outgoing(message_id, THREE_PARTS), message_id).skipped
    assert transport.posts == posts


def test_transient_failures_are_retried_with_backoff_and_retry_after(store: Store) -> None:
    transport, message_id, pauses = ScriptedTransport(), reply_id(store), []
    transport.failures["bravo two."] = [
        DeliveryError("HTTP 503", transient=True),
        DeliveryError("ratelimited", transient=True, retry_after=7),
    ]
    sent = Courier(store.deliveries, sleep=pauses.append).send(
        transport, "chat", Outgoing(message_id, THREE_PARTS), message_id
    )
    assert sent.delivered and sent.attempts == 5 and len(transport.accepted) == 3
    assert len(pauses) == 2 and 0 < pauses[0] <= 0.5 and pauses[1] >= 7  # Retry-After honoured


def test_a_retry_after_the_courier_cannot_wait_out_fails_the_part_without_posting_early(store: Store) -> None:
    """Told to wait 300 s (past the part's 120 s deadline), the courier posted again at 60 and
    120 s, each refused again (on Telegram, a longer flood wait), then failed: now it fails at
    once. One that fits, 90 s, is waited out whole (not cut to 60 s, a reviewer's finding)."""
    transport, message_id, pauses = ScriptedTransport(), reply_id(store), []
    refused = DeliveryError("Too Many Requests: retry after 300", transient=True, retry_after=300)
    transport.failures["alpha one."] = [refused] * 3
    sent = Courier(store.deliveries, sleep=pauses.append).send(
        transport, "chat", Outgoing(message_id, THREE_PARTS), message_id
    )
    assert not sent.delivered and sent.attempts == 1 and transport.posts == 1 and pauses == []
    failed = store.deliveries.get(message_id)
    assert failed is not None and failed.state == DeliveryState.FAILED
    assert failed.reason == "Too Many Requests: retry after 300"
    # One longer than what is left of a shorter deadline: the same.
    transport, message_id, pauses = ScriptedTransport(), reply_id(store, "again"), []
    transport.failures["alpha one."] = [DeliveryError("ratelimited", transient=True, retry_after=45)]
    sent = Courier(store.deliveries, sleep=pauses.append, part_deadline=30).send(
        transport, "chat", Outgoing(message_id, THREE_PARTS), message_id
    )
    assert not sent.delivered and transport.posts == 1 and pauses == []
    # ... and one that fits is waited out and posted after it (as before).
    transport, message_id, pauses = ScriptedTransport(), reply_id(store, "third"), []
    transport.failures["alpha one."] = [DeliveryError("ratelimited", transient=True, retry_after=90)]
    sent = Courier(store.deliveries, sleep=pauses.append).send(
        transport, "chat", Outgoing(message_id, THREE_PARTS), message_id
    )
    assert sent.delivered and transport.posts == 4 and pauses == [90]


def test_a_transient_failure_that_never_ends_fails_after_its_attempts(store: Store) -> None:
    transport, message_id = ScriptedTransport(), reply_id(store)
    transport.failures["alpha one."] = [DeliveryError("HTTP 502", transient=True)] * 10
    sent = Courier(store.deliveries, attempts=3, sleep=lambda _: None).send(
        transport, "chat", Outgoing(message_id, THREE_PARTS), message_id
    )
    assert not sent.delivered and sent.attempts == 3 and transport.accepted == []
    failed = store.deliveries.get(message_id)
    assert failed is not None and failed.reason == "HTTP 502" and failed.attempts == 3


def test_two_senders_of_one_message_post_it_once(store: Store) -> None:
    transport, message_id = ScriptedTransport(delay=0.05), reply_id(store)
    results = []

    def send() -> None:
        results.append(courier(store).send(transport, "chat", Outgoing(message_id, THREE_PARTS), message_id))

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert transport.accepted == ["alpha one.", "bravo two.", "charlie 3."]
    assert (
        sum(1 for r in results if r.skipped) == 3
        and sum(1 for r in results if r.delivered and not r.skipped) == 1
    )


def test_a_database_blip_after_the_platform_took_the_message_does_not_resend_it(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    transport, message_id = ScriptedTransport(), reply_id(store)
    real = store.deliveries.delivered
    blips = [StoreError("database is locked"), StoreError("connection reset")]

    def flaky(*args: object) -> object:
        if blips:
            raise blips.pop(0)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(store.deliveries, "delivered", flaky)
    sent = courier(store).send(transport, "chat", Outgoing(message_id, "short"), message_id)
    assert sent.delivered and not blips
    state = store.deliveries.get(message_id)
    assert state is not None and state.state == DeliveryState.DELIVERED
    assert courier(store).send(transport, "chat", Outgoing(message_id, "short"), message_id).skipped
    assert transport.accepted == ["short"]


def test_messages_that_are_not_stored_are_sent_without_a_record(store: Store) -> None:
    transport = ScriptedTransport()
    sent = courier(store).send(transport, "chat", Outgoing("", "help text"))
    assert sent.delivered and transport.accepted == ["help text"]
    assert store.deliveries.states()[DeliveryState.PENDING] == 0 and store.counts().deliveries == 0


def test_a_pending_delivery_is_taken_over_only_after_its_lease(store: Store) -> None:
    message_id = reply_id(store)
    first = store.deliveries.take(message_id, DeliveryKind.REPLY, "fake", "chat", lease=300)
    assert first is not None and first.state == DeliveryState.PENDING
    assert store.deliveries.take(message_id, DeliveryKind.REPLY, "fake", "chat", lease=300) is None
    store.deliveries.progress(message_id, ["chat:1"])
    time.sleep(0.01)
    resumed = store.deliveries.take(message_id, DeliveryKind.REPLY, "fake", "chat", lease=0.001)
    assert resumed is not None and resumed.platform_ids == ("chat:1",)


def test_a_hard_split_never_cuts_inside_a_user_perceived_character() -> None:
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # one emoji, five code points, 8 UTF-16 units
    flag = "\U0001f1ec\U0001f1e7"  # one flag, two regional indicators
    text = "x" + (family + flag + "e\u0301") * 300  # no space; the limit falls inside the family
    parts = split_text(text, 4096, utf16_length)
    assert "".join(parts) == text and all(utf16_length(p) <= 4096 for p in parts)
    for part in parts[:-1]:
        assert part.endswith("e\u0301") or part.endswith(flag) or part.endswith(family)
        assert not part.endswith("\u200d") and not part.endswith("e")
    assert split_text("e" + "\u0301" * 30, 10)[0] == "e" + "\u0301" * 9  # one cluster over the limit
