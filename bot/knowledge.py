"""Operators' knowledge-base changes: every new entry is checked against what Teller already answers.

A bank starts from the Lumen starter, from nothing or from its own file (``TELLER_KB_STARTER``),
then adds entries (``teller kb add``) or makes the knowledge base exactly a file (``teller kb
sync``). Either way each entry that is new, or whose phrasings changed, is checked two ways:

- **entry vs entry**: the existing entry most like it (:meth:`KnowledgeBase.overlaps`), scored
  ``(2 * q + a) / 3`` with ``q`` the best cosine between a phrasing of each and ``a`` the cosine of
  the two answers (all-MiniLM-L6-v2, the retrieval encoder);
- **entry vs intent**: the intent classifier reads the entry's phrasings; when it is confident
  and the phrasing is close to its training data, the entry is what that intent answers, and the
  intent's current answer entry (:meth:`KnowledgeBase.for_intent`) is what customers get today.
  An entry that names an intent in its file overlaps that intent's answer entry the same way;
- **within the file**: the checked entries against each other, scored as entry vs entry
  (:meth:`KnowledgeBase.overlaps_within`: each entry's most similar other entry, each pair once).
  Two entries of one file on one topic compete for the same customers; such a pair (sure, or the
  same question twice: :data:`WITHIN_FILE_SAME_QUESTION`) is only reported (``kind="import"``),
  with what would resolve it: merging the two, or ``teller kb supersede`` after the import.

**Resolution** (``on_overlap``): ``newer`` (the default) makes the operator's newer entry the one
customers get: it supersedes the overlapping entry (:meth:`KnowledgeBase.supersede`, recorded and
restorable) and takes over the intent that entry answered; an entry the classifier reads as an
intent nobody answers becomes that intent's answer (on ``add``; ``sync`` only suggests it, since a
synced file says exactly what each entry is). Only *sure* overlaps are acted on; *possible* ones
are reported with the command that would resolve them. ``keep`` keeps both (reported); ``ask``
puts each overlap to the operator: supersede, make the new entry the intent's answer (the old entry
stays as a general entry), or keep both. Entries of the same import never supersede each other (an
overlap between two is reported), and an entry that already answers another intent never takes one
over (reported as a conflict). Nothing is silently shadowed: every overlap found and what was done
is in the outcome.

**Thresholds, measured** (``python -m bot.overlap_eval`` reproduces this): two fictional banks'
FAQ files (``tests/data/operator_faq``: Harbour & Vale, UK, 53 entries; Cedar Mutual, a US credit
union, 51) were checked against the Lumen starter KB (141 entries) and the default model
(Banking77, 77 intents), and every bank entry's best matches labelled by hand
(``overlap_labels.csv``): 57 entries truly overlap 58 starter entries, i.e. customers asking the
new entry's question should get its answer instead of the old one's; 3 of those pairs share their
id (an import replaces those anyway), leaving 55. The thresholds were chosen on all 104 entries
(best recall at precision 0.9 for the sure tier, recall near 0.9 for the possible one); chosen on
Harbour & Vale alone they come out close (entry 0.69; intent p 0.70, nearest 0.85) and score
P 1.00 / R 0.40 on Cedar Mutual. With the thresholds below:

======================================  =========  ======  ==========================
tier                                    precision  recall  true of flagged (55 true)
======================================  =========  ======  ==========================
sure (acted on): entry >= 0.68, or         0.90     0.69    38 of 42
intent p >= 0.80 and nearest >= 0.75
sure + possible (entry >= 0.58)            0.74     0.87    48 of 65
======================================  =========  ======  ==========================

(Measured with the one entry bar of 0.68. Since, an overlap with a *starter* entry is acted on from
0.58, :data:`STARTER_SURE_SIMILARITY`, and only when the answers are at least 0.3 alike
(:data:`STARTER_SURE_ANSWER`): these pairs are all starter pairs, so the acted-on tier is
now the second row's, precision traded for recall because a starter answer given where the bank
wrote its own is the worse error; between two of the bank's own entries 0.68 still holds.)

Per bank, the sure tier is P 0.87 / R 0.84 on Harbour & Vale (British wording, like the starter)
and P 1.00 / R 0.50 on Cedar Mutual (American wording: "checking", "check", "ACH"). The intent
rule alone is P 0.95 / R 0.83 on the 23 true pairs whose old entry is an intent's answer.
Question-vs-answer similarity (the max with ``q``, whole answers or their sentences) did not help
(at equal recall, precision 0.84 fell to 0.79); the answer-vs-answer term did (F1 0.74 to 0.77
for entry pairs alone). Only the best existing entry per new entry counts as an entry overlap
(every pair above one threshold: P 0.68 at R 0.69). The false sure ones are near neighbours
("How do I pay in a cheque?" vs "How do I pay someone by cheque?"); the misses are vocabulary gaps
("automatic payment" vs "direct debit", "recurring transfer" vs "standing order", a bank's own
name in the question).
"""

from __future__ import annotations

import difflib
import logging
import math
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from bot.errors import InputError, TellerError
from retrieval.entry import KBEntry
from retrieval.knowledge_base import EntryVectors, KnowledgeBase
from retrieval.lifecycle import EntryOverlap, SourceChange, SupersededEntry

if TYPE_CHECKING:
    from bot.policy import AnswerPolicy
    from bot.storage import Correction
    from nlu import Prediction

