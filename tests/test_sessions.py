"""Customers reach only their own conversation (issue #15): the outsider's probes, written as tests.

Two web customers, a flood, forged and oversized requests, feedback on another's reply, handoff and
review-post caps, a bank backend vouching for its customers. Each probe is refused or limited; the
figures (messages accepted per minute per session before 429, memory growth for a 100 MB body) are
asserted here and printed by ``python -m pytest tests/test_sessions.py -s``.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from bot.abuse import BUSY, AbuseLimits, LimitSettings
from bot.assistant import build_core, build_service
from bot.choices import ADVISER_CHOICE, HANDOFF_CHOICE
from bot.core import MAX_TEXT, SECRET_WARNING, Incoming, Outgoing, TellerCore
from bot.errors import RateLimited
from bot.operators import Actor
from bot.ops_desk import ERASED_NOTE, ERASED_NOW_NOTE, EXPIRED_NOTICE, MAX_RELAY, OTHER_MEMBER, expiry_notice
from bot.policy import UNSURE
from bot.service import NO_SUCH_REPLY, NOT_RATEABLE, UNSTAFFED, TellerService
from bot.settings import get_settings
from bot.storage import Handoff, HandoffThread, NewHandoff, StoredMessage, schema
from bot.web.app import create_app
from bot.web.sessions import SESSION_COOKIE, Identities
from nlu.language import UNSTAFFED_REPLIES, handoff_reply
from tests.servers import serve_in_thread
from tests.webclient import api_session, new_customer, offer, stored_user_id

BACKEND_KEY = "backend-key-0123456789"
TOKEN_KEY = "customer-token-key-0123456789abcdef"
OPS = "COPS"


@dataclass
class Board:
    """The ops channel, recorded (the Slack board's port, without Slack)."""

    ops_channel: str | None = OPS
    threads: list[str] = field(default_factory=list)
    in_thread: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: The thread each of :attr:`warnings` was posted in.
    warned_threads: list[str | None] = field(default_factory=list)
    reviews: list[int] = field(default_factory=list)
    #: The texts of the transcript each thread opened with.
    openings: list[list[str]] = field(default_factory=list)

    def open_handoff(self, handoff: Handoff, transcript: list[StoredMessage]) -> str:
        self.threads.append(handoff.id)
        self.openings.append([m.text for m in transcript])
        return f"{1700000000 + len(self.threads)}.000100"  # Slack's shape: seconds.microseconds

    def post_in_thread(self, handoff: Handoff, text: str) -> None:
        self.in_thread.append(text)

    def warn_in_thread(self, thread: HandoffThread, text: str) -> None:
        self.warnings.append(text)
        self.warned_threads.append(thread.thread_ts)

    def post_review(self, item: Any, labels: list[str]) -> None:
        self.reviews.append(item.id)

    def post_proposals(self, correction: Any, proposals: list[Any]) -> None:
        pass

    def announce(self, text: str) -> str:
        return "1.0"

    def amend(self, message_ref: str, text: str) -> None:
        pass


@dataclass
class Bank:
    core: TellerCore
    service: TellerService
    board: Board
    app: Any


@pytest.fixture()
def bank(teller_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Bank]:
    monkeypatch.setenv("TELLER_OPERATORS", "UOPS")
    get_settings.cache_clear()
    settings = get_settings()
    core = build_core(settings)
    service = build_service(settings, core)
    board = Board()
    assert service.ops is not None
    service.ops.attach_board(board)
    identities = Identities.from_store(core.store, backend_api_key=BACKEND_KEY, customer_token_key=TOKEN_KEY)
    app = create_app(core, service=service, identities=identities)
    yield Bank(core, service, board, app)
    service.close()
    core.close()


def limits(service: TellerService, **overrides: Any) -> None:
    """Put new limits on the service and its ops desk (one shared set, as in `teller serve`)."""
    service.limits = AbuseLimits(LimitSettings(**overrides))
    assert service.ops is not None
    service.ops.limits = service.limits


# ------------------------------------------------------------------------------------ identity


def test_two_customers_each_reach_only_their_own_conversation(bank: Bank) -> None:
    alice, mallory = new_customer(bank.app), new_customer(bank.app)
    # Alice is handed to a person; an operator writes to her.
    first = alice.post("/api/messages", json={"text": HANDOFF_CHOICE}).json()
    assert first["route"] == "handoff"
    bank.service.ops.drain()  # type: ignore[union-attr]
    alice_id = stored_user_id(bank.core, alice)
    handoff = bank.core.store.handoffs.active_for("web", alice_id)
    assert handoff is not None and handoff.thread_ts is not None
    bank.service.operator_reply(
        OPS, handoff.thread_ts, Actor("slack", "UOPS"), "Your new card ships today.", "p1"
    )
    [relay] = alice.get("/api/messages").json()["messages"]
    assert relay["reply"] == "Your new card ships today."

    # Mallory cannot name Alice: a user_id in the body is refused, in the query ignored.
    named = mallory.post("/api/messages", json={"user_id": alice_id, "text": "send my card to 1 Evil St"})
    assert named.status_code == 422 and alice_id not in named.text
    polled = mallory.get("/api/messages", params={"user_id": alice_id}).json()
    assert polled == {"messages": [], "handoff_open": False, "closed_notice": None}
    # What Mallory writes is her own conversation: nothing reaches Alice's handoff thread.
    mallory.post("/api/messages", json={"text": "send my new card to 1 Evil Street"})
    bank.service.ops.drain()  # type: ignore[union-attr]
    assert not any("Evil" in text for text in bank.board.in_thread)
    # Her handoff request opens her own handoff; Alice's stays hers and Alice is still relayed.
    mallory.post("/api/messages", json={"text": HANDOFF_CHOICE})
    assert bank.core.store.handoffs.active_for("web", alice_id) == handoff
    assert alice.post("/api/messages", json={"text": "thanks!"}).json()["route"] == "human"

    # Feedback on Alice's reply, on an operator's relay, or on an id that does not exist: one
    # answer, the same words; nothing is recorded.
    answers = [
        client.post("/api/feedback", json={"message_id": mid, "helpful": False})
        for client, mid in (
            (mallory, first["message_id"]),  # Alice's reply
            (mallory, "m_doesnotexist"),
            (mallory, relay["message_id"]),  # the operator's reply to Alice
            (alice, relay["message_id"]),  # an operator's reply is not Teller's to rate
        )
    ]
    assert [(a.status_code, a.json()) for a in answers] == [(404, {"detail": NO_SUCH_REPLY})] * 4
    assert bank.core.store.feedback.feedback() == []
    # Alice's own reply is found, and refused only because a handoff offers no feedback.
    own = alice.post("/api/feedback", json={"message_id": first["message_id"], "helpful": True})
    assert (own.status_code, own.json()) == (409, {"detail": NOT_RATEABLE})


def test_a_customer_who_sends_a_secret_during_a_handoff_is_warned_at_once(bank: Bank) -> None:
    """A PIN relayed to a person reaches the thread as its placeholder, and the customer is told at
    once, as an answered message is, that it was not kept; the warning is no operator's reply."""
    alice = new_customer(bank.app)
    assert alice.post("/api/messages", json={"text": HANDOFF_CHOICE}).json()["route"] == "handoff"
    bank.service.ops.drain()  # type: ignore[union-attr]
    alice_id = stored_user_id(bank.core, alice)
    handoff = bank.core.store.handoffs.active_for("web", alice_id)
    assert handoff is not None and handoff.thread_ts is not None

    plain = alice.post("/api/messages", json={"text": "is anyone there?"}).json()
    assert plain["reply"] == "" and plain["route"] == "human"
    sent = {"text": "my pin is 4921 if that helps", "client_message_id": "pin-1"}
    warned = alice.post("/api/messages", json=sent).json()
    assert warned["reply"] == SECRET_WARNING and warned["route"] == "human"
    bank.service.ops.drain()  # type: ignore[union-attr]
    assert bank.board.in_thread[-1] == "my pin is [PIN] if that helps"
    assert not any("4921" in text for text in bank.board.in_thread)
    # Sent again (a retry): the same warning, stored once.
    again = alice.post("/api/messages", json=sent).json()
    assert again["reply"] == SECRET_WARNING and again["message_id"] == warned["message_id"]
    # The page polls for the operators' words from the handoff's start: not the warning again.
    polled = alice.get("/api/messages", params={"after": plain["message_id"]}).json()
    assert polled["messages"] == [] and polled["handoff_open"] is True
    # Not an operator's reply: no expected wait from it, and the expiry notice says nobody answered.
    assert bank.core.store.handoffs.first_reply_waits() == []
    assert expiry_notice(bank.core.store, handoff.id) == EXPIRED_NOTICE
    # The operator's next question is what her next answer is read against, not the warning.
    bank.service.operator_reply(
        OPS, handoff.thread_ts, Actor("slack", "UOPS"), "What is your date of birth?", "p1"
    )
    alice.post("/api/messages", json={"text": "12/03/1985"})
    bank.service.ops.drain()  # type: ignore[union-attr]
    assert bank.board.in_thread[-1] == "[DOB]"
    assert [m["reply"] for m in alice.get("/api/messages").json()["messages"]] == [
        "What is your date of birth?"
    ]
    assert len(bank.core.store.handoffs.first_reply_waits()) == 1
    # Flagging the warning files nothing: it answers no question of the model's (a reviewer's finding).
    assert bank.service.flag(warned["message_id"], None, Actor("slack", "UOPS")) is None
    assert not bank.core.store.review.items(status=None)


def test_flagging_the_reply_to_a_first_request_for_a_person_files_no_item_and_raises_nothing(
    bank: Bank,
) -> None:
    """A reviewer's finding: the reply to "Talk to a person" pressed with nothing typed before it
    had no question to file, and flagging it raised IndexError (Slack's command answered 400)."""
    alice = new_customer(bank.app)
    reply = alice.post("/api/messages", json={"text": HANDOFF_CHOICE}).json()
    assert reply["route"] == "handoff"
    assert bank.service.flag(reply["message_id"], "rude", Actor("slack", "UOPS")) is None
    flags = bank.core.store.database.rows(select(schema.flags.c.message_id))
    assert [row["message_id"] for row in flags] == [reply["message_id"]]
    # A typed question's answer is still filed as before (another customer: Alice is with a person).
    asked = new_customer(bank.app).post("/api/messages", json={"text": "my card has not arrived"}).json()
    item = bank.service.flag(asked["message_id"], None, Actor("slack", "UOPS"))
    assert item is not None and item.text == "my card has not arrived"


def test_a_page_loaded_again_during_a_handoff_gets_what_the_operators_said_in_it(bank: Bank) -> None:
    """A reviewer's finding: a reloaded page polled only after the customer's next message, so the
    operators' messages before it never reached the page. Without ``after`` the poll reads from the
    latest handoff's start: this one's messages, not an earlier handoff's."""
    alice = new_customer(bank.app)
    ops = Actor("slack", "UOPS")
    alice.post("/api/messages", json={"text": HANDOFF_CHOICE})
    bank.service.ops.drain()  # type: ignore[union-attr]
    alice_id = stored_user_id(bank.core, alice)
    first = bank.core.store.handoffs.active_for("web", alice_id)
    assert first is not None and first.thread_ts is not None
    bank.service.operator_reply(OPS, first.thread_ts, ops, "Hello from the first handoff.", "p1")
    bank.service.close_handoff(first.id, ops)
    alice.post("/api/messages", json={"text": HANDOFF_CHOICE})
    bank.service.ops.drain()  # type: ignore[union-attr]
    second = bank.core.store.handoffs.active_for("web", alice_id)
    assert second is not None and second.thread_ts is not None and second.id != first.id
    bank.service.operator_reply(OPS, second.thread_ts, ops, "Your card has been blocked.", "p2")
    # The page is loaded again: its first poll has no `after`.
    reloaded = alice.get("/api/messages").json()
    assert [m["reply"] for m in reloaded["messages"]] == ["Your card has been blocked."]
    assert reloaded["handoff_open"] is True
    # The customer writes; the page polls after its own last operator message, and misses nothing.
    bank.service.operator_reply(OPS, second.thread_ts, ops, "Anything else?", "p3")
    alice.post("/api/messages", json={"text": "thanks"})
    after = alice.get("/api/messages", params={"after": reloaded["messages"][-1]["message_id"]}).json()
    assert [m["reply"] for m in after["messages"]] == ["Anything else?"]


def test_forged_expired_and_missing_credentials_are_401(bank: Bank) -> None:
    client = TestClient(bank.app)
    body = {"text": "hello"}
    assert client.post("/api/messages", json=body).status_code == 401  # no session at all
    token = api_session(client)["Authorization"].split()[1]
    forged = token[:-3] + ("abc" if not token.endswith("abc") else "xyz")
    for headers in (
        {"Authorization": f"Bearer {forged}"},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": f"Basic {token}"},
        {"Authorization": f"Bearer {jwt.encode({'sub': 'alice', 'aud': 'teller', 'exp': 1}, TOKEN_KEY)}"},
        {"Authorization": f"Bearer {jwt.encode({'sub': 'alice', 'aud': 'teller'}, TOKEN_KEY)}"},  # no exp
        {"Authorization": f"Bearer {jwt.encode({'sub': 'alice', 'aud': 'x', 'exp': 2**40}, TOKEN_KEY)}"},
        {"Authorization": f"Bearer {jwt.encode({'sub': 'alice', 'aud': 'teller', 'exp': 2**40}, 'k' * 40)}"},
    ):
        response = client.post("/api/messages", json=body, headers=headers)
        assert response.status_code == 401, headers
        assert "hello" not in response.text and token not in response.text
    # A forged cookie is no session either, and a bad bearer is never traded for a good cookie.
    client.cookies.set(SESSION_COOKIE, forged)
    assert client.post("/api/messages", json=body).status_code == 401
    page = new_customer(bank.app)
    assert page.post("/api/messages", json=body, headers={"Authorization": "Bearer nope"}).status_code == 401
    # An expired session: its signature holds, its age does not (sessions of one second here).
    brief = Identities.from_store(bank.core.store, session_days=1 / 86400)
    short = TestClient(create_app(bank.core, service=bank.service, identities=brief))
    expired = {"Authorization": f"Bearer {brief.issue().token}"}
    time.sleep(2.1)
    assert short.post("/api/messages", json=body, headers=expired).status_code == 401
    assert bank.core.store.conversations.count() == 0


def test_the_page_cookie_is_httponly_lax_and_host_only_secure_in_production(bank: Bank) -> None:
    cookie = TestClient(bank.app).get("/").headers["set-cookie"].lower()
    assert cookie.startswith("teller_session=") and "httponly" in cookie and "samesite=lax" in cookie
    assert "secure" not in cookie
    production = create_app(bank.core, service=bank.service, production=True)
    secure = TestClient(production).get("/").headers["set-cookie"].lower()
    assert secure.startswith("__host-teller_session=") and "secure" in secure and "path=/" in secure


def test_a_banks_backend_vouches_for_its_customers(bank: Bank) -> None:
    """With the backend key, or a token the bank signed, a customer keeps one conversation across
    devices; the bank's id is never stored, only its keyed digest."""
    client = TestClient(bank.app)
    backend = {"Authorization": f"Bearer {BACKEND_KEY}", "X-Teller-Customer": "cust-00417"}
    token = jwt.encode({"sub": "cust-00417", "aud": "teller", "exp": int(time.time()) + 600}, TOKEN_KEY)
    first = client.post("/api/messages", json={"text": "What's the overdraft fee?"}, headers=backend)
    second = client.post(
        "/api/messages", json={"text": "and the limit?"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert first.status_code == second.status_code == 200
    stored = {m.user_id for m in bank.core.store.conversations.history()}
    assert len(stored) == 1 and stored.pop().startswith("c_")
    assert not any(
        "00417" in (m.user_id + (m.platform_id or "")) for m in bank.core.store.conversations.history()
    )
    # The bank names the customer's segment; a client on its own cannot.
    premier = client.post("/api/messages", json={"text": "hello", "segment": "premier"}, headers=backend)
    assert premier.status_code == 200
    segments = [m.segment for m in bank.core.store.conversations.history() if m.direction == "in"]
    assert sorted(segments, key=str) == [None, None, "premier"]
    claimed = new_customer(bank.app).post("/api/messages", json={"text": "hello", "segment": "premier"})
    assert claimed.status_code == 400 and "segment" in claimed.json()["detail"]
    missing = client.post(
        "/api/messages", json={"text": "hi"}, headers={"Authorization": f"Bearer {BACKEND_KEY}"}
    )
    assert missing.status_code == 400 and "X-Teller-Customer" in missing.json()["detail"]
    # Erasure names the customer by the bank's id.
    operator = create_app(bank.core, service=bank.service, operator_key="operator-key-0123456789")
    receipt = TestClient(operator).delete(
        "/api/customers/web/cust-00417", headers={"Authorization": "Bearer operator-key-0123456789"}
    )
    assert receipt.status_code == 200 and bank.core.store.conversations.count() == 0


def test_a_customer_deletes_their_own_conversation_from_the_web_chat(bank: Bank) -> None:
    """An anonymous customer, whom no one else can name for erasure, erases themselves ("Delete my
    conversation"); a customer the bank vouches for asks the bank (TELLER_CUSTOMER_ERASURE)."""
    from bot.storage import AuditAction

    store = bank.core.store
    alice, bob = new_customer(bank.app), new_customer(bank.app)
    assert 'data-erasure="on"' in alice.get("/").text
    for text in ("What's the overdraft fee?", "my card 4111 1111 1111 1111 was declined"):
        assert alice.post("/api/messages", json={"text": text}).status_code == 200
    assert bob.post("/api/messages", json={"text": "hello"}).status_code == 200
    alice_id, bob_id = stored_user_id(bank.core, alice), stored_user_id(bank.core, bob)

    assert TestClient(bank.app).delete("/api/conversation").status_code == 401  # no session
    erased = alice.delete("/api/conversation")
    assert erased.status_code == 200, erased.text
    assert erased.json()["messages"] == 4 and erased.json()["conversations"] == 1
    history = store.conversations.history()
    assert {m.user_id for m in history} == {bob_id} and len(history) == 2
    [entry] = store.audit.entries(action=AuditAction.ERASURE)
    assert entry.actor == "web:customer" and alice_id not in json.dumps(entry.details)
    # Nothing stored: zeros, and nothing audited (each audit row is kept for good).
    again = alice.delete("/api/conversation")
    assert again.status_code == 200 and again.json()["messages"] == 0
    assert len(store.audit.entries(action=AuditAction.ERASURE)) == 1
    # The same session goes on, with a new conversation.
    assert alice.post("/api/messages", json={"text": "hello again"}).status_code == 200
    # Three erasures an hour (TELLER_LIMIT_ERASURES): each is a large transaction under the lock.
    assert alice.delete("/api/conversation").status_code == 200
    limited = alice.delete("/api/conversation")
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0

    # Verified by the bank: refused by default, nothing erased; the bank's backend neither.
    token = jwt.encode({"sub": "cust-00417", "aud": "teller", "exp": int(time.time()) + 600}, TOKEN_KEY)
    verified = {"Authorization": f"Bearer {token}"}
    client = TestClient(bank.app)
    assert client.post("/api/messages", json={"text": "hello"}, headers=verified).status_code == 200
    before = store.conversations.count()
    refused = client.delete("/api/conversation", headers=verified)
    assert refused.status_code == 403 and "ask us" in refused.json()["detail"]
    backend = {"Authorization": f"Bearer {BACKEND_KEY}", "X-Teller-Customer": "cust-00417"}
    assert client.delete("/api/conversation", headers=backend).status_code == 403
    assert store.conversations.count() == before

    # "all": verified customers too; "off": nobody, and the page shows no button.
    everyone = create_app(
        bank.core, service=bank.service, identities=bank.app.state.identities, customer_erasure="all"
    )
    assert TestClient(everyone).delete("/api/conversation", headers=verified).status_code == 200
    assert store.conversations.count() == before - 2
    nobody = create_app(
        bank.core, service=bank.service, identities=bank.app.state.identities, customer_erasure="off"
    )
    carol = new_customer(nobody)
    assert 'data-erasure="off"' in carol.get("/").text
    assert carol.delete("/api/conversation").status_code == 403


# ------------------------------------------------------------------------------------ limits


def test_a_flood_from_one_session_is_limited_with_retry_after(bank: Bank) -> None:
    customer = new_customer(bank.app)
    statuses = [customer.post("/api/messages", json={"text": f"hello {i}"}) for i in range(300)]
    accepted = sum(r.status_code == 200 for r in statuses)
    refused = [r for r in statuses if r.status_code == 429]
    print(f"\nflood: {accepted} of 300 messages accepted in one session before 429 (limit 20/minute)")
    assert accepted == 20 and len(refused) == 280
    retry = int(refused[0].headers["retry-after"])
    assert 1 <= retry <= 60 and refused[0].json()["limit"] == "customer"
    assert bank.core.store.conversations.count() == 2 * 20  # the refused ones are not stored
    # Another customer is not held back by the first one's flood.
    assert new_customer(bank.app).post("/api/messages", json={"text": "hello"}).status_code == 200


def test_a_flood_of_feedback_is_limited_like_messages(bank: Bank) -> None:
    """`POST /api/feedback` had no limit of its own: a session could post verdicts on made-up ids
    (each a look-up in the store) without end. A verdict now counts as a message: refused with 429
    and Retry-After once the customer's share is used, recording nothing; a real verdict within the
    share is recorded as before."""
    limits(bank.service, messages="5/minute")
    customer = new_customer(bank.app)
    answer = customer.post("/api/messages", json={"text": "My card has not arrived yet"}).json()
    made_up = [
        customer.post("/api/feedback", json={"message_id": f"m{i}", "helpful": False}) for i in range(6)
    ]
    assert [r.status_code for r in made_up] == [404, 404, 404, 404, 429, 429]
    assert made_up[-1].json()["limit"] == "customer" and int(made_up[-1].headers["retry-after"]) >= 1
    refused = customer.post("/api/feedback", json={"message_id": answer["message_id"], "helpful": True})
    assert refused.status_code == 429 and bank.core.store.feedback.feedback() == []
    # Another customer's share is their own.
    other = new_customer(bank.app)
    theirs = other.post("/api/messages", json={"text": "My card has not arrived yet"}).json()
    assert "feedback:helpful" in {c["value"] for c in theirs["choices"]}  # an answer that can be rated
    rated = other.post("/api/feedback", json={"message_id": theirs["message_id"], "helpful": True})
    assert rated.status_code == 200 and len(bank.core.store.feedback.feedback()) == 1


def test_deleting_the_conversation_counts_as_a_message(bank: Bank) -> None:
    """README: `DELETE /api/conversation` "counts as one message of the abuse limits". A reviewer
    found it counted only against the erasure limits: a customer at the message limit could still
    erase, and an erasure left the message share as it was. Refused by either limit, it counts
    against neither."""
    limits(bank.service, messages="3/minute")
    customer = new_customer(bank.app)
    for i in range(2):
        assert customer.post("/api/messages", json={"text": f"hello {i}"}).status_code == 200
    assert customer.delete("/api/conversation").status_code == 200  # the third unit
    refused = customer.post("/api/messages", json={"text": "hello again"})
    assert refused.status_code == 429 and refused.json()["limit"] == "customer"
    over = customer.delete("/api/conversation")
    assert over.status_code == 429 and over.json()["limit"] == "customer"

    limits(bank.service, erasures="1/hour")
    other = new_customer(bank.app)
    assert other.delete("/api/conversation").status_code == 200
    erasures = other.delete("/api/conversation")
    assert erasures.status_code == 429 and erasures.json()["limit"] == "erasures"
    assert "deleted again in" in erasures.json()["detail"]
    # The refused erasure took no message unit: the default share (20/minute) less the one erasure.
    statuses = [other.post("/api/messages", json={"text": f"hi {i}"}).status_code for i in range(20)]
    assert statuses.count(200) == 19 and statuses[-1] == 429


def test_throwaway_sessions_are_limited_per_address_and_overall(bank: Bank) -> None:
    client = TestClient(bank.app)
    tokens = []
    for _ in range(25):
        response = client.post("/api/sessions")
        if response.status_code != 201:
            break
        tokens.append(response.json()["token"])
    assert len(tokens) == 20 and response.status_code == 429 and "retry-after" in response.headers
    limits(bank.service, messages_per_address="30/minute")
    statuses = [
        client.post(
            "/api/messages", json={"text": "hi"}, headers={"Authorization": f"Bearer {t}"}
        ).status_code
        for t in tokens
        for _ in range(2)
    ]
    assert statuses.count(200) == 30 and statuses.count(429) == 10


def test_handoffs_are_capped_per_address_and_in_total(bank: Bank) -> None:
    limits(bank.service, handoffs_per_address="3/hour", max_open_handoffs=5)
    opened, customers = [], []
    for _ in range(5):
        customers.append(new_customer(bank.app))
        body = {"text": HANDOFF_CHOICE, "client_message_id": "h1"}
        opened.append(customers[-1].post("/api/messages", json=body).json()["reply"])
    bank.service.ops.drain()  # type: ignore[union-attr]
    assert bank.core.store.handoffs.open_count() == 3 and len(bank.board.threads) == 3
    assert opened[3:] == [BUSY, BUSY]
    # Resending a refused request (its client_message_id) is judged again: refused again.
    again = customers[4].post("/api/messages", json={"text": HANDOFF_CHOICE, "client_message_id": "h1"})
    assert again.json()["reply"] == BUSY and bank.core.store.handoffs.open_count() == 3
    # The total cap, for customers the bank vouches for (no address limit on its backend).
    limits(bank.service, max_open_handoffs=3)
    backend = {"Authorization": f"Bearer {BACKEND_KEY}", "X-Teller-Customer": "cust-9"}
    refused = (
        TestClient(bank.app).post("/api/messages", json={"text": HANDOFF_CHOICE}, headers=backend).json()
    )
    assert refused["reply"] == BUSY and bank.core.store.handoffs.open_count() == 3
    # A secret sent with the request: the warning stays first, before the busy notice.
    from bot.core import SECRET_PREFIX

    body = {"text": "my password is Hunter22! I want to talk to a person"}
    warned = TestClient(bank.app).post("/api/messages", json=body, headers=backend).json()
    assert warned["route"] == "handoff" and warned["reply"] == SECRET_PREFIX + BUSY


def _unsure_of_everything(bank: Bank) -> None:
    """Every message falls through to the policy's last rule, ``handoff`` (no confident answer)."""
    policy = bank.core.policy
    assert policy.thresholds is not None
    rules = "smalltalk advice in_scope intent faq faq_fallback bank agree_intent agree_kb"
    never = dict.fromkeys((*rules.split(), "confident_scope", "confident_intent", "clarify_second"), 2.0)
    policy.thresholds = replace(policy.thresholds, **never)


def test_a_low_confidence_handoff_is_open_at_once_and_the_customer_is_told_so_not_asked(bank: Bank) -> None:
    """The policy hands off when it is unsure, and the handoff opens at once (an ops thread, the
    expected wait): the customer must be told so, not asked whether they would like it, nor offered
    a "Talk to a person" button for what is already done."""
    _unsure_of_everything(bank)
    question = "I have a question about the letter you sent me last week"
    reply = bank.service.handle(Incoming("web", "u1", "u1", "u1:1", question))
    stored = bank.core.store.conversations.message(reply.message_id)
    assert reply.route == "handoff" and (stored.reason or "").startswith("no confident answer")
    handoff = bank.core.store.handoffs.active_for("web", "u1")
    assert handoff is not None and handoff.message_id == reply.message_id  # opened, not offered
    bank.service.ops.drain()  # type: ignore[union-attr]
    assert bank.board.threads == [handoff.id]
    assert reply.text.startswith(UNSURE) and "passing you to a colleague" in reply.text
    assert reply.text.endswith(bank.service.ops.waiting_notice())  # type: ignore[union-attr]
    assert "?" not in reply.text and "would you like" not in reply.text.lower()
    assert all(c.value not in (HANDOFF_CHOICE, ADVISER_CHOICE) for c in reply.choices)
    assert stored.choices == ()
    # Without an ops channel nobody is promised, and nothing is opened.
    bank.service.ops.board = None  # type: ignore[union-attr]
    alone = bank.service.handle(Incoming("web", "u2", "u2", "u2:1", question))
    assert (alone.route, alone.text, alone.choices) == ("handoff", UNSTAFFED, ())
    assert bank.core.store.handoffs.active_for("web", "u2") is None


def test_without_an_ops_channel_a_customer_in_another_language_is_told_so_in_it(bank: Bank) -> None:
    """A message in a language Teller does not serve is handed off with a reply in that language;
    where nobody can take over, what replaces it (stored and said) is in that language too."""
    chinese, spanish = "我的卡还没到", "¿Dónde está mi tarjeta nueva? La pedí hace dos semanas."
    staffed = bank.service.handle(Incoming("web", "u1", "u1", "u1:1", chinese))
    assert staffed.route == "handoff" and staffed.text.startswith(handoff_reply("zh"))
    bank.service.ops.board = None  # type: ignore[union-attr]
    for n, (text, code) in enumerate([(chinese, "zh"), (spanish, "es")], start=2):
        alone = bank.service.handle(Incoming("web", f"u{n}", f"u{n}", f"u{n}:1", text))
        assert (alone.route, alone.text, alone.choices) == ("handoff", UNSTAFFED_REPLIES[code], ())
        assert bank.core.store.conversations.message(alone.message_id).text == UNSTAFFED_REPLIES[code]
        assert bank.core.store.handoffs.active_for("web", f"u{n}") is None
    # A reply stored while someone could take over, replayed now: told the same, in its language.
    again = bank.service.handle(Incoming("web", "u1", "u1", "u1:1", chinese))
    assert again.duplicate and again.text == UNSTAFFED_REPLIES["zh"]


def test_without_an_ops_channel_small_talk_offers_no_person(bank: Bank) -> None:
    """A user trial: "who are you?" and "what can you do?" promised a person where no one could
    take over. Staffed, the replies offer one; unstaffed, they say where to turn instead (stored and
    said so), and a reply stored while staffed, replayed now, is told the same."""
    smalltalk, words = bank.core.policy.smalltalk, bank.core.policy.unstaffed_words
    questions = {"who are you": "bot_identity", "what can you do": "capabilities"}
    for n, (question, category) in enumerate(questions.items(), start=1):
        staffed = bank.service.handle(Incoming("web", "u1", "u1", f"u1:{n}", question))
        assert (staffed.route, staffed.text) == ("smalltalk", smalltalk.replies[category])
        assert "connect you" in staffed.text
    bank.service.ops.board = None  # type: ignore[union-attr]
    for n, (question, category) in enumerate(questions.items(), start=1):
        alone = bank.service.handle(Incoming("web", "u2", "u2", f"u2:{n}", question))
        assert (alone.route, alone.text) == ("smalltalk", smalltalk.unstaffed[category])
        assert "connect you" not in alone.text and "number on the back of your card" in alone.text
        assert bank.core.store.conversations.message(alone.message_id).text == alone.text
        again = bank.service.handle(Incoming("web", "u1", "u1", f"u1:{n}", question))
        assert again.duplicate and again.text == words[smalltalk.replies[category]] == alone.text
    # Small talk that offers no one is said as written.
    hello = bank.service.handle(Incoming("web", "u2", "u2", "u2:9", "hello"))
    assert (hello.route, hello.text) == ("smalltalk", smalltalk.replies["greeting"])


def test_review_posts_to_the_ops_channel_are_limited_and_the_rest_wait_in_the_queue(bank: Bank) -> None:
    limits(bank.service, review_posts="2/minute")
    questions = [
        "What's the overdraft fee?",
        "How do I change my PIN?",
        "My card has not arrived yet",
        "Can I get a refund for this transaction?",
        "How do I top up by bank transfer?",
    ]
    for question in questions:  # each answer marked not helpful is filed for review
        customer = new_customer(bank.app)
        reply = customer.post("/api/messages", json={"text": question}).json()
        customer.post("/api/feedback", json={"message_id": reply["message_id"], "helpful": False})
    bank.service.ops.drain()  # type: ignore[union-attr]
    assert len(bank.board.reviews) == 2
    waiting = bank.service.ops.review.items()  # type: ignore[union-attr]
    assert len(waiting) >= 4 and len({i.id for i in waiting} - set(bank.board.reviews)) >= 2


def test_one_customers_not_helpful_verdicts_file_a_limited_number_of_review_items(bank: Bank) -> None:
    """A reviewer's finding: one customer pressing "not helpful" on every reply filed an item for
    each, taking the review queue and the ops channel's posts that every customer shares. Beyond
    TELLER_LIMIT_REVIEW_FILINGS the verdict is kept (positioning counts it) and files nothing."""
    limits(bank.service, review_filings="1/hour")
    ops = bank.service.ops
    assert ops is not None
    questions = [
        "What's the overdraft fee?",
        "How do I change my PIN?",
        "My card has not arrived yet",
        "How do I top up by bank transfer?",
    ]
    spammer = new_customer(bank.app)
    rated = []
    for question in questions:  # (a reply that offered no feedback buttons cannot be rated: 409)
        reply = spammer.post("/api/messages", json={"text": question}).json()
        verdict = spammer.post("/api/feedback", json={"message_id": reply["message_id"], "helpful": False})
        if verdict.status_code == 200:
            rated.append(question)
    ops.drain()

    def filed() -> int:  # (unsure answers are filed on their own: those are not counted)
        return sum(i.text in rated for i in ops.review.items())

    assert len(rated) >= 2 and filed() == 1
    assert [f.helpful for f, _ in bank.core.store.feedback.feedback()] == [False] * len(rated)
    # Another customer's verdict is filed as before.
    other = new_customer(bank.app)
    reply = other.post("/api/messages", json={"text": rated[-1]}).json()
    assert other.post("/api/feedback", json={"message_id": reply["message_id"], "helpful": False}).is_success
    ops.drain()
    assert filed() == 2


def test_a_filing_for_a_reply_erased_meanwhile_is_skipped_without_an_error(
    bank: Bank, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trial deleted its conversation 40 ms after a handoff: the review filing queued for the
    handoff's reply failed on the gone reply (a foreign key) and was logged as an error, paging an
    ops team for a harmless race. A reply erased meanwhile is skipped; any other failure still
    raises (and is retried and logged by the ops desk's worker)."""
    from sqlalchemy.exc import IntegrityError

    ops = bank.service.ops
    assert ops is not None
    customer = new_customer(bank.app)
    reply = customer.post("/api/messages", json={"text": "What's the overdraft fee?"}).json()
    ops.drain()

    def fails(reply_id: str) -> list[Any]:
        raise IntegrityError("INSERT INTO review_sources", {}, Exception("FOREIGN KEY constraint failed"))

    monkeypatch.setattr(ops.review, "file_reply", fails)
    with pytest.raises(IntegrityError):  # the reply is there: not a race, raised
        ops._file(reply["message_id"])
    assert customer.delete("/api/conversation").status_code == 200
    ops._file(reply["message_id"])  # erased meanwhile: skipped


def test_text_is_capped_on_every_path_including_relays(bank: Bank) -> None:
    customer = new_customer(bank.app)
    customer.post("/api/messages", json={"text": HANDOFF_CHOICE})
    bank.service.ops.drain()  # type: ignore[union-attr]
    long = "please " * (MAX_TEXT // 7 + 10)
    refused = customer.post("/api/messages", json={"text": long})
    assert refused.status_code == 400 and "too long" in refused.json()["detail"]
    bank.service.ops.drain()  # type: ignore[union-attr]
    assert not any("please please" in text for text in bank.board.in_thread)
    # An operator's relay longer than a customer may get is not sent; the operator is told.
    handoff = bank.core.store.handoffs.active_for("web", stored_user_id(bank.core, customer))
    assert handoff is not None and handoff.thread_ts is not None
    bank.service.operator_reply(OPS, handoff.thread_ts, Actor("slack", "UOPS"), "x" * (MAX_RELAY + 1), "p9")
    bank.service.ops.drain()  # type: ignore[union-attr]
    assert customer.get("/api/messages").json()["messages"] == []
    assert any("shorter parts" in w for w in bank.board.warnings)


def test_push_channel_customers_over_the_limit_get_one_notice(bank: Bank) -> None:
    class Transport:
        name = "telegram"

        def __init__(self) -> None:
            self.posted: list[str] = []

        def parts(self, address: str, outgoing: Outgoing) -> list[str]:
            return [outgoing.text]

        def post(self, address: str, part: str) -> str:
            self.posted.append(part)
            return str(len(self.posted))

    limits(bank.service, messages="3/minute")
    transport = Transport()
    for i in range(10):
        bank.service.message(Incoming("telegram", "42", "42", f"u{i}", "hello"), transport)
    notices = [p for p in transport.posted if "faster than we can answer" in p]
    assert len(transport.posted) == 3 + 1 and len(notices) == 1
    with pytest.raises(RateLimited):
        bank.service.handle(Incoming("telegram", "42", "42", "u99", "hello"))


# ------------------------------------------------------------------------------------ bodies


def rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def test_a_100_mb_body_is_refused_before_it_is_read(bank: Bank) -> None:
    """A request that says it carries 100 MB gets a 413 after its headers: the server reads none of
    it (the socket is closed with the body unsent), so memory does not grow."""
    with serve_in_thread(bank.app) as url:
        host, port = url.removeprefix("http://").split(":")
        before = rss_kib()
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(
                b"POST /api/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 104857600\r\n\r\n" + b'{"text": "' + b"a" * 65_000
            )
            answer = ""
            while "}" not in answer:  # the head and the JSON body may come in separate packets
                chunk = sock.recv(4096).decode("latin-1")
                if not chunk:
                    break
                answer += chunk
        growth_mib = (rss_kib() - before) / 1024
    print(f"\n100 MB body: {answer.splitlines()[0]}; server memory growth {growth_mib:.1f} MiB")
    assert answer.startswith("HTTP/1.1 413") and "larger than 65,536 bytes" in answer
    assert growth_mib < 5


# ------------------------------------------------------------------------------------ review's probes


def test_the_limits_hold_under_concurrent_requests_and_per_channel() -> None:
    import threading

    limits = AbuseLimits(LimitSettings(messages="20/minute", messages_overall="30/minute"))
    admitted: list[bool] = []

    def send() -> None:
        try:
            limits.message("web", "w_1", "203.0.113.9")
            admitted.append(True)
        except RateLimited:
            admitted.append(False)

    threads = [threading.Thread(target=send) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert admitted.count(True) == 20
    for n in range(10):  # the web's overall share runs out ...
        limits.message("web", f"w_other{n}", None)
    with pytest.raises(RateLimited):
        limits.message("web", "w_last", None)
    limits.message("telegram", "42", None)  # ... and Telegram's customers are still answered


def test_anonymous_customers_have_a_share_of_the_overall_limit_and_verified_ones_the_rest() -> None:
    limits = AbuseLimits(LimitSettings(messages_overall="30/minute", messages_anonymous="10/minute"))
    for n in range(10):  # anonymous sessions from many addresses ...
        limits.message("web", f"s_{n}", f"203.0.113.{n}", anonymous=True)
    with pytest.raises(RateLimited) as refused:  # ... fill their share,
        limits.message("web", "s_new", "198.51.100.7", anonymous=True)
    assert refused.value.scope == "anonymous"
    for n in range(20):  # and verified customers still have the rest of the overall limit
        limits.message("web", f"c_{n}", None)
    with pytest.raises(RateLimited) as refused:
        limits.message("web", "c_last", None)
    assert refused.value.scope == "overall"


def test_a_costly_message_takes_more_of_the_limits_but_the_costliest_is_still_admitted() -> None:
    limits = AbuseLimits(LimitSettings(messages="20/minute", messages_overall="1000/minute"))
    limits.message("web", "c_long", None, cost=8)
    limits.message("web", "c_long", None, cost=8)
    with pytest.raises(RateLimited) as refused:  # 16 of 20 used: 8 more do not fit ...
        limits.message("web", "c_long", None, cost=8)
    assert refused.value.scope == "customer"
    assert refused.value.retry_after == 60  # the oldest unit's expiry would free 1 of the 8
    for _ in range(4):  # ... 4 short ones do
        limits.message("web", "c_long", None)
    with pytest.raises(RateLimited):
        limits.message("web", "c_long", None)
    tight = AbuseLimits(LimitSettings(messages="5/minute"))
    tight.message("web", "c_tight", None, cost=8)  # costs the whole window, not more
    with pytest.raises(RateLimited):
        tight.message("web", "c_tight", None)


def test_a_message_costs_its_classifier_windows_and_a_resent_one_a_single_unit(bank: Bank) -> None:
    cost = bank.core.message_cost
    assert cost("where is my card?") == 1
    english = ("my card was declined at the shop and I do not know why it happened to me " * 60)[:4000]
    digits = ("1.2,3;4-5/" * 50)[:499]  # few characters, many tokens
    assert cost(english) > 1 and cost(digits) > 1
    assert cost(digits) == bank.core.policy.classifier.predict([digits])[0].windows
    limits(bank.service, messages=f"{2 * cost(english) + 1}/minute")
    client = TestClient(bank.app)
    headers = {"Authorization": f"Bearer {BACKEND_KEY}", "X-Teller-Customer": "carol"}
    body = {"text": english, "client_message_id": "m-1"}
    first = client.post("/api/messages", json=body, headers=headers)
    assert first.status_code == 200
    for _ in range(cost(english) + 1):  # retries of the same message: one unit each
        again = client.post("/api/messages", json=body, headers=headers)
        assert again.status_code == 200 and again.json()["message_id"] == first.json()["message_id"]
    refused = client.post("/api/messages", json={"text": english}, headers=headers)
    assert refused.status_code == 429  # a new long one no longer fits


def test_a_flood_of_anonymous_web_sessions_leaves_verified_customers_answered(bank: Bank) -> None:
    assert get_settings().limit_messages_anonymous == "600/minute"  # the default: half the overall
    limits(bank.service, messages_overall="30/minute", messages_anonymous="10/minute")
    client = TestClient(bank.app)
    for n in range(10):  # stand-in for many anonymous browsers' messages this minute
        bank.service.limits.message("web", f"s_flood{n}", f"192.0.2.{n}", anonymous=True)
    anonymous = {"Authorization": f"Bearer {client.post('/api/sessions').json()['token']}"}
    refused = client.post("/api/messages", json={"text": "hello"}, headers=anonymous)
    assert refused.status_code == 429 and "retry-after" in refused.headers
    verified = {"Authorization": f"Bearer {BACKEND_KEY}", "X-Teller-Customer": "alice"}
    assert client.post("/api/messages", json={"text": "hello"}, headers=verified).status_code == 200


def test_credentials_given_twice_are_refused_and_ids_are_read_as_utf8(bank: Bank) -> None:
    client = TestClient(bank.app)
    body = {"text": "hello"}
    twice = [
        ("authorization", f"Bearer {BACKEND_KEY}"),
        ("x-teller-customer", "alice"),
        ("x-teller-customer", "bob"),
    ]
    assert client.post("/api/messages", json=body, headers=twice).status_code == 400
    # The same customer by header (UTF-8 bytes) and by token: one conversation.
    header = {
        "Authorization": f"Bearer {BACKEND_KEY}",
        "X-Teller-Customer": "alïce".encode(),
    }
    assert client.post("/api/messages", json=body, headers=header).status_code == 200
    token = jwt.encode({"sub": " alïce ", "aud": "teller", "exp": int(time.time()) + 600}, TOKEN_KEY)
    assert (
        client.post("/api/messages", json=body, headers={"Authorization": f"Bearer {token}"}).status_code
        == 200
    )
    assert len({m.user_id for m in bank.core.store.conversations.history()}) == 1


def test_customer_tokens_are_short_lived_and_carry_their_segment(bank: Bank) -> None:
    client = TestClient(bank.app)
    body = {"text": "hello"}

    def bearer(**claims: Any) -> dict[str, str]:
        return {"Authorization": "Bearer " + jwt.encode({"aud": "teller", **claims}, TOKEN_KEY)}

    year = bearer(sub="c1", exp=int(time.time()) + 365 * 86400)
    assert client.post("/api/messages", json=body, headers=year).status_code == 401
    premier = bearer(sub="c1", exp=int(time.time()) + 600, segment="premier")
    assert client.post("/api/messages", json=body, headers=premier).status_code == 200
    claimed = client.post("/api/messages", json={**body, "segment": "private"}, headers=premier)
    assert claimed.status_code == 400  # the token's holder cannot name another segment
    assert [m.segment for m in bank.core.store.conversations.history() if m.direction == "in"] == ["premier"]
    # A card number as the segment (a trial's backend mistake) would be stored and reported as
    # written: refused, from the backend's body and in a token's claim.
    carded = bearer(sub="c1", exp=int(time.time()) + 600, segment="4111111111111111")
    assert client.post("/api/messages", json=body, headers=carded).status_code == 401
    backend = {"Authorization": f"Bearer {BACKEND_KEY}", "X-Teller-Customer": "c1"}
    sent = client.post("/api/messages", json={**body, "segment": "4111111111111111"}, headers=backend)
    assert sent.status_code == 422 and "4111" not in sent.text
    assert sent.json()["detail"][0]["loc"] == "body.segment"
    assert len([m for m in bank.core.store.conversations.history() if m.direction == "in"]) == 1
    # Codes that merely hold digits are segments (the redactor reads them as a phone or an account).
    for code in ("cohort.202401011200", "promo-12345678"):
        coded = client.post("/api/messages", json={**body, "segment": code}, headers=backend)
        assert coded.status_code == 200, code


def test_a_refused_customer_token_logs_why(bank: Bank, caplog: pytest.LogCaptureFixture) -> None:
    """A trial's finding: every refused bank token logged only ``customer_credential_refused``, so a
    bank integrating its token signer had nothing to debug with. The reason is logged (never the
    token or a claim's value); the 401 says no more than before."""
    client = TestClient(bank.app)
    now = int(time.time())
    cases = {
        "expired": jwt.encode({"sub": "c1", "aud": "teller", "exp": now - 60}, TOKEN_KEY),
        "aud": jwt.encode({"sub": "c1", "aud": "other", "exp": now + 600}, TOKEN_KEY),
        "signature": jwt.encode(
            {"sub": "c1", "aud": "teller", "exp": now + 600}, "another-key-0123456789abcdef012345"
        ),
        "missing claim": jwt.encode({"sub": "c1", "aud": "teller"}, TOKEN_KEY),
        "exp too far": jwt.encode({"sub": "c1", "aud": "teller", "exp": now + 365 * 86400}, TOKEN_KEY),
        "algorithm (HS256 only)": jwt.encode(
            {"sub": "c1", "aud": "teller", "exp": now + 600}, TOKEN_KEY, "HS512"
        ),
    }
    caplog.set_level(logging.WARNING, logger="bot.web.sessions")
    for reason, token in cases.items():
        caplog.clear()
        response = client.post(
            "/api/messages", json={"text": "hi"}, headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 401, reason
        [line] = [r for r in caplog.records if r.getMessage() == "customer_token_refused"]
        assert line.fields == {"reason": reason}  # type: ignore[attr-defined]
        assert token not in caplog.text
    caplog.clear()  # a lapsed anonymous session is not a bank's token: nothing more to say
    client.post(
        "/api/messages", json={"text": "hi"}, headers={"Authorization": "Bearer not-a-session-at-all"}
    )
    assert not [r for r in caplog.records if r.getMessage() == "customer_token_refused"]


def test_an_unexpected_field_is_named_only_when_it_reads_as_an_identifier(bank: Bank) -> None:
    customer = new_customer(bank.app)
    response = customer.post("/api/messages", json={"text": "hi", "alice@example.com 4111 1111 1111 1111": 1})
    assert response.status_code == 422 and "4111" not in response.text and "alice" not in response.text
    assert response.json()["detail"][0]["loc"] == "body.(an unexpected field)"
    # A key that reads as a program's identifier is named, so an integrator sees which one to drop.
    for key in ("user_id", "userId"):
        named = customer.post("/api/messages", json={"text": "hi", key: "x"})
        assert named.status_code == 422 and named.json()["detail"][0]["loc"] == f"body.{key}"
    for key in ("id4111111111111111", "a" * 41, "jane.doe"):
        hidden = customer.post("/api/messages", json={"text": "hi", key: "x"})
        assert hidden.json()["detail"][0]["loc"] == "body.(an unexpected field)", key


def test_concurrent_handoffs_never_pass_the_total_cap_and_resends_are_counted(bank: Bank) -> None:
    import threading

    limits(bank.service, max_open_handoffs=3, messages="5/minute")
    replies: list[str] = []

    def ask(n: int) -> None:
        incoming = Incoming("web", f"c_{n}", f"c_{n}", f"c_{n}:1", HANDOFF_CHOICE)
        replies.append(bank.service.handle(incoming).text)

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert bank.core.store.handoffs.open_count() == 3 and replies.count(BUSY) == 9
    # Resending one message counts against the customer's limit like any other.
    for _ in range(4):
        bank.service.handle(Incoming("web", "c_0", "c_0", "c_0:1", HANDOFF_CHOICE))
    with pytest.raises(RateLimited):
        bank.service.handle(Incoming("web", "c_0", "c_0", "c_0:1", HANDOFF_CHOICE))


def test_in_production_only_the_host_only_cookie_is_a_session(bank: Bank) -> None:
    """A ``teller_session`` cookie a sibling subdomain could plant is not taken for the session."""
    production = TestClient(create_app(bank.core, service=bank.service, production=True))
    planted = Identities.from_store(bank.core.store).issue().token
    production.cookies.set("teller_session", planted)
    assert production.get("/api/messages").status_code == 401
    page = production.get("/")
    assert page.headers["set-cookie"].lower().startswith("__host-teller_session=")


def test_a_message_relayed_during_a_handoff_keeps_the_segment_the_bank_named(bank: Bank) -> None:
    """A customer whose conversation is with a person still belongs to their segment: the relayed
    message is stored with it, as an answered one is (positioning counts messages by segment)."""
    first = bank.core.handle(Incoming("web", "conv-seg", "c_seg", "m-seg-1", "hello", segment="premier"))
    stored = bank.core.store.conversations.message(first.message_id)
    bank.core.store.handoffs.start(
        NewHandoff("web", stored.conversation_id, "c_seg", "conv-seg", first.message_id)
    )
    assert bank.service.ops is not None
    relayed = bank.service.ops.relay_in(
        Incoming("web", "conv-seg", "c_seg", "m-seg-2", "are you there?", segment="premier")
    )
    assert relayed is not None and relayed.route == "human"
    inbound = [m for m in bank.core.store.conversations.history() if m.direction == "in"]
    assert [(m.text, m.segment) for m in inbound if m.user_id == "c_seg"] == [
        ("hello", "premier"),
        ("are you there?", "premier"),
    ]


def test_a_group_members_message_relayed_during_a_handoff_is_stored_as_theirs(bank: Bank) -> None:
    """A group chat (one conversation, several people): during one member's handoff another
    member's message was stored as the handed-off customer's, so that customer's access request
    showed someone else's words and their erasure removed them. It is stored as its sender's and
    marked as another person's in the operators' thread."""
    first = bank.core.handle(Incoming("telegram", "group-1", "alice", "g:1", "hello"))
    stored = bank.core.store.conversations.message(first.message_id)
    bank.core.store.handoffs.start(
        NewHandoff("telegram", stored.conversation_id, "alice", "group-1", first.message_id)
    )
    ops = bank.service.ops
    assert ops is not None
    handoff = bank.core.store.handoffs.active_for("telegram", "group-1")
    assert handoff is not None
    bank.core.store.handoffs.set_thread(handoff.id, "C-ops", "1700000000.000001")
    for sender, message_id, text in (("alice", "g:2", "any news?"), ("bob", "g:3", "me too, same problem")):
        assert ops.relay_in(Incoming("telegram", "group-1", sender, message_id, text)) is not None
    ops.drain()
    inbound = {m.text: m.user_id for m in bank.core.store.conversations.history() if m.direction == "in"}
    assert inbound["any news?"] == "alice"
    assert inbound["me too, same problem"] == "bob"
    assert bank.board.in_thread[-2:] == ["any news?", f"{OTHER_MEMBER} me too, same problem"]


def test_a_button_from_before_pressed_during_a_handoff_reads_as_its_label_in_the_thread(bank: Bank) -> None:
    """A trial's finding: buttons left from before a handoff, pressed during it, reached the
    operator as their values ("*Customer:* entry:lost_or_stolen_card", "handoff:adviser"). The
    thread shows what the button said; what the customer sent is stored as it came."""
    customer = new_customer(bank.app)
    customer.post("/api/messages", json={"text": HANDOFF_CHOICE})
    ops = bank.service.ops
    assert ops is not None
    ops.drain()
    before = len(bank.board.in_thread)
    for value in ("entry:overdraft_fee", "intent:card_arrival", "handoff:adviser", "I still need help"):
        assert customer.post("/api/messages", json={"text": value}).status_code == 200
    ops.drain()
    kb = bank.core.policy.kb
    entry = kb.for_intent("card_arrival")
    assert entry is not None
    assert bank.board.in_thread[before:] == [
        f"(pressed a button from before: “{kb.get('overdraft_fee').questions[0]}”)",
        f"(pressed a button from before: “{entry.questions[0]}”)",
        "(pressed a button from before: “Book an adviser call”)",
        "I still need help",
    ]


def test_a_handoffs_thread_opens_with_pressed_buttons_by_their_labels(bank: Bank) -> None:
    """A review's finding: the transcript a handoff's thread opened with showed the values of the
    buttons the customer had pressed ("intent:card_arrival"); it shows what they said. A value no
    answer offered was read as the customer's words, and is shown as typed."""
    customer = new_customer(bank.app)
    offer(bank.core, customer, "intent:card_arrival", labels={"intent:card_arrival": "Card on its way"})
    assert customer.post("/api/messages", json={"text": "intent:card_arrival"}).status_code == 200
    assert customer.post("/api/messages", json={"text": "entry:overdraft_fee"}).status_code == 200
    customer.post("/api/messages", json={"text": HANDOFF_CHOICE})
    ops = bank.service.ops
    assert ops is not None
    ops.drain()
    opening = [t for t in bank.board.openings[-1] if t.startswith("(pressed") or ":" in t[:8]]
    assert opening == [
        "(pressed “Card on its way”)",  # what the button said when it was pressed
        "entry:overdraft_fee",
        "(pressed “Talk to a person / Something else”)",
    ]


def web_handoff(bank: Bank) -> tuple[TestClient, Handoff]:
    """A web customer who asked for a person, and their open handoff (its thread posted)."""
    customer = new_customer(bank.app)
    customer.post("/api/messages", json={"text": HANDOFF_CHOICE})
    assert bank.service.ops is not None
    bank.service.ops.drain()
    handoff = bank.core.store.handoffs.active_for("web", stored_user_id(bank.core, customer))
    assert handoff is not None
    return customer, handoff


def an_hour_quiet(bank: Bank) -> None:
    """Every conversation and handoff as if an hour had passed without a message either way."""
    store = bank.core.store
    with store.database.transaction() as connection:
        then = store.database.clock.ago(3600)
        connection.execute(schema.conversations.update().values(updated_at=then))
        connection.execute(schema.handoffs.update().values(opened_at=then))


def test_an_operators_reply_after_the_handoff_expired_is_reported_in_the_thread(
    bank: Bank, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trial's findings: an operator's reply in the thread of a handoff that had expired was
    dropped with nothing said (HTTP 200, nothing relayed, nothing logged); and the customer of a
    handoff an operator had replied in was told "no colleague was free to reply in time"."""
    from bot.ops_desk import EXPIRED_NOTICE, QUIET_NOTICE

    customer, handoff = web_handoff(bank)
    ops, store = bank.service.ops, bank.core.store
    assert ops is not None and handoff.thread_ts is not None
    operator = Actor("slack", "UOPS")
    assert bank.service.operator_reply(OPS, handoff.thread_ts, operator, "Looking into it now", "COPS:9.1")
    ops.drain()
    an_hour_quiet(bank)
    told: list[str] = []
    send = ops._send
    monkeypatch.setattr(
        ops, "_send", lambda h, reply, kind: (told.append(reply.text), send(h, reply, kind))[1]
    )
    [expired] = ops.expire_idle()
    ops.drain()
    assert told == [QUIET_NOTICE] and QUIET_NOTICE != EXPIRED_NOTICE
    polled = customer.get("/api/messages").json()  # what the chat page shows, polling
    assert polled["handoff_open"] is False and polled["closed_notice"] == QUIET_NOTICE
    assert "the conversation went quiet" in bank.board.warnings[-1]

    caplog.set_level(logging.INFO, logger="bot.ops_desk")
    warned = len(bank.board.warnings)
    handled = bank.service.operator_reply(
        OPS, handoff.thread_ts, operator, "Are you still there?", "COPS:9.2"
    )
    ops.drain()
    assert handled
    assert bank.board.warnings[warned:] and bank.board.warnings[-1].startswith(
        "Not delivered: this handoff expired"
    )
    assert bank.board.warned_threads[-1] == handoff.thread_ts
    [line] = [r for r in caplog.records if r.getMessage() == "handoff_reply_not_delivered"]
    assert line.fields["reason"] == "handoff_expired"  # type: ignore[attr-defined]
    assert not any("Are you still there?" in m.text for m in store.handoffs.transcript(expired.id))


def test_the_idle_sweep_leaves_a_handoff_with_a_relay_on_its_way(bank: Bank) -> None:
    """A relay holds its handoff's relay lock from reading the handoff open to recording its
    message; the idle sweep never closes the handoff in between (the relay would reach the customer
    after they were told Teller answers again), nor waits for it (a relay can take a platform's
    whole deadline): it leaves that handoff to its next round."""
    _, handoff = web_handoff(bank)
    ops, store = bank.service.ops, bank.core.store
    assert ops is not None
    an_hour_quiet(bank)
    with ops._relaying.hold(handoff.id):
        assert ops.expire_idle() == [] and store.handoffs.get(handoff.id).status == "open"
    assert [h.id for h in ops.expire_idle()] == [handoff.id]


def test_a_customer_who_deletes_their_conversation_during_a_handoff_is_told_in_its_thread(bank: Bank) -> None:
    """A reviewer's finding: a customer's own "Delete my conversation" during an open handoff left
    its ops thread as it was, the operator writing on to nobody until a reply bounced. The thread
    is told at once; another customer's handoff thread is not."""
    alice, bob = new_customer(bank.app), new_customer(bank.app)
    for customer in (alice, bob):
        customer.post("/api/messages", json={"text": HANDOFF_CHOICE})
    ops = bank.service.ops
    assert ops is not None
    ops.drain()
    store = bank.core.store
    mine = store.handoffs.active_for("web", stored_user_id(bank.core, alice))
    assert mine is not None and mine.thread_ts is not None
    warned = len(bank.board.warnings)
    assert alice.delete("/api/conversation").status_code == 200
    ops.drain()
    assert bank.board.warnings[warned:] == [ERASED_NOW_NOTE]
    assert bank.board.warned_threads[-1] == mine.thread_ts


def test_a_customer_erased_while_their_handoffs_thread_opens_is_recorded_and_told(
    bank: Bank, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reviewer's finding: erased between the thread's first post and its recording, the handoff
    was gone, the thread unmarked and no one told. The thread is recorded as erased (a later reply
    there is reported, not relayed) and the operators are told at once."""
    from bot.privacy.erasure import Eraser

    customer = new_customer(bank.app)
    user = stored_user_id(bank.core, customer)
    opened = bank.board.open_handoff

    def erased_meanwhile(handoff: Handoff, transcript: list[StoredMessage]) -> str:
        ts = opened(handoff, transcript)
        Eraser(bank.core.store).erase("web", user, "test")
        return ts

    monkeypatch.setattr(bank.board, "open_handoff", erased_meanwhile)
    customer.post("/api/messages", json={"text": HANDOFF_CHOICE})
    ops = bank.service.ops
    assert ops is not None
    ops.drain()
    ts = f"{1700000000 + len(bank.board.threads)}.000100"
    assert bank.board.warnings[-1] == ERASED_NOW_NOTE and bank.board.warned_threads[-1] == ts
    assert bank.core.store.handoffs.erased_thread(ts, OPS)


def test_an_operators_reply_after_the_customer_was_erased_is_reported_in_the_thread_and_not_kept(
    bank: Bank, caplog: pytest.LogCaptureFixture
) -> None:
    """Right to erasure while a handoff is open: the operator's next reply in its thread cannot reach
    anyone. They are told so in the thread (not left believing it was delivered), a redacted line is
    logged, and nothing of the reply is stored against the erased customer."""
    customer = new_customer(bank.app)
    customer.post("/api/messages", json={"text": HANDOFF_CHOICE})
    bank.service.ops.drain()  # type: ignore[union-attr]
    user = stored_user_id(bank.core, customer)
    handoff = bank.core.store.handoffs.active_for("web", user)
    assert handoff is not None and handoff.thread_ts is not None
    key = "operator-key-0123456789abcdef0123456789"
    with TestClient(create_app(bank.core, service=bank.service, operator_key=key)) as operator:
        erased = operator.delete(f"/api/customers/web/{user}", headers={"Authorization": f"Bearer {key}"})
    assert erased.status_code == 200 and erased.json()["counts"]["handoffs"] == 1
    bank.service.ops.drain()  # type: ignore[union-attr]
    # The thread is told at once that the handoff went with the customer.
    assert bank.board.warnings[-1] == ERASED_NOW_NOTE and bank.board.warned_threads[-1] == handoff.thread_ts
    store = bank.core.store
    before, warned = store.counts(), len(bank.board.warnings)

    caplog.set_level(logging.INFO, logger="bot.ops_desk")
    words = "Your refund reaches card 4111 1111 1111 1111 tomorrow, jo@example.com"
    handled = bank.service.operator_reply(OPS, handoff.thread_ts, Actor("slack", "UOPS"), words, "COPS:9.1")
    bank.service.ops.drain()  # type: ignore[union-attr]

    assert handled  # a handoff's thread, not chatter
    assert (
        bank.board.warnings[warned:] == [ERASED_NOTE] and bank.board.warned_threads[-1] == handoff.thread_ts
    )
    assert "not delivered" in ERASED_NOTE.lower() and "erased" in ERASED_NOTE
    # Nothing stored: no relay, no outbox text, no delivery; not a word of the reply, not the customer.
    assert store.counts() == before and store.handoffs.active_for("web", user) is None
    with store.database.reading() as connection:
        rows = {
            t.name: [tuple(map(str, r)) for r in connection.execute(select(t))]
            for t in schema.metadata.sorted_tables
        }
    everything = json.dumps(rows)
    # (the card's groups, not "4111" alone: a random hex id holds "4111" now and then, as a CI run's
    # handoff id h_003411144e5c6dc5 did)
    assert "refund" not in everything and "4111 1111" not in everything and user not in everything
    assert rows["erased_threads"] == [(OPS, handoff.thread_ts, rows["erased_threads"][0][2])]
    [line] = [r for r in caplog.records if r.getMessage() == "handoff_reply_not_delivered"]
    fields = line.fields  # type: ignore[attr-defined]
    assert (fields["reason"], fields["thread_ts"], fields["operator"]) == (
        "customer_erased",
        handoff.thread_ts,
        "slack:UOPS",
    )
    # Teller's own log lines (the test client's, httpx's, name the URL it requested).
    teller = json.dumps(
        [[r.getMessage(), getattr(r, "fields", None)] for r in caplog.records if r.name.startswith("bot")],
        default=str,
    )
    assert "refund" not in teller and "4111 1111" not in teller and user not in teller
    assert not any(r.getMessage() == "handoff_relayed" for r in caplog.records)
    # Chatter in a thread that never relayed a handoff is still chatter.
    assert not bank.service.operator_reply(
        OPS, "1699999999.0001", Actor("slack", "UOPS"), "lunch?", "COPS:9.2"
    )
