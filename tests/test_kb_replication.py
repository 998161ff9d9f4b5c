"""Knowledge-base replication through the database's change log: replicas with their own index
converge on every change (adds, edits, removals, superseding, restoring), whichever side made it,
on SQLite and on a real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.kb_replication import SEQ_META, KnowledgeReplicator
from bot.storage import KbChangeKind, Store
from retrieval.entry import KBEntry
from retrieval.knowledge_base import KnowledgeBase
from tests.fakes import HashingEmbedder


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    url = (
        str(tmp_path / "t.db")
        if request.param == "sqlite"
        else request.getfixturevalue("fresh_postgresql_url")
    )
    opened = Store(url)
    yield opened
    opened.close()


def replica(tmp_path: Path, name: str, store: Store) -> tuple[KnowledgeBase, KnowledgeReplicator]:
    kb = KnowledgeBase.open(tmp_path / name, HashingEmbedder(), seed=None)
    return kb, KnowledgeReplicator(kb, store.kb_log, name=name)


def entry(entry_id: str, answer: str = "An answer.", intent: str | None = None) -> KBEntry:
    return KBEntry(entry_id, (f"how do I {entry_id.replace('_', ' ')}",), answer, intent)


def test_changes_on_either_replica_reach_the_other(tmp_path: Path, store: Store) -> None:
    a, sync_a = replica(tmp_path, "a", store)
    b, sync_b = replica(tmp_path, "b", store)
    a.add([entry("lockers"), entry("statements")], source="starter")
    assert sync_a.sync().published == 2
    assert sync_b.sync().applied == 2
    assert b.entries() == a.entries() and b.is_starter("lockers")
    assert b.search("how do I lockers")[0].entry.id == "lockers"  # B's own index has it

    # An operator edits on B, removes on A; both see both.
    b.add([entry("lockers", "We rent safe deposit boxes at 12 branches.")])
    a.remove("statements")
    sync_b.sync()
    sync_a.sync()
    sync_b.sync()
    assert [e.id for e in a.entries()] == [e.id for e in b.entries()] == ["lockers"]
    assert a.get("lockers").answer == b.get("lockers").answer == "We rent safe deposit boxes at 12 branches."
    assert not a.is_starter("lockers")  # an operator's edit is the bank's own entry everywhere

    # Superseding and restoring travel too (the record and the intent it moved).
    a.add([entry("lockers_v2", "Boxes at every branch.")])
    a.supersede("lockers", "lockers_v2", "newer policy", moved_intent=None)
    sync_a.sync()
    sync_b.sync()
    assert [r.entry.id for r in b.superseded()] == ["lockers"] and "lockers" not in b
    b.restore("lockers")
    sync_b.sync()
    sync_a.sync()
    assert "lockers" in a and a.superseded() == []
    assert a.state() == b.state()


def test_nothing_new_costs_no_change_and_a_restart_resumes_where_it_stopped(
    tmp_path: Path, store: Store
) -> None:
    a, sync_a = replica(tmp_path, "a", store)
    a.add([entry("cards")])
    sync_a.sync()
    revision = a.revision
    assert sync_a.sync().published == 0 and a.revision == revision
    assert int(a.get_meta(SEQ_META) or 0) == store.kb_log.head()
    # B was down while A changed twice; it catches up from where it stopped.
    b, sync_b = replica(tmp_path, "b", store)
    sync_b.sync()
    b.close()
    a.add([entry("loans")])
    a.remove("cards")
    sync_a.sync()
    b = KnowledgeBase.open(tmp_path / "b", HashingEmbedder(), seed=None)
    result = KnowledgeReplicator(b, store.kb_log, name="b").sync()
    assert [e.id for e in b.entries()] == ["loans"] and result.published == 0
    # A change B made while it was not replicating is published at its next sync.
    b.add([entry("savings")])
    b.close()
    b = KnowledgeBase.open(tmp_path / "b", HashingEmbedder(), seed=None)
    assert KnowledgeReplicator(b, store.kb_log, name="b").sync().published == 1
    sync_a.sync()
    assert sorted(e.id for e in a.entries()) == ["loans", "savings"]


def test_a_conflict_is_won_by_the_later_write(tmp_path: Path, store: Store) -> None:
    a, sync_a = replica(tmp_path, "a", store)
    b, sync_b = replica(tmp_path, "b", store)
    a.add([entry("fees")])
    sync_a.sync()
    sync_b.sync()
    a.add([entry("fees", "A's answer.")])
    b.add([entry("fees", "B's answer.")])
    sync_a.sync()  # A writes first
    sync_b.sync()  # B's change is the later write
    sync_a.sync()
    assert a.get("fees").answer == b.get("fees").answer == "B's answer."
    kinds = {c.kind for c in store.kb_log.since(0)}
    assert kinds == {KbChangeKind.ENTRY}