log = logging.getLogger(__name__)

#: Entry-vs-entry score at which an overlap is sure (acted on by ``newer``), and possible (reported).
SURE_SIMILARITY = 0.68
POSSIBLE_SIMILARITY = 0.58
#: With a *starter* entry, an overlap is sure from the possible tier on: the shipped starter is a
#: fictional bank's content, and its answer reaching the bank's customers where the bank has written
#: its own on the topic is the worse error (the superseded entry stays restorable). Measured through
#: the whole policy (``teller eval --kb``, 2 cores, 2026-12-01), right / wrong at 0.68 -> 0.58:
#: Harbour & Vale 63.7 / 9.4 -> 63.3 / 9.8 %, Cedar Mutual 62.4 / 8.3 -> 63.8 / 7.3 %, Saltbush
#: Mutual 51 / 19 -> 53 / 17 %, and a fourth bank written by a reviewer after the choice (Rimu, New
#: Zealand, 47 entries, 159 questions) 45.3 / 15.1 -> 47.2 / 13.8 %; Banking77 dev with each bank's
#: FAQ loaded 91.8 / 91.5 / 92.0 -> 91.7 / 92.3 / 92.0 % right.
STARTER_SURE_SIMILARITY = POSSIBLE_SIMILARITY
#: ... and only when the two answers are at least this alike (cosine), at any score, and the same for
#: an entry the classifier reads as the intent a starter entry answers: a fresh-user trial saw an
#: entry take a starter entry's intent over at 0.58-0.61 with answers 0.09-0.42 alike, and a second
#: one "How do I change my PIN?" answered with mortgage rates replace ``change_pin`` (an intent
#: overlap, answers 0.06 alike) and a dark-mode answer replace the branch hours (0.68 and more,
#: answers 0.13). Measured through the whole policy (``teller eval --kb``, the four dev banks,
#: 2026-12-02): in the 0.58-0.68 band alone, 0.3 changed nothing (Harbour 66.9 / 7.8 %, Cedar 69.7 /
#: 4.1, Saltbush 63 / 11, Rimu 62.9 / 7.5 right / wrong) and 0.45 cost Cedar one right answer; at
#: every score and for intent overlaps, 0.3 cost Cedar that one answer (69.3 / 4.1 %), the others
#: unchanged.
STARTER_SURE_ANSWER = 0.3
#: Entry-vs-intent: the classifier's probability on a phrasing, and that phrasing's similarity to
#: its nearest training example in the base encoder's space (``Signals.nearest``, the scope signal).
INTENT_CONFIDENCE = 0.80
#: An entry filed under an intent the classifier gives at most this on each of its phrasings is
#: reported as possibly misfiled (a GIRO set-up entry under an unrecognised direct debit: 0.00; a
#: PayNow entry under ``transfer_into_account``: 0.001). None of the starter's 77 entries that answer
#: an intent is (the default model, 2026-12-04).
MISFILED_PROBABILITY = 0.05
INTENT_NEAREST = 0.75
#: Two entries of one file are reported in the possible tier only when their questions are at least
#: this alike (the same question twice, with different answers): one operator's file holds distinct
#: topics, and its possible pairs were noise. Of the 24 possible-tier pairs within the four dev
#: banks' files and a fifth bank's written by a trial (Karoo Mutual, 45 entries), none was one
#: topic (e.g. "How do I change or reset my card PIN?" ~ "What should I do if my card is lost or
#: stolen?", answers 0.71 alike); their questions were at most 0.72 alike (2026-12-05).
WITHIN_FILE_SAME_QUESTION = 0.85

OnOverlap = Literal["newer", "keep", "ask"]
ON_OVERLAP: tuple[OnOverlap, ...] = ("newer", "keep", "ask")
#: What the operator can choose for one overlap: supersede the old entry (the new one takes over its
#: intent), make the new entry the intent's answer (the old one stays, as a general entry), keep both.
Choice = Literal["supersede", "answer", "keep"]
#: ``ask`` mode's question: ``(new entry, overlap, allowed choices) -> choice``.
Chooser = Callable[[KBEntry, "Overlap", tuple[Choice, ...]], Choice]


@dataclass(frozen=True)
class Overlap:
    """A new entry and something Teller already answers.

    ``kind="entry"``: ``existing_id`` is the most similar existing entry (``intent``: the intent it
    answers, if any), ``score`` the similarity. ``kind="intent"``: the entry is what ``intent``
    answers (``score``: the classifier's probability, 1.0 when the file names the intent);
    ``existing_id`` is that intent's answer entry now, or ``None`` if it has none.
    ``kind="import"``: ``existing_id`` is an earlier entry of the same import (file order) most like
    this one, ``score`` the similarity as for ``"entry"``, ``intent`` ``None``; never acted on.
    """

    entry_id: str
    kind: Literal["entry", "intent", "import"]
    existing_id: str | None
    intent: str | None
    score: float
    sure: bool
    detail: str

    def describe(self) -> str:
        """One line for the operator, e.g. ``"`fee2` overlaps `fee` at 0.91"``."""
        if self.kind in ("entry", "import"):
            verb = "overlaps" if self.sure else "may overlap"
            also = f" (the answer of intent `{self.intent}`)" if self.intent else ""
            if self.kind == "import":
                also = ", another entry of this file,"
            return f"`{self.entry_id}` {verb} `{self.existing_id}`{also} at {self.score:.2f}"
        now = f"its answer is `{self.existing_id}`" if self.existing_id else "no entry answers it"
        verb = "is" if self.sure else "may be"
        return f"`{self.entry_id}` {verb} what intent `{self.intent}` answers ({self.score:.2f}; {now})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "entry": self.entry_id,
            "kind": self.kind,
            "existing": self.existing_id,
            "intent": self.intent,
            "score": round(self.score, 4),
            "sure": self.sure,
            "detail": self.detail,
        }


