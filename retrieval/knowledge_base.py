"""The FAQ knowledge base: entries in SQLite, their question embeddings in a FAISS index.

Each entry gets an integer key that is never reused; the vector of its i-th phrasing has id
``key * MAX_QUESTIONS + i``. Adding, changing or removing an entry touches only that entry's
vectors. The entries table is the source of truth. An entry whose phrasings changed is marked
``indexed = 0`` in the same transaction, and ``1`` once the index file holding its new vectors is
on disk; opening the knowledge base re-embeds just the entries a crash left unmarked, and drops
vectors whose entry is gone.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sqlite_utils

from retrieval.embedder import Embedder
from retrieval.entry import MAX_QUESTIONS, KBEntry
from retrieval.errors import EntryNotFoundError, IndexCorruptError, RetrievalError
from retrieval.index import VectorIndex
from retrieval.loaders import load_entries

log = logging.getLogger(__name__)

DEFAULT_KB_FILE = Path(__file__).resolve().parent / "data" / "default_kb.jsonl"
DB_FILE = "kb.db"
INDEX_FILE = "index.faiss"


@dataclass(frozen=True)
class Hit:
    """A retrieved entry, the phrasing that matched best, and its cosine similarity to the query."""

    entry: KBEntry
    score: float
    question: str


@dataclass
class ImportReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    embedded: int = 0


class KnowledgeBase:
    """Thread-safe: searches run concurrently, changes are serialised."""

    def __init__(self, directory: str | Path, embedder: Embedder, approx_threshold: int = 20_000) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.embedder = embedder
        self._lock = threading.RLock()
        connection = sqlite3.connect(self.directory / DB_FILE, check_same_thread=False)
        self._db = sqlite_utils.Database(connection)
        self._db.enable_wal()
        self._migrate()
        self._approx_threshold = approx_threshold
        self._load()

    def _load(self) -> None:
        """Read the entries from SQLite and open the index, repairing it against them."""
        self._data_version = self._db_version()
        entries: dict[str, KBEntry] = {}
        keys: dict[str, int] = {}
        by_key: dict[int, str] = {}
        for row in self._db.table("entries").rows:
            entry = KBEntry(
                row["id"],
                tuple(json.loads(row["questions"])),
                row["answer"],
                row["intent"],
                tuple(json.loads(row["tags"])),
            )
            entries[entry.id] = entry
            keys[entry.id] = row["key"]
            by_key[row["key"]] = entry.id
        # Whole new mappings: a reader that does not take the lock sees the old or the new, never half.
        self._entries, self._keys, self._by_key = entries, keys, by_key
        self.index = self._open_index(self._approx_threshold)

    def _db_version(self) -> int:
        """SQLite's ``data_version``: it moves when another connection (process) commits a change."""
        return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    def refresh(self) -> bool:
        """Pick up changes another process made (``teller kb add``, ``teller review wrong``).

        Cheap when nothing changed (one pragma). Returns whether anything was reloaded. Writes call
        it first, so a stale copy never overwrites the index file with fewer entries.
        """
        with self._lock:
            if self._db_version() == self._data_version:
                return False
            before = len(self._entries)
            self._load()
        log.info("kb_reloaded", extra={"fields": {"entries_before": before, "entries": len(self._entries)}})
        return True

    @classmethod
    def open(
        cls,
        directory: str | Path,
        embedder: Embedder,
        seed: Path | None = DEFAULT_KB_FILE,
        approx_threshold: int = 20_000,
    ) -> KnowledgeBase:
        """Open (or create) the knowledge base; a new one is filled from ``seed`` once."""
        kb = cls(directory, embedder, approx_threshold)
        if seed is not None and kb._meta("seeded") is None:
            kb.add(load_entries(seed))
            kb._set_meta("seeded", str(seed.name))
        return kb

    # --------------------------------------------------------------------------------------- reading

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, entry_id: object) -> bool:
        return entry_id in self._entries

    def entries(self) -> list[KBEntry]:
        return sorted(self._entries.values(), key=lambda e: self._keys[e.id])

    def get(self, entry_id: str) -> KBEntry:
        try:
            return self._entries[entry_id]
        except KeyError:
            raise EntryNotFoundError(f"no knowledge-base entry {entry_id!r}") from None

    def for_intent(self, intent: str) -> KBEntry | None:
        """The entry that answers ``intent`` (the one with that id first, else the oldest linked one)."""
        if intent in self._entries and self._entries[intent].intent == intent:
            return self._entries[intent]
        linked = [e for e in self._entries.values() if e.intent == intent]
        return min(linked, key=lambda e: self._keys[e.id]) if linked else None

    def search(self, query: str, k: int = 5) -> list[Hit]:
        if not query.strip():
            raise RetrievalError("the search query is empty")
        return self.search_vectors(self.embedder.embed([query]), k)[0]

    def search_many(self, queries: Sequence[str], k: int = 5) -> list[list[Hit]]:
        return self.search_vectors(self.embedder.embed(list(queries)), k) if queries else []

    def search_vectors(self, vectors: np.ndarray, k: int = 5) -> list[list[Hit]]:
        """The ``k`` best entries for each query vector, best first (one hit per entry)."""
        with self._lock:
            depth = min(len(self.index), max(k * 8, 32))
            scores, ids = self.index.search(vectors, depth)
            results = []
            for row_scores, row_ids in zip(scores, ids, strict=True):
                best: dict[str, Hit] = {}
                for score, vector_id in zip(row_scores, row_ids, strict=True):
                    if vector_id < 0:
                        continue
                    entry_id = self._by_key.get(int(vector_id) // MAX_QUESTIONS)
                    if entry_id is None or entry_id in best:
                        continue
                    entry = self._entries[entry_id]
                    phrasing = int(vector_id) % MAX_QUESTIONS
                    question = (
                        entry.questions[phrasing] if phrasing < len(entry.questions) else entry.questions[0]
                    )
                    best[entry_id] = Hit(entry, float(score), question)
                    if len(best) == k:
                        break
                results.append(list(best.values()))
            return results

    # --------------------------------------------------------------------------------------- writing

    def add(self, entries: Iterable[KBEntry]) -> ImportReport:
        """Insert new entries and replace changed ones; only their phrasings are embedded."""
        entries = list(entries)
        seen: set[str] = set()
        for entry in entries:
            problems = entry.problems()
            if problems:
                raise RetrievalError(f"entry {entry.id!r}: {'; '.join(problems)}")
            if entry.id in seen:
                raise RetrievalError(f"duplicate id {entry.id!r}")
            seen.add(entry.id)
        report = ImportReport()
        with self._lock:
            self.refresh()
            changed = []
            for entry in entries:
                old = self._entries.get(entry.id)
                if old == entry:
                    report.unchanged.append(entry.id)
                else:
                    (report.updated if old else report.added).append(entry.id)
                    changed.append(entry)
            if not changed:
                return report
            reembed = [
                e
                for e in changed
                if e.id not in self._entries or self._entries[e.id].questions != e.questions
            ]
            reembed_ids = {e.id for e in reembed}
            vectors = self.embedder.embed([q for e in reembed for q in e.questions])
            report.embedded = len(vectors)
            next_key = int(self._meta("next_key") or 1)
            keys = {}
            for entry in changed:
                keys[entry.id] = self._keys.get(entry.id) or next_key
                if entry.id not in self._keys:
                    next_key += 1
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            with self._db.conn:
                self._db.table("entries").upsert_all(
                    [self._row(e, keys[e.id], now, indexed=e.id not in reembed_ids) for e in changed], pk="id"
                )
                self._db.table("meta").upsert({"key": "next_key", "value": str(next_key)}, pk="key")
            for entry in changed:
                self._entries[entry.id] = entry
                self._keys[entry.id] = keys[entry.id]
                self._by_key[keys[entry.id]] = entry.id
            if reembed:
                self._replace_vectors(
                    [keys[e.id] for e in reembed], vectors, [len(e.questions) for e in reembed]
                )
                self._mark_indexed(sorted(reembed_ids))
        log.info(
            "kb_changed",
            extra={
                "fields": {
                    "added": len(report.added),
                    "updated": len(report.updated),
                    "embedded": report.embedded,
                }
            },
        )
        return report

    def add_file(self, path: str | Path, encoding: str | None = None) -> ImportReport:
        """Import a CSV, JSONL or Markdown file; a file with any problem changes nothing."""
        return self.add(load_entries(path, encoding))

    def remove(self, entry_id: str) -> KBEntry:
        with self._lock:
            self.refresh()
            entry = self.get(entry_id)
            key = self._keys[entry_id]
            with self._db.conn:
                self._db.table("entries").delete(entry_id)
            del self._entries[entry_id], self._keys[entry_id], self._by_key[key]
            self.index.remove(self._vector_ids(key, MAX_QUESTIONS))
            self.index.save(self.directory / INDEX_FILE)
        log.info("kb_removed", extra={"fields": {"id": entry_id}})
        return entry

    def close(self) -> None:
        self._db.close()

    # -------------------------------------------------------------------------------------- internals

    @staticmethod
    def _vector_ids(key: int, count: int) -> np.ndarray:
        return np.arange(key * MAX_QUESTIONS, key * MAX_QUESTIONS + count, dtype=np.int64)

    @staticmethod
    def _row(entry: KBEntry, key: int, now: str, indexed: bool) -> dict[str, Any]:
        return {
            "id": entry.id,
            "key": key,
            "questions": json.dumps(list(entry.questions), ensure_ascii=False),
            "answer": entry.answer,
            "intent": entry.intent,
            "tags": json.dumps(list(entry.tags)),
            "updated_at": now,
            "indexed": int(indexed),
        }

    def _replace_vectors(self, keys: list[int], vectors: np.ndarray, counts: list[int]) -> None:
        """Drop every vector of these entries, add their new ones, and write the index to disk."""
        self.index.remove(np.concatenate([self._vector_ids(k, MAX_QUESTIONS) for k in keys]))
        self.index.add(
            np.concatenate([self._vector_ids(k, n) for k, n in zip(keys, counts, strict=True)]), vectors
        )
        self.index.save(self.directory / INDEX_FILE)

    def _mark_indexed(self, entry_ids: list[str]) -> None:
        with self._db.conn:
            self._db.execute(
                f"UPDATE entries SET indexed = 1 WHERE id IN ({', '.join('?' * len(entry_ids))})", entry_ids
            )

    def _migrate(self) -> None:
        if "entries" not in self._db.table_names():
            self._db.table("entries").create(
                {
                    "id": str,
                    "key": int,
                    "questions": str,
                    "answer": str,
                    "intent": str,
                    "tags": str,
                    "updated_at": str,
                    "indexed": int,
                },
                pk="id",
                not_null={"key", "answer"},
                defaults={"indexed": 0},
            )
            self._db.table("entries").create_index(["key"], unique=True)
            self._db.table("entries").create_index(["intent"])
        if "meta" not in self._db.table_names():
            self._db.table("meta").create({"key": str, "value": str}, pk="key")
        stored = self._meta("embedder")
        wanted = f"{self.embedder.name}:{self.embedder.dim}"
        if stored is None:
            self._set_meta("embedder", wanted)
        elif stored != wanted:
            raise IndexCorruptError(f"{self.directory}: built with embedder {stored}, not {wanted}")

    def _meta(self, key: str) -> str | None:
        rows = list(self._db.table("meta").rows_where("key = ?", [key]))
        return rows[0]["value"] if rows else None

    def _set_meta(self, key: str, value: str) -> None:
        with self._db.conn:
            self._db.table("meta").upsert({"key": key, "value": value}, pk="key")

    def _open_index(self, approx_threshold: int) -> VectorIndex:
        path = self.directory / INDEX_FILE
        index = (
            VectorIndex.load(path, self.embedder.dim, approx_threshold)
            if path.exists()
            else VectorIndex(self.embedder.dim, approx_threshold)
        )
        self.index = index
        unmarked = {row["id"] for row in self._db.query("SELECT id FROM entries WHERE indexed = 0")}
        expected = {
            int(i)
            for e in self._entries.values()
            for i in self._vector_ids(self._keys[e.id], len(e.questions))
        }
        present = {int(i) for i in index.ids()}
        stale = np.array(sorted(present - expected), dtype=np.int64)
        todo = sorted(unmarked | {self._by_key[i // MAX_QUESTIONS] for i in expected - present})
        if len(stale) or todo:
            log.warning(
                "kb_index_repair", extra={"fields": {"stale_vectors": len(stale), "entries": len(todo)}}
            )
            index.remove(stale)
            entries = [self._entries[i] for i in todo]
            if entries:
                vectors = self.embedder.embed([q for e in entries for q in e.questions])
                self._replace_vectors(
                    [self._keys[e.id] for e in entries], vectors, [len(e.questions) for e in entries]
                )
                self._mark_indexed(todo)
            else:
                index.save(path)
        return index
