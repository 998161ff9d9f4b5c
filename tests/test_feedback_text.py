"""A feedback value sent as a message's text (``feedback:helpful``): the customer's verdict on the
latest reply, recorded as the feedback endpoint and buttons record it, never a question."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from bot.assistant import build_core, build_service
from bot.choices import HANDOFF_CHOICE
from bot.core import Incoming, Outgoing, TellerCore
from bot.errors import Conflict, InputError, NotFound
from bot.service import FEEDBACK_THANKS, NO_REPLY_TO_RATE, NOT_RATEABLE, UNKNOWN_FEEDBACK, TellerService
from bot.settings import get_settings
from bot.storage import ReviewReason
from bot.web.app import create_app
from tests.webclient import new_customer, offer, page_customer, stored_user_id


@pytest.fixture()
def core(teller_env: Path) -> Iterator[TellerCore]:
    core = build_core(get_settings())
    yield core
    core.close()


@pytest.fixture()
def client(core: TellerCore) -> TestClient:
    """A customer's browser: the chat page loaded, its session in the cookie jar."""
    return page_customer(TestClient(create_app(core)))


@pytest.fixture()
def never_classified(monkeypatch: pytest.MonkeyPatch) -> None:
    """From here on, a message that reaches the answer policy fails the test."""

    def classified(self: TellerCore, text: str) -> Any:
        raise AssertionError(f"{text!r} was classified")

    monkeypatch.setattr(TellerCore, "_decide", classified)


def ask(client: TestClient, text: str) -> dict[str, Any]:
    response = client.post("/api/messages", json={"text": text})
    assert response.status_code == 200, response.text
    return dict(response.json())


# ------------------------------------------------------------------------------------ REST


def test_a_feedback_value_sent_as_text_rates_the_latest_reply(
    client: TestClient, core: TellerCore, monkeypatch: pytest.MonkeyPatch
) -> None:
    ask(client, "hello")
    latest = ask(client, "What's the overdraft fee?")
    stored = core.store.conversations.count()
    monkeypatch.setattr(TellerCore, "_decide", lambda self, text: pytest.fail(f"{text!r} was classified"))

    response = client.post("/api/messages", json={"text": "feedback:not_helpful"})

    assert response.status_code == 200, response.text
    assert response.json() == {
        "reply": FEEDBACK_THANKS[False],
        "choices": [],
        "route": "feedback",
        "intent": None,
        "message_id": latest["message_id"],  # the reply rated
    }
    [(entry, message)] = core.store.feedback.feedback()
    assert (entry.message_id, entry.helpful, entry.comment) == (latest["message_id"], False, None)
    assert entry.user_id == stored_user_id(core, client) == message.user_id
    # Nothing stored as the customer's message, nothing answered: the two exchanges before only.
    assert core.store.conversations.count() == stored
    assert not [m for m in core.store.conversations.history() if "feedback" in m.text]


def test_feedback_as_text_before_any_reply_is_a_404_and_nothing_is_stored(
    client: TestClient, core: TellerCore, never_classified: None
) -> None:
    response = client.post("/api/messages", json={"text": "feedback:helpful"})
    assert (response.status_code, response.json()) == (404, {"detail": NO_REPLY_TO_RATE})
    assert core.store.conversations.count() == 0 and core.store.feedback.feedback() == []


def test_feedback_as_text_rates_the_latest_answer_that_offered_it(
    client: TestClient, core: TellerCore
) -> None:
    """A thumbs pressed on an answer and sent back as text after a greeting (whose reply offers no
    buttons) rates that answer, not the greeting's reply; with no answer that offered feedback,
    there is nothing to rate."""
    fee = ask(client, "What's the overdraft fee?")
    greeting = ask(client, "hello")
    assert greeting["choices"] == [] and fee["choices"]
    assert ask(client, "feedback:helpful")["message_id"] == fee["message_id"]
    [(entry, _)] = core.store.feedback.feedback()
    assert entry.message_id == fee["message_id"]
    other = new_customer(client.app)
    assert other.post("/api/messages", json={"text": "hello"}).json()["choices"] == []
    response = other.post("/api/messages", json={"text": "feedback:not_helpful"})
    assert (response.status_code, response.json()) == (404, {"detail": NO_REPLY_TO_RATE})


