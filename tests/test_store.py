"""Conversation storage: schema, redaction, duplicates, feedback, concurrency, reopening."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from bot.errors import InputError
from bot.store import MIGRATIONS, DuplicateMessage, Store, StoreError


def exchange(store: Store, text: str = "hello", platform_id: str | None = None, user: str = "u1"):  # type: ignore[no-untyped-def]
    return store.record_exchange(
        {"channel": "web", "conversation": user, "user_id": user, "text": text, "platform_id": platform_id},
        {
            "text": "reply",
            "route": "intent",
            "intent": "card_arrival",
            "confidence": 0.9,
            "kb_id": "card_arrival",
            "model_version": "v1",
            "latency_ms": 3.2,
            "choices": [{"label": "Helpful", "value": "feedback:helpful"}],
        },
    )


def test_an_exchange_is_stored_redacted_with_its_metadata(tmp_path: Path) -> None:
    store = Store(tmp_path / "t.db")
    assert store.schema_version == len(MIGRATIONS)
    incoming, reply = exchange(store, "card 4111 1111 1111 1111, mail me at a@b.co or call +44 20 7946 0958")
    assert incoming.text == "card [CARD], mail me at [EMAIL] or call [PHONE]"
    assert (reply.reply_to, reply.route, reply.intent, reply.kb_id, reply.model_version) == (
        incoming.id,
        "intent",
        "card_arrival",
        "card_arrival",
        "v1",
    )
    assert reply.latency_ms == 3.2 and reply.confidence == 0.9
    assert reply.choices == ({"label": "Helpful", "value": "feedback:helpful"},)
    assert [m.id for m in store.history()] == [incoming.id, reply.id]
    raw = sqlite3.connect(tmp_path / "t.db").execute("SELECT group_concat(text) FROM messages").fetchone()[0]
    assert "4111" not in raw and "a@b.co" not in raw


def test_duplicates_are_refused_and_found(tmp_path: Path) -> None:
    store = Store(tmp_path / "t.db")
    _, reply = exchange(store, platform_id="42")
    with pytest.raises(DuplicateMessage):
        exchange(store, platform_id="42")
    assert store.count() == 2
    found = store.find_reply("web", "42")
    assert found is not None and found.id == reply.id
    assert store.find_reply("telegram", "42") is None
    exchange(store, platform_id=None)
    exchange(store, platform_id=None)  # messages without a platform id are never duplicates
    assert store.count() == 6


def test_feedback_is_only_about_replies(tmp_path: Path) -> None:
    store = Store(tmp_path / "t.db")
    incoming, reply = exchange(store)
    entry = store.add_feedback(reply.id, False, "wrong answer, reach me at jo@example.com", "u1")
    assert (entry.helpful, entry.comment) == (False, "wrong answer, reach me at [EMAIL]")
    with pytest.raises(InputError, match="customer message"):
        store.add_feedback(incoming.id, True)
    with pytest.raises(InputError, match="no message"):
        store.add_feedback("m_missing", True)
    [(stored, about)] = store.feedback()
    assert stored == entry and about.id == reply.id


def test_concurrent_writers_lose_nothing_and_reopening_keeps_everything(tmp_path: Path) -> None:
    store = Store(tmp_path / "t.db")

    def talk(user: int) -> None:
        for i in range(40):
            exchange(store, f"message {i}", platform_id=f"{user}-{i}", user=f"user{user}")

    threads = [threading.Thread(target=talk, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.count() == 8 * 40 * 2
    assert store.count("conversations") == 8
    store.close()
    again = Store(tmp_path / "t.db")
    assert again.count() == 640 and again.schema_version == len(MIGRATIONS)


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    Store(path).close()
    connection = sqlite3.connect(path)
    connection.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    connection.close()
    with pytest.raises(StoreError, match="newer than this Teller"):
        Store(path)
