"""Knowledge-base replication: every replica's index follows the change log in the database.

Each process keeps its own :class:`~retrieval.knowledge_base.KnowledgeBase` (entries in SQLite,
vectors in FAISS, under its ``TELLER_HOME``); the database's change log
(:class:`bot.storage.KnowledgeLogRepository`) is the source of truth. :meth:`KnowledgeReplicator.sync`
is a three-way merge per item (a live entry, or a superseded record) between

- the *baseline*: what the log said when this knowledge base last synced (the log folded up to the
  ``seq`` recorded in the knowledge base's meta),
- *local*: the knowledge base now, and
- *remote*: the log folded up to its newest ``seq``.

An item changed only locally is appended to the log; an item changed only remotely is applied
locally (re-embedding only changed texts); an item changed on both sides to different states is a
conflict that the local change wins, being the later write. Items equal on both sides just move the
baseline. A sync that finds nothing new costs one ``max(seq)`` query. Serving replicas sync every
couple of seconds (:mod:`bot.model_swap`); CLI commands sync before and after a change.

A knowledge base that never synced starts from an empty baseline: if the log is empty it seeds the
cluster with what it has; otherwise it takes the log's content (its own starter is not seeded, see
:func:`bot.assistant.open_kb`).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass
from typing import Any

from bot.storage import KbChangeKind, KnowledgeLogRepository
from retrieval.errors import RetrievalError
from retrieval.knowledge_base import KnowledgeBase

log = logging.getLogger(__name__)

#: Meta key in the knowledge base: the last ``seq`` of the change log it has applied.
SEQ_META = "replicated_seq"
#: How many times a sync merges again when other replicas keep appending meanwhile.
MERGE_ATTEMPTS = 20

Items = dict[str, dict[str, Any]]
#: Rows to append: ``(kind, item id, new state or None for a removal)``.
Changes = list[tuple[KbChangeKind, str, dict[str, Any] | None]]


@dataclass(frozen=True)
class SyncResult:
    published: int = 0
    applied: int = 0
    seq: int = 0


def origin() -> str:
    """Who writes to the log: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


class KnowledgeReplicator:
    """Merges one knowledge base with the change log. Thread-safe (one sync at a time)."""

    def __init__(self, kb: KnowledgeBase, changes: KnowledgeLogRepository, name: str | None = None) -> None:
        self.kb = kb
        self.changes = changes
        self.name = name or origin()
        self._lock = threading.Lock()
        # The log folded up to ``_remote_seq``: the newest state of every item ever logged.
        self._remote: dict[KbChangeKind, Items] = {KbChangeKind.ENTRY: {}, KbChangeKind.SUPERSEDED: {}}
        self._remote_seq = 0
        self._baseline: dict[KbChangeKind, Items] | None = None
        self._synced_revision = -1

    def _fold(self, upto: int | None = None) -> None:
        """Read the log from where the fold stopped (up to ``upto``, if given)."""
        while True:
            rows = self.changes.since(self._remote_seq)
            if upto is not None:
                rows = [r for r in rows if r.seq <= upto]
            for row in rows:
                items = self._remote[row.kind]
                if row.payload is None:
                    items.pop(row.item_id, None)
                else:
                    items[row.item_id] = row.payload
                self._remote_seq = row.seq
            if len(rows) < 10_000 or (upto is not None and self._remote_seq >= upto):
                return

    def _merge(
        self,
    ) -> tuple[
        list[tuple[KbChangeKind, str, dict[str, Any] | None]],
        dict[KbChangeKind, dict[str, dict[str, Any] | None]],
    ]:
        """What to publish and what to apply, per item, from baseline, local and remote."""
        assert self._baseline is not None
        state = self.kb.state()
        local = {KbChangeKind.ENTRY: state.entries, KbChangeKind.SUPERSEDED: state.superseded}
        publish: Changes = []
        apply: dict[KbChangeKind, dict[str, dict[str, Any] | None]] = {kind: {} for kind in local}
        for kind in (KbChangeKind.ENTRY, KbChangeKind.SUPERSEDED):
            base, mine, theirs = self._baseline[kind], local[kind], self._remote[kind]
            for item_id in sorted(set(base) | set(mine) | set(theirs)):
                b, m, t = base.get(item_id), mine.get(item_id), theirs.get(item_id)
                if m == t:
                    continue
                if m != b:
                    publish.append((kind, item_id, m))  # ours is newer (or both changed: ours wins)
                else:
                    apply[kind][item_id] = t
        return publish, apply

    def sync(self) -> SyncResult:
        """Publish this knowledge base's own changes and apply everyone else's; see the module doc.

        Raises :class:`bot.storage.StoreError` if the database is unreachable (nothing is lost: the
        next sync finds the same differences), :class:`retrieval.errors.RetrievalError` if a logged
        change cannot be applied.
        """
        with self._lock, self.kb.lock:
            head = self.changes.head()
            if (
                self._baseline is not None
                and head == self._remote_seq
                and self.kb.revision == self._synced_revision
            ):
                return SyncResult(seq=head)
            if self._baseline is None:
                applied_seq = int(self.kb.get_meta(SEQ_META) or 0)
                self._fold(upto=applied_seq)
                self._baseline = {kind: dict(items) for kind, items in self._remote.items()}
            for _ in range(MERGE_ATTEMPTS):
                self._fold()
                publish, apply = self._merge()
                if not publish:
                    break
                # Only if nobody appended since our fold: then the log after this append is exactly
                # what we merged against plus our own rows, and nothing unapplied slips into the
                # baseline. Otherwise merge again against the newer log.
                appended = self.changes.append(publish, self.name, expected_head=self._remote_seq)
                if appended is not None:
                    self._fold(upto=appended)  # our rows only: anything later is not applied yet
                    break
            else:
                raise RetrievalError(f"the knowledge-base change log moved during {MERGE_ATTEMPTS} merges")
            applied = self.kb.apply(apply[KbChangeKind.ENTRY], apply[KbChangeKind.SUPERSEDED])
            self._baseline = {kind: dict(items) for kind, items in self._remote.items()}
            self._synced_revision = self.kb.revision
            self.kb.set_meta(SEQ_META, str(self._remote_seq))
        if publish or applied:
            log.info(
                "kb_replicated",
                extra={"fields": {"published": len(publish), "applied": applied, "seq": self._remote_seq}},
            )
        return SyncResult(len(publish), applied, self._remote_seq)