Action = Literal["superseded", "answers_intent", "kept", "reported", "ask", "skipped"]


@dataclass(frozen=True)
class Resolution:
    """What was (or, in a dry run, would be) done about one overlap, and why."""

    overlap: Overlap
    action: Action
    note: str

    def to_dict(self) -> dict[str, Any]:
        return {**self.overlap.to_dict(), "action": self.action, "note": self.note}


@dataclass
class ImportOutcome:
    """The result of :meth:`KnowledgeAdmin.import_entries` or :meth:`KnowledgeAdmin.sync`.

    Ids by what happened to them; ``superseded`` as ``(old id, new id)``; ``linked`` maps an entry to
    the intent it now answers; ``lost_intents``: intents that had an answer entry and have none
    after (the policy cannot answer them); ``applied`` is False for a dry run. ``overlaps`` (and
    ``resolutions``, one for each) include pairs of the import's own entries (``kind="import"``,
    always ``reported``); ``notes`` start with what reading the file found (an ignored column).
    """

    mode: Literal["add", "sync"]
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    kept_superseded: list[str] = field(default_factory=list)
    overlaps: list[Overlap] = field(default_factory=list)
    resolutions: list[Resolution] = field(default_factory=list)
    superseded: list[tuple[str, str]] = field(default_factory=list)
    linked: dict[str, str] = field(default_factory=dict)
    unlinked: list[str] = field(default_factory=list)
    lost_intents: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    applied: bool = False
    embedded: int = 0
    #: Entries in the knowledge base after the change (for a dry run: after it, were it applied).
    entries: int = 0
    #: Updated entries whose answer text changed (``updated`` also counts rephrasings, tags, …).
    answers_changed: list[str] = field(default_factory=list)
    #: Entries that stay and change source on a sync (the starter's or the bank's), updated or not.
    sources: list[SourceChange] = field(default_factory=list)
    #: Of ``updated``, the starter's untouched entries an ``add`` replaced because the file has an
    #: entry with the same id (the starter's text is not kept; a sync says so in ``sources``).
    starter_replaced: list[str] = field(default_factory=list)

    def audit_details(self) -> dict[str, Any]:
        """What the audit log keeps of an applied change (``kb.change``): entry ids only, no text.
        ``intents`` says which intent's answer changed hands (``from`` one entry, or none, ``to``
        another); ``answers_changed``, which existing entries got a new answer text; ``sources``,
        which entries became the starter's or the bank's (``{"id", "from", "to"}``)."""
        moves = [
            {"intent": r.overlap.intent, "from": r.overlap.existing_id, "to": r.overlap.entry_id}
            for r in self.resolutions
            if r.action in ("superseded", "answers_intent") and r.overlap.intent
        ]
        moved = {(m["intent"], m["to"]) for m in moves}
        moves += [
            {"intent": intent, "from": None, "to": entry}
            for entry, intent in self.linked.items()
            if (intent, entry) not in moved
        ]
        return {
            "command": self.mode,
            "added": self.added,
            "updated": self.updated,
            "answers_changed": self.answers_changed,
            "sources": [change.to_dict() for change in self.sources],
            "removed": self.removed,
            "superseded": [{"id": old, "by": new} for old, new in self.superseded],
            "unlinked": self.unlinked,
            "intents": moves,
            "lost_intents": self.lost_intents,
            "entries": self.entries,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "applied": self.applied,
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "removed": self.removed,
            "kept_superseded": self.kept_superseded,
            "sources": [change.to_dict() for change in self.sources],
            "starter_replaced": self.starter_replaced,
            "overlaps": [r.to_dict() for r in self.resolutions],
            "superseded": [{"id": old, "by": new} for old, new in self.superseded],
            "linked": self.linked,
            "unlinked": self.unlinked,
            "lost_intents": self.lost_intents,
            "notes": self.notes,
            "embedded": self.embedded,
            "entries": self.entries,
        }


@dataclass
class Prepared:
    """An import or sync worked out against the knowledge base as it was, overlaps found (nothing
    changed yet): :meth:`KnowledgeAdmin.finish` previews or applies it."""

    mode: Literal["add", "sync"]
    entries: list[KBEntry]
    added: list[str]
    updated: list[str]
    unchanged: list[str]
    removed: list[str]
    kept_superseded: list[str]
    overlaps: list[Overlap]
    before: list[KBEntry]
    notes: list[str]
    sources: list[SourceChange] = field(default_factory=list)


@dataclass
class _Decisions:
    final: dict[str, KBEntry]
    resolutions: list[Resolution] = field(default_factory=list)
    #: (old id, new id, intent moved, reason)
    supersede: list[tuple[str, str, str | None, str]] = field(default_factory=list)
    unlink: list[str] = field(default_factory=list)


