"""The store's contract, run against SQLite and a real PostgreSQL: exchanges, duplicates, feedback,
flags, the review queue, handoffs, interviews, concurrency, migrations and the clock.

SQLite-only: adopting databases written before Alembic. PostgreSQL-only: two replicas (two
:class:`Database` objects, as two processes would have) racing for the same platform message.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy import text

from bot.errors import Conflict, InputError
from bot.storage import (
    Clock,
    CorrectionAction,
    Database,
    DeliveryKind,
    DeliveryState,
    Direction,
    DuplicateMessage,
    HandoffStatus,
    NewCorrection,
    NewExchange,
    NewHandoff,
    ReviewReason,
    ReviewSource,
    ReviewStatus,
    Store,
    StoreError,
    Suggestion,
    SuggestionKind,
    database_url,
    schema,
)
from positioning.engine import InterviewEngine
from positioning.errors import InterviewNotFound
from positioning.script import DEFAULT_SCRIPT, load_script

DATA = Path(__file__).parent / "data"


def exchange(
    store: Store, text: str = "hello", platform_id: str | None = None, user: str = "u1", channel: str = "web"
):  # type: ignore[no-untyped-def]
    return store.conversations.record_exchange(
        NewExchange(
            channel=channel,
            conversation=user,
            user_id=user,
            text=text,
            reply="reply",
            platform_id=platform_id,
            route="intent",
            intent="card_arrival",
            confidence=0.9,
            kb_id="card_arrival",
            model_version="v1",
            latency_ms=3.2,
            choices=(("Helpful", "feedback:helpful"),),
        )
    )


# ------------------------------------------------------------------------------- conversations


def test_an_exchange_is_stored_redacted_with_its_metadata(store: Store) -> None:
    assert store.database.revision() == store.database.head()
    incoming, reply = exchange(store, "card 4111 1111 1111 1111, mail me at a@b.co or call +44 20 7946 0958")
    assert incoming.text == "card [CARD], mail me at [EMAIL] or call [PHONE]"
    assert (reply.reply_to, reply.route, reply.intent, reply.kb_id, reply.model_version) == (
        incoming.id,
        "intent",
        "card_arrival",
        "card_arrival",
        "v1",
    )
    assert reply.latency_ms == 3.2 and reply.confidence == 0.9 and reply.direction is Direction.OUT
    assert reply.choices == (("Helpful", "feedback:helpful"),)
    assert (
        store.conversations.message(reply.id) == reply
        and store.conversations.message(incoming.id) == incoming
    )
    assert [m.id for m in store.conversations.history()] == [incoming.id, reply.id]
    assert incoming.created_at < reply.created_at
    raw = " ".join(r["text"] for r in store.database.rows(text("SELECT text FROM messages")))
    assert "4111" not in raw and "a@b.co" not in raw
    assert (
        store.conversations.exchange(incoming.id)
        == (incoming, reply)
        == store.conversations.exchange(reply.id)
    )
    with pytest.raises(InputError, match="no message"):
        store.conversations.message("m_missing")


def test_duplicates_are_refused_and_found(store: Store) -> None:
    _, reply = exchange(store, platform_id="42")
    with pytest.raises(DuplicateMessage):
        exchange(store, platform_id="42")
    assert store.conversations.count() == 2
    found = store.conversations.find_reply("web", "42")
    assert found is not None and found.id == reply.id
    assert store.conversations.find_reply("telegram", "42") is None
    exchange(store, platform_id="42", channel="telegram")  # another channel's 42
    exchange(store, platform_id=None)
    exchange(store, platform_id=None)  # messages without a platform id are never duplicates
    assert store.conversations.count() == 8 and store.counts().conversations == 2
    assert store.conversations.platform_counts("web", "4") == {"42": 1}


def test_history_and_earlier_messages_keep_their_order(store: Store) -> None:
    first, _ = exchange(store, "one")
    second, _ = exchange(store, "two")
    third, third_reply = exchange(store, "three")
    exchange(store, "elsewhere", user="u2")
    conversation = first.conversation_id
    assert [m.text for m in store.conversations.history(conversation)] == [
        "one",
        "reply",
        "two",
        "reply",
        "three",
        "reply",
    ]
    assert [m.text for m in store.conversations.history(conversation, limit=2)] == ["three", "reply"]
    assert [m.id for m in store.conversations.customer_messages_before(third.id)] == [second.id, first.id]
    since = store.conversations.messages_since(conversation, second.created_at)
    assert [m.text for m in since] == ["reply", "three", "reply"]
    store.conversations.set_platform_id(third_reply.id, "1700000000.000100")
    assert store.conversations.message_by_platform_id(
        "web", "1700000000.000100"
    ) == store.conversations.message(third_reply.id)
    with pytest.raises(InputError, match="no reply"):
        store.conversations.set_platform_id(third.id, "x")  # a customer's message is not Teller's post


def test_messages_since_filters_before_its_limit(store: Store) -> None:
    """The web chat polls for operators' replies: 200 newer customer messages must not hide one."""
    first, _ = exchange(store, "one")
    for words in ("two", "three", "four"):
        exchange(store, words)
    conversation = first.conversation_id
    since = store.conversations.messages_since
    assert [m.text for m in since(conversation, None, limit=2, direction=Direction.IN)] == ["one", "two"]
    replies = since(conversation, None, limit=3, direction=Direction.OUT, route="intent")
    assert [(m.direction, m.text) for m in replies] == [(Direction.OUT, "reply")] * 3
    assert since(conversation, None, limit=2, direction=Direction.OUT, route="human") == []


