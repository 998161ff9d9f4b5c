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
    assert sorted(b.entries(), key=lambda e: e.id) == sorted(a.entries(), key=lambda e: e.id)
    assert b.is_starter("lockers")
    assert b.search("how do I lockers")[0].entry.id == "lockers"  # B's own index has it

    # An operator edits on B, removes on A; both see both.
    b.add([entry("lockers", "We rent safe deposit boxes at 12 branches.")])
    a.remove("statements")
    sync_b.sync()
    sync_a.sync()
    sync_b.sync()
    assert sorted(e.id for e in a.entries()) == sorted(e.id for e in b.entries()) == ["lockers"]
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


class Interleaved:
    """The change log, with another replica's sync landing just before each of this one's appends
    (the race that a real cluster hits rarely, made to happen every time)."""

    def __init__(self, log: object, other: KnowledgeReplicator) -> None:
        self.log = log
        self.other = other
        self.fired = False

    def __getattr__(self, name: str) -> object:
        return getattr(self.log, name)

    def append(self, *args: object, **kwargs: object) -> object:
        if not self.fired:
            self.fired = True
            self.other.sync()
        return self.log.append(*args, **kwargs)  # type: ignore[attr-defined]


@pytest.mark.parametrize("removal", [False, True])
def test_a_change_landing_during_a_sync_is_neither_lost_nor_reverted(
    tmp_path: Path, store: Store, removal: bool
) -> None:
    a, sync_a = replica(tmp_path, "a", store)
    b, sync_b = replica(tmp_path, "b", store)
    a.add([entry("cards"), entry("loans")])
    sync_a.sync()
    sync_b.sync()
    a.add([entry("cards", "A's new cards answer.")])
    if removal:
        b.remove("loans")
    else:
        b.add([entry("loans", "B's new loans answer.")])
    sync_a.changes = Interleaved(store.kb_log, sync_b)  # type: ignore[assignment]
    sync_a.sync()
    sync_a.changes = store.kb_log
    for _ in range(2):
        sync_a.sync()
        sync_b.sync()
    a.add([entry("fx")])  # a later, unrelated change must not republish a stale copy
    sync_a.sync()
    sync_b.sync()
    for kb in (a, b):
        assert kb.get("cards").answer == "A's new cards answer."
        assert ("loans" not in kb) if removal else (kb.get("loans").answer == "B's new loans answer.")
    assert a.state() == b.state()


def test_rows_become_visible_in_commit_order(tmp_path: Path, store: Store) -> None:
    """Appends are serialised: while one append is open, another waits, so no reader can see a
    later ``seq`` before an earlier one commits."""
    import threading

    from bot.storage import KbChangeKind

    order: list[str] = []
    inside = threading.Event()
    release = threading.Event()
    with store.database.transaction() as connection:
        store.database.serialise(connection, "kb_log")  # hold the append lock, as a slow append would

        def second() -> None:
            inside.set()
            store.kb_log.append([(KbChangeKind.ENTRY, "later", {"entry": {}})], "B")
            order.append("B")

        worker = threading.Thread(target=second)
        worker.start()
        inside.wait()
        release.wait(0.5)
        order.append("A")  # B could not append while A held the log
    worker.join(10)
    assert order == ["A", "B"]
    assert [c.item_id for c in store.kb_log.since(0)] == ["later"]
