"""Business outcomes of Teller's replies (issue #16): stored, booked by the adviser button, recorded by
a bank's backend (``POST /api/outcomes``), read by positioning, erased with the customer.

Before this, ``LoggedExchange.outcomes`` was never filled: a need whose rule is
``outcome=adviser_call_booked`` could never be resolved, and the "Book an adviser call" button was
a plain handoff, which reads as unresolved.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from bot.assistant import build_core, build_service
from bot.choices import ADVISER_CHOICE, HANDOFF_CHOICE, ChoiceKind, kind_of
from bot.core import UNSTAFFED, Incoming, TellerCore
from bot.errors import InputError, NotFound
from bot.positioning_desk import PositioningDesk
from bot.privacy.erasure import Eraser
from bot.privacy.redaction import redact
from bot.service import TellerService
from bot.settings import get_settings
from bot.storage import AuditAction, NewExchange, Store
from bot.web.app import create_app
from bot.web.sessions import Identities
from positioning.needs import parse_link, parse_resolutions
from positioning.outcomes import judge
from positioning.stats import Rate

BACKEND_KEY = "backend-key-0123456789"
BACKEND = {"Authorization": f"Bearer {BACKEND_KEY}"}
ADVICE_QUESTION = "Which stocks should I buy?"


def _exchange(
    store: Store, user: str, text: str, route: str, choices: tuple[tuple[str, str], ...] = ()
) -> str:
    _, reply = store.conversations.record_exchange(
        NewExchange(
            channel="web",
            conversation=user,
            user_id=user,
            platform_id=None,
            text=text,
            reply="reply",
            route=route,
            intent=None,
            confidence=0.9,
            kb_id=None,
            model_version="m",
            latency_ms=1.0,
            choices=choices,
        )
    )
    return reply.id


# ------------------------------------------------------------------------------------ the store


def test_outcomes_are_stored_once_per_reply_checked_audited_and_erased(store: Store) -> None:
    advice = _exchange(store, "alice", "which fund", "advice", (("Book an adviser call", ADVISER_CHOICE),))
    other = _exchange(store, "bob", "which fund", "advice")
    question = store.conversations.message(advice).reply_to
    assert question is not None

    outcome, new = store.outcomes.record(advice, "adviser_call_booked", "api:backend", actor="api:backend")
    assert new and outcome.message_id == advice and outcome.name == "adviser_call_booked"
    again, new = store.outcomes.record(advice, "adviser_call_booked", "api:backend", actor="api:backend")
    assert not new and again.id == outcome.id
    [entry] = store.audit.entries(action=AuditAction.OUTCOME)
    assert entry.subject == advice and entry.details["outcome"] == "adviser_call_booked"

    for bad in ("Adviser Call", "", "x" * 51, "1st", "call-booked"):
        with pytest.raises(InputError, match="short slug"):
            store.outcomes.record(advice, bad, "api:backend")
    for not_an_answer in (question, "m_unknown"):
        with pytest.raises(NotFound, match="no answer of Teller's"):
            store.outcomes.record(not_an_answer, "card_activated", "api:backend")

    # The button's booking: on the latest of the customer's replies that offered it.
    assert store.outcomes.book("web", "bob", ADVISER_CHOICE, "adviser_call_booked") is None
    first = store.outcomes.book("web", "alice", ADVISER_CHOICE, "card_activated")
    assert first is not None
    booked, new = first
    assert new and booked.message_id == advice and booked.source == "customer"
    assert store.outcomes.book("web", "alice", ADVISER_CHOICE, "card_activated") == (booked, False)
    assert store.outcomes.of_messages([advice, other]) == {
        advice: frozenset({"adviser_call_booked", "card_activated"})
    }

    receipt = Eraser(store).erase("web", "alice", "cli:robin")
    assert receipt.counts["outcomes"] == 2
    assert store.outcomes.of_messages([advice]) == {}
    assert store.outcomes.latest_answer("web", "bob").id == other


# ------------------------------------------------------------------------ the button and the API


@dataclass
class Bank:
    core: TellerCore
    service: TellerService
    client: TestClient


@pytest.fixture()
def bank(teller_env: Path) -> Iterator[Bank]:
    settings = get_settings()
    core = build_core(settings)
    service = build_service(settings, core)
    identities = Identities.from_store(core.store, backend_api_key=BACKEND_KEY)
    with TestClient(create_app(core, service=service, identities=identities)) as client:
        yield Bank(core, service, client)
    service.close()
    core.close()


def _say(bank: Bank, customer: str, text: str) -> dict[str, object]:
    response = bank.client.post(
        "/api/messages", json={"text": text}, headers={**BACKEND, "X-Teller-Customer": customer}
    )
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def test_the_adviser_button_books_a_call_and_the_advice_need_reads_resolved(bank: Bank) -> None:
    from tests.test_sessions import Board

    store = bank.core.store
    assert bank.service.ops is not None
    bank.service.ops.attach_board(Board())  # an ops channel: someone can take the call
    advice = _say(bank, "cust-1", ADVICE_QUESTION)
    assert advice["route"] == "advice"
    button = next(c for c in advice["choices"] if c["label"] == "Book an adviser call")  # type: ignore[attr-defined]
    assert button["value"] == ADVISER_CHOICE and button["kind"] == ChoiceKind.HANDOFF
    assert kind_of(ADVISER_CHOICE) == kind_of(HANDOFF_CHOICE) == ChoiceKind.HANDOFF

    pressed = _say(bank, "cust-1", ADVISER_CHOICE)
    assert pressed["route"] == "handoff"  # it still hands off as before
    assert store.outcomes.of_messages([str(advice["message_id"]), str(pressed["message_id"])]) == {
        str(advice["message_id"]): frozenset({"adviser_call_booked"})
    }
    # A plain "talk to a person" books nothing; another customer's refusal stays unbooked.
    other = _say(bank, "cust-2", ADVICE_QUESTION)
    _say(bank, "cust-2", HANDOFF_CHOICE)
    assert store.outcomes.of_messages([str(other["message_id"])]) == {}

    desk = PositioningDesk(get_settings(), policy=lambda: bank.core.policy, store=store)
    logged = desk.logged_exchanges("2000-01-01T00:00:00")
    booked = [e for e in logged if e.outcomes]
    assert [(e.text, e.route, e.outcomes) for e in booked] == [
        (ADVICE_QUESTION, "advice", frozenset({"adviser_call_booked"}))
    ]
    links = [parse_link("investment advice | route:advice")]
    rules = parse_resolutions(["investment advice | outcome=adviser_call_booked"])
    assert judge(logged, links, rules).needs[0].satisfaction == Rate(1, 2)
    assert judge(logged, links).needs[0].satisfaction == Rate(0, 2)  # a refusal alone: never resolved


def test_an_adviser_call_refused_at_the_cap_or_retried_later_books_nothing_more(
    teller_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A review's findings: pressing "Book an adviser call" when the handoff cap turned the customer
    away ("Our team can't take new conversations right now") still recorded the call booked; and a
    client's retry of a press (same ``client_message_id``) after a newer advice reply booked the
    call on that newer reply, which nobody pressed."""
    from tests.test_sessions import Board

    monkeypatch.setenv("TELLER_MAX_OPEN_HANDOFFS", "1")
    get_settings.cache_clear()
    settings = get_settings()
    core = build_core(settings)
    service = build_service(settings, core)
    identities = Identities.from_store(core.store, backend_api_key=BACKEND_KEY)
    assert service.ops is not None
    service.ops.attach_board(Board())
    store = core.store
    try:
        with TestClient(create_app(core, service=service, identities=identities)) as client:
            bank = Bank(core, service, client)

            def say(customer: str, text: str, message_id: str | None = None) -> dict[str, object]:
                body: dict[str, object] = {"text": text}
                if message_id is not None:
                    body["client_message_id"] = message_id
                response = client.post(
                    "/api/messages", json=body, headers={**BACKEND, "X-Teller-Customer": customer}
                )
                assert response.status_code == 200, response.text
                answer: dict[str, object] = response.json()
                return answer

            _say(bank, "occupier", "I want to talk to a person")  # the one open handoff allowed
            advice = say("cust-1", ADVICE_QUESTION)
            refused = say("cust-1", ADVISER_CHOICE)
            assert refused["route"] == "handoff" and "can't take new conversations" in str(refused["reply"])
            assert store.outcomes.of_messages([str(advice["message_id"])]) == {}

            occupied = store.handoffs.active_for("web", stored_user(core, "occupier"))
            assert occupied is not None
            store.handoffs.close(occupied.id, "test")
            first = say("cust-2", ADVICE_QUESTION, "p0")
            say("cust-2", ADVISER_CHOICE, "p1")
            opened = store.handoffs.active_for("web", stored_user(core, "cust-2"))
            assert opened is not None
            store.handoffs.close(opened.id, "test")
            later = say("cust-2", "Should I invest in bitcoin?", "p2")
            assert later["route"] == "advice"
            again = say("cust-2", ADVISER_CHOICE, "p1")  # the client's retry of its press
            assert again["message_id"]
            assert store.outcomes.of_messages([str(first["message_id"]), str(later["message_id"])]) == {
                str(first["message_id"]): frozenset({"adviser_call_booked"})
            }
    finally:
        service.close()
        core.close()
        get_settings.cache_clear()