def test_feedback_is_only_about_replies(store: Store) -> None:
    incoming, reply = exchange(store)
    entry = store.feedback.add_feedback(reply.id, False, "wrong answer, reach me at jo@example.com", "u1")
    assert (entry.helpful, entry.comment) == (False, "wrong answer, reach me at [EMAIL]")
    with pytest.raises(InputError, match="customer message"):
        store.feedback.add_feedback(incoming.id, True)
    with pytest.raises(InputError, match="no message"):
        store.feedback.add_feedback("m_missing", True)
    [(stored, about)] = store.feedback.feedback()
    assert stored == entry and about.id == reply.id
    [logged] = store.conversations.exchanges("2000")
    assert logged.flagged and logged.text == "hello" and logged.route == "intent"


def test_feedback_sent_as_a_message_is_stored_once_per_platform_message(store: Store) -> None:
    _, first = exchange(store, "hello", user="u1")
    _, second = exchange(store, "and again", user="u1")
    assert store.conversations.latest_answer("web", "u1", "u1") == second
    assert store.conversations.latest_answer("web", "u1", "u2") is None
    assert store.conversations.latest_answer("web", "u2", "u1") is None
    entry = store.feedback.add_feedback(first.id, True, user_id="u1", platform=("web", "p1"))
    assert store.feedback.by_platform("web", "p1") == entry
    assert store.feedback.by_platform("telegram", "p1") is None
    # The same platform message on another reply (two replicas racing): the unique index refuses it.
    with pytest.raises(Conflict):
        store.feedback.add_feedback(second.id, True, user_id="u1", platform=("web", "p1"))
    # Feedback without a platform message (a button, the endpoint) needs no platform id.
    store.feedback.add_feedback(second.id, False, user_id="u1")
    assert len(store.feedback.feedback()) == 2


def _give_feedback(
    replica: Store, reply_id: str, helpful: bool, barrier: threading.Barrier, outcomes: list[str]
) -> None:
    barrier.wait()
    try:
        replica.feedback.add_feedback(reply_id, helpful, user_id="u1")
        outcomes.append("stored")
    except Conflict:
        outcomes.append("conflict")


