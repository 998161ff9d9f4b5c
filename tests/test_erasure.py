"""Erasing one customer (``bot.privacy.erasure``), on SQLite and on a real PostgreSQL: everything of
theirs goes, nothing of anyone else's; the receipt counts it; the audit log names them by
pseudonym only. Then ``teller forget`` and ``DELETE /api/customers/{channel}/{user_id}``."""

from __future__ import annotations

import errno
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
import sqlalchemy
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text
from typer.testing import CliRunner

from bot.cli import app
from bot.core import TellerCore
from bot.errors import ConfigError, InputError
from bot.policy import AnswerPolicy
from bot.privacy.erasure import Eraser, pseudonym
from bot.settings import get_settings
from bot.storage import (
    AuditAction,
    CorrectionAction,
    DeliveryKind,
    Direction,
    HandoffStatus,
    NewCorrection,
    NewExchange,
    NewHandoff,
    ReviewReason,
    ReviewSource,
    ReviewStatus,
    Store,
    StoredMessage,
    schema,
)
from bot.web.app import create_app

OPERATOR = "slack:UOPS"
KEY = "k" * 32


def say(
    store: Store,
    user: str,
    text_: str,
    route: str = "intent",
    channel: str = "web",
    conversation: str | None = None,
    confidence: float = 0.9,
) -> tuple[StoredMessage, StoredMessage]:
    return store.conversations.record_exchange(
        NewExchange(
            channel,
            conversation or user,
            user,
            text_,
            f"Teller's answer to: {text_}",
            route=route,
            intent="card_arrival",
            confidence=confidence,
        )
    )


def keep_in_outbox(store: Store, message_id: str, written: str) -> None:
    """A reply's text as written, waiting to be delivered (plain SQL: the outbox's own schema)."""
    with store.database.transaction() as connection:
        connection.execute(
            schema.outbox.insert().values(
                message_id=message_id, text=written, created_at=store.database.clock.now()
            )
        )


@dataclass
class World:
    """Alice and Bob on the web chat; Alice's Telegram account (42) and Carol (43) in a group."""

    alice: list[str] = field(default_factory=list)
    bob: list[str] = field(default_factory=list)
    group: list[str] = field(default_factory=list)
    shared_item: int = 0
    alice_item: int = 0
    bob_text: str = ""
    carol_reply: str = ""


def populate(store: Store) -> World:
    world = World()
    # Alice: a handoff with relays both ways, closed (and the customer told so)...
    a1_in, a1_out = say(store, "alice", "where is my zebra card", route="handoff")
    handoff = store.handoffs.start(NewHandoff("web", a1_out.conversation_id, "alice", "alice", a1_out.id))
    store.handoffs.set_thread(handoff.id, "COPS", "1700000000.000100")
    relay_in = store.handoffs.record_relay(
        handoff.id, Direction.IN, "my zebra iban is GB82 WEST 1234 5698 7654 32"
    )
    relay_out = store.handoffs.record_relay(handoff.id, Direction.OUT, "Looking, alice", author=OPERATOR)
    store.deliveries.begin(relay_out.id, DeliveryKind.RELAY, "web", "alice")
    store.handoffs.close(handoff.id, OPERATOR)
    notice = f"{handoff.id}:closed"
    store.deliveries.begin(notice, DeliveryKind.NOTICE, "web", "alice")
    store.deliveries.delivered(notice, ["n1"], attempts=1)
    # ... an answer she found unhelpful, that an operator flagged and Telegram never took.
    a2_in, a2_out = say(store, "alice", "why was my zebra charged twice", confidence=0.3)
    store.feedback.add_feedback(a2_out.id, False, "zebra useless", user_id="alice")
    store.feedback.add_flag(a2_out.id, "wrong zebra", OPERATOR, "command")
    store.deliveries.begin(a2_out.id, DeliveryKind.REPLY, "web", "alice")
    store.deliveries.failed(a2_out.id, "blocked", 3, [])
    keep_in_outbox(store, a2_out.id, "Call 0800 ZEBRA")
    world.alice = [a1_in.id, a1_out.id, relay_in.id, relay_out.id, a2_in.id, a2_out.id]

    # Bob: the same question as Alice's first (merged with it in the review queue), a helpful answer.
    b1_in, b1_out = say(store, "bob", "where is my card please", route="handoff")
    store.feedback.add_feedback(b1_out.id, True, None, user_id="bob")
    store.deliveries.begin(b1_out.id, DeliveryKind.REPLY, "web", "bob")
    keep_in_outbox(store, b1_out.id, "Bob's answer as written")
    bob_handoff = store.handoffs.start(NewHandoff("web", b1_out.conversation_id, "bob", "bob", b1_out.id))
    bob_relay = store.handoffs.record_relay(bob_handoff.id, Direction.IN, "still here")
    world.bob = [b1_in.id, b1_out.id, bob_relay.id]
    world.bob_text = b1_in.text

    # The review queue: one item filing Alice's and Bob's question (Alice's text first), settled with
    # a chosen intent; one holding only Alice's unhelpful answer, corrected with a new KB entry.
    sources = [
        ReviewSource(a1_out.id, a1_in.id, a1_in.text, ReviewReason.HANDOFF),
        ReviewSource(b1_out.id, b1_in.id, b1_in.text, ReviewReason.HANDOFF),
    ]
    world.shared_item = store.review.create("where is my zebra card", a1_in.text, "handoff", None, sources)
    store.review.resolve(
        world.shared_item,
        ReviewStatus.CHOSEN,
        OPERATOR,
        "card_arrival",
        NewCorrection(a1_in.text, "where is my zebra card", CorrectionAction.CHOOSE, label="card_arrival"),
    )
    reasons = (ReviewReason.LOW_CONFIDENCE, ReviewReason.NOT_HELPFUL, ReviewReason.FLAGGED)
    world.alice_item = store.review.create(
        "why was my zebra charged twice",
        a2_in.text,
        "intent",
        None,
        [ReviewSource(a2_out.id, a2_in.id, a2_in.text, r) for r in reasons],
    )
    store.review.resolve(
        world.alice_item,
        ReviewStatus.CORRECTED,
        OPERATOR,
        "op_why_was_my_zebra_charged_twice",
        NewCorrection(
            a2_in.text,
            "why was my zebra charged twice",
            CorrectionAction.ANSWER,
            kb_id="op_why_was_my_zebra_charged_twice",
            answer="Card payments can show twice while pending.",
        ),
    )

    # A Telegram group (-100) Alice's account 42 started and Carol (43) writes in too; Alice marked
    # Carol's answer helpful, as did Carol (rows stored before feedback became the asker's only,
    # once per reply: a store may hold such history).
    t1 = say(store, "42", "hello from telegram", channel="telegram", conversation="-100")
    t2_in, t2_out = say(store, "43", "carol asks", channel="telegram", conversation="-100")
    store.feedback.add_feedback(t2_out.id, True, None, user_id="42")
    with store.database.transaction() as connection:
        connection.execute(
            schema.feedback.insert().values(
                id="f_carol",
                message_id=t2_out.id,
                helpful=1,
                user_id="43",
                created_at=store.database.clock.now(),
            )
        )
    world.group = [t1[0].id, t1[1].id, t2_in.id, t2_out.id]
    world.carol_reply = t2_out.id
    return world