class KnowledgeAdmin:
    """The one entry point for operator changes to the knowledge base (CLI today; Slack or REST
    later): imports and syncs with overlap checks and their resolution.

    ``policy`` supplies the intent classifier; without one (no trained model; ``no_policy_reason``
    says why) only entry-vs-entry overlaps are checked, and the outcome says so.
    """

    def __init__(
        self, kb: KnowledgeBase, policy: AnswerPolicy | None = None, no_policy_reason: str | None = None
    ) -> None:
        self.kb = kb
        self.policy = policy
        self.no_policy_reason = no_policy_reason

    # ------------------------------------------------------------------------------------ commands

    def import_entries(
        self,
        entries: Iterable[KBEntry],
        on_overlap: OnOverlap = "newer",
        choose: Chooser | None = None,
        dry_run: bool = False,
        notes: Sequence[str] = (),
    ) -> ImportOutcome:
        """Add ``entries`` (an existing id is replaced) and resolve overlaps by ``on_overlap``.

        ``ask`` needs ``choose`` unless ``dry_run``; ``notes`` about the file go into the outcome
        (:meth:`prepare`). Raises :class:`RetrievalError` for an invalid entry or a repeated id
        (nothing changes), :class:`InputError` for a bad ``on_overlap``.
        """
        prepared = self.prepare("add", entries, notes)
        return self.finish(prepared, on_overlap, choose, dry_run)

    def sync(
        self,
        entries: Iterable[KBEntry],
        on_overlap: OnOverlap = "newer",
        choose: Chooser | None = None,
        dry_run: bool = False,
        notes: Sequence[str] = (),
    ) -> ImportOutcome:
        """Make the knowledge base exactly ``entries`` (adds, updates, removals), checking the added
        and rephrased entries against the entries that remain; otherwise as :meth:`import_entries`.
        Entries an operator superseded stay out while their successor is in the file
        (``kept_superseded``), so syncing the same file twice changes nothing the second time."""
        prepared = self.prepare("sync", entries, notes)
        return self.finish(prepared, on_overlap, choose, dry_run)

    def supersede(
        self, old_id: str, by_id: str, reason: str = "by an operator"
    ) -> tuple[SupersededEntry, list[str]]:
        """Supersede one entry by another by hand (a possible overlap the operator confirms): the
        new entry takes over the old one's intent if it answers none. Returns the record and the
        intents left without an answer entry. Raises :class:`EntryNotFoundError` for a missing id."""
        kb = self.kb
        kb.refresh()
        old, by = kb.get(old_id), kb.get(by_id)
        before = {e.intent for e in kb.entries() if e.intent}
        moved = old.intent if old.intent is not None and by.intent is None else None
        record = kb.supersede(old_id, by_id, reason, moved_intent=moved)
        return record, sorted(before - {e.intent for e in kb.entries() if e.intent})

    def check(
        self,
        entries: Sequence[KBEntry],
        pool: Sequence[KBEntry],
        claimed: dict[str, str] | None = None,
        vectors: EntryVectors | None = None,
    ) -> list[Overlap]:
        """The overlaps of ``entries`` with the ``pool`` of existing entries, sure ones first.

        ``claimed`` maps intents to entries of the same import that already answer them (such an
        intent is not reported again). ``vectors``: ``entries``' from
        :meth:`KnowledgeBase.embed_entries`, if already embedded.
        """
        if not entries or not pool:
            return self._intent_overlaps(entries, pool, claimed or {}) if entries else []
        pool_by_id = {e.id: e for e in pool}
        found = []
        for o in self.kb.overlaps(entries, POSSIBLE_SIMILARITY, among=list(pool_by_id), vectors=vectors):
            existing = pool_by_id[o.existing_id]
            detail = _similarity_detail(o)
            starter = self.kb.is_starter(existing.id)
            if starter:
                sure = o.score >= STARTER_SURE_SIMILARITY and o.answer_score >= STARTER_SURE_ANSWER
            else:
                sure = o.score >= SURE_SIMILARITY
            found.append(Overlap(o.entry_id, "entry", o.existing_id, existing.intent, o.score, sure, detail))
        # An entry overlap with the very entry an intent overlap names is one finding: merge them.
        for overlap in self._intent_overlaps(entries, pool, claimed or {}):
            same = next(
                (o for o in found if (o.entry_id, o.existing_id) == (overlap.entry_id, overlap.existing_id)),
                None,
            )
            if same is not None:
                found.remove(same)
                overlap = replace(
                    overlap, detail=f"{overlap.detail}; similarity {same.score:.2f}: {same.detail}"
                )
            found.append(overlap)
        order = {e.id: i for i, e in enumerate(entries)}
        return sorted(found, key=lambda o: (order[o.entry_id], not o.sure, -o.score))

    def check_within(self, entries: Sequence[KBEntry], vectors: EntryVectors | None = None) -> list[Overlap]:
        """The overlaps of ``entries`` (one import's checked entries) with each other, as
        ``kind="import"`` overlaps: for each entry the other one most like it, scored and tiered as
        an overlap with one of the bank's own existing entries, but reported only when sure (from
        ``SURE_SIMILARITY``) or when the two ask the same question
        (:data:`WITHIN_FILE_SAME_QUESTION`); each pair once, carried by its later entry, in file
        order. ``vectors`` as for :meth:`check`."""
        return [
            Overlap(
                o.entry_id,
                "import",
                o.existing_id,
                None,
                o.score,
                o.score >= SURE_SIMILARITY,
                _similarity_detail(o),
            )
            for o in self.kb.overlaps_within(entries, POSSIBLE_SIMILARITY, vectors=vectors)
            if o.score >= SURE_SIMILARITY or o.question_score >= WITHIN_FILE_SAME_QUESTION
        ]

    def prepare(
        self, mode: Literal["add", "sync"], entries: Iterable[KBEntry], notes: Sequence[str] = ()
    ) -> Prepared:
        """Work out an import (``add``) or a sync of ``entries`` and find the overlaps, changing
        nothing: with the existing entries and the intents (:meth:`check`), then among the checked
        entries themselves (:meth:`check_within`, after those). ``notes``: what reading the file
        found (:attr:`retrieval.loaders.LoadedFile.notes`), put first in the outcome's notes.
        Raises :class:`RetrievalError` for an invalid entry or a repeated id."""
        kb = self.kb
        incoming = kb.validate(entries)
        kb.refresh()
        before = kb.entries()
        live = {e.id: e for e in before}
        ids = {e.id for e in incoming}
        sources: list[SourceChange] = []
        if mode == "sync":
            plan = kb.plan_sync(incoming)
            target, kept_out, removed, sources = (
                plan.entries,
                plan.kept_superseded,
                plan.removed,
                plan.sources,
            )
        else:
            target, kept_out = kb.follow_decisions(incoming, staying=set(live) | ids)
            removed = []
        added = [e.id for e in target if e.id not in live]
        updated = [e.id for e in target if e.id in live and live[e.id] != e]
        unchanged = [e.id for e in target if live.get(e.id) == e]
        notes = list(notes)
        retired = {r.entry.id: r for r in kb.superseded()}
        for entry in target:
            record = retired.get(entry.id)
            if entry.id not in live and record is not None and record.entry != entry:
                # A trial's finding: the superseded record vanished from `kb list --superseded`
                # with nothing said (it is kept, hidden while the id is live).
                notes.append(
                    f"`{entry.id}` takes the id of an entry `{record.superseded_by}` superseded: that "
                    f"entry can be restored (`teller kb restore`) only once this `{entry.id}` is removed, "
                    f"and a suggestion of it pressed before is answered with this one"
                )
        # Checked: new or rephrased entries (this import). The pool they are checked against: the
        # other entries that stay, as they will be (entries of one import never supersede each other).
        checked = [e for e in target if e.id not in live or live[e.id].questions != e.questions]
        checked_ids = {e.id for e in checked}
        # Entries given another intent, their words unchanged: checked against the intent only (a
        # trial's finding: an update naming an intent another entry answers left both answering
        # it, unchecked; they stay in the pool, so an entry the operator kept beside one of them
        # is not superseded now).
        renamed = [
            e
            for e in target
            if e.intent and e.id in live and e.id not in checked_ids and e.intent != live[e.id].intent
        ]
        after = {e.id: e for e in before} if mode == "add" else {}
        after.update((e.id, e) for e in target)
        pool = [after[e.id] for e in before if e.id in after and e.id not in checked_ids]
        claimed = {e.intent: e.id for e in (*checked, *renamed) if e.intent}
        if self.policy is None:
            why = f" ({self.no_policy_reason})" if self.no_policy_reason else ""
            notes.append(f"entries were not checked against the intents: no intent model{why}")
        else:
            known = set(self.policy.classifier.labels)
            # New or rephrased entries, and entries whose intent changes (a sync's rephrasing-free
            # update too).
            named = [
                e for e in target if e.id in checked_ids or e.id not in live or live[e.id].intent != e.intent
            ]
            for entry in named:
                if entry.intent and entry.intent not in known:
                    close = difflib.get_close_matches(entry.intent.strip().lower(), sorted(known), n=1)
                    spelling = f"did you mean `{close[0]}`?" if close else "check the spelling"
                    notes.append(
                        f"`{entry.id}` names intent `{entry.intent}`, which the model does not know: it "
                        f"answers only as a knowledge-base entry ({spelling} or retrain)"
                    )
            notes += self._misfiled([e for e in named if e.intent in known])
        # Embedded once for both checks (the real encoder is the slow part of an import).
        vectors = self.kb.embed_entries(checked) if checked and (pool or len(checked) > 1) else None
        overlaps = self.check(checked, pool, claimed, vectors) + self.check_within(checked, vectors)
        for entry in renamed:
            overlaps += self._intent_overlaps([entry], [e for e in pool if e.id != entry.id], claimed)
        return Prepared(
            mode, target, added, updated, unchanged, removed, kept_out, overlaps, before, notes, sources
        )

    def _misfiled(self, entries: Sequence[KBEntry]) -> list[str]:
        """Notes on ``entries`` filed under an intent (new ones, or ones whose intent changes) whose
        phrasings the classifier gives the filed intent at most :data:`MISFILED_PROBABILITY` on each
        (it reads them as something else). An entry filed under an intent answers every question the
        classifier reads as that intent, so a careless file (a GIRO set-up entry under
        ``direct_debit_payment_not_recognised``, in a trial) answers the wrong customers. Reported,
        not refused: the bank may mean it."""
        assert self.policy is not None
        rows = [(e, q) for e in entries for q in e.questions]
        if not rows:
            return []
        classifier = self.policy.classifier
        predictions = classifier.predict([q for _, q in rows], top_k=len(classifier.labels))
        readings: dict[str, list[tuple[str, Prediction]]] = {}
        for (entry, question), prediction in zip(rows, predictions, strict=True):
            readings.setdefault(entry.id, []).append((question, prediction))
        notes = []
        for entry in entries:
            read = readings[entry.id]
            filed = [dict(p.alternatives).get(entry.intent or "", 0.0) for _, p in read]
            question, best = max(read, key=lambda r: r[1].confidence)
            if max(filed) <= MISFILED_PROBABILITY:
                notes.append(
                    f"`{entry.id}` is filed under intent `{entry.intent}`, but the classifier reads "
                    f"“{question}” as `{best.intent}` ({best.confidence:.2f}; `{entry.intent}` "
                    f"{max(filed):.2f} at most): it will answer every question read as "
                    f"`{entry.intent}`, so check the intent"
                )
        return notes

    def finish(
        self,
        prepared: Prepared,
        on_overlap: str = "newer",
        choose: Chooser | None = None,
        dry_run: bool = False,
    ) -> ImportOutcome:
        """Resolve the overlaps of ``prepared`` by ``on_overlap`` and apply it (or, ``dry_run``, only
        say what would be done). Raises :class:`TellerError` if the knowledge base changed since
        :meth:`prepare`, :class:`InputError` for a bad ``on_overlap`` or ``ask`` without ``choose``."""
        if on_overlap not in ON_OVERLAP:
            raise InputError(f"unknown --on-overlap {on_overlap!r}; use newer, keep or ask")
        if on_overlap == "ask" and choose is None and not dry_run:
            raise InputError("--on-overlap ask needs someone to ask (a terminal)")
        decisions = self._decide(prepared, on_overlap, None if dry_run else choose)
        incoming = {e.id: e for e in prepared.entries}
        outcome = ImportOutcome(
            prepared.mode,
            added=prepared.added,
            updated=prepared.updated,
            unchanged=prepared.unchanged,
            removed=prepared.removed,
            kept_superseded=prepared.kept_superseded,
            overlaps=prepared.overlaps,
            resolutions=decisions.resolutions,
            superseded=[(old, new) for old, new, _, _ in decisions.supersede],
            linked={
                e.id: e.intent
                for e in decisions.final.values()
                if e.intent and e.intent != incoming[e.id].intent
            },
            unlinked=decisions.unlink,
            notes=list(prepared.notes),
            sources=list(prepared.sources),
        )
        outcome.lost_intents = self._lost_intents(prepared, decisions)
        if prepared.mode == "add":
            outcome.starter_replaced = [i for i in prepared.updated if self.kb.is_starter(i)]
        was = {e.id: e for e in prepared.before}
        outcome.answers_changed = [i for i in prepared.updated if was[i].answer != incoming[i].answer]
        if dry_run:  # what the knowledge base would hold after it
            gone = len(prepared.removed) + len(outcome.superseded)
            outcome.entries = len(self.kb) + len(prepared.added) - gone
            return outcome
        self._apply(prepared, decisions, outcome)
        return outcome

    # ------------------------------------------------------------------------------------ internals

    def _decide(self, prepared: Prepared, on_overlap: str, choose: Chooser | None) -> _Decisions:
        decisions = _Decisions({e.id: e for e in prepared.entries})
        original = dict(decisions.final)
        handled: dict[str, str] = {}
        answered_by: dict[str, str] = {}  # intent -> entry of this import that took it over
        for overlap in prepared.overlaps:
            if overlap.kind == "import":  # entries of one import never supersede each other
                decisions.resolutions.append(Resolution(overlap, "reported", suggestion(overlap)))
                continue
            entry = decisions.final[overlap.entry_id]
            target = overlap.existing_id
            if target is not None and target in handled:
                decisions.resolutions.append(Resolution(overlap, "skipped", f"`{target}` {handled[target]}"))
                continue
            if target is not None and target in decisions.final:
                # An entry of this file that did not change (so not checked itself): the file keeps it.
                note = f"kept both: `{target}` is in this file too (entries of one file never supersede "
                note += "each other)"
                decisions.resolutions.append(Resolution(overlap, "kept", note))
                continue
            intent = overlap.intent
            options: tuple[Choice, ...] = ("supersede", "keep")
            if intent is not None:
                options = ("supersede", "answer", "keep") if target is not None else ("answer", "keep")
            choice: Choice | Literal["report", "ask"]
            if on_overlap == "keep":
                choice = "keep"
            elif on_overlap == "ask":
                choice = choose(entry, overlap, options) if choose is not None else "ask"
            elif not overlap.sure:
                choice = "report"
            elif target is None:
                choice = "answer" if prepared.mode == "add" else "report"
            else:
                choice = "supersede"
            if choice == "ask":
                decisions.resolutions.append(Resolution(overlap, "ask", "the operator will be asked"))
                continue
            if choice == "report":
                decisions.resolutions.append(Resolution(overlap, "reported", suggestion(overlap)))
                continue
            note = ""
            if choice == "keep":
                why = "--on-overlap keep" if on_overlap == "keep" else "operator's choice"
                note = f"kept both ({why})" if target is not None else f"left as is ({why})"
            elif intent is not None and entry.intent not in (None, intent):
                note = f"kept both: `{entry.id}` answers intent `{entry.intent}`, not `{intent}`"
            elif intent is not None and answered_by.get(intent, entry.id) != entry.id:
                note = f"kept both: `{answered_by[intent]}` of this import took over intent `{intent}`"
            if note:
                decisions.resolutions.append(Resolution(overlap, "kept", note))
                continue
            if intent is not None:
                decisions.final[entry.id] = replace(entry, intent=intent)
                answered_by[intent] = entry.id
            if choice == "supersede" and target is not None:
                what = f"intent {intent}" if overlap.kind == "intent" else "similar"
                reason = f"kb {prepared.mode}: {what} ({overlap.score:.2f})"
                # Only an intent the entry did not name itself moves (and goes back on restore).
                moved = intent if original[entry.id].intent is None else None
                decisions.supersede.append((target, entry.id, moved, reason))
                handled[target] = f"superseded by `{entry.id}`"
                took = f"; `{entry.id}` now answers intent `{intent}`" if intent else ""
                decisions.resolutions.append(
                    Resolution(overlap, "superseded", f"`{target}` superseded by `{entry.id}`{took}")
                )
            else:
                assert intent is not None
                if target is not None:
                    decisions.unlink.append(target)
                    handled[target] = f"no longer answers intent `{intent}`"
                kept = f"; `{target}` stays as a general entry" if target else ""
                decisions.resolutions.append(
                    Resolution(overlap, "answers_intent", f"`{entry.id}` now answers intent `{intent}`{kept}")
                )
        return decisions

    def _apply(self, prepared: Prepared, decisions: _Decisions, outcome: ImportOutcome) -> None:
        kb = self.kb
        kb.refresh()
        now = {e.id: e for e in kb.entries()}
        if [e.id for e in prepared.before] != list(now) or any(now[e.id] != e for e in prepared.before):
            raise TellerError(
                "the knowledge base changed while this was being prepared; run the command again"
            )
        final = list(decisions.final.values())
        if prepared.mode == "sync":
            # The sources as applied: an overlap's resolution (an intent taken over) can leave an
            # entry no longer word for word the starter's.
            outcome.sources = kb.sync(final).sources
        else:
            outcome.embedded = kb.add(final).embedded
        for old, new, intent, reason in decisions.supersede:
            kb.supersede(old, new, reason, moved_intent=intent)
        for entry_id in decisions.unlink:
            kb.add([replace(kb.get(entry_id), intent=None)])
        outcome.applied = True
        outcome.entries = len(kb)
        log.info(
            "kb_imported",
            extra={
                "fields": {
                    "mode": prepared.mode,
                    "added": len(outcome.added),
                    "updated": len(outcome.updated),
                    "removed": len(outcome.removed),
                    "overlaps": len(outcome.overlaps),
                    "superseded": outcome.superseded,
                    "linked": outcome.linked,
                }
            },
        )

    def _lost_intents(self, prepared: Prepared, decisions: _Decisions) -> list[str]:
        """Intents that had an answer entry before and have none after this change."""
        gone = {old for old, _, _, _ in decisions.supersede}
        after = {e.id: e for e in prepared.before if prepared.mode == "add"}
        after.update(decisions.final)
        for entry_id in decisions.unlink:
            after[entry_id] = replace(after[entry_id], intent=None)
        answered_after = {e.intent for i, e in after.items() if e.intent and i not in gone}
        answered_before = {e.intent for e in prepared.before if e.intent}
        return sorted(answered_before - answered_after)

    def _intent_overlaps(
        self, entries: Sequence[KBEntry], pool: Sequence[KBEntry], claimed: dict[str, str]
    ) -> list[Overlap]:
        found = []
        readings: dict[str, tuple[str, float, str, float]] = {}
        #: Per entry, the intents its phrasings are read as surely (the bars an intent overlap needs).
        read_as: dict[str, list[tuple[str, str]]] = {}
        if self.policy is not None:
            phrasings = [(e.id, q) for e in entries if e.intent is None for q in e.questions]
            signals = self.policy.signals([q for _, q in phrasings]) if phrasings else []
            for (entry_id, question), s in zip(phrasings, signals, strict=True):
                p = s.prediction
                if p.confidence < INTENT_CONFIDENCE or s.nearest < INTENT_NEAREST:
                    continue
                read_as.setdefault(entry_id, []).append((p.intent, question))
                if entry_id not in readings or p.confidence > readings[entry_id][1]:
                    readings[entry_id] = (p.intent, p.confidence, question, s.nearest)
        for entry in entries:
            if entry.intent is not None:
                reading = (entry.intent, 1.0, "", 1.0)
                detail = f"the file says it answers intent {entry.intent}"
            elif entry.id in readings:
                reading = readings[entry.id]
                score, question, nearest = reading[1:]
                detail = f"classifier {score:.2f} on “{question}”, nearest training example {nearest:.2f}"
            else:
                continue
            intent = reading[0]
            if claimed.get(intent, entry.id) != entry.id:
                continue  # another entry of this import answers it
            answer = _answer_entry(intent, pool)
            if answer is None and entry.intent is not None:
                continue  # it names an intent nobody else answers: nothing overlaps
            sure = True
            if answer is not None and entry.intent is None and self.kb.is_starter(answer.id):
                # Read as the starter's intent but answering something else: reported, not acted on.
                alike = self._answers_alike(entry, answer)
                sure = alike >= STARTER_SURE_ANSWER
                if sure:
                    detail += f"; answers {alike:.2f}"
                else:  # floored, so that a value just under the bar does not print as the bar
                    detail += (
                        f"; answers {math.floor(alike * 100) / 100:.2f}, under the "
                        f"{STARTER_SURE_ANSWER:.2f} a starter entry's intent needs to be taken over"
                    )
            others = [(i, q) for i, q in read_as.get(entry.id, []) if i != intent]
            if others and entry.intent is None:
                # One phrasing read surely as the intent, another as surely as a different one: the
                # entry is about more than that intent, and taking the intent over would answer its
                # customers with the entry (a trial's finding: "Do you charge for using my card
                # abroad? | What are the fees for spending in euros?" took over
                # `top_up_by_card_charge`). Reported only.
                sure = False
                detail += f"; “{others[0][1]}” reads as {others[0][0]}"
            found.append(
                Overlap(entry.id, "intent", answer.id if answer else None, intent, reading[1], sure, detail)
            )
        return found

    def _answers_alike(self, entry: KBEntry, other: KBEntry) -> float:
        """The cosine of two entries' answers (the retrieval encoder's unit vectors)."""
        vectors = self.kb.embedder.embed([entry.answer, other.answer])
        return float(vectors[0] @ vectors[1])