def test_feedback_on_one_reply_from_two_replicas_at_once_is_stored_once(url: str) -> None:
    """A review's finding: on PostgreSQL (READ COMMITTED) two requests at once both found no
    feedback and both stored theirs, helpful and not helpful on one reply (19 of 30 trials)."""
    replicas = (Store(url), Store(url))
    try:
        for trial in range(8):
            _, reply = exchange(replicas[0], f"question {trial}")
            barrier = threading.Barrier(2)
            outcomes: list[str] = []
            threads = [
                threading.Thread(target=_give_feedback, args=(replica, reply.id, helpful, barrier, outcomes))
                for replica, helpful in zip(replicas, (True, False), strict=True)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert sorted(outcomes) == ["conflict", "stored"]
        assert len(replicas[0].feedback.feedback()) == 8
    finally:
        for replica in replicas:
            replica.close()


def test_an_operator_flags_a_reply_once(store: Store) -> None:
    incoming, reply = exchange(store)
    first = store.feedback.add_flag(reply.id, " wrong, call 020 7946 0958 ", "slack:U1", "command")
    assert first.reason == "wrong, call [PHONE]"
    assert store.feedback.add_flag(reply.id, "again", "slack:U1", "reaction") == first
    store.feedback.add_flag(reply.id, None, "slack:U2", "reaction")
    assert [f.actor for f in store.feedback.flags()] == ["slack:U2", "slack:U1"]
    assert store.feedback.flags(actor="slack:U1") == [first]
    with pytest.raises(InputError, match="not one of Teller's answers"):
        store.feedback.add_flag(incoming.id, None, "slack:U1", "command")


# ------------------------------------------------------------------------------- review queue


def test_a_new_text_is_matched_against_a_bounded_set_of_items(store: Store) -> None:
    """Filing reads the item with the same key, then at most ``limit`` of a length that can be
    that alike, the newest: open ones listed oldest first, settled ones newest first."""
    ids = {}
    for phrase in ["where is my card", "where is my card now", "where is my new card", "card", "x" * 40]:
        ids[phrase] = store.review.create(phrase, phrase, "handoff", None, [])
    store.review.resolve(ids["where is my new card"], ReviewStatus.IGNORED, "slack:U1")
    key = "where is my card now"  # 20 characters: lengths 17-25 can be 0.9 alike
    open_keys = store.review.keys_like(key, False, 0.9, 10)
    assert [k.key for k in open_keys] == ["where is my card now", "where is my card"]
    assert all(k.status is ReviewStatus.OPEN for k in open_keys)
    assert [k.key for k in store.review.keys_like(key, True, 0.9, 10)] == ["where is my new card"]
    # The limit bounds the near ones; the item with the same key is always read.
    assert [k.key for k in store.review.keys_like(key, False, 0.9, 0)] == ["where is my card now"]
    for i in range(5):
        ids[i] = store.review.create(f"where is my card {i}x", "t", "handoff", None, [])
    # The newest 3 of the open ones that can be alike, listed oldest first (ties go to the oldest).
    assert [k.key for k in store.review.keys_like("where is my card", False, 0.9, 3)] == [
        "where is my card",
        "where is my card 2x",
        "where is my card 3x",
        "where is my card 4x",
    ]
    # Settled ones newest first: the newest settled is the one a repeat is matched with first.
    store.review.resolve(ids[0], ReviewStatus.CONFIRMED, "slack:U1")
    store.review.resolve(ids[4], ReviewStatus.IGNORED, "slack:U1")
    assert [k.key for k in store.review.keys_like("where is my card 9x", True, 0.9, 10)] == [
        "where is my card 4x",
        "where is my card 0x",
        "where is my new card",
    ]
    assert [k.key for k in store.review.keys_like("where is my card 9x", True, 0.9, 1)] == [
        "where is my card 4x"
    ]


def test_the_review_queue_files_merges_and_settles_once(store: Store) -> None:
    _, reply = store.conversations.record_exchange(
        NewExchange("web", "u1", "u1", "where is my card", "Let me pass you on", route="handoff")
    )
    _, low = store.conversations.record_exchange(
        NewExchange("web", "u2", "u2", "card not here", "It takes 3 days", route="intent", confidence=0.3)
    )
    store.feedback.add_feedback(low.id, False, "useless")
    candidates = store.review.candidates(0.6)
    assert [(c.reply_id, c.reason) for c in candidates] == [
        (reply.id, ReviewReason.HANDOFF),
        (low.id, ReviewReason.LOW_CONFIDENCE),
        (low.id, ReviewReason.NOT_HELPFUL),
    ]
    suggestion = Suggestion(SuggestionKind.INTENT, "card_arrival", None, 0.8, "v1")
    sources = [ReviewSource(c.reply_id, c.message_id, c.text, c.reason) for c in candidates]
    item_id = store.review.create("where is my card", "where is my card", "handoff", suggestion, sources[:1])
    # Another process filed the same key meanwhile: the sources join the open item.
    assert (
        store.review.create("where is my card", "where is my card", "handoff", None, sources[1:]) == item_id
    )
    store.review.add_sources(item_id, sources)  # already filed: nothing changes
    item = store.review.item(item_id)
    assert item.status is ReviewStatus.OPEN and item.suggestion == suggestion and item.count == 2
    assert item.reasons == (ReviewReason.HANDOFF, ReviewReason.LOW_CONFIDENCE, ReviewReason.NOT_HELPFUL)
    assert item.notes == ("useless",) and item.texts == ("where is my card", "card not here")
    assert store.review.candidates(0.6) == []
    assert [k.id for k in store.review.keys_like("where is my card", False, 0.9, 10)] == [item_id]
    assert store.review.keys_like("where is my card", True, 0.9, 10) == []
    assert store.review.items(reply_id=low.id) == [item]

    settled, correction, superseded = store.review.resolve(
        item_id,
        ReviewStatus.CHOSEN,
        "slack:U1",
        "card_arrival",
        NewCorrection(item.text, item.key, CorrectionAction.CHOOSE, label="card_arrival"),
    )
    assert settled.status is ReviewStatus.CHOSEN and settled.resolved_by == "slack:U1" and superseded == []
    assert (
        correction is not None and correction.action is CorrectionAction.CHOOSE and not correction.superseded
    )
    with pytest.raises(InputError, match="is chosen already"):
        store.review.resolve(item_id, ReviewStatus.IGNORED, "slack:U2")
    with pytest.raises(InputError, match="no review item"):
        store.review.resolve(999, ReviewStatus.IGNORED, "slack:U2")
    # The same text corrected again: the newer correction supersedes, the older is kept.
    again = store.review.create("where is my card", "where is my card", "handoff", None, [])
    assert again != item_id
    _, newer, superseded = store.review.resolve(
        again,
        ReviewStatus.CORRECTED,
        "slack:U2",
        None,
        NewCorrection(item.text, item.key, CorrectionAction.ANSWER, answer="Call 020 7946 0958"),
    )
    assert newer is not None and superseded == [correction.id] and newer.answer == "Call [PHONE]"
    assert [c.id for c in store.feedback.corrections(current_only=True)] == [newer.id]
    assert store.feedback.corrections()[1].superseded_by == newer.id


# ------------------------------------------------------------------------------- handoffs


def test_handoffs_relay_and_close(store: Store) -> None:
    question, reply = exchange(store, user="tg-7")
    new = NewHandoff("web", reply.conversation_id, "tg-7", "chat-7", message_id=reply.id)
    handoff = store.handoffs.start(new)
    assert handoff.status is HandoffStatus.OPEN and store.handoffs.start(new) == handoff
    handoff = store.handoffs.set_thread(handoff.id, "COPS", "1700000000.000200")
    assert (
        store.handoffs.active_for("web", "tg-7") == handoff == store.handoffs.by_thread("1700000000.000200")
    )
    customer = store.handoffs.record_relay(
        handoff.id, Direction.IN, "my iban is GB82 WEST 1234 5698 7654 32", platform_id="9"
    )
    operator = store.handoffs.record_relay(handoff.id, Direction.OUT, "Looking now.", author="slack:UOPS")
    with pytest.raises(DuplicateMessage):
        store.handoffs.record_relay(handoff.id, Direction.IN, "again", platform_id="9")
    with pytest.raises(InputError, match="needs its author"):
        store.handoffs.record_relay(handoff.id, Direction.OUT, "who am I")
    assert "[IBAN]" in customer.text and operator.author == "slack:UOPS"
    closed = store.handoffs.close(handoff.id, "slack:UOPS")
    assert (
        closed.status is HandoffStatus.CLOSED
        and store.handoffs.close(handoff.id, "x").closed_by == "slack:UOPS"
    )
    assert [m.id for m in store.handoffs.transcript(handoff.id)] == [
        question.id,
        reply.id,
        customer.id,
        operator.id,
    ]
    assert store.handoffs.recent(status=HandoffStatus.CLOSED) == [closed] and store.counts().handoffs == 1


def test_a_conversation_moves_to_a_new_platform_id_with_its_open_handoff(store: Store) -> None:
    """A Telegram group upgraded to a supergroup: its conversation (history, open handoff) goes on
    under the new chat id; nothing is merged into a conversation the new id has already."""
    _, reply = exchange(store, user="-4210", channel="telegram")
    # A group's handoff writes to the customer as a reply to one of the group's messages.
    handoff = store.handoffs.start(NewHandoff("telegram", reply.conversation_id, "7", "-4210/31"))
    assert store.conversations.move("telegram", "-4210", "-1004210") == reply.conversation_id
    assert store.conversations.conversation_id("telegram", "-1004210") == reply.conversation_id
    assert store.conversations.conversation_id("telegram", "-4210") is None
    # It follows, to the supergroup itself (the group's message ids mean nothing there).
    assert store.handoffs.active_for("telegram", "-1004210") == replace(handoff, customer_chat_id="-1004210")
    assert store.conversations.move("telegram", "-4210", "-1004210") is None  # moved once
    exchange(store, user="-4211", channel="telegram")
    exchange(store, user="-1004211", channel="telegram")  # the supergroup spoke first
    assert store.conversations.move("telegram", "-4211", "-1004211") is None
    assert store.conversations.conversation_id("telegram", "-4211") is not None  # left as it was
    assert store.conversations.move("web", "-4210", "x") is None  # another channel's ids are apart


def test_a_customers_reply_is_read_as_the_answer_to_the_operators_question(store: Store) -> None:
    """An operator verifying the customer ("Can you confirm your date of birth?"): the bare answer
    ("12/03/1985") is hidden as what was asked; the same words unasked stay as they are."""
    _, reply = exchange(store, user="tg-9")
    handoff = store.handoffs.start(NewHandoff("telegram", reply.conversation_id, "tg-9", "chat-9"))
    first = store.handoffs.record_relay(
        handoff.id, Direction.IN, "payment of 120 on 12/03/2024", platform_id="a"
    )
    assert first.text == "payment of 120 on 12/03/2024"
    store.handoffs.record_relay(
        handoff.id, Direction.OUT, "Can you confirm your date of birth?", author="slack:UOPS"
    )
    answer = store.handoffs.record_relay(handoff.id, Direction.IN, "yes it's 12/03/1985", platform_id="b")
    assert answer.text == "yes it's [DOB]"
    store.handoffs.record_relay(
        handoff.id, Direction.OUT, "And the 3 digits on the back?", author="slack:UOPS"
    )
    assert store.handoffs.record_relay(handoff.id, Direction.IN, "774", platform_id="c").text == "[CVV]"


def test_a_handoffs_thread_is_claimed_once_and_a_stale_claim_taken_over(store: Store) -> None:
    _, reply = exchange(store, user="tg-8")
    handoff = store.handoffs.start(NewHandoff("telegram", reply.conversation_id, "tg-8", "chat-8"))
    clock = store.database.clock
    assert store.handoffs.threadless(clock.ago(-60)) == [handoff]  # opened before a minute from now
    assert store.handoffs.claim_thread(handoff.id, clock.ago(120))
    assert not store.handoffs.claim_thread(handoff.id, clock.ago(120))  # claimed: one poster
    assert store.handoffs.threadless(clock.ago(120)) == []  # its claim is young
    assert store.handoffs.claim_thread(handoff.id, clock.ago(-1))  # a stale claim is taken over
    store.handoffs.release_thread(handoff.id)
    assert store.handoffs.get(handoff.id).thread_claimed_at is None
    store.handoffs.set_thread(handoff.id, "COPS", "1700000000.000300")
    assert not store.handoffs.claim_thread(handoff.id, clock.ago(-1))  # it has its thread
    assert store.handoffs.threadless(clock.ago(-60)) == []
    store.handoffs.release_thread(handoff.id)  # changes nothing once the thread is recorded
    assert store.handoffs.get(handoff.id).thread_ts == "1700000000.000300"


# ------------------------------------------------------------------------------- interviews


def test_interviews_are_kept_whole_per_user(store: Store) -> None:
    engine = InterviewEngine(load_script(DEFAULT_SCRIPT))
    first = engine.start("iv_1", "slack:PM1").state
    store.interviews.save(first)
    answered = engine.answer(first, "A savings app").state
    store.interviews.save(answered)  # rewritten, not added
    store.interviews.save(engine.start("iv_2", "slack:PM2").state)
    assert store.interviews.get("iv_1") == answered == store.interviews.active_for("slack:PM1")
    assert [s.id for s in store.interviews.for_user("slack:PM2")] == ["iv_2"]
    with pytest.raises(InterviewNotFound):
        store.interviews.get("iv_1", user_id="slack:PM2")
    assert store.interviews.count() == 2
    first_brief = store.interviews.record_brief("iv_1", "slack:PM1", 30, "# Brief\n", {"score": 0.4})
    store.interviews.record_brief("iv_1", "slack:PM1", 7, "# Brief again\n", {"score": 0.5})
    assert [b.score["score"] for b in store.interviews.briefs("iv_1")] == [0.4, 0.5]
    assert store.interviews.briefs("iv_1")[0] == first_brief and store.interviews.briefs("iv_2") == []
    assert store.counts().briefs == 2


# ------------------------------------------------------------------------------- concurrency


def test_concurrent_writers_lose_nothing_and_reopening_keeps_everything(url: str) -> None:
    store = Store(url)

    def talk(user: int) -> None:
        for i in range(25):
            exchange(store, f"message {i}", platform_id=f"{user}-{i}", user=f"user{user}")

    threads = [threading.Thread(target=talk, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.conversations.count() == 8 * 25 * 2 and store.counts().conversations == 8
    store.close()
    again = Store(url)
    assert again.conversations.count() == 400 and again.database.revision() == again.database.head()
    again.close()


def test_two_replicas_racing_for_one_message_store_it_once(url: str) -> None:
    """Two Database objects (two replicas' pools) write the same platform messages at once."""
    replicas = [Store(url), Store(url)]
    outcomes: list[str] = []
    lock = threading.Lock()

    def deliver(replica: Store, n: int) -> None:
        try:
            exchange(replica, f"retry {n}", platform_id=f"p{n}", user=f"user{n}")
            result = "stored"
        except DuplicateMessage:
            result = "duplicate"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=deliver, args=(r, n)) for n in range(30) for r in replicas]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("stored") == 30 and outcomes.count("duplicate") == 30
    assert replicas[1].conversations.platform_counts("web", "p") == {f"p{n}": 1 for n in range(30)}
    assert replicas[0].counts().conversations == 30
    for r in replicas:
        r.close()


# ------------------------------------------------------------------------------- schema


def test_the_migrations_build_exactly_the_declared_schema(store: Store) -> None:
    inspector = sqlalchemy.inspect(store.database.engine)
    for table in schema.metadata.sorted_tables:
        columns = {c["name"] for c in inspector.get_columns(table.name)}
        assert columns == {c.name for c in table.columns}, table.name
        indexes = {i["name"] for i in inspector.get_indexes(table.name)}
        assert {i.name for i in table.indexes} <= indexes, table.name
    assert store.database.upgrade() == store.database.head()  # again: nothing to do


def test_of_two_processes_upgrading_only_the_one_that_migrated_says_so(url: str) -> None:
    """``migrated_from`` is read under the migration lock (a two-replica trial saw two of three
    racing `teller db upgrade` print "upgraded from empty": the revision was read before the lock)."""
    first, second = Database(url, migrate=False), Database(url, migrate=False)
    try:
        assert second.revision() is None  # read before either migrates, as the old command did
        assert first.upgrade() == first.head() and first.migrated_from is None
        assert second.upgrade() == second.head() and second.migrated_from == second.head()
    finally:
        first.close()
        second.close()


def test_a_newer_schema_is_refused(url: str) -> None:
    Store(url).close()
    database = Database(url, migrate=False)
    with database.transaction() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    database.close()
    with pytest.raises(StoreError, match="newer than this Teller"):
        Store(url)


def test_bad_urls_and_unreachable_databases_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="use postgresql://"):
        database_url("mysql://x@y/z")
    assert database_url("postgres://u:p@h/db").drivername == "postgresql+psycopg"
    for bad in ("postgresql://u@127.0.0.1:notaport/x", "postgresql://u@[::1/x"):
        with pytest.raises(StoreError, match="not a database URL"):
            database_url(bad)
    with pytest.raises(StoreError, match="cannot open the database") as raised:
        Database("postgresql://teller:s3cret@127.0.0.1:1/nothing")
    assert "s3cret" not in str(raised.value)
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError):
        Database(tmp_path / "file" / "t.db")


