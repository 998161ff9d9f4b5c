"""Knowledge-base lifecycle records: sync plans, superseded entries and entry-to-entry overlaps.

The operations are methods of :class:`retrieval.knowledge_base.KnowledgeBase` (its "lifecycle"
section): ``start`` (the starter content, once), ``plan_sync`` / ``sync`` (make the knowledge base
exactly a file), ``supersede`` / ``superseded`` / ``restore`` and ``overlaps``. They change entries
only through ``add()`` and ``remove()``, so the index, the crash repair and other processes'
``refresh()`` (a running ``teller serve``) follow them like any other change.

Superseding is a recorded decision, and later imports respect it, so that syncing the same file
twice changes nothing the second time: an entry identical to one an operator superseded stays out
while the entry that superseded it stays (``kept_superseded``), and an entry that took over a
superseded entry's intent keeps that intent even though its file does not name it. ``restore``
undoes both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from retrieval.entry import KBEntry

#: Where an entry came from (the ``source`` column of its table): the shipped starter, or an
#: operator (a file, the review queue, a sync).
STARTER, OPERATOR = "starter", "operator"
SOURCES = (STARTER, OPERATOR)


@dataclass(frozen=True)
class SupersededEntry:
    """An entry taken out of the live knowledge base because ``superseded_by`` replaced it.

    ``moved_intent`` is the intent the superseding entry took over from it (restoring gives it back);
    ``source`` where the entry came from (:data:`STARTER` or :data:`OPERATOR`), which it has again
    once restored.
    """

    entry: KBEntry
    superseded_by: str
    at: str
    reason: str = ""
    moved_intent: str | None = None
    source: str = OPERATOR

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.entry.id,
            "superseded_by": self.superseded_by,
            "at": self.at,
            "reason": self.reason,
            "moved_intent": self.moved_intent,
            "source": self.source,
            "entry": self.entry.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SupersededEntry:
        """The inverse of :meth:`to_dict` (a record without ``source``, written before it was kept,
        is an operator's). Raises ``KeyError``/``TypeError``/``ValueError`` for a malformed dict."""
        source = str(data.get("source") or OPERATOR)
        if source not in SOURCES:
            raise ValueError(f"unknown entry source {source!r}")
        return cls(
            KBEntry.from_dict(data["entry"]),
            str(data["superseded_by"]),
            str(data["at"]),
            str(data.get("reason") or ""),
            data.get("moved_intent"),
            source,
        )


@dataclass(frozen=True)
class SourceChange:
    """An entry that stays whose source a sync changes (:data:`STARTER` or :data:`OPERATOR`): one
    word for word the shipped starter's becomes the starter's again, one of the starter's the file
    rewrites becomes the bank's. Its text may be unchanged: then this is all the sync does to it."""

    entry_id: str
    old: str
    new: str

    def to_dict(self) -> dict[str, str]:
        """``{"id", "from", "to"}``, a source named as ``teller kb list`` names it (starter, bank)."""
        return {"id": self.entry_id, "from": source_name(self.old), "to": source_name(self.new)}


def source_name(source: str) -> str:
    """A source as operators read it (``teller kb list``): ``starter`` or ``bank``."""
    return "starter" if source == STARTER else "bank"


@dataclass
class SyncPlan:
    """What making the knowledge base exactly a file does, by entry id (file order; removals in key
    order). ``kept_superseded``: entries of the file an operator superseded, which stay out.
    ``entries`` are the entries the knowledge base will hold (recorded decisions applied);
    ``sources`` the entries that stay whose source changes (updated or not), and ``source_after``
    each entry's source after the sync."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    kept_superseded: list[str] = field(default_factory=list)
    sources: list[SourceChange] = field(default_factory=list)
    entries: list[KBEntry] = field(default_factory=list, repr=False)
    source_after: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def changes(self) -> bool:
        return bool(self.added or self.updated or self.removed or self.sources)

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "updated": self.updated,
            "removed": self.removed,
            "unchanged": self.unchanged,
            "kept_superseded": self.kept_superseded,
            "sources": [change.to_dict() for change in self.sources],
        }


@dataclass(frozen=True)
class EntryOverlap:
    """An incoming entry and the existing entry most like it (:meth:`KnowledgeBase.overlaps`), or,
    from :meth:`KnowledgeBase.overlaps_within`, an earlier entry of the same incoming list.

    ``score = (2 * question_score + answer_score) / 3``: ``question_score`` is the best cosine
    between a phrasing of each, ``answer_score`` the cosine of the two answers; ``question`` and
    ``matched`` are the phrasings of that best pair.
    """

    entry_id: str
    existing_id: str
    score: float
    question_score: float
    answer_score: float
    question: str
    matched: str
