"""The core and the REST API, through FastAPI's test client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from bot.assistant import build_core
from bot.choices import HANDOFF_CHOICE
from bot.core import TellerCore, unstaffed
from bot.policy import ENTRY_GONE, ENTRY_GONE_UNSTAFFED
from bot.settings import get_settings
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


def test_messages_endpoint_answers_and_stores(client: TestClient, core: TellerCore) -> None:
    response = client.post("/api/messages", json={"text": "What's the overdraft fee?"})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"reply", "choices", "route", "intent", "message_id"}
    assert body["route"] == "faq" and "overdraft" in body["reply"].lower()
    assert {c["value"] for c in body["choices"]} == {"feedback:helpful", "feedback:not_helpful"}
    stored = core.store.conversations.message(body["message_id"])
    assert (stored.direction, stored.kb_id, stored.channel) == ("out", "overdraft_fee", "web")
    assert stored.model_version == core.policy.classifier.version and stored.latency_ms is not None


def test_a_customer_who_sends_a_secret_is_told_not_to_and_it_is_not_kept(
    client: TestClient, core: TellerCore
) -> None:
    from bot.core import SECRET_WARNING

    response = client.post("/api/messages", json={"text": "my pin is 4921, what's the overdraft fee?"})
    body = response.json()
    assert response.status_code == 200 and body["reply"].startswith(SECRET_WARNING)
    assert "overdraft" in body["reply"].lower()  # ... and the question is answered
    [asked] = [m for m in core.store.conversations.history() if m.direction == "in"]
    assert "4921" not in asked.text and "[PIN]" in asked.text
    # Handed off where no one can take over: the warning, then what such a customer is told.
    from bot.core import UNSTAFFED

    human = client.post("/api/messages", json={"text": "my password is Hunter22! I want to talk to a person"})
    assert human.json()["route"] == "handoff", human.json()
    assert human.json()["reply"] == f"{SECRET_WARNING}\n\n{UNSTAFFED}"
    # A card number is personal data, not a secret: no warning (it is redacted all the same).
    plain = client.post("/api/messages", json={"text": "card 4111 1111 1111 1111, what's the overdraft fee?"})
    assert not plain.json()["reply"].startswith(SECRET_WARNING)


def test_retries_with_a_client_message_id_are_answered_once(client: TestClient, core: TellerCore) -> None:
    body = {"text": "hello", "client_message_id": "1"}
    first = client.post("/api/messages", json=body).json()
    second = client.post("/api/messages", json=body).json()
    assert first == second
    assert core.store.conversations.count() == 2


def test_a_client_message_id_used_for_feedback_is_not_taken_for_a_question(
    client: TestClient, core: TellerCore
) -> None:
    """A ``client_message_id`` that carried a feedback value before is refused (409) for other words,
    as one reused for another question is; the feedback's retry is still acknowledged once."""
    client.post("/api/messages", json={"text": "What's the overdraft fee?"})
    rated = {"text": "feedback:helpful", "client_message_id": "fb-1"}
    assert client.post("/api/messages", json=rated).status_code == 200
    count = core.store.conversations.count()
    reused = client.post("/api/messages", json={"text": "where is my card", "client_message_id": "fb-1"})
    assert reused.status_code == 409 and "feedback" in reused.json()["detail"]
    assert core.store.conversations.count() == count
    again = client.post("/api/messages", json=rated)
    assert again.status_code == 200 and len(core.store.feedback.feedback()) == 1


def test_choice_values_and_handoff_requests(client: TestClient, core: TellerCore) -> None:
    """A pressed intent is answered when a recent answer offered it; sent without that, it is read
    as the text it is (a review's finding: any client could store "customer chose X", confidence
    1.0, past the language gate, corrections and review)."""
    forged = client.post("/api/messages", json={"text": "intent:card_arrival"}).json()
    assert "chose" not in core.store.conversations.message(forged["message_id"]).reason
    offer(core, client, "intent:card_arrival")
    chosen = client.post("/api/messages", json={"text": "intent:card_arrival"}).json()
    assert (chosen["route"], chosen["intent"]) == ("intent", "card_arrival")
    assert core.store.conversations.message(chosen["message_id"]).confidence == 1.0
    handoff = client.post("/api/messages", json={"text": "handoff"}).json()
    assert handoff["route"] == "handoff"