def stored_user(core: TellerCore, customer: str) -> str:
    """The user id the store keeps for a backend's customer (a keyed digest, not the id sent)."""
    return Identities.from_store(core.store, backend_api_key=BACKEND_KEY).verified(customer).user_id


def test_without_an_ops_channel_no_adviser_call_is_offered_or_booked_and_the_store_keeps_what_was_said(
    bank: Bank,
) -> None:
    """Nobody can take a call or a chat over: the advice reply offers no button for a person, a
    typed "handoff:adviser" books nothing, and the stored replies are the words the customer got
    (redacted, as every stored text)."""
    store = bank.core.store
    assert bank.service.ops is not None and bank.service.ops.board is None
    advice = _say(bank, "cust-1", ADVICE_QUESTION)
    assert advice["route"] == "advice"
    assert all(c["value"] not in (ADVISER_CHOICE, HANDOFF_CHOICE) for c in advice["choices"])  # type: ignore[attr-defined]
    pressed = _say(bank, "cust-1", ADVISER_CHOICE)
    person = _say(bank, "cust-1", "I want to talk to a person")
    assert pressed["route"] == person["route"] == "handoff" and pressed["reply"] == UNSTAFFED
    assert store.outcomes.of_messages([str(advice["message_id"]), str(pressed["message_id"])]) == {}
    for said in (advice, pressed, person):
        stored = store.conversations.message(str(said["message_id"]))
        assert stored.text == redact(str(said["reply"])) and [v for _, v in stored.choices] == [
            c["value"]  # type: ignore[index]
            for c in said["choices"]  # type: ignore[attr-defined]
        ]