def _answer_entry(intent: str, pool: Sequence[KBEntry]) -> KBEntry | None:
    """:meth:`KnowledgeBase.for_intent` over ``pool`` (in key order): the entry with the intent's
    name as its id first, else the oldest linked one."""
    linked = [e for e in pool if e.intent == intent]
    return next((e for e in linked if e.id == intent), linked[0] if linked else None)


def _similarity_detail(o: EntryOverlap) -> str:
    return f"“{o.question}” ~ “{o.matched}” (questions {o.question_score:.2f}, answers {o.answer_score:.2f})"


def correction_suggestion(overlap: Overlap) -> str:
    """What to do about an overlap of an operator's corrected answer (``teller review wrong``), only
    reported: the entry that answered wrongly keeps answering its own questions."""
    new, old = overlap.entry_id, overlap.existing_id
    if overlap.kind == "entry" and old:
        return f"left as is: `{old}` still answers its own questions; if the two are one topic: " + (
            f"`teller kb supersede {old} --by {new}`"
        )
    if overlap.kind == "intent" and old:
        return f"left as is; to make `{new}` the intent's answer: `teller kb supersede {old} --by {new}`"
    return (
        f"left as is; to make `{new}` the answer of intent `{overlap.intent}`, give it `intent: "
        f"{overlap.intent}` in the knowledge-base file (`teller kb export`, then `teller kb sync`)"
    )