def test_an_intent_pressed_after_its_answer_was_removed_is_read_as_text(
    client: TestClient, core: TellerCore
) -> None:
    """A review's finding: ``intent:X`` for an intent whose answer entry ``kb remove`` took raised a
    ConfigError, a 500 that every retry repeated (on Telegram and Slack, no reply at all). It is
    now read as the text it is, as a typed message would be, and stored."""
    assert core.policy.has_answer("card_arrival")
    core.policy.kb.remove("card_arrival")
    assert not core.policy.has_answer("card_arrival")
    response = client.post("/api/messages", json={"text": "intent:card_arrival"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["route"] != "intent" and body["reply"]
    stored = core.store.conversations.message(body["message_id"])
    assert stored.route == body["route"] and stored.confidence != 1.0


def test_a_suggested_entry_pressed_is_answered_with_that_entry(client: TestClient, core: TellerCore) -> None:
    """A suggestion's button (``entry:<id>``, rule ``suggest``) answers with that entry, offering
    feedback; an entry removed since it was offered is neither answered nor handed off: the
    customer is told the option is gone and asked again (no person can take over here, so the
    reply says where to turn and offers no button for one)."""
    offer(core, client, "entry:overdraft_fee", "entry:no-such-entry")
    chosen = client.post("/api/messages", json={"text": "entry:overdraft_fee"}).json()
    assert chosen["route"] == "faq" and chosen["reply"] == core.policy.kb.get("overdraft_fee").answer
    assert {c["kind"] for c in chosen["choices"]} == {"feedback"}
    stored = core.store.conversations.message(chosen["message_id"])
    assert stored.kb_id == "overdraft_fee" and "chose knowledge-base entry" in stored.reason
    gone = client.post("/api/messages", json={"text": "entry:no-such-entry"}).json()
    assert (gone["route"], gone["reply"], gone["choices"]) == ("clarify", ENTRY_GONE_UNSTAFFED, [])
    assert "no-such-entry" not in core.store.conversations.message(gone["message_id"]).reason
    assert core.store.handoffs.active_for("web", stored_user_id(core, client)) is None


def test_where_a_person_can_take_over_a_gone_option_offers_one(core: TellerCore) -> None:
    staffed = core.policy.entry_gone()
    assert (staffed.route.value, staffed.answer) == ("clarify", ENTRY_GONE)
    assert [c.value for c in staffed.choices] == [HANDOFF_CHOICE]
    alone = unstaffed(staffed, core.policy.unstaffed_words)
    assert (alone.answer, alone.choices) == (ENTRY_GONE_UNSTAFFED, ())


def test_a_pressed_entry_superseded_since_is_answered_by_its_successor(
    client: TestClient, core: TellerCore
) -> None:
    """An entry offered, then superseded before the press: the entry that superseded it answers
    (as the search now would); an entry's id typed by hand, never offered, is read as text."""
    from retrieval.entry import KBEntry

    kb = core.policy.kb
    kb.add([KBEntry.build("bank-overdraft-fee", ["What does an overdraft cost?"], "It costs 5 a month.")])
    kb.supersede("overdraft_fee", "bank-overdraft-fee")
    offer(core, client, "entry:overdraft_fee")
    chosen = client.post("/api/messages", json={"text": "entry:overdraft_fee"}).json()
    assert (chosen["route"], chosen["reply"]) == ("faq", "It costs 5 a month.")
    stored = core.store.conversations.message(chosen["message_id"])
    assert stored.kb_id == "bank-overdraft-fee" and "superseded it" in stored.reason
    kb.remove("bank-overdraft-fee")
    gone = client.post("/api/messages", json={"text": "entry:overdraft_fee"}).json()
    assert (gone["route"], gone["reply"]) == ("clarify", ENTRY_GONE_UNSTAFFED)
    # An entry's id typed by hand, never offered, is the customer's words, not a choice.
    typed = client.post("/api/messages", json={"text": "entry:advice_bitcoin"}).json()
    assert "chose" not in core.store.conversations.message(typed["message_id"]).reason


def test_text_that_merely_starts_like_an_entry_choice_is_the_customers_words(
    client: TestClient, core: TellerCore
) -> None:
    """ "entry: ..." with a space is not a pressed button: it is classified like any message, and
    nothing of it reaches the stored reason unredacted."""
    said = client.post(
        "/api/messages", json={"text": "entry: What's the overdraft fee? card 4111 1111 1111 1111"}
    )
    body = said.json()
    assert (
        said.status_code == 200 and "chose" not in core.store.conversations.message(body["message_id"]).reason
    )
    assert "4111" not in core.store.conversations.message(body["message_id"]).reason


def test_feedback_endpoint(client: TestClient, core: TellerCore) -> None:
    reply = client.post("/api/messages", json={"text": "What's the overdraft fee?"}).json()
    response = client.post(
        "/api/feedback",
        json={"message_id": reply["message_id"], "helpful": False, "comment": "not what I asked"},
    )
    assert response.status_code == 200 and response.json()["helpful"] is False
    [(entry, message)] = core.store.feedback.feedback()
    assert (entry.message_id, entry.comment, message.kb_id) == (
        reply["message_id"],
        "not what I asked",
        "overdraft_fee",
    )
    assert client.post("/api/feedback", json={"message_id": "m_nope", "helpful": True}).status_code == 404
    # Once per reply: a second verdict is refused, the first one stands.
    again = client.post("/api/feedback", json={"message_id": reply["message_id"], "helpful": True})
    assert again.status_code == 409 and len(core.store.feedback.feedback()) == 1


def test_validation_errors_speak_of_characters_and_feedback_takes_only_a_boolean(
    client: TestClient, core: TellerCore
) -> None:
    reply = client.post("/api/messages", json={"text": "What's the overdraft fee?"}).json()
    for loose in ("yes", "off", 1, "true"):
        response = client.post("/api/feedback", json={"message_id": reply["message_id"], "helpful": loose})
        assert response.status_code == 422, loose
        assert response.json()["detail"][0]["loc"] == "body.helpful"
    assert core.store.feedback.feedback() == []
    long_comment = {"message_id": reply["message_id"], "helpful": True, "comment": "x" * 2001}
    [problem] = client.post("/api/feedback", json=long_comment).json()["detail"]
    assert problem == {"loc": "body.comment", "msg": "too long: at most 2,000 characters"}
    [problem] = client.post("/api/messages", json={"text": "hi", "client_message_id": ""}).json()["detail"]
    assert problem == {"loc": "body.client_message_id", "msg": "must not be empty (at least 1 character)"}
    broken = client.post(
        "/api/messages", content=b'{"text": "hi"', headers={"content-type": "application/json"}
    )
    assert broken.status_code == 422 and broken.json()["detail"][0]["msg"].startswith(
        "the body is not valid JSON"
    )


@pytest.mark.parametrize(
    ("raw", "status", "said"),
    [
        # Which "text" is the message? A proxy may read the first, FastAPI kept the last.
        (b'{"text": "hi", "text": "my card is lost"}', 422, "'text' is given twice in one object"),
        (b'{"text": "hi", "x": {"a": 1, "a": 2}}', 422, "'a' is given twice"),
        (b'\xef\xbb\xbf{"text": "hi", "text": "lost"}', 422, "'text' is given twice"),  # after a BOM too
        (b'{"text": "\xff\xfe card"}', 400, "the body is not UTF-8"),
        (b'{"text": "hi", "client_message_id": ' + b"9" * 5000 + b"}", 422, "has too many digits"),
        (b"[" * 20_000 + b"]" * 20_000, 422, "nested too deeply"),
        (b"[" * 100_000 + b"]" * 100_000, 413, "larger than"),  # the body limit comes first
    ],
)
def test_bodies_fastapi_would_misread_are_refused_saying_why(
    client: TestClient, core: TellerCore, raw: bytes, status: int, said: str
) -> None:
    response = client.post("/api/messages", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    assert said in json.dumps(response.json()["detail"])
    assert response.headers["x-content-type-options"] == "nosniff"  # inside the security headers
    assert core.store.conversations.count() == 0
    # A well-formed body still reads as ever, every key once.
    assert client.post("/api/messages", json={"text": "hi"}).status_code == 200


def test_a_message_sent_while_teller_closes_gets_a_retryable_503_and_nothing_is_stored(
    client: TestClient, core: TellerCore
) -> None:
    before = core.store.conversations.count()
    core._batcher.close()  # what TellerCore.close does first on shutdown
    reply = client.post("/api/messages", json={"text": "where is my card", "client_message_id": "late"})
    assert reply.status_code == 503 and reply.headers["retry-after"] == "2"
    assert "shutting down" in reply.json()["detail"]
    assert core.store.conversations.count() == before


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"text": "   "}, 400),
        ({}, 422),
        # A client naming its customer is refused: identity is the session's.
        ({"user_id": "alice", "text": "hi"}, 422),
        ({"text": "a" * 10_001}, 422),
        # Longer than Teller judges: the customer is asked to shorten, not judged on a part.
        ({"text": "my card " * 600}, 400),
    ],
)
def test_bad_requests_get_clear_errors(client: TestClient, body: dict, status: int) -> None:
    response = client.post("/api/messages", json=body)
    assert response.status_code == status
    assert "detail" in response.json()