def test_the_bank_records_outcomes_through_the_api(bank: Bank) -> None:
    store, client = bank.core.store, bank.client
    first = str(_say(bank, "cust-1", "What's the overdraft fee?")["message_id"])
    latest = str(_say(bank, "cust-1", ADVICE_QUESTION)["message_id"])
    theirs = str(_say(bank, "cust-2", "What's the overdraft fee?")["message_id"])

    # Who may call it: the backend key only.
    assert client.post("/api/outcomes", json={"outcome": "x", "message_id": first}).status_code == 401
    wrong = client.post(
        "/api/outcomes", json={"outcome": "x", "message_id": first}, headers={"Authorization": "Bearer nope"}
    )
    assert wrong.status_code == 401 and "TELLER_BACKEND_API_KEY" in wrong.json()["detail"]
    token = client.post("/api/sessions").json()["token"]
    customer = client.post(
        "/api/outcomes",
        json={"outcome": "x", "message_id": first},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert customer.status_code == 403 and "backend" in customer.json()["detail"]

    def post(body: dict[str, object], who: str | None = None) -> tuple[int, dict[str, object]]:
        headers = {**BACKEND, **({"X-Teller-Customer": who} if who else {})}
        response = client.post("/api/outcomes", json=body, headers=headers)
        return response.status_code, response.json()

    status, body = post({"outcome": "card_activated", "message_id": first})
    assert status == 201 and body["message_id"] == first and body["new"] is True
    status, body = post({"outcome": "card_activated", "message_id": first})
    assert status == 200 and body["new"] is False
    # Without message_id: the named customer's latest answer.
    status, body = post({"outcome": "adviser_call_booked"}, who="cust-1")
    assert status == 201 and body["message_id"] == latest
    # Refusals, each saying why without echoing what was sent.
    status, body = post({"outcome": "Adviser Call Booked", "message_id": first})
    assert status == 400 and "short slug" in str(body["detail"])
    status, body = post({"outcome": "adviser_call_booked"})
    assert status == 400 and "message_id" in str(body["detail"])
    status, body = post({"outcome": "adviser_call_booked", "message_id": "m_nope"})
    assert status == 404
    status, body = post({"outcome": "adviser_call_booked", "message_id": theirs}, who="cust-1")
    assert status == 404  # somebody else's reply: the same answer as an unknown one
    status, body = post({"outcome": "adviser_call_booked", "message_id": first, "user_id": "x"})
    assert status == 422
    status, body = post({"outcome": "adviser_call_booked"}, who="cust-unknown")
    assert status == 404

    entries = store.audit.entries(action=AuditAction.OUTCOME)
    assert [(e.actor, e.subject, e.details["outcome"]) for e in entries] == [
        ("api:backend", latest, "adviser_call_booked"),
        ("api:backend", first, "card_activated"),
    ]
    # Off while no backend key is set.
    with TestClient(create_app(bank.core, service=bank.service)) as plain:
        off = plain.post("/api/outcomes", json={"outcome": "x", "message_id": first}, headers=BACKEND)
        assert off.status_code == 403 and "TELLER_BACKEND_API_KEY" in off.json()["detail"]


class Crash(BaseException):
    """The process dying at this point: nothing after it runs, and no ``except Exception`` takes it."""


def _crash(*_: object, **__: object) -> None:
    raise Crash


@pytest.mark.parametrize("dies_in", ["after_reply", "book_adviser_call"])
def test_a_press_whose_replica_died_before_booking_is_booked_by_its_redelivery_once(
    teller_env: Path, dies_in: str
) -> None:
    """A review's finding: a replica that stored the customer's press of "Book an adviser call" (the
    platform message recorded with Teller's answer) and died before booking the call (``dies_in``:
    before the handoff opened, or between the handoff and the booking) left the call unbooked for
    good: the platform's redelivery was answered as a duplicate, and a duplicate booked nothing.
    Now the redelivery books it, on the advice reply the press came under, once however many
    replicas take a redelivery."""
    from tests.test_sessions import Board

    settings = get_settings()
    press = Incoming("web", "cust-1", "cust-1", "press-1", ADVISER_CHOICE)

    def replica() -> tuple[TellerCore, TellerService]:
        core = build_core(settings)
        service = build_service(settings, core)
        assert service.ops is not None
        service.ops.attach_board(Board())  # an ops channel: someone can take the call
        return core, service

    core, service = replica()
    advice = service.handle(Incoming("web", "cust-1", "cust-1", "q-1", ADVICE_QUESTION))
    assert advice.route == "advice" and ADVISER_CHOICE in [c.value for c in advice.choices]
    if dies_in == "after_reply":
        setattr(service.ops, "after_reply", _crash)  # noqa: B010 (an instance's method, for this test)
    else:
        setattr(service, "book_adviser_call", _crash)  # noqa: B010
    with pytest.raises(Crash):
        service.handle(press)
    store = core.store
    assert store.conversations.seen("web", "press-1") is not None  # the press and its answer are stored
    assert store.outcomes.of_message(advice.message_id) == []  # ... and no call is booked
    service.close()
    core.close()

    # The platform redelivers the press to a restarted replica, and again to another one (a retry).
    replicas = [replica(), replica()]
    try:
        for _, restarted in replicas:
            again = restarted.handle(press)
            assert again.duplicate and again.route == "handoff"
        store = replicas[0][0].store
        [booked] = store.outcomes.of_message(advice.message_id)
        assert (booked.name, booked.source) == ("adviser_call_booked", "customer")
        handoff = store.handoffs.active_for("web", "cust-1")
        assert handoff is not None and handoff.message_id == again.message_id  # it was handed off too
        assert replicas[1][1].handle(press).duplicate
        assert store.outcomes.of_message(advice.message_id) == [booked]  # booked once
    finally:
        for core, service in replicas:
            service.close()
            core.close()