def dump(store: Store) -> str:
    """Every row of every table, as text (to look for any trace of a customer)."""
    with store.database.reading() as connection:
        tables = {
            table.name: [[str(v) for v in row] for row in connection.execute(select(table))]
            for table in schema.metadata.sorted_tables
        }
    return json.dumps(tables, ensure_ascii=False)


def count(store: Store, table: Any, *where: Any) -> int:
    with store.database.reading() as connection:
        return int(connection.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


# ------------------------------------------------------------------------------- the contract


def test_erasure_removes_everything_of_one_customer_and_nothing_of_anyone_else(store: Store) -> None:
    world = populate(store)
    before = store.counts()
    assert "alice" in dump(store) and "zebra" in dump(store)

    receipt = Eraser(store).erase("web", "alice", "cli:robin")

    assert receipt.counts == {
        "messages": 6,
        "conversations": 1,
        "conversations_anonymised": 0,
        "feedback": 1,
        "flags": 1,
        "review_sources": 4,
        "review_items": 1,
        "review_items_rewritten": 1,
        "corrections": 1,
        "corrections_rewritten": 1,
        "proposals": 0,
        "handoffs": 1,
        "deliveries": 3,
        "outbox": 1,
        "outcomes": 0,
        "briefs_rewritten": 0,
        "brief_files_rewritten": 0,
    }
    assert receipt.kb_entries == ("op_why_was_my_zebra_charged_twice",)
    assert any("until the next retrain" in c for c in receipt.caveats)
    assert any("Slack ops channel" in c for c in receipt.caveats)
    # Not a trace of Alice's id or words anywhere in the database (her KB entry's id aside, which the
    # receipt lists for an operator: it lives in the knowledge base, not here).
    everything = dump(store).replace("op_why_was_my_zebra_charged_twice", "")
    assert "alice" not in everything and "zebra" not in everything
    m = schema.messages
    assert count(store, m, m.c.id.in_(world.alice)) == 0
    assert count(store, schema.handoffs, schema.handoffs.c.customer_user_id == "alice") == 0

    # Everyone else's rows are all there.
    after = store.counts()
    assert after.messages == before.messages - 6 and count(store, m, m.c.id.in_(world.bob + world.group)) == 7
    assert (after.feedback, after.flags, after.handoffs) == (before.feedback - 1, 0, 1)
    assert store.deliveries.get(world.bob[1]) is not None and store.outbox.text(world.bob[1]) is not None
    shared = store.review.item(world.shared_item)
    assert shared.text == world.bob_text and shared.message_ids == (world.bob[1],)
    assert shared.status is ReviewStatus.CHOSEN
    [correction] = store.feedback.corrections()
    assert (correction.item_id, correction.text, correction.label) == (
        world.shared_item,
        world.bob_text,
        "card_arrival",
    )
    with pytest.raises(InputError):
        store.review.item(world.alice_item)
    assert [h.customer_user_id for h in store.handoffs.recent()] == ["bob"]
    assert store.conversations.conversation_id("web", "alice") is None
    assert store.conversations.conversation_id("web", "bob") is not None

    # The audit entry: same transaction, pseudonym only.
    [entry] = store.audit.entries(action=AuditAction.ERASURE)
    assert (entry.action, entry.actor, entry.subject, entry.id) == (
        AuditAction.ERASURE,
        "cli:robin",
        pseudonym(store, "web", "alice"),
        receipt.audit_id,
    )
    assert entry.subject == receipt.subject and entry.details["counts"] == receipt.counts
    assert entry.details["kb_entries"] == 1  # how many, not their ids (made from her words)
    raw = store.database.rows(text("SELECT * FROM audit_log"))
    assert "alice" not in json.dumps(raw) and "zebra" not in json.dumps(raw)

    # Erasing again finds nothing, and says so (audited too).
    again = Eraser(store).erase("web", "alice", "cli:robin")
    assert again.total == 0 and again.subject == receipt.subject
    assert len(store.audit.entries(action=AuditAction.ERASURE)) == 2


def insert(store: Store, table: Any, **row: Any) -> int:
    """A row written with plain SQL (for corrections and proposals made straight from the log)."""
    with store.database.transaction() as connection:
        key = connection.execute(table.insert().values(**row)).inserted_primary_key
    return int(key[0])


def test_corrections_and_proposals_made_from_the_customers_messages_go_too(store: Store) -> None:
    now = store.database.clock.now()
    a_in, _ = say(store, "alice", "zebra loan please")
    b_in, _ = say(store, "bob", "a loan please")
    c_in, _ = say(store, "carol", "loan wanted")
    k, p = schema.corrections, schema.correction_proposals
    common = {"action": "choose", "label": "loan", "author": OPERATOR, "created_at": now}
    carols = insert(store, k, text=c_in.text, key="loan wanted", message_id=c_in.id, **common)
    alices = insert(store, k, text=a_in.text, key="zebra loan please", message_id=a_in.id, **common)
    # Bob's message corrected by confirming the proposal Alice's correction led to.
    bobs = insert(
        store, k, text=b_in.text, key="a loan please", message_id=b_in.id, origin_id=alices, **common
    )
    proposal = {"label": "loan", "status": "confirmed", "created_at": now}
    insert(
        store, p, correction_id=alices, message_id=b_in.id, text=b_in.text, key="a loan please", **proposal
    )
    insert(
        store,
        p,
        correction_id=carols,
        message_id=a_in.id,
        text=a_in.text,
        key="zebra loan please",
        **proposal,
    )
    kept = insert(
        store, p, correction_id=carols, message_id=b_in.id, text=b_in.text, key="a loan please", **proposal
    )

    receipt = Eraser(store).erase("web", "alice", "cli:robin")
    assert (receipt.counts["corrections"], receipt.counts["proposals"]) == (1, 2)
    assert any("until the next retrain" in c and "teller models prune" in c for c in receipt.caveats)
    corrections = {c.id: c for c in store.feedback.corrections()}
    assert set(corrections) == {carols, bobs}
    assert store.database.rows(select(k.c.origin_id).where(k.c.id == bobs)) == [{"origin_id": None}]
    assert [r["id"] for r in store.database.rows(select(p.c.id))] == [kept]
    assert "zebra" not in dump(store) and "alice" not in dump(store)


def test_a_group_conversation_keeps_other_peoples_messages_and_forgets_who_started_it(store: Store) -> None:
    world = populate(store)
    conversation = store.conversations.message(world.group[0]).conversation_id
    receipt = Eraser(store).erase("telegram", "42", "api:operator")
    assert receipt.counts["messages"] == 2 and receipt.counts["conversations"] == 0
    assert receipt.counts["conversations_anonymised"] == 1
    assert receipt.counts["feedback"] == 1  # Alice's verdict on Carol's answer
    c, m, f = schema.conversations, schema.messages, schema.feedback
    assert store.database.rows(select(c.c.user_id).where(c.c.id == conversation)) == [{"user_id": None}]
    assert [r.id for r in store.conversations.history(conversation)] == world.group[2:]
    assert count(store, f, f.c.message_id == world.carol_reply) == 1  # Carol's own stays
    assert count(store, m, m.c.user_id == "42") == 0
    # The web customers are untouched.
    assert count(store, m, m.c.channel == "web") == 9


def test_a_dry_run_counts_the_same_and_changes_nothing(store: Store) -> None:
    populate(store)
    pseudonym(store, "web", "alice")  # the installation's key, made once, is not the erasure's doing
    before = dump(store)
    preview = Eraser(store).erase("web", "alice", "cli:robin", dry_run=True)
    assert preview.dry_run and preview.audit_id is None and preview.counts["messages"] == 6
    assert dump(store) == before and store.audit.entries(action=AuditAction.ERASURE) == []
    done = Eraser(store).erase("web", "alice", "cli:robin")
    assert done.counts == preview.counts and not done.dry_run


def test_an_unknown_customer_gets_a_receipt_of_zeros_and_is_audited(store: Store) -> None:
    populate(store)
    before = store.counts()
    receipt = Eraser(store).erase("slack", "U_NOBODY", "api:operator")
    assert receipt.total == 0 and set(receipt.counts.values()) == {0}
    assert store.counts() == before
    [entry] = store.audit.entries(action=AuditAction.ERASURE)
    assert entry.subject == receipt.subject == pseudonym(store, "slack", "U_NOBODY")
    assert "U_NOBODY" not in json.dumps(entry.details)


def test_bad_customers_are_input_errors(tmp_path: Path) -> None:
    store = Store(tmp_path / "t.db")
    try:
        with pytest.raises(InputError, match="unknown channel 'whatsapp'"):
            Eraser(store).erase("whatsapp", "u1", "cli:robin")
        with pytest.raises(InputError, match="user id is empty"):
            Eraser(store).erase("web", "  ", "cli:robin")
        assert store.audit.entries(action=AuditAction.ERASURE) == []
    finally:
        store.close()


# ------------------------------------------------------------------------------- teller forget

runner = CliRunner()


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A TELLER_HOME of its own (SQLite) holding the world above; the terminal user is robin."""
    home = tmp_path / "home"
    monkeypatch.setenv("TELLER_HOME", str(home))
    monkeypatch.delenv("TELLER_DATABASE_URL", raising=False)
    monkeypatch.setenv("LOGNAME", "robin")
    monkeypatch.setenv("USER", "robin")
    get_settings.cache_clear()
    store = Store(home / "teller.db")
    populate(store)
    store.close()
    yield home
    get_settings.cache_clear()


def test_an_access_request_hands_out_what_is_stored_about_one_customer_and_is_audited(home: Path) -> None:
    result = runner.invoke(app, ["access", "--channel", "web", "--user", "alice"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    store = Store(home / "teller.db")
    try:
        stored = [m for m in store.conversations.history(limit=1000) if m.user_id == "alice"]
        assert {m["id"] for m in document["messages"]} == {m.id for m in stored} and len(stored) == 6
        assert any("zebra" in m["text"] for m in document["messages"])  # her words, as stored
        assert "GB82" not in result.stdout  # ... redacted as stored
        assert len(document["handoffs"]) == 1 and document["handoffs"][0]["status"] == "closed"
        assert document["subject"] == pseudonym(store, "web", "alice") and '"user_id"' not in result.stdout
        assert document["not_included"]
        [entry] = store.audit.entries(action=AuditAction.ACCESS)
        assert (entry.actor, entry.subject) == ("cli:robin", document["subject"])
        assert entry.id == document["audit_id"]
        assert entry.details["counts"]["messages"] == 6
    finally:
        store.close()
    # Bob's messages are not in Alice's document; someone Teller never heard of gets an empty one.
    assert not any("bob" in json.dumps(m) for m in document["messages"])
    unknown = runner.invoke(app, ["access", "--channel", "telegram", "--user", "999"])
    nobody = json.loads(unknown.stdout)
    assert nobody["messages"] == nobody["feedback"] == nobody["handoffs"] == []
    bad = runner.invoke(app, ["access", "--channel", "fax", "--user", "alice"])
    assert bad.exit_code == 2 and "unknown channel" in bad.stderr


def test_teller_forget_erases_and_prints_the_receipt(home: Path) -> None:
    store = Store(home / "teller.db")
    record_brief(store, home / "briefs", ["where is my zebra card", "where is my card please"])
    store.close()
    refused = runner.invoke(app, ["forget", "--channel", "web", "--user", "alice"])
    assert refused.exit_code == 2 and "pass --yes" in refused.stderr

    preview = runner.invoke(app, ["forget", "--channel", "web", "--user", "alice", "--dry-run", "--json"])
    assert preview.exit_code == 0, preview.output
    assert json.loads(preview.stdout)["dry_run"] is True

    result = runner.invoke(app, ["forget", "--channel", "web", "--user", "alice", "--yes", "--json"])
    assert result.exit_code == 0, result.output
    receipt = json.loads(result.stdout)
    assert receipt["counts"]["messages"] == 6 and receipt["actor"] == "cli:robin"
    assert receipt["subject"].startswith("p_") and isinstance(receipt["audit_id"], int)
    # Her words leave the brief TELLER_HOME/briefs holds (the database's copy too).
    assert receipt["counts"]["briefs_rewritten"] == receipt["counts"]["brief_files_rewritten"] == 1
    assert "zebra" not in (home / "briefs" / "iv_1" / "brief.md").read_text(encoding="utf-8")

    table = runner.invoke(app, ["forget", "--channel", "web", "--user", "alice", "--yes"])
    assert table.exit_code == 0 and "Nothing was stored about this customer." in table.stdout
    store = Store(home / "teller.db")
    try:
        m = schema.messages
        assert count(store, m, m.c.user_id == "alice") == 0 and count(store, m, m.c.user_id == "bob") == 3
        assert [e.actor for e in store.audit.entries(action=AuditAction.ERASURE)] == [
            "cli:robin",
            "cli:robin",
        ]
    finally:
        store.close()
    unknown = runner.invoke(app, ["forget", "--channel", "fax", "--user", "alice", "--yes"])
    assert unknown.exit_code == 2 and "unknown channel 'fax'" in unknown.stderr
    # A Telegram customer named by their @username (never stored): the receipt says why it is empty.
    handle = runner.invoke(app, ["forget", "--channel", "telegram", "--user", "@john[x]", "--yes", "--json"])
    [caveat] = [c for c in json.loads(handle.stdout)["caveats"] if "cannot be a telegram user id" in c]
    assert "numbers" in caveat and "john" not in caveat  # the caveats go to the audit log too
    plain = runner.invoke(app, ["forget", "--channel", "telegram", "--user", "@john[x]", "--yes"])
    assert "this id, and it cannot be a telegram user id" in " ".join(plain.stdout.split())
    numeric = runner.invoke(app, ["forget", "--channel", "telegram", "--user", "12345", "--yes", "--json"])
    assert not any("cannot be" in c for c in json.loads(numeric.stdout)["caveats"])


def test_teller_forget_asks_first_on_a_terminal(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.cli import privacy_admin

    monkeypatch.setattr(privacy_admin, "_interactive", lambda: True)
    declined = runner.invoke(app, ["forget", "--channel", "web", "--user", "alice"], input="n\n")
    assert declined.exit_code == 1 and "Nothing erased." in declined.stderr
    assert "Erase web customer alice (" in declined.stderr and "This cannot be undone." in declined.stderr
    store = Store(home / "teller.db")
    try:
        assert count(store, schema.messages, schema.messages.c.user_id == "alice") == 6
        assert store.audit.entries(action=AuditAction.ERASURE) == []
    finally:
        store.close()
    accepted = runner.invoke(app, ["forget", "--channel", "web", "--user", "alice"], input="y\n")
    assert accepted.exit_code == 0, accepted.output
    assert "Erased web customer alice" in accepted.stdout and "Audit entry #" in accepted.stdout
    store = Store(home / "teller.db")
    try:
        assert count(store, schema.messages, schema.messages.c.user_id == "alice") == 0
    finally:
        store.close()


# ------------------------------------------------------------------------------- REST


@pytest.fixture()
def web(tmp_path: Path) -> Iterator[tuple[Store, World, TellerCore]]:
    """A store holding the world above, behind a core with no model (erasure needs none)."""
    store = Store(tmp_path / "web.db")
    world = populate(store)
    core = TellerCore(cast(AnswerPolicy, None), store)
    yield store, world, core
    core.close()


def test_the_erasure_endpoint_is_off_without_a_key(web: tuple[Store, World, TellerCore]) -> None:
    store, _, core = web
    with TestClient(create_app(core)) as client:
        response = client.delete("/api/customers/web/alice", headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code == 403 and "TELLER_OPERATOR_API_KEY" in response.json()["detail"]
    assert count(store, schema.messages, schema.messages.c.user_id == "alice") == 6


def test_the_erasure_endpoint_wants_the_operator_key(
    web: tuple[Store, World, TellerCore], tmp_path: Path
) -> None:
    store, world, core = web
    root = tmp_path / "briefs"
    record_brief(store, root, ["where is my zebra card", world.bob_text])
    with TestClient(create_app(core, operator_key=KEY, briefs_dir=root)) as client:
        missing = client.delete("/api/customers/web/alice")
        wrong = client.delete("/api/customers/web/alice", headers={"Authorization": "Bearer " + "x" * 32})
        basic = client.delete("/api/customers/web/alice", headers={"Authorization": f"Basic {KEY}"})
        assert [r.status_code for r in (missing, wrong, basic)] == [401, 401, 401]
        assert missing.headers["www-authenticate"] == "Bearer"
        assert count(store, schema.messages, schema.messages.c.user_id == "alice") == 6

        done = client.delete("/api/customers/web/alice", headers={"Authorization": f"Bearer {KEY}"})
        assert done.status_code == 200
        receipt = done.json()
        assert receipt["counts"]["messages"] == 6 and receipt["actor"] == "api:operator"
        assert receipt["kb_entries"] == ["op_why_was_my_zebra_charged_twice"]
        assert receipt["subject"] == pseudonym(store, "web", "alice") and "alice" not in json.dumps(receipt)
        assert receipt["counts"]["briefs_rewritten"] == receipt["counts"]["brief_files_rewritten"] == 1
        assert "zebra" not in (root / "iv_1" / "brief.html").read_text(encoding="utf-8")
        m = schema.messages
        assert count(store, m, m.c.user_id == "alice") == 0 and count(store, m, m.c.id.in_(world.bob)) == 3
        [entry] = store.audit.entries(action=AuditAction.ERASURE)
        assert (entry.actor, entry.id) == ("api:operator", receipt["audit_id"])

        nobody = client.delete("/api/customers/telegram/999", headers={"Authorization": f"Bearer {KEY}"})
        assert nobody.status_code == 200 and set(nobody.json()["counts"].values()) == {0}
        bad = client.delete("/api/customers/fax/alice", headers={"Authorization": f"Bearer {KEY}"})
        assert bad.status_code == 400 and "unknown channel" in bad.json()["detail"]
        # An id with a control character or bytes that are not UTF-8 is refused, not cleaned into
        # someone else's ("al\x00ice" must never erase "alice").
        for path in ("/api/customers/web/b%00ob", "/api/customers/web/b%07ob", "/api/customers/web/b%ffob"):
            odd = client.delete(path, headers={"Authorization": f"Bearer {KEY}"})
            assert odd.status_code == 422 and "control character" in str(odd.json()["detail"])
        assert count(store, m, m.c.id.in_(world.bob)) == 3
        documented = client.get("/openapi.json").json()
        assert "/api/customers/{channel}/{user_id}" in documented["paths"]
    assert store.handoffs.recent(status=HandoffStatus.CLOSED) == []


def test_a_customer_id_in_either_unicode_form_is_one_customer_and_erased_whole(
    web: tuple[Store, World, TellerCore],
) -> None:
    """ "Cüst-ßé" with a combined ü (NFC) and with u + U+0308 (NFD, as macOS terminals type it) is one
    customer, from the backend header and from the erasure endpoint or ``teller forget`` alike (a
    trial found two customers, and the erasure of one form leaving the other's messages)."""
    import unicodedata

    from bot.web.sessions import Identities, stored_user_id

    store, _, core = web
    composed, decomposed = (unicodedata.normalize(form, "Cüst-ßé") for form in ("NFC", "NFD"))
    assert composed != decomposed
    identities = Identities.from_store(store)
    stored = identities.verified(composed).user_id
    assert identities.verified(decomposed).user_id == stored == stored_user_id(store, decomposed)
    say(store, stored, "where is my zebra card")
    # One stored by a Teller of before under the other form's digest is still found by that form.
    import hashlib
    import hmac

    from bot.web.sessions import customer_key

    legacy_form = unicodedata.normalize("NFD", "Zoë-ë")  # as macOS sends it, stored as typed before
    legacy = (
        "c_"
        + hmac.new(customer_key(store), f"customer:{legacy_form}".encode(), hashlib.sha256).hexdigest()[:32]
    )
    say(store, legacy, "my zebra iban")
    assert stored_user_id(store, legacy_form) == legacy
    # A backend now sending the composed form reaches the same conversation, not a second one that
    # an erasure by the bank's id would miss; a new customer with such an id is stored composed.
    assert identities.verified(unicodedata.normalize("NFC", legacy_form)).user_id == legacy
    assert identities.verified(legacy_form).user_id == legacy
    assert Identities(b"k" * 32, customer_key(store)).verified(legacy_form).user_id != legacy
    fresh = unicodedata.normalize("NFD", "Zoë-new")
    new_id = identities.verified(fresh).user_id
    assert new_id == identities.verified(unicodedata.normalize("NFC", fresh)).user_id
    assert (
        new_id
        == stored_user_id(store, fresh)
        == "c_" + hmac.new(customer_key(store), "customer:Zoë-new".encode(), hashlib.sha256).hexdigest()[:32]
    )
    # ... and by the composed form an operator types for it.
    assert stored_user_id(store, unicodedata.normalize("NFC", legacy_form)) == legacy
    with TestClient(create_app(core, operator_key=KEY)) as client:
        auth = {"Authorization": f"Bearer {KEY}"}
        erased = client.delete(f"/api/customers/web/{decomposed}", headers=auth)
        assert erased.status_code == 200 and erased.json()["counts"]["messages"] == 2
        assert (
            client.delete(f"/api/customers/web/{legacy_form}", headers=auth).json()["counts"]["messages"] == 2
        )
        # An id holding "/" reaches the endpoint; a blank one is refused, not audited as erased.
        slashed = client.delete("/api/customers/telegram/a/b", headers=auth)
        assert slashed.status_code == 200 and set(slashed.json()["counts"].values()) == {0}
        blank = client.delete("/api/customers/web/%20%20", headers=auth)
        assert blank.status_code == 422 and "blank" in str(blank.json()["detail"])
    m = schema.messages
    assert count(store, m, m.c.user_id.in_([stored, legacy])) == 0
    assert len(store.audit.entries(action=AuditAction.ERASURE)) == 3


def test_a_short_operator_key_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TELLER_OPERATOR_API_KEY", "secret")
    get_settings.cache_clear()
    try:
        with pytest.raises(ConfigError, match="TELLER_OPERATOR_API_KEY"):
            get_settings()
        monkeypatch.setenv("TELLER_OPERATOR_API_KEY", KEY)
        get_settings.cache_clear()
        key = get_settings().operator_api_key
        assert key is not None and key.get_secret_value() == KEY and KEY not in repr(get_settings())
    finally:
        get_settings.cache_clear()


# ------------------------------------------------------------------------------- found in review


def test_an_id_with_spaces_is_erased_exactly_as_the_channel_stored_it(store: Store) -> None:
    # The web chat stores its user_id as sent, spaces included: trimming it erased nobody.
    say(store, " alice ", "spaced question")
    say(store, "alice", "plain question")
    receipt = Eraser(store).erase("web", " alice ", "api:operator")
    assert receipt.counts["messages"] == 2 and receipt.counts["conversations"] == 1
    m = schema.messages
    assert count(store, m, m.c.user_id == " alice ") == 0 and count(store, m, m.c.user_id == "alice") == 2
    assert receipt.subject == pseudonym(store, "web", " alice ") != pseudonym(store, "web", "alice")


def test_the_notice_of_a_handoff_that_expired_goes_with_it(store: Store) -> None:
    _, out = say(store, "42", "a person please", route="handoff", channel="telegram")
    handoff = store.handoffs.start(NewHandoff("telegram", out.conversation_id, "42", "42", out.id))
    assert store.handoffs.expire(handoff.id, "9999-12-31T00:00:00.000000Z", "system:idle") is not None
    notice = f"{handoff.id}:expired"  # what OpsDesk.expire_idle sends the customer, to their chat id
    store.deliveries.begin(notice, DeliveryKind.NOTICE, "telegram", "42")
    store.deliveries.delivered(notice, ["t1"], attempts=1)
    receipt = Eraser(store).erase("telegram", "42", "cli:robin")
    assert receipt.counts["handoffs"] == 1 and receipt.counts["deliveries"] == 1
    assert count(store, schema.deliveries) == 0


def test_the_acknowledgement_of_feedback_sent_as_text_goes_with_it(store: Store) -> None:
    """A review's finding: the delivery of "Thanks for your feedback" to a customer who sent
    ``feedback:helpful`` as a message's text (``fb:<channel>:<platform id>``, the platform id holding
    their Telegram chat, which is their user id) was left after an erasure, id and all."""
    _, out = say(store, "42", "where is my card", channel="telegram")
    store.feedback.add_feedback(out.id, True, user_id="42", platform=("telegram", "42:12"))
    thanks = "fb:telegram:42:12"  # what TellerService records for the acknowledgement
    store.deliveries.begin(thanks, DeliveryKind.NOTICE, "telegram", "42")
    store.deliveries.delivered(thanks, ["42:13"], attempts=1)
    _, other = say(store, "43", "where is my card", channel="telegram")
    store.feedback.add_feedback(other.id, True, user_id="43", platform=("telegram", "43:12"))
    store.deliveries.begin("fb:telegram:43:12", DeliveryKind.NOTICE, "telegram", "43")
    receipt = Eraser(store).erase("telegram", "42", "cli:robin")
    assert receipt.counts["feedback"] == 1 and receipt.counts["deliveries"] >= 1
    left = [str(r["message_id"]) for r in store.database.rows(sqlalchemy.select(schema.deliveries))]
    assert thanks not in left and "fb:telegram:43:12" in left


def test_only_where_an_open_handoffs_thread_was_is_kept(store: Store) -> None:
    """For an operator still replying there (OpsDesk.operator_reply): the thread of each handoff open
    when its customer is erased, and nothing of the customer's; none for a closed one or a dry run."""
    _, first = say(store, "42", "a person please", route="handoff", channel="telegram")
    closed = store.handoffs.start(NewHandoff("telegram", first.conversation_id, "42", "42", first.id))
    store.handoffs.set_thread(closed.id, "COPS", "1700000000.000100")
    store.handoffs.close(closed.id, OPERATOR)
    _, again = say(store, "42", "a person again please", route="handoff", channel="telegram")
    opened = store.handoffs.start(NewHandoff("telegram", again.conversation_id, "42", "42", again.id))
    store.handoffs.set_thread(opened.id, "COPS", "1700000000.000200")
    Eraser(store).erase("telegram", "42", "cli:robin", dry_run=True)
    assert count(store, schema.erased_threads) == 0

    receipt = Eraser(store).erase("telegram", "42", "cli:robin")

    assert receipt.counts["handoffs"] == 2 and any("1 handoff(s)" in c for c in receipt.caveats)
    rows = store.database.rows(select(schema.erased_threads))
    assert [(r["ops_channel"], r["thread_ts"]) for r in rows] == [("COPS", "1700000000.000200")]
    assert store.handoffs.erased_thread("1700000000.000200", "COPS")
    assert not store.handoffs.erased_thread("1700000000.000100", "COPS")
    assert not store.handoffs.erased_thread("1700000000.000200", "CELSEWHERE")
    assert store.handoffs.by_thread("1700000000.000200", "COPS") is None
    assert set(schema.erased_threads.c.keys()) == {"ops_channel", "thread_ts", "erased_at"}  # no customer
    # Erasing again (a retried request) keeps one row, and finds nothing else.
    assert Eraser(store).erase("telegram", "42", "cli:robin").total == 0
    assert count(store, schema.erased_threads) == 1


def record_brief(store: Store, root: Path, texts: list[str], interview: str = "iv_1") -> str:
    """A positioning brief quoting ``texts`` (unanswered questions), written under ``root`` as the
    desk writes it (``<root>/<interview>/brief.md``) and recorded in the store; its Markdown."""
    from positioning.engine import COMPLETED, InterviewState
    from tests.test_brief_erasure import write_quoting_brief

    if not store.interviews.for_user("slack:UPM"):
        store.interviews.save(InterviewState(interview, "slack:UPM", "five-step", status=COMPLETED))
    markdown = write_quoting_brief(root / interview, texts)
    # The scoring result stored beside it quotes them too (a candidate need's label and examples).
    score = {"candidates": [{"label": t, "examples": [t], "size": 1} for t in texts], "p_d_u": 0.5}
    store.interviews.record_brief(interview, "slack:UPM", 30, markdown, score)
    return markdown


def briefs_quoting(store: Store, words: str) -> int:
    return count(store, schema.briefs, schema.briefs.c.markdown.like(f"%{words}%"))


def test_the_customer_s_words_leave_the_briefs_that_quote_them(store: Store, tmp_path: Path) -> None:
    """GDPR Art. 17: a brief's quotes of the customer's messages read “[erased]” in every brief row
    and in the brief files that are copies of them (HTML rendered again); other customers' quotes
    and the rest of the brief stay; a dry run counts the same and changes nothing."""
    root = tmp_path / "briefs"
    say(store, "alice", "where is my card 156", route="handoff")
    say(store, "alice", "where  is my card 156", route="handoff")  # stored with other spacing
    say(store, "bob", "where is my card 157", route="handoff")
    for _ in range(5):
        record_brief(store, root, ["where is my card 156", "where is my card 157", "how do I close it"])
    files = [root / "iv_1" / "brief.md", root / "iv_1" / "brief.html"]
    assert briefs_quoting(store, "where is my card 156") == 5
    assert all("where is my card 156" in f.read_text(encoding="utf-8") for f in files)
    before = {f: f.read_bytes() for f in files}

    preview = Eraser(store, root).erase("web", "alice", "cli:robin", dry_run=True)
    assert preview.counts["briefs_rewritten"] == 5 and preview.counts["brief_files_rewritten"] == 1
    assert briefs_quoting(store, "where is my card 156") == 5
    assert {f: f.read_bytes() for f in files} == before

    receipt = Eraser(store, root).erase("web", "alice", "cli:robin")
    assert receipt.counts["messages"] == 4
    assert receipt.counts["briefs_rewritten"] == 5 and receipt.counts["brief_files_rewritten"] == 1
    assert briefs_quoting(store, "where is my card 156") == 0
    assert briefs_quoting(store, "“where is my card 157”") == 5  # Bob's, not erased
    # The score JSON beside each brief too (a trial's finding: it kept them after the receipt).
    scores = [b.score for b in store.interviews.briefs("iv_1")]
    assert all("where is my card 156" not in json.dumps(x) for x in scores)
    assert all("where is my card 157" in json.dumps(x) and "[erased]" in json.dumps(x) for x in scores)
    assert all("“\\[erased\\]”" in b.markdown for b in store.interviews.briefs("iv_1"))
    for f in files:
        text = f.read_text(encoding="utf-8")
        assert "where is my card 156" not in text and "where is my card 157" in text
        assert "[erased]" in text.replace("\\", "")
    assert any(
        c.startswith("5 positioning brief(s) quoted this customer's messages") for c in receipt.caveats
    )
    assert any(f"in 1 brief file(s) under {root}" in c for c in receipt.caveats)
    entry = store.audit.entries(action=AuditAction.ERASURE)[0]
    assert entry.details["counts"]["briefs_rewritten"] == 5
    # Nothing of hers is quoted any more: erasing her again finds nothing, and says nothing of briefs.
    again = Eraser(store, root).erase("web", "alice", "cli:robin")
    assert again.total == 0 and not any("brief" in c for c in again.caveats)


def test_briefs_written_before_the_customer_wrote_and_files_out_of_reach(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A brief written before the customer's first message cannot quote them and is not read; without
    a briefs directory the receipt says the files were not checked; a file that cannot be written
    is named in the caveats (and logged), after the database is erased all the same."""
    root = tmp_path / "briefs"
    early = record_brief(store, root, ["where is my card 156"])  # the same words, before she wrote them
    say(store, "alice", "where is my card 156", route="handoff")
    record_brief(store, root, ["where is my card 156"], interview="iv_1")
    receipt = Eraser(store).erase("web", "alice", "cli:robin")
    assert receipt.counts["briefs_rewritten"] == 1 and receipt.counts["brief_files_rewritten"] == 0
    assert any("no brief files were checked" in c for c in receipt.caveats)
    assert [b.markdown == early for b in store.interviews.briefs("iv_1")] == [True, False]

    say(store, "bob", "my card 999 is late", route="handoff")
    record_brief(store, root, ["my card 999 is late"])

    def refused(*_: object, **__: object) -> bool:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr("bot.privacy.briefs.rewrite_files", refused)
    with caplog.at_level(logging.ERROR, logger="bot.privacy.briefs"):
        receipt = Eraser(store, root).erase("web", "bob", "cli:robin")
    failure = next(r for r in caplog.records if r.getMessage() == "brief_file_rewrite_failed")
    assert failure.fields == {  # type: ignore[attr-defined]
        "directory": str(root / "iv_1"),
        "error": "PermissionError",
        "reason": "Permission denied",
    }
    assert receipt.counts["briefs_rewritten"] == 1 and receipt.counts["brief_files_rewritten"] == 0
    assert any("could not be rewritten" in c and str(root / "iv_1") in c for c in receipt.caveats)
    assert briefs_quoting(store, "my card 999") == 0


def test_an_erased_item_s_id_is_never_given_to_another_customer_s(store: Store) -> None:
    """Operators act on review items and corrections by id (Slack buttons, the CLI, the audit log):
    the newest item erased, the next one still gets a new id (SQLite ``AUTOINCREMENT``, migration
    0012; PostgreSQL's sequences)."""
    world = populate(store)
    newest_correction = max(c.id for c in store.feedback.corrections())
    assert world.alice_item == max(world.alice_item, world.shared_item)
    Eraser(store).erase("web", "alice", "cli:robin")
    assert count(store, schema.review_items, schema.review_items.c.id == world.alice_item) == 0
    dave_in, dave_out = say(store, "dave", "why was my card charged twice", confidence=0.3)
    item = store.review.create(
        "why was my card charged twice",
        dave_in.text,
        "intent",
        None,
        [ReviewSource(dave_out.id, dave_in.id, dave_in.text, ReviewReason.LOW_CONFIDENCE)],
    )
    assert item > world.alice_item
    store.review.resolve(
        item,
        ReviewStatus.CHOSEN,
        OPERATOR,
        "transaction_charged_twice",
        NewCorrection(dave_in.text, "why was my card charged twice", CorrectionAction.CHOOSE, label="x"),
    )
    assert max(c.id for c in store.feedback.corrections()) > newest_correction


def test_teller_forget_tells_the_open_handoffs_thread(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`teller forget` of a customer whose handoff is open tells its ops-channel thread at once, as a
    running server does (the operator learned it only when a reply bounced); without Slack it says
    the thread was not told."""
    from tests import fake_slack as sl
    from tests.servers import serve_in_thread

    store = Store(home / "teller.db")
    _, reply = store.conversations.record_exchange(
        NewExchange("telegram", "77", "77", "a person please", "Connecting you.", route="handoff")
    )
    handoff = store.handoffs.start(NewHandoff("telegram", reply.conversation_id, "77", "77"))
    store.handoffs.set_thread(handoff.id, "COPS", "1700000000.000100")
    store.close()
    slack = sl.FakeSlack()
    with serve_in_thread(slack.app) as api:
        monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test")
        monkeypatch.setenv("SLACK_API_URL", f"{api}/api/")
        monkeypatch.setenv("TELLER_OPS_CHANNEL", "COPS")
        get_settings.cache_clear()
        result = runner.invoke(app, ["forget", "--channel", "telegram", "--user", "77", "--yes"])
        assert result.exit_code == 0, result.output
        assert "Told 1 open handoff thread(s)" in result.stdout
        [note] = [m for m in slack.sent() if m.get("thread_ts") == "1700000000.000100"]
        assert note["channel"] == "COPS" and "erased" in note["text"].lower()


def test_an_erased_customers_words_leave_a_correction_even_when_another_said_them_too(store: Store) -> None:
    """A reviewer broke a first attempt to keep a correction's text while another customer's message
    said it word for word: once that customer was erased too, nothing looked at the correction
    again and the first customer's words stayed in it. Erasure rewrites the correction at once."""
    text, similar = "how long does an international transfer take", "how long do international transfers take"
    say(store, "dana", text)  # the same words, never filed for review
    a_in, a_out = say(store, "frank", text, confidence=0.2)
    b_in, b_out = say(store, "gina", similar, confidence=0.2)
    item = store.review.create(
        text,
        a_in.text,
        "intent",
        None,
        [
            ReviewSource(a_out.id, a_in.id, a_in.text, ReviewReason.LOW_CONFIDENCE),
            ReviewSource(b_out.id, b_in.id, b_in.text, ReviewReason.LOW_CONFIDENCE),
        ],
    )
    store.review.resolve(
        item,
        ReviewStatus.CHOSEN,
        OPERATOR,
        "transfer_timing",
        NewCorrection(text, text, CorrectionAction.CHOOSE, label="transfer_timing"),
    )
    Eraser(store).erase("web", "frank", "cli:robin")
    Eraser(store).erase("web", "dana", "cli:robin")
    assert [c.text for c in store.feedback.corrections() if c.item_id == item] == [similar]