def test_page_health_and_docs(client: TestClient, core: TellerCore) -> None:
    page = client.get("/")
    assert page.status_code == 200 and 'id="log"' in page.text and "/static/chat.js" in page.text
    # An uptime monitor's HEAD: 200 with no body and no session issued (a trial saw 405).
    probe = TestClient(client.app).head("/")
    assert probe.status_code == 200 and "set-cookie" not in probe.headers
    assert "/api/messages" in client.get("/static/chat.js").text
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["model"] == core.policy.classifier.version
    assert health["kb_entries"] == len(core.policy.kb) and health["model_current"]
    assert health["database"]["status"] == "ok" and health["database"]["kind"] == "sqlite"
    assert health["database"]["revision"] == core.store.database.head()
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/messages", "/api/feedback", "/healthz"} <= set(paths)


def test_history_and_feedback_list_read_the_store(client: TestClient, teller_env: Path) -> None:
    import json

    from tests.test_cli import run

    reply = client.post(
        "/api/messages", json={"text": "What's the overdraft fee? my email is erin@example.com"}
    ).json()
    rated = client.post("/api/feedback", json={"message_id": reply["message_id"], "helpful": True})
    assert rated.status_code == 200, rated.text
    code, stdout, _ = run("history", "--json")
    rows = [json.loads(line) for line in stdout.splitlines()]
    assert code == 0 and [r["direction"] for r in rows] == ["in", "out"]
    assert (
        rows[0]["text"] == "What's the overdraft fee? my email is [EMAIL]"
        and rows[1]["id"] == reply["message_id"]
    )
    code, stdout, _ = run("feedback", "list", "--json")
    [entry] = [json.loads(line) for line in stdout.splitlines()]
    assert code == 0 and entry["message_id"] == reply["message_id"] and entry["helpful"] is True