def test_feedback_as_text_rates_only_the_senders_own_replies(client: TestClient, core: TellerCore) -> None:
    ask(client, "What's the overdraft fee?")
    other = new_customer(client.app)
    response = other.post("/api/messages", json={"text": "feedback:not_helpful"})
    assert response.status_code == 404 and core.store.feedback.feedback() == []


def test_feedback_on_a_reply_rated_before_is_a_409_by_text_or_after_the_endpoint(
    client: TestClient, core: TellerCore
) -> None:
    first = ask(client, "What's the overdraft fee?")
    assert ask(client, "feedback:helpful")["message_id"] == first["message_id"]
    again = client.post("/api/messages", json={"text": "feedback:not_helpful"})
    assert again.status_code == 409 and again.json()["detail"] == "feedback on this reply was given already"

    second = ask(client, "What's the overdraft fee?")
    button = client.post("/api/feedback", json={"message_id": second["message_id"], "helpful": True})
    assert button.status_code == 200
    assert client.post("/api/messages", json={"text": "feedback:helpful"}).status_code == 409
    # The verdicts given first stand, one per reply.
    given = {e.message_id: e.helpful for e, _ in core.store.feedback.feedback()}
    assert given == {first["message_id"]: True, second["message_id"]: True}


def test_the_endpoint_rates_only_a_reply_that_offered_feedback(client: TestClient, core: TellerCore) -> None:
    """A greeting's reply, a clarifying question and a handoff are the customer's replies but offer
    no thumbs: rating one by its id is a 409 that says why, and nothing is recorded or filed for
    review."""
    greeting = ask(client, "hello")
    offer(core, client, "entry:no-such-entry")
    question = ask(client, "entry:no-such-entry")  # a clarifying question: that option is gone
    handoff = ask(client, HANDOFF_CHOICE)
    filed = core.store.review.items(status=None)
    assert (greeting["route"], question["route"], handoff["route"]) == ("smalltalk", "clarify", "handoff")
    # Small talk answers no intent (the classifier's guess for a greeting is noise), though the store
    # keeps the classifier's reading of every message.
    assert greeting["intent"] is None
    assert core.store.conversations.message(greeting["message_id"]).route == "smalltalk"
    for reply in (greeting, question, handoff):
        assert not any(c["value"].startswith("feedback:") for c in reply["choices"])
        response = client.post("/api/feedback", json={"message_id": reply["message_id"], "helpful": False})
        assert (response.status_code, response.json()) == (409, {"detail": NOT_RATEABLE})
    assert core.store.feedback.feedback() == [] and core.store.review.items(status=None) == filed
    # An answer with thumbs is still rated by its id.
    answer = ask(client, "What's the overdraft fee?")
    assert (
        client.post("/api/feedback", json={"message_id": answer["message_id"], "helpful": True}).status_code
        == 200
    )


def test_an_unknown_feedback_value_is_a_400_while_words_about_feedback_are_a_question(
    client: TestClient, core: TellerCore
) -> None:
    ask(client, "What's the overdraft fee?")
    stored = core.store.conversations.count()
    for value in ("feedback:xyz", "feedback:", "feedback:HELPFUL"):
        response = client.post("/api/messages", json={"text": value})
        assert (response.status_code, response.json()) == (400, {"detail": UNKNOWN_FEEDBACK}), value
    assert core.store.conversations.count() == stored and core.store.feedback.feedback() == []
    # A customer's words that start so are words: answered and stored as any message.
    words = ask(client, "feedback: your app logs me out all the time")
    assert words["route"] != "feedback" and core.store.conversations.count() == stored + 2
    assert core.store.feedback.feedback() == []


def test_a_retried_feedback_message_is_acknowledged_again_and_recorded_once(
    client: TestClient, core: TellerCore
) -> None:
    rated = ask(client, "What's the overdraft fee?")
    body = {"text": "feedback:helpful", "client_message_id": "fb-1"}
    first = client.post("/api/messages", json=body)
    # A newer reply meanwhile: the retry still concerns the reply the first delivery rated.
    newer = ask(client, "How do I reset my PIN?")
    second = client.post("/api/messages", json=body)
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json() and first.json()["message_id"] == rated["message_id"]
    [(entry, _)] = core.store.feedback.feedback()
    assert entry.message_id == rated["message_id"] and entry.message_id != newer["message_id"]
    # The same id with the other verdict is another message: refused, as for any reused id.
    other = client.post("/api/messages", json={**body, "text": "feedback:not_helpful"})
    assert other.status_code == 409 and "used before for a different message" in other.json()["detail"]
    # An id used for a question, reused for feedback: refused too.
    ask_id = {"text": "Is there a fee for paying abroad?", "client_message_id": "q-1"}
    assert client.post("/api/messages", json=ask_id).status_code == 200
    reused = client.post("/api/messages", json={**ask_id, "text": "feedback:helpful"})
    assert reused.status_code == 409 and len(core.store.feedback.feedback()) == 1