def suggestion(overlap: Overlap) -> str:
    """What resolves an overlap that is only reported, as a command or an edit for the operator."""
    if overlap.kind == "import":
        return (
            "both kept (entries of one file never supersede each other); if they answer the same "
            "question, merge them into one entry (the other's phrasings as more questions), or after "
            f"the import: `teller kb supersede {overlap.entry_id} --by {overlap.existing_id}`"
        )
    if overlap.kind == "entry" and overlap.existing_id:
        return (
            f"possible overlap, left as is; if it is one: "
            f"`teller kb supersede {overlap.existing_id} --by {overlap.entry_id}`"
        )
    return f"left as is; to make it the intent's answer, give `{overlap.entry_id}` intent `{overlap.intent}`"


@dataclass(frozen=True)
class NotApplied:
    """Why an operator's correction in force does not apply now: ``kind`` in a few words (a table's
    status: "intent unanswered", "intent not in model", "entry superseded", "entry removed"),
    ``reason`` in full."""

    kind: str
    reason: str


def unanswerable_corrections(
    kb: KnowledgeBase, corrections: Iterable[Correction], labels: Collection[str] | None = None
) -> dict[int, NotApplied]:
    """Why each correction in force (not superseded) among ``corrections`` cannot be answered with
    the knowledge base as it is now, by correction id: its entry was removed, no entry answers its
    intent, or (given the model in service's intents, ``labels``) the model has no such intent. The
    answer policy passes such a correction by (:meth:`bot.policy.AnswerPolicy.signals`,
    ``correction_answerable``) and answers the message as if it had none, so an operator is told
    rather than left reading "in force" (reviewers' findings after ``teller kb remove`` and after a
    model without some intents was activated)."""
    reasons = {}
    superseded = {r.entry.id: r.superseded_by for r in kb.superseded()}
    for c in corrections:
        if c.superseded:
            continue
        if c.label is not None:
            if labels is not None and c.label not in labels:
                reasons[c.id] = NotApplied(
                    "intent not in model", f"the model in service has no intent {c.label}"
                )
            elif kb.for_intent(c.label) is None:
                reasons[c.id] = NotApplied("intent unanswered", f"no entry answers intent {c.label} now")
        elif c.kb_id is not None and c.kb_id not in kb:
            by = superseded.get(c.kb_id)
            reasons[c.id] = (
                NotApplied(
                    "entry superseded",
                    f"entry {c.kb_id} is superseded by {by} (`teller kb restore` brings it back)",
                )
                if by is not None
                else NotApplied("entry removed", f"entry {c.kb_id} was removed")
            )
    return reasons