def test_customers_read_the_banks_phone_numbers_only_the_store_is_redacted(
    client: TestClient, core: TellerCore
) -> None:
    from retrieval.entry import KBEntry

    # (a landline: a freephone or 03 number is an organisation's, and stays in the store)
    answer = "Call our card team on 020 7946 0958, any day from 8am to 8pm."
    core.policy.kb.add([KBEntry.build("call-card-team", ["What number do I call about my card?"], answer)])
    body = client.post("/api/messages", json={"text": "What number do I call about my card?"}).json()
    assert body["route"] == "faq" and body["reply"] == answer
    assert (
        core.store.conversations.message(body["message_id"]).text
        == "Call our card team on [PHONE], any day from 8am to 8pm."
    )
    # A retry (same client_message_id) reads exactly what the first answer said.
    first = client.post(
        "/api/messages",
        json={"text": "What number do I call about my card?", "client_message_id": "r1"},
    ).json()
    again = client.post(
        "/api/messages",
        json={"text": "What number do I call about my card?", "client_message_id": "r1"},
    ).json()
    assert first["reply"] == again["reply"] == answer and first["message_id"] == again["message_id"]


def test_an_unreachable_database_is_a_503_health_and_a_retryable_503_message(
    client: TestClient, core: TellerCore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.storage import StoreError

    def down(*args: object, **kwargs: object) -> None:
        raise StoreError("teller.db: disk I/O error")

    monkeypatch.setattr(core.store.deployment, "active_model", down)
    monkeypatch.setattr(core.store.conversations, "record_exchange", down)
    health = client.get("/healthz")
    assert health.status_code == 503 and health.json()["database"]["status"] == "unreachable"
    reply = client.post("/api/messages", json={"text": "hello", "client_message_id": "1"})
    assert (
        reply.status_code == 503
        and reply.headers["retry-after"] == "2"
        and "try again" in reply.json()["detail"]
    )


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b'{"text": "hi \\ud83d there"}', 422),  # a lone surrogate
        (b'{"text": "hi", "client_message_id": "\\udc00"}', 422),
        (b'{"text": "caf\xe9"}', 400),  # not UTF-8
        (b"SECRET-4111111111111111", 422),  # not JSON
        (b"[1, 2, 3]", 422),
        (b"null", 422),
        (b'{"text": "' + b"SECRET " * 60_000 + b'"}', 413),  # oversized
    ],
)
def test_bad_bodies_get_a_clear_4xx_and_are_not_echoed(client: TestClient, body: bytes, status: int) -> None:
    response = client.post("/api/messages", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status
    assert "detail" in response.json() and "SECRET" not in response.text and "4111" not in response.text


def test_an_oversized_chunked_body_is_refused_while_it_streams(client: TestClient) -> None:
    def chunks():  # type: ignore[no-untyped-def]
        yield b'{"text": "'
        for _ in range(100):
            yield b"a" * 10_000
        yield b'"}'

    response = client.post("/api/messages", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_control_characters_are_dropped_and_nul_never_reaches_the_store(
    client: TestClient, core: TellerCore
) -> None:
    response = client.post("/api/messages", json={"text": "where is\x00 my card\x07"})
    assert response.status_code == 200
    [incoming] = [m for m in core.store.conversations.history() if m.direction == "in"]
    assert incoming.text == "where is my card" and incoming.user_id == stored_user_id(core, client)
    assert client.get("/api/messages").status_code == 200


def test_client_message_ids_are_per_customer_and_never_stored(client: TestClient, core: TellerCore) -> None:
    """The same client_message_id from two customers is two messages, and the id a client chose
    (here a card number) is kept only as a keyed digest."""
    other = new_customer(client.app)
    body = {"text": "hi", "client_message_id": "4111111111111111"}
    first, second = (
        client.post("/api/messages", json=body).json(),
        other.post("/api/messages", json=body).json(),
    )
    assert first["message_id"] != second["message_id"]
    stored = [m.platform_id for m in core.store.conversations.history() if m.direction == "in"]
    # (the whole id: a digest's hex may hold "4111" by chance, as one run's did)
    assert len(stored) == 2 and not any("4111111111111111" in (p or "") for p in stored)


def test_a_client_message_id_reused_for_other_words_is_refused(client: TestClient, core: TellerCore) -> None:
    first = client.post("/api/messages", json={"text": "how do I top up", "client_message_id": "k1"})
    again = client.post("/api/messages", json={"text": "how do I top up", "client_message_id": "k1"})
    assert first.status_code == again.status_code == 200
    assert again.json()["message_id"] == first.json()["message_id"]  # a retry: the same answer
    other = client.post("/api/messages", json={"text": "my card was stolen", "client_message_id": "k1"})
    assert other.status_code == 409 and "different message" in other.json()["detail"]
    assert [m.text for m in core.store.conversations.history() if m.direction == "in"] == ["how do I top up"]


def test_polling_for_an_unknown_customer_says_nothing_was_closed(client: TestClient) -> None:
    body = client.get("/api/messages").json()
    assert body == {"messages": [], "handoff_open": False, "closed_notice": None}
    client.post("/api/messages", json={"text": "What's the overdraft fee?"})
    known = client.get("/api/messages").json()
    # Known, but never handed to a person: nothing was closed either.
    assert known == {"messages": [], "handoff_open": False, "closed_notice": None}


def test_polling_after_something_that_is_no_message_id_is_refused(client: TestClient) -> None:
    """``after`` names a stored message (``m_`` and 16 hex digits); anything else is the client's
    mistake, told as a 422, not answered as if it were absent."""
    sent = client.post("/api/messages", json={"text": "What's the overdraft fee?"}).json()
    bad_ids = ("abc", "m_123", sent["message_id"] + "0", " " + sent["message_id"], "h_" + "0" * 16, "x'; --")
    for bad in bad_ids:
        response = client.get("/api/messages", params={"after": bad})
        assert response.status_code == 422, bad
        assert response.json()["detail"][0]["loc"] == "query.after"
    for good in (sent["message_id"], "m_" + "0" * 16, ""):  # this one's, one it does not know, none
        assert client.get("/api/messages", params={"after": good}).json()["messages"] == []


def test_customer_text_is_shown_as_typed_in_operators_terminal_tables(
    client: TestClient, teller_env: Path
) -> None:
    """Rich markup in a customer's words ("[/bold]", "[link=...]") neither crashes `teller history`
    and `teller feedback list` nor styles or links anything in an operator's terminal."""
    from tests.test_cli import run

    reply = client.post(
        "/api/messages", json={"text": "What's the overdraft fee? [/bold] [link=http://e.x]a[/link]"}
    ).json()
    rated = client.post(
        "/api/feedback", json={"message_id": reply["message_id"], "helpful": False, "comment": "[/oops]"}
    )
    assert rated.status_code == 200, rated.text
    code, stdout, stderr = run("history")
    assert code == 0 and not stderr and "[/bold]" in stdout and "[link=" in stdout and "\x1b]8" not in stdout
    code, stdout, stderr = run("feedback", "list")
    assert code == 0 and not stderr and "[/oops]" in stdout


def test_history_shows_ids_to_flag_and_refuses_an_unknown_conversation(client: TestClient) -> None:
    """A trial found no way from `teller history`'s table to `teller flag`: ids were in --json only."""
    from tests.test_cli import run

    reply = client.post("/api/messages", json={"text": "What's the overdraft fee?"}).json()
    code, stdout, _ = run("history", "--ids")
    assert code == 0 and reply["message_id"] in stdout
    code, stdout, _ = run("history")
    assert code == 0 and reply["message_id"] not in stdout and "--ids" in stdout
    code, _, stderr = run("history", "--conversation", "nope")
    assert code == 2 and "no stored messages in conversation 'nope'" in stderr
    assert run("history", "--conversation", "nope", "--json")[:2] == (0, "")


@pytest.mark.parametrize(
    "text",
    ["\u200b\u200b", "\u0301\u0301 ", "\u2066\u2069", "\x85\x9b "],
)
def test_a_message_with_nothing_to_read_is_empty(client: TestClient, text: str) -> None:
    response = client.post("/api/messages", json={"text": text})
    assert response.status_code == 400 and "empty" in response.json()["detail"]


def test_controls_between_words_keep_them_apart_and_overrides_are_dropped(
    client: TestClient, core: TellerCore
) -> None:
    client.post("/api/messages", json={"text": "hello\x00world my card \u202egnissim si\u202c"})
    [incoming] = [m for m in core.store.conversations.history() if m.direction == "in"]
    assert incoming.text == "hello world my card gnissim si"


def test_a_far_too_long_message_is_told_the_real_limit(client: TestClient) -> None:
    response = client.post("/api/messages", json={"text": "a" * 10_001})
    assert response.status_code == 422 and "4,000 characters" in str(response.json()["detail"])


def test_without_an_ops_channel_no_person_is_promised(client: TestClient) -> None:
    """Nobody can take over without an ops channel: the customer is not told someone is coming, and
    gets no "Talk to a person" button that would lead nowhere."""
    body = client.post("/api/messages", json={"text": "I want to talk to a real person"}).json()
    assert body["route"] == "handoff" and "no one from our team can take over" in body["reply"].lower()
    assert all(c["value"] not in ("handoff", "handoff:adviser") for c in body["choices"])
