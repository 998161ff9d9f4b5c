"""The review queue: what Teller may have got wrong, merged, with a suggestion, for operators to settle.

:meth:`ReviewService.refresh` files replies from the conversation log: answers a customer marked not
helpful, answers an operator flagged, handoffs, clarify turns and intent answers below
``review_confidence``. Customer texts that are the same once normalised (case, punctuation, digits,
spacing) or nearly so (difflib ratio >= 0.9) are one item, which keeps every reply and reason. Each
new item gets a suggestion from the current policy: the best knowledge-base entry when the policy
answers it from the FAQ, else the classifier's top intent.

Operators settle items: confirm the suggestion, choose another intent, replace a wrong answer with a
new knowledge-base entry (searchable at once, no retraining), or ignore. The first three store a
correction, which every running server answers with at once (:mod:`bot.corrections`); a newer
correction for the same text supersedes the older one, which is kept. A correction to an intent
makes Teller propose the stored customer messages most likely to share that need
(:meth:`ReviewService.propose`), which operators confirm or reject in bulk
(:meth:`ReviewService.decide_proposals`): confirmed ones become corrections too, recording the
correction they were proposed from. Items
already settled absorb later automatic signals for the same text (the model says the same thing
until it is retrained); a customer's "not helpful" or an operator's flag always surfaces in an open
item.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache

from bot.choices import ChoiceKind, is_choice, kind_of
from bot.corrections import Spreader
from bot.errors import ConfigError, InputError
from bot.knowledge import KnowledgeAdmin, Overlap
from bot.operators import Actor, Operators
from bot.policy import CORRECTION_RULE, OPERATOR_TAG, PERSON_RULE, AnswerPolicy, Route
from bot.storage import (
    HUMAN_ROUTE,
    Correction,
    CorrectionAction,
    Decided,
    Flag,
    NewCorrection,
    Proposal,
    ProposalStatus,
    ReviewCandidate,
    ReviewItem,
    ReviewReason,
    ReviewSource,
    ReviewStatus,
    Store,
    Suggestion,
    SuggestionKind,
)
from nlu.corrections import canonical
from retrieval.entry import MAX_ANSWER_CHARS, MAX_QUESTION_CHARS, MAX_QUESTIONS, KBEntry, slugify
from retrieval.knowledge_base import KnowledgeBase

log = logging.getLogger(__name__)

OPEN = ReviewStatus.OPEN
#: Reasons that need a person (their verdict, or an answer the customer never got); they always
#: reach an open item.
EXPLICIT_REASONS = frozenset({ReviewReason.NOT_HELPFUL, ReviewReason.FLAGGED, ReviewReason.UNDELIVERED})
#: Texts at least this similar (difflib ratio, after normalising) are one item.
SAME_TEXT_RATIO = 0.9
#: A new text is compared with at most this many open items, and as many settled ones, of a length
#: that can be that similar (the newest of each; an item with the same text always): filing stays
#: bounded as the queue's history grows (:meth:`bot.storage.review.ReviewRepository.keys_like`).
#: At 20,000 items one look-up took 23 ms in SQL and 20 ms comparing (1,000: 34 + 40 ms; reading
#: and comparing every item, as before: 220-315 + 340-720 ms), 2 cores, SQLite, 2026-12-01.
MATCH_LIMIT = 500
# OPERATOR_TAG (bot.policy) tags the knowledge-base entries operators write through the review queue;
# it is defined with the policy, which never offers them as suggestions (their phrasings are customers').

_DIGITS = re.compile(r"\d+")
_PUNCTUATION = re.compile(r"[^\w\s]|_")


def normalise(text: str) -> str:
    """Case-folded, digits as ``0``, punctuation as spaces, spaces collapsed."""
    folded = _PUNCTUATION.sub(" ", _DIGITS.sub("0", text.casefold()))
    return " ".join(folded.split())


#: Above this many characters (either text) :func:`similarity` compares word shingles, not characters.
LONG_TEXT = 400


@lru_cache(maxsize=4096)
def _shingles(text: str) -> frozenset[tuple[str, ...]]:
    words = text.split()
    return frozenset(tuple(words[i : i + 3]) for i in range(max(1, len(words) - 2)))


def similarity(a: str, b: str) -> float:
    """How alike two normalised texts are, in ``[0, 1]`` (1.0 when equal): difflib's ratio, or for a
    text over :data:`LONG_TEXT` characters the Jaccard index of their word trigrams (linear time: the
    ratio is quadratic, about 0.6 s for two texts of 4,000 characters, and a burst of long messages
    stalled the ops desk's worker for minutes). A few words changed in a long text keep it above
    :data:`SAME_TEXT_RATIO`; texts sharing their vocabulary but not their sentences fall far below."""
    if a == b:
        return 1.0
    if max(len(a), len(b)) > LONG_TEXT:
        if min(len(a), len(b)) < SAME_TEXT_RATIO * max(len(a), len(b)):
            return 0.0
        x, y = _shingles(a), _shingles(b)
        return len(x & y) / len(x | y)
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    if matcher.real_quick_ratio() < SAME_TEXT_RATIO or matcher.quick_ratio() < SAME_TEXT_RATIO:
        return 0.0
    return matcher.ratio()


def same_text(a: str, b: str) -> bool:
    """Whether two normalised texts count as the same question: alike (:func:`similarity`), or the
    same once canonical (:func:`nlu.corrections.canonical`: greetings and thanks around them,
    digits, punctuation), as the answer policy matches a correction to a message. Without the
    second, "can I use my card in a shop abroad" and "hi, can i use my card in a shop abroad please"
    were two corrections in force, answered by the newer and both trained on (a reviewer's)."""
    return similarity(a, b) >= SAME_TEXT_RATIO or canonical(a) == canonical(b)


#: Told to an operator whose flag filed no review item (:class:`FlagResult` without one).
NOTHING_TO_REVIEW = (
    "the reply answered no question the model read (a request for a person pressed with nothing typed "
    "before it, or words said during a handoff), so there is nothing to correct in the review queue"
)


@dataclass(frozen=True)
class FlagResult:
    """A flag and the open review item its reply is filed under; no item when the reply answered no
    question a person could correct (:data:`NOTHING_TO_REVIEW`)."""

    flag: Flag
    item: ReviewItem | None


@dataclass(frozen=True)
class Resolution:
    """What settling an item did: the item, its correction (and what that superseded), a new KB
    entry and, for that entry, what Teller already answers that it overlaps
    (:meth:`bot.knowledge.KnowledgeAdmin.check`: reported, never acted on)."""

    item: ReviewItem
    correction: Correction | None = None
    superseded: tuple[int, ...] = ()
    kb_entry: KBEntry | None = None
    overlaps: tuple[Overlap, ...] = ()

    @property
    def not_applied(self) -> str | None:
        """Why the correction does not take effect now, for an intent no knowledge-base entry
        answers (a trial's finding: it was recorded and did nothing, without a word); else None."""
        c = self.correction
        if c is None or not c.label or c.kb_id is not None:
            return None
        return (
            f"no knowledge-base entry answers intent {c.label} now, so this correction does not apply "
            f"until one does (`teller kb restore` the entry that answered it, or `teller kb add` one "
            f"with intent {c.label})"
        )


@dataclass
class _Group:
    """Candidates bound for one item (an existing one, or one to create)."""

    key: str
    text: str
    route: str | None
    sources: list[ReviewSource] = field(default_factory=list)
    item_id: int | None = None


class ReviewService:
    """The review queue over a store, the current policy and the knowledge base. Thread-safe.

    ``policy_provider`` returns the policy in use (the model can be swapped while serving);
    ``kb`` defaults to that policy's knowledge base, which is what makes a corrected answer
    retrievable by the running policy at once.
    """

    def __init__(
        self,
        store: Store,
        policy_provider: Callable[[], AnswerPolicy],
        kb: KnowledgeBase | None,
        operators: Operators,
        review_confidence: float = 0.6,
    ) -> None:
        self.store = store
        self.policy_provider = policy_provider
        self._kb = kb
        self.operators = operators
        self.review_confidence = review_confidence
        self._lock = threading.RLock()
        self.spreader = Spreader(store, policy_provider)
        #: Called with every correction stored through this service (an item settled, a proposal
        #: confirmed): the server refreshes its override memory, the ops desk posts proposals.
        self.on_correction: list[Callable[[Correction], object]] = []

    @property
    def kb(self) -> KnowledgeBase:
        return self._kb if self._kb is not None else self.policy_provider().kb

    # ------------------------------------------------------------------------------------ reading

    def items(self, status: ReviewStatus | None = OPEN) -> list[ReviewItem]:
        """Items with ``status`` (None: all), oldest first."""
        return self.store.review.items(status)

    def item(self, item_id: int) -> ReviewItem:
        return self.store.review.item(item_id)

    def labels(self) -> list[str]:
        """The intents the current classifier knows."""
        return list(self.policy_provider().classifier.labels)

    def corrections(self, accepted_only: bool = True) -> list[Correction]:
        """Corrections, newest first: what retraining needs (text, label, author, created_at).

        ``accepted_only`` keeps the ones in force, i.e. not superseded by a newer correction of the
        same text; with False, superseded ones are included and say what superseded them. A
        correction with ``label`` None replaced a wrong answer with a knowledge-base entry.
        """
        return self.store.feedback.corrections(current_only=accepted_only)

    def training_examples(self) -> list[tuple[str, str]]:
        """``(text, intent)`` of every correction in force that names an intent, oldest first."""
        return [(c.text, c.label) for c in reversed(self.corrections()) if c.label is not None]

    # ------------------------------------------------------------------------------------ filing

    def refresh(self, since: str | None = None) -> list[ReviewItem]:
        """File new qualifying replies (since ``since``, ISO time; default all) into the queue, and
        renew the suggestions of open items made by another model. Idempotent. Returns the items
        created or grown."""
        with self._lock:
            touched = self._file(self.store.review.candidates(self.review_confidence, since=since))
            self._renew_suggestions()
            items = self.store.review.items(status=None)
        return [i for i in items if i.id in touched]

    def file_reply(self, reply_id: str) -> list[ReviewItem]:
        """File one reply now if it qualifies (not helpful, flagged, undelivered, handoff, clarify, low
        confidence); returns the items created or grown (none when it does not qualify)."""
        with self._lock:
            touched = self._file(self.store.review.candidates(self.review_confidence, reply_id=reply_id))
        return [self.store.review.item(i) for i in sorted(touched)]

    def _file(self, candidates: Sequence[ReviewCandidate]) -> set[int]:
        by_reply: dict[str, list[ReviewCandidate]] = {}
        for c in candidates:
            by_reply.setdefault(c.reply_id, []).append(c)
        if not by_reply:
            return set()
        existing: dict[int, _Group] = {}  # item id -> its group, shared by the texts that join it

        def known(key: str, settled: bool) -> list[_Group]:
            keys = self.store.review.keys_like(key, settled, SAME_TEXT_RATIO, MATCH_LIMIT)
            return [existing.setdefault(k.id, _Group(k.key, "", k.route, item_id=k.id)) for k in keys]

        new: list[_Group] = []
        for reply_candidates in by_reply.values():
            first = reply_candidates[0]
            text = self._question(first)
            key = normalise(text) if text is not None else ""
            if text is None or not key:
                continue
            explicit = any(c.reason in EXPLICIT_REASONS for c in reply_candidates)
            group = _match(key, known(key, settled=False)) or _match(key, new)
            if group is None and not explicit:
                group = _match(key, known(key, settled=True))
            if group is None:
                group = _Group(key, text, first.route)
                new.append(group)
            group.sources.extend(
                ReviewSource(c.reply_id, c.message_id, text, c.reason) for c in reply_candidates
            )
        touched: set[int] = set()
        for group in existing.values():
            if group.sources and group.item_id is not None:
                self.store.review.add_sources(group.item_id, group.sources)
                touched.add(group.item_id)
        for group, suggestion in zip(new, self._suggest([g.text for g in new]), strict=True):
            item_id = self.store.review.create(group.key, group.text, group.route, suggestion, group.sources)
            touched.add(item_id)
            log.info(
                "review_item_filed",
                extra={"fields": {"item": item_id, "reasons": sorted({s.reason for s in group.sources})}},
            )
        return touched

    def _question(self, candidate: ReviewCandidate) -> str | None:
        """The customer's question behind a reply: the message itself, or for a pressed button
        (a clarify choice, "talk to a person") the last typed message before it. An ``intent:`` or
        ``entry:`` value no recent answer offered was read as the words it is (:meth:`bot.core.
        TellerCore._decide`), and is the question itself (a review's finding: the queue filed the
        message before it, or nothing); an offered one's question is the one its offering answer
        answered."""
        conversations = self.store.conversations
        if not is_choice(candidate.text):
            return candidate.text
        if kind_of(candidate.text) in (ChoiceKind.INTENT, ChoiceKind.ENTRY):
            answer = conversations.offering_answer(candidate.message_id)
            if answer is None:
                return candidate.text
            # The question the offering answer answered: in a group, perhaps another member's (a
            # review's finding: the last message typed before the press could be anybody's).
            asked = (
                conversations.message(answer.reply_to)
                if answer.reply_to and conversations.exists(answer.reply_to)
                else None
            )
            if asked is not None and not is_choice(asked.text):
                return asked.text
        earlier = conversations.customer_messages_before(candidate.message_id)
        return next((m.text for m in earlier if not is_choice(m.text)), None)

    def _suggest(self, texts: Sequence[str]) -> list[Suggestion | None]:
        if not texts:
            return []
        policy = self.policy_provider()
        version = policy.classifier.version
        suggestions: list[Suggestion | None] = []
        signals = policy.signals(list(texts), reuse=True)
        # as the message is answered now, an operator's correction first (signals without vectors,
        # a stub's, are read without corrections)
        with contextlib.suppress(ConfigError):
            signals = policy.with_corrections(signals)
        for s in signals:
            try:
                decision = policy.decide(s)
            except ConfigError:  # an uncalibrated policy still has a classifier
                decision = None
            if decision is not None and decision.rule == PERSON_RULE:
                # The customer asked for a person (or complained): the handoff was the answer, and
                # the classifier's guess at such a message is no intent to confirm (a trial's
                # finding: one confirm turned every "I want to talk to a human" into an answer).
                suggestions.append(None)
            elif decision is not None and decision.rule == CORRECTION_RULE:
                # Answered as an operator corrected it: the classifier's own guess is what the
                # operator corrected away from, and confirming it would undo the correction (a
                # trial's finding). The operator chooses again.
                suggestions.append(None)
            elif decision is not None and decision.route is Route.FAQ and decision.kb_id is not None:
                score = next((h.score for h in s.hits if h.entry.id == decision.kb_id), None)
                intent = policy.kb.get(decision.kb_id).intent if decision.kb_id in policy.kb else None
                suggestions.append(Suggestion(SuggestionKind.KB, intent, decision.kb_id, score, version))
            else:
                p = s.prediction
                suggestions.append(Suggestion(SuggestionKind.INTENT, p.intent, None, p.confidence, version))
        return suggestions

    def _renew_suggestions(self) -> None:
        """Open items suggested by a model that is no longer in use get a fresh suggestion."""
        open_items = self.store.review.items(OPEN)
        if not open_items:
            return
        version = self.policy_provider().classifier.version
        stale = [i for i in open_items if i.suggestion is None or i.suggestion.model_version != version]
        for item, suggestion in zip(stale, self._suggest([i.text for i in stale]), strict=True):
            self.store.review.set_suggestion(item.id, suggestion)

    # ------------------------------------------------------------------------------------ acting

    def flag(self, message_id: str, reason: str | None, actor: Actor, source: str = "command") -> FlagResult:
        """An operator marks a reply as wrong (given the reply's id or the customer message's); it is
        filed in an open review item at once."""
        self.operators.require(actor.channel, actor.user_id, "flag answers")
        _, reply = self.store.conversations.exchange(message_id)
        flag = self.store.feedback.add_flag(reply.id, reason, str(actor), source)
        item = None
        # Words said during a handoff (Teller's warning about a secret, an operator's relay) answer
        # no question of the model's: nothing to label (a reviewer's finding: flagging the warning
        # filed the customer's relayed "my pin is [PIN]" with an intent to confirm).
        if reply.route != HUMAN_ROUTE:
            with self._lock:
                self._file(self.store.review.candidates(self.review_confidence, reply_id=reply.id))
            items = self.store.review.items(status=None, reply_id=reply.id)
            # A reply to a button pressed with no question typed before it (a first "Talk to a
            # person", Telegram's /human) files nothing either (a reviewer's finding: IndexError).
            item = next((i for i in reversed(items) if i.status == OPEN), None) or (
                items[-1] if items else None
            )
        log.info(
            "answer_flagged",
            extra={
                "fields": {
                    "message_id": reply.id,
                    "actor": str(actor),
                    "source": source,
                    "item": item.id if item is not None else None,
                }
            },
        )
        return FlagResult(flag, item)

    def confirm(self, item_id: int, actor: Actor) -> Resolution:
        """The suggestion was right: store it as the item's label."""
        self.operators.require(actor.channel, actor.user_id, "confirm review items")
        with self._lock:
            item = self._open_item(item_id)
            s = item.suggestion
            if self._asks_for_person(item.text):
                raise InputError(
                    f"review item {item_id} is a customer asking for a person (or unhappy): the handoff "
                    "was the answer, and a correction would stop such messages reaching anyone. Ignore "
                    "it, or choose an intent if the customer asked for something else"
                )
            if s is None or (s.intent is None and s.kb_id is None):
                raise InputError(f"review item {item_id} has no suggestion; choose an intent instead")
            # An intent's suggestion is answered by that intent's entry, looked up as `choose` does
            # (it was stored without one, and every confirm warned the correction did not apply).
            kb_id = s.kb_id
            if kb_id is None and s.intent is not None:
                entry = self.kb.for_intent(s.intent)
                kb_id = entry.id if entry else None
            correction = NewCorrection(
                item.text, item.key, CorrectionAction.CONFIRM, label=s.intent, kb_id=kb_id
            )
            return self._resolve(item, ReviewStatus.CONFIRMED, actor, s.intent or s.kb_id, correction)

    def _asks_for_person(self, text: str) -> bool:
        """Whether the policy in use hands ``text`` off because the customer asked for a person or
        complained (rule :data:`bot.policy.PERSON_RULE`, whatever an operator corrected since)."""
        policy = self.policy_provider()
        [signals] = policy.signals([text])
        try:
            return policy.decide(replace(signals, correction=None)).rule == PERSON_RULE
        except ConfigError:  # an uncalibrated policy: nothing to judge by
            return False

    def choose(self, item_id: int, intent: str, actor: Actor) -> Resolution:
        """The item is about ``intent`` (one of the classifier's labels), or is answered by the
        knowledge-base entry with that id (a live one: a trial could only write a copy of an entry's
        answer with ``wrong``, which then competed with the entry). Raises :class:`InputError` for
        anything else, with the nearest intents."""
        self.operators.require(actor.channel, actor.user_id, "choose intents")
        labels = self.labels()
        if intent not in labels and intent in self.kb:
            with self._lock:
                item = self._open_item(item_id)
                chosen = self.kb.get(intent)
                # its intent as the label (what a retrain learns) only when the intent is answered
                # with this very entry: else the correction would answer with the intent's entry
                answers = chosen.intent in labels and self.kb.for_intent(chosen.intent or "") == chosen
                label = chosen.intent if answers else None
                correction = NewCorrection(
                    item.text, item.key, CorrectionAction.CHOOSE, label=label, kb_id=chosen.id
                )
                return self._resolve(item, ReviewStatus.CHOSEN, actor, chosen.id, correction)
        if intent not in labels:
            close = difflib.get_close_matches(intent, labels, n=3, cutoff=0.5)
            known = ", ".join(labels[:10]) + (f" and {len(labels) - 10} more" if len(labels) > 10 else "")
            hint = f"; did you mean {', '.join(close)}?" if close else f"; the model knows {known}"
            raise InputError(f"unknown intent {intent!r} (and no knowledge-base entry has that id){hint}")
        with self._lock:
            item = self._open_item(item_id)
            entry = self.kb.for_intent(intent)
            correction = NewCorrection(
                item.text, item.key, CorrectionAction.CHOOSE, label=intent, kb_id=entry.id if entry else None
            )
            return self._resolve(item, ReviewStatus.CHOSEN, actor, intent, correction)

    def wrong_answer(
        self, item_id: int, corrected_answer: str, actor: Actor, check_overlaps: bool = True
    ) -> Resolution:
        """Teller's answer was wrong: ``corrected_answer`` becomes a knowledge-base entry for the
        item's texts (embedded and searchable at once) and the item's correction points to it. A
        text corrected this way before keeps its entry, whose answer is replaced.

        The entry is checked as ``teller kb add`` checks one (:meth:`KnowledgeAdmin.check`), and
        its overlaps come back in the resolution, only reported: the entry that answered wrongly
        is usually among them, and it still answers its own questions, so nothing is superseded
        here (``teller kb supersede`` does it when the two are one topic). Without
        ``check_overlaps``, none are looked for (:meth:`overlaps` does it later: a Slack form must
        be acknowledged within 3 seconds, and the check takes about one on two busy cores)."""
        self.operators.require(actor.channel, actor.user_id, "correct answers")
        answer = corrected_answer.strip()
        if not answer:
            raise InputError("the corrected answer is empty")
        if len(answer) > MAX_ANSWER_CHARS:
            raise InputError(
                f"the corrected answer has {len(answer):,} characters; the limit is {MAX_ANSWER_CHARS:,}"
            )
        with self._lock:
            item = self._open_item(item_id)
            kb = self.kb
            entry = self._write_entry(kb, item, answer)
            correction = NewCorrection(
                item.text, item.key, CorrectionAction.ANSWER, kb_id=entry.id, answer=answer
            )
            resolution = self._resolve(item, ReviewStatus.CORRECTED, actor, entry.id, correction)
        overlaps = self.overlaps(entry) if check_overlaps else ()
        return Resolution(resolution.item, resolution.correction, resolution.superseded, entry, overlaps)

    def overlaps(self, entry: KBEntry) -> tuple[Overlap, ...]:
        """What ``entry`` (in the knowledge base) overlaps among the other entries and the intents
        (the intents only when a model is loaded). A failed check is logged and reports nothing:
        the operator's entry stands."""
        kb = self.kb
        try:
            policy: AnswerPolicy | None = self.policy_provider()
        except Exception:  # no model yet: the entries alone are compared
            policy = None
        try:
            pool = [e for e in kb.entries() if e.id != entry.id]
            return tuple(KnowledgeAdmin(kb, policy).check([entry], pool))
        except Exception as exc:
            fields = {"entry": entry.id, "error": repr(exc)[:300]}
            log.error("review_overlap_check_failed", extra={"fields": fields})
            return ()

    def ignore(self, item_id: int, actor: Actor) -> Resolution:
        """Nothing to learn here; later automatic signals for the same text stay quiet."""
        self.operators.require(actor.channel, actor.user_id, "ignore review items")
        with self._lock:
            return self._resolve(self._open_item(item_id), ReviewStatus.IGNORED, actor, None, None)

    # ------------------------------------------------------------------------------------ helpers

    def _open_item(self, item_id: int) -> ReviewItem:
        item = self.store.review.item(item_id)
        if item.status != OPEN:
            # How to change what was decided (a reviewer found no way said): a settled item stays
            # settled, and a newer answer to the same question, flagged, files an item of its own.
            raise InputError(
                f"review item {item_id} is {item.status} already (by {item.resolved_by}); to answer its "
                "question otherwise, flag Teller's latest answer to it (`teller flag MESSAGE_ID`, or the "
                "flag reaction in Slack) and settle the new item that files"
            )
        return item

    def _resolve(
        self,
        item: ReviewItem,
        status: ReviewStatus,
        actor: Actor,
        resolution: str | None,
        correction: NewCorrection | None,
    ) -> Resolution:
        settled, stored, superseded = self.store.review.resolve(
            item.id, status, str(actor), resolution, correction, same_text
        )
        log.info(
            "review_item_settled",
            extra={
                "fields": {
                    "item": item.id,
                    "status": status,
                    "actor": str(actor),
                    "resolution": resolution,
                    "correction": stored.id if stored else None,
                    "superseded": superseded,
                }
            },
        )
        if stored is not None:
            self._corrected(stored)
        return Resolution(settled, stored, tuple(superseded))

    def _corrected(self, correction: Correction) -> None:
        for listener in list(self.on_correction):
            try:
                listener(correction)
            except Exception as exc:  # a listener's failure must not undo the operator's decision
                log.error(
                    "correction_listener_failed",
                    extra={"fields": {"correction": correction.id, "error": repr(exc)[:300]}},
                )

    # ------------------------------------------------------------------------------------ spreading

    def propose(self, correction_id: int) -> list[Proposal]:
        """Propose the stored customer messages most likely to share the need of correction
        ``correction_id`` (see :mod:`bot.corrections`); returns its open proposals, best first.
        Only a correction in force naming an intent, and not itself a confirmed proposal, spreads."""
        found = self.store.feedback.corrections(correction_id=correction_id)
        if not found:
            raise InputError(f"no correction #{correction_id}")
        correction = found[0]
        if correction.origin_id is not None:
            return []
        return self.spreader.propose(correction, normalise)

    def proposals(
        self, correction_id: int | None = None, status: ProposalStatus | None = ProposalStatus.OPEN
    ) -> list[Proposal]:
        """Proposals (open ones by default), by correction, best first."""
        return self.store.proposals.list(status, correction_id=correction_id)

    def decide_proposals(self, confirm: Sequence[int], reject: Sequence[int], actor: Actor) -> Decided:
        """Confirm and reject proposals at once: each confirmed one becomes a correction of its text
        (by ``actor``, now, from the correction it was proposed from) and takes effect at once; a
        proposal decided already (by another operator) is skipped. Raises :class:`InputError` for
        an id that is not a proposal, or one listed both ways."""
        self.operators.require(actor.channel, actor.user_id, "confirm proposals")
        both = set(confirm) & set(reject)
        if both:
            raise InputError(f"proposal {min(both)} is both confirmed and rejected")
        wanted = [*confirm, *reject]
        known = {p.id for p in self.store.proposals.list(None, ids=wanted)} if wanted else set()
        unknown = sorted(set(wanted) - known)
        if unknown:
            raise InputError(f"no proposal {unknown[0]}")
        with self._lock:
            decided = self.store.proposals.decide(confirm, reject, str(actor), same_text)
        log.info(
            "proposals_decided",
            extra={
                "fields": {
                    "actor": str(actor),
                    "confirmed": [p.id for p, _ in decided.confirmed],
                    "rejected": [p.id for p in decided.rejected],
                    "skipped": [p.id for p in decided.skipped],
                }
            },
        )
        for _, correction in decided.confirmed:
            self._corrected(correction)
        return decided

    def _write_entry(self, kb: KnowledgeBase, item: ReviewItem, answer: str) -> KBEntry:
        """Add (or, for a text corrected before, replace) the operator's knowledge-base entry."""
        previous = next(
            (
                c.kb_id
                for c in self.store.feedback.corrections(current_only=True)
                if c.action == CorrectionAction.ANSWER and c.kb_id in kb and same_text(c.key, item.key)
            ),
            None,
        )
        # A customer's message can be longer than a phrasing may be: its start is what the encoder reads.
        questions = [t[:MAX_QUESTION_CHARS].strip() for t in item.texts]
        if previous is not None:
            entry_id = previous
            questions = [*kb.get(previous).questions, *questions]
        else:
            # Named for the operator's answer, not the customer's words: an id is shown in logs,
            # receipts and the change log, which erasing the customer does not rewrite. Never an
            # existing entry's ("Yes." and "Yes!" are one slug): kb.add would replace that entry.
            base = f"op_{slugify(answer, 50)}"
            # nor a superseded one's, which its successor and the corrections pointing at it name
            taken = {record.entry.id for record in kb.superseded()}
            entry_id = base if base not in kb and base not in taken else f"{base}_{item.id}"
            n = 1
            while entry_id in kb or entry_id in taken:
                n += 1
                entry_id = f"{base}_{item.id}_{n}"
        # The newest phrasings win if there are more than an entry can hold.
        unique = list(dict.fromkeys(questions))[-MAX_QUESTIONS:]
        entry = KBEntry.build(entry_id, unique, answer, tags=[OPERATOR_TAG])
        kb.add([entry])
        return entry


def _match(key: str, groups: Sequence[_Group]) -> _Group | None:
    """The group with the same key, else the most similar one at or above the ratio."""
    exact = next((g for g in groups if g.key == key), None)
    if exact is not None:
        return exact
    scored = [(similarity(key, g.key), g) for g in groups]
    best = max(scored, key=lambda pair: pair[0], default=(0.0, None))
    return best[1] if best[0] >= SAME_TEXT_RATIO else None