@pytest.mark.parametrize("version", [1, 2])
def test_a_sqlite_database_from_before_alembic_is_adopted(tmp_path: Path, version: int) -> None:
    path = tmp_path / "old.db"
    connection = sqlite3.connect(path)
    connection.executescript((DATA / f"legacy_store_v{version}.sql").read_text(encoding="utf-8"))
    connection.close()
    store = Store(path)
    assert store.database.revision() == store.database.head()
    history = store.conversations.history()
    assert [m.direction for m in history[:2]] == [Direction.IN, Direction.OUT]
    assert history[0].text == "my card [CARD] never came" and history[1].choices == (
        ("Talk to a person", "handoff"),
    )
    [(feedback, about)] = store.feedback.feedback()
    assert feedback.comment == "useless" and about.id == history[1].id
    if version == 2:
        assert len(store.feedback.flags()) == 1 and store.handoffs.recent()[0].is_open
        assert history[-1].author == "slack:UOPS"
    # Old rows and new ones live together.
    exchange(store, "new", platform_id="u1:2", user="u1")
    assert store.conversations.count() == len(history) + 2
    store.close()


def _sqlite_at(path: Path, revision: str) -> None:
    """A new SQLite database at migration ``revision`` ("head": the newest), as Teller migrates."""
    from alembic import command

    from bot.storage.database import _config, _foreign_keys_off

    old = Database(path, migrate=False)
    with old.engine.connect() as connection, _foreign_keys_off(connection), connection.begin():
        config = _config()
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    old.close()