def test_a_retry_of_the_same_words_in_another_unicode_form_is_the_same_message(client: TestClient) -> None:
    """A client resending "café" typed as e + U+0301 (a macOS text field) gets the first answer, not
    a 409 saying the id was used for a different message."""
    body = {"text": "Can I use my card at a caf\u00e9 abroad?", "client_message_id": "nfd-1"}
    first = client.post("/api/messages", json=body)
    again = client.post("/api/messages", json={**body, "text": "Can I use my card at a cafe\u0301 abroad?"})
    assert first.status_code == again.status_code == 200
    assert first.json()["message_id"] == again.json()["message_id"]
    other = client.post("/api/messages", json={**body, "text": "Can I use my card at a cafe abroad?"})
    assert other.status_code == 409


# ------------------------------------------------------------------------------------ service


class Transport:
    """A push platform (Telegram's name), recording what it was given to post."""

    name = "telegram"

    def __init__(self) -> None:
        self.posted: list[str] = []

    def parts(self, address: str, outgoing: Outgoing) -> list[str]:
        return [outgoing.text]

    def post(self, address: str, part: str) -> str:
        self.posted.append(part)
        return str(len(self.posted))


@pytest.fixture()
def service(core: TellerCore) -> Iterator[TellerService]:
    service = build_service(get_settings(), core)
    yield service
    service.close()


def test_a_platform_message_carrying_feedback_is_acknowledged_once_and_filed_for_review(
    service: TellerService, core: TellerCore
) -> None:
    transport = Transport()
    answer = service.message(Incoming("telegram", "42", "42", "1", "What's the overdraft fee?"), transport)
    feedback = Incoming("telegram", "42", "42", "2", "feedback:not_helpful")
    ack = service.message(feedback, transport)
    again = service.message(feedback, transport)  # Telegram delivers the update again

    assert (ack.route, ack.message_id, ack.duplicate) == ("feedback", answer.message_id, False)
    assert (again.text, again.message_id, again.duplicate) == (ack.text, ack.message_id, True)
    assert transport.posted[1:] == [FEEDBACK_THANKS[False]]  # acknowledged once, not stored
    [(entry, _)] = core.store.feedback.feedback()
    assert (entry.message_id, entry.helpful, entry.user_id) == (answer.message_id, False, "42")
    assert core.store.conversations.count() == 2
    # "Not helpful" reaches the operators' review queue, as a button's does.
    assert service.ops is not None
    service.ops.drain()
    [item] = service.ops.review.items()
    assert answer.message_id in item.message_ids and ReviewReason.NOT_HELPFUL in item.reasons


def test_feedback_as_text_on_a_platform_is_an_error_the_adapter_says_politely(
    service: TellerService, core: TellerCore, never_classified: None
) -> None:
    with pytest.raises(NotFound, match="no answer of Teller's to give feedback on"):
        service.handle(Incoming("slack", "D1", "U1", "1", "feedback:helpful"), private=True)
    with pytest.raises(InputError, match="not a feedback value"):
        service.handle(Incoming("slack", "D1", "U1", "2", "feedback:xyz"), private=True)
    assert core.store.conversations.count() == 0


def test_feedback_in_a_group_conversation_rates_the_senders_latest_reply(
    service: TellerService, core: TellerCore
) -> None:
    mine = service.handle(Incoming("telegram", "-100", "7", "1", "What's the overdraft fee?"))
    service.handle(Incoming("telegram", "-100", "8", "2", "How do I reset my PIN?"))  # someone else's
    assert (
        service.handle(Incoming("telegram", "-100", "7", "3", "feedback:helpful")).message_id
        == mine.message_id
    )
    with pytest.raises(Conflict):
        service.handle(Incoming("telegram", "-100", "7", "4", "feedback:not_helpful"))