def test_a_sqlite_store_at_0011_is_rebuilt_with_ids_never_reused_and_every_row_kept(tmp_path: Path) -> None:
    """Migration 0012 rebuilds referenced tables (foreign keys off around it, checked before
    commit): rows, ids, references and indexes survive, and an id is never given twice after."""
    path = tmp_path / "old.db"
    _sqlite_at(path, "0011")
    raw = sqlite3.connect(path)
    raw.executescript(
        """
        INSERT INTO review_items (id, key, text, status) VALUES (1, 'a', 'a', 'open'), (2, 'b', 'b', 'open'),
            (3, 'c', 'c', 'open');
        INSERT INTO corrections (id, item_id, text, key, action, superseded_by) VALUES
            (1, 1, 'a', 'a', 'choose', NULL), (2, 3, 'c', 'c', 'choose', 7);
        INSERT INTO correction_proposals (id, correction_id, text, key, status, created_at)
            VALUES (1, 2, 'c', 'c', 'open', 'now');
        """
    )
    raw.commit()
    raw.close()

    store = Store(path)
    assert store.database.revision() == store.database.head()
    raw = sqlite3.connect(path)
    for table in ("review_items", "corrections", "correction_proposals"):
        sql = raw.execute("SELECT sql FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0]
        assert "AUTOINCREMENT" in sql, table
    items = raw.execute("SELECT id, key FROM review_items ORDER BY id").fetchall()
    assert items == [(1, "a"), (2, "b"), (3, "c")]
    assert raw.execute("SELECT id, item_id FROM corrections ORDER BY id").fetchall() == [(1, 1), (2, 3)]
    assert raw.execute("PRAGMA foreign_key_check").fetchall() == []
    raw.close()
    test_the_migrations_build_exactly_the_declared_schema(store)
    # The newest item and correction go (as erasure removes them); new ones get new ids.
    with store.database.transaction() as connection:
        connection.execute(text("DELETE FROM correction_proposals"))
        connection.execute(text("DELETE FROM corrections WHERE id = 2"))
        connection.execute(text("DELETE FROM review_items WHERE id = 3"))
    assert store.review.create("d", "d", None, None, []) == 4
    # Correction 7 was erased before the migration, but correction 2 still names it as its successor.
    with store.database.transaction() as connection:
        connection.execute(
            text("INSERT INTO corrections (item_id, text, key, action) VALUES (4, 'd', 'd', 'x')")
        )
        assert connection.execute(text("SELECT max(id) FROM corrections")).scalar() == 8
    # The store's own connections enforce foreign keys again after the migration.
    with pytest.raises(sqlalchemy.exc.IntegrityError), store.database.transaction() as connection:
        connection.execute(
            text("INSERT INTO corrections (item_id, text, key, action) VALUES (99, 'z', 'z', 'x')")
        )
    store.close()


@pytest.mark.parametrize("at", ["0011", "head"])
def test_a_reference_broken_before_does_not_stop_a_sqlite_store_from_starting(
    tmp_path: Path, at: str
) -> None:
    """A row deleted by hand with enforcement off (the sqlite3 shell's default) leaves a reference to
    nothing; the migration's check refuses only references it would break itself."""
    path = tmp_path / "t.db"
    _sqlite_at(path, at)
    raw = sqlite3.connect(path)
    raw.execute("INSERT INTO feedback (id, message_id, helpful) VALUES ('f_1', 'm_gone', 1)")
    raw.commit()
    raw.close()
    store = Store(path)
    assert store.database.revision() == store.database.head()
    store.close()


def test_the_clock_never_repeats_or_goes_back() -> None:
    readings = iter([5_000_000_000_000_000_000, 5_000_000_000_000_000_000, 4_000_000_000_000_000_000])
    clock = Clock(lambda: next(readings))
    stamps = [clock.now(), clock.now(), clock.now()]
    assert stamps == sorted(stamps) and len(set(stamps)) == 3
    assert stamps[0].endswith(".000000Z") and stamps[1].endswith(".000001Z")


def test_the_store_bench_measures_an_empty_database_and_refuses_a_used_one(url: str) -> None:
    from bot.storage.bench import bench_store

    result = bench_store(url, seconds=1, threads=2, conversations=10)
    assert result.exchanges > 10 and result.exchanges_per_s > 0 and result.history_reads_per_s > 0
    assert Store(url).conversations.count() == 2 * result.exchanges
    with pytest.raises(InputError, match="holds messages"):
        bench_store(url, seconds=1)


def test_deliveries_record_pending_then_delivered_or_failed_and_failures_reach_review(store: Store) -> None:
    _, first = exchange(store, "my card has not arrived")
    _, second = exchange(store, "what is the fee for a transfer abroad")
    pending = store.deliveries.begin(first.id, DeliveryKind.REPLY, "slack", "D1:1.0")
    assert (pending.state, pending.attempts, pending.platform_ids) == (DeliveryState.PENDING, 0, ())
    delivered = store.deliveries.delivered(first.id, ["D1:2.0", "D1:2.1"], attempts=3)
    assert (delivered.state, delivered.parts, delivered.platform_ids, delivered.attempts) == (
        DeliveryState.DELIVERED,
        2,
        ("D1:2.0", "D1:2.1"),
        3,
    )
    # Beginning again (a redelivery) leaves a delivered message delivered.
    again = store.deliveries.begin(first.id, DeliveryKind.REPLY, "slack", "D1:1.0")
    assert again.state == DeliveryState.DELIVERED and again.platform_ids == delivered.platform_ids
    store.deliveries.begin(second.id, DeliveryKind.REPLY, "telegram", "42")
    failed = store.deliveries.failed(second.id, "Forbidden: bot was blocked by the user" * 30, 1, [])
    assert failed.state == DeliveryState.FAILED and failed.reason and len(failed.reason) == 500
    assert store.deliveries.states() == {
        DeliveryState.PENDING: 0,
        DeliveryState.DELIVERED: 1,
        DeliveryState.FAILED: 1,
    }
    assert [d.message_id for d in store.deliveries.recent(DeliveryState.FAILED)] == [second.id]
    candidates = store.review.candidates(0.0, reply_id=second.id)
    assert [c.reason for c in candidates] == [ReviewReason.UNDELIVERED]
    assert not [
        c for c in store.review.candidates(0.0, reply_id=first.id) if c.reason == ReviewReason.UNDELIVERED
    ]
    assert store.counts().deliveries == 2


def test_a_stale_pending_delivery_is_claimed_by_one_replica_only(store: Store) -> None:
    _, reply = exchange(store, "my card has not arrived")
    store.deliveries.begin(reply.id, DeliveryKind.REPLY, "telegram", "42")
    assert store.deliveries.stale(store.database.clock.ago(60), ["telegram"]) == []
    later = store.database.clock.ago(-1)  # a cutoff after the row's time: the row is stale
    [stale] = store.deliveries.stale(later, ["telegram"])
    assert store.deliveries.stale(later, ["slack"]) == []
    assert store.deliveries.claim(stale) is True
    assert store.deliveries.claim(stale) is False  # as read before: already taken


def test_an_operators_message_delivered_twice_is_relayed_once(store: Store) -> None:
    _, reply = exchange(store, user="tg-8")
    handoff = store.handoffs.start(
        NewHandoff("web", reply.conversation_id, "tg-8", "chat-8", message_id=reply.id)
    )
    store.handoffs.record_relay(
        handoff.id, Direction.OUT, "One moment.", author="slack:UOPS", platform_id="C:1.5"
    )
    with pytest.raises(DuplicateMessage):
        store.handoffs.record_relay(
            handoff.id, Direction.OUT, "One moment.", author="slack:UOPS", platform_id="C:1.5"
        )
    store.handoffs.record_relay(handoff.id, Direction.OUT, "Next.", author="slack:UOPS", platform_id="C:1.6")


def test_an_interview_turn_is_kept_once_per_platform_message(store: Store) -> None:
    assert store.interviews.turn("slack", "D1:1.0") is None
    first = store.interviews.remember_turn("slack", "D1:1.0", "slack:UPM", {"text": "Who are the users?"})
    again = store.interviews.remember_turn("slack", "D1:1.0", "slack:UPM", {"text": "something else"})
    assert first == again == store.interviews.turn("slack", "D1:1.0") == {"text": "Who are the users?"}
    assert store.interviews.turn("telegram", "D1:1.0") is None


def test_the_corrections_signature_moves_when_one_is_removed_or_rewritten(store: Store) -> None:
    """A trial's finding: servers follow corrections by a signature of the table; it was the newest
    id alone, so an erased customer's older correction kept answering on every replica."""
    assert store.feedback.corrections_head() == ""
    heads = []
    for n, said in enumerate(["my card is stuck", "where is my salary"]):
        item = store.review.create(said, said, "intent", None, [])
        store.review.resolve(
            item,
            ReviewStatus.CHOSEN,
            "cli:ana",
            f"intent_{n}",
            NewCorrection(said, said, CorrectionAction.CHOOSE, f"intent_{n}"),
        )
        heads.append(store.feedback.corrections_head())
    assert heads[0] != heads[1] != ""
    oldest = min(c.id for c in store.feedback.corrections())
    with store.database.transaction() as connection:  # erasure keeps a shared item's correction, reworded
        connection.execute(
            schema.corrections.update()
            .where(schema.corrections.c.id == oldest)
            .values(text="my card is STUCK")  # the same length: a review's finding
        )
    reworded = store.feedback.corrections_head()
    assert reworded != heads[1]
    with store.database.transaction() as connection:  # ... or removes it (the newest id stays)
        connection.execute(schema.corrections.delete().where(schema.corrections.c.id == oldest))
    assert store.feedback.corrections_head() not in (reworded, heads[1], "")


def test_a_value_counts_as_offered_to_the_customer_it_was_offered_to(store: Store) -> None:
    """A pressed value is honoured only when one of Teller's latest answers to that customer in that
    conversation offered it, or one of its latest answers there to anyone; in a group chat, other
    members' traffic does not push it out for the customer it was offered to, and another member
    may press it while it is among the group's latest answers (every member sees the buttons)."""
    offered = (("Where is my card?", "intent:card_arrival"),)
    store.conversations.record_exchange(
        NewExchange(
            "telegram", "group", "alice", "where is it", "Did you mean…", route="clarify", choices=offered
        )
    )
    assert store.conversations.offered("telegram", "group", "bob", "intent:card_arrival")
    pressed, _ = store.conversations.record_exchange(
        NewExchange("telegram", "group", "bob", "intent:card_arrival", "It's on its way.", route="intent")
    )
    assert pressed.text == "intent:card_arrival" and store.conversations.was_offered(pressed.id)
    for n in range(25):  # the group's other members talk meanwhile
        store.conversations.record_exchange(
            NewExchange("telegram", "group", f"m{n}", "hi", "Hello!", route="smalltalk")
        )
    offers = store.conversations.offered
    assert offers("telegram", "group", "alice", "intent:card_arrival")
    assert not offers("telegram", "group", "bob", "intent:card_arrival")
    assert not offers("telegram", "elsewhere", "alice", "intent:card_arrival")
    assert not offers("telegram", "group", "alice", "intent:lost_or_stolen_card")
