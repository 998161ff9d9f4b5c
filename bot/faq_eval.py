"""Does a bank's own FAQ answer its customers? One measurement, as a bank would meet it.

The knowledge base in use is copied to a scratch directory (the real one is never touched), the
bank's FAQ file is imported the way ``teller kb add`` imports it (overlaps checked, the newer entry
wins by default, :class:`bot.knowledge.KnowledgeAdmin`), the knowledge-base thresholds are re-fitted
as a running server would re-fit them (:func:`bot.assistant.follow_kb`), and every customer question
of the questions file is answered by the policy. Each answer is:

- **right**: answered (intent, FAQ or advice route) with the entry the question names;
- **wrong**: answered with another entry;
- **handed off**: anything else (a handoff, a clarifying question, small talk, the advice reply
  offering an adviser without an entry), which is not wrong but is a failure for a question the
  bank has answered. Of these, **suggested** counts the questions offered their entry among the
  best few to choose from (rule ``suggest``): the customer can still get the answer with one press,
  but it was not given.

The questions file is CSV with ``text`` and ``kb_id`` columns. A row whose ``kb_id`` is empty is a
question no entry of the FAQ answers ("tell me a joke", "what's my exact balance", a complaint),
which Teller should not answer from the FAQ; each such row is:

- **not answered**: handed off, clarified, small talk or the advice reply without an entry (as
  **handed off** above);
- **answered**: answered on one of the routes above (intent, FAQ or advice) with any entry.

The shares above (and retrieval top-1/top-5) are over the questions that name an entry only, so
adding such rows to a file does not move them; the empty-id rows get their own count and shares.
``teller eval --kb FILE --questions FILE`` prints the shares; the dev sets in
``tests/data/operator_faq`` (fictional banks, written independently of Teller's data) are measured
this way in the slow tests.
"""

from __future__ import annotations

import logging
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.choices import entry_of
from bot.errors import InputError
from bot.policy import AnswerPolicy, Decision, Route
from bot.settings import Settings
from nlu.data import read_rows
from nlu.errors import DataError
from nlu.typos import add_typos
from retrieval.entry import KBEntry
from retrieval.knowledge_base import copy_directory
from retrieval.loaders import load_entries

if TYPE_CHECKING:
    from bot.knowledge import ImportOutcome

ANSWERED = (Route.INTENT, Route.FAQ, Route.ADVICE)
#: The verdicts of a question no entry answers (an empty ``kb_id``): answered with an entry anyway,
#: or not (handed off, clarified, small talk).
NO_ENTRY_ANSWERED = "answered"
NO_ENTRY_NOT_ANSWERED = "not_answered"


@dataclass(frozen=True)
class Outcome:
    """One question and what Teller did with it."""

    text: str
    expected: str
    route: str
    kb_id: str | None
    rule: str
    #: "right", "wrong" or "handed_off"; for a question no entry answers (``expected`` empty),
    #: :data:`NO_ENTRY_ANSWERED` or :data:`NO_ENTRY_NOT_ANSWERED`.
    verdict: str
    reason: str = ""
    #: Handed off, but offered the expected entry to choose from (rule ``suggest``).
    suggested: bool = False


@dataclass
class FaqEvaluation:
    """Of the ``questions`` that name an entry: shares answered right, answered wrongly and handed
    off (each in [0, 1], summing to 1), and of those handed off after being offered their entry
    (``suggested``, part of ``handed_off``); ``by_rule`` counts them by ``verdict:rule``. These and
    the retrieval shares are None when no question names an entry.

    Of the ``no_entry_questions`` (an empty ``kb_id``: no entry answers them): shares answered from
    the FAQ anyway and not answered (summing to 1; None when there are none), counted by
    ``verdict:rule`` in ``no_entry_by_rule``.

    ``import_summary``: entries ``added`` and ``updated`` (counts), starter entries ``superseded``
    (``[old, new]`` pairs), and ``linked``, each of the file's entries that answers an intent once
    imported (declared in the file or taken over in the import) with that intent. ``outcomes``:
    every question, in the file's order. ``typos``: the seed of the typing mistakes put into the
    questions (:mod:`nlu.typos`), None: the questions as written."""

    questions: int
    right: float | None
    wrong: float | None
    handed_off: float | None
    suggested: float | None
    retrieval_top1: float | None
    retrieval_top5: float | None
    import_summary: dict[str, Any] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    by_rule: dict[str, int] = field(default_factory=dict)
    no_entry_questions: int = 0
    no_entry_answered: float | None = None
    no_entry_not_answered: float | None = None
    no_entry_by_rule: dict[str, int] = field(default_factory=dict)
    outcomes: list[Outcome] = field(default_factory=list)
    typos: int | None = None

    def to_dict(self, details: bool = False) -> dict[str, Any]:
        data = asdict(self)
        if not details:
            data.pop("outcomes")
        return data


def read_questions(path: str | Path, known: set[str]) -> list[tuple[str, str]]:
    """``(text, kb_id)`` rows of a questions CSV; a ``kb_id`` is an entry of the FAQ file, or empty
    (the cell blank or left out): a question no entry answers, which Teller should not answer from
    the FAQ (``kb_id`` ``""``).

    Raises :class:`InputError` naming the file and line for a missing column, an empty text or an
    unknown id.
    """
    try:
        read = read_rows(Path(path), ("text", "kb_id"))
    except DataError as exc:  # unreadable, a missing column, a row with more fields than the header
        raise InputError(str(exc)) from None
    rows = []
    for line, row in read:
        question, entry_id = row["text"].strip(), row["kb_id"].strip()
        if not question:
            raise InputError(f"{path}, line {line}: empty text")
        if entry_id and entry_id not in known:
            raise InputError(f"{path}, line {line}: kb_id {entry_id!r} is not an entry of the FAQ file")
        rows.append((question, entry_id))
    if not rows:
        raise InputError(f"{path}: no questions")
    return rows


def _verdict(decision: Decision, expected: str) -> str:
    """``expected``: the entry that answers the question, "" for none."""
    answered = decision.route in ANSWERED and decision.kb_id is not None
    if not expected:
        return NO_ENTRY_ANSWERED if answered else NO_ENTRY_NOT_ANSWERED
    if answered:
        return "right" if decision.kb_id == expected else "wrong"
    return "handed_off"


def _suggested(decision: Decision, expected: str) -> bool:
    return (
        bool(expected)
        and decision.route == Route.CLARIFY
        and any(entry_of(c.value) == expected for c in decision.choices)
    )


def evaluate_operator_faq(
    settings: Settings, kb_file: Path, questions_file: Path, typos: int | None = None
) -> FaqEvaluation:
    """Import ``kb_file`` into a copy of the knowledge base in use and answer ``questions_file``;
    with ``typos`` (a seed), the questions with typing mistakes put in (:func:`nlu.typos.add_typos`).

    Raises :class:`InputError` (bad questions file) or :class:`retrieval.errors.KBFormatError`
    (bad FAQ file) before anything is computed.
    """
    entries = load_entries(kb_file)
    questions = read_questions(questions_file, {e.id for e in entries})
    if typos is not None:
        questions = with_typos(questions, typos)
    # The scratch knowledge base's own events (imports, supersedes, re-fits) are not the real one's:
    # they stay out of the log, where an auditor would take them for real changes.
    logging.disable(logging.INFO)
    try:
        return replace(_evaluate(settings, entries, questions), typos=typos)
    finally:
        logging.disable(logging.NOTSET)


def with_typos(questions: list[tuple[str, str]], seed: int) -> list[tuple[str, str]]:
    """``(text, kb_id)`` questions with typing mistakes put into their texts (:func:`nlu.typos.add_typos`);
    the ids, an empty one too, as they were."""
    texts = add_typos([q for q, _ in questions], seed=seed)
    return [(t, e) for t, (_, e) in zip(texts, questions, strict=True)]


@contextmanager
def imported(settings: Settings, entries: list[KBEntry]) -> Iterator[tuple[AnswerPolicy, ImportOutcome]]:
    """The answer policy over a scratch copy of the knowledge base in use with ``entries`` imported
    as ``teller kb add`` imports them (the newer entry wins an overlap), its knowledge-base
    thresholds re-fitted; the copy is deleted on exit and never reaches other replicas."""
    from bot.assistant import build_policy, follow_kb, open_kb
    from bot.knowledge import KnowledgeAdmin

    with tempfile.TemporaryDirectory(prefix="teller-faq-eval-") as scratch:
        home = Path(scratch)
        open_kb(settings).close()
        copy_directory(settings.kb_dir, home / "kb")
        scratch_settings = settings.model_copy(
            update={"home": home, "cache": settings.cache_dir, "kb_replication": "off"}
        )
        kb = open_kb(scratch_settings)
        try:
            # The copy's fit is stale for the file about to be imported: fitted once, after it.
            policy = build_policy(scratch_settings, kb=kb, refit_kb=False)
            outcome = KnowledgeAdmin(kb, policy).import_entries(entries, on_overlap="newer")
            follow_kb(policy)
            yield policy, outcome
        finally:
            kb.close()


def _evaluate(settings: Settings, entries: list[KBEntry], questions: list[tuple[str, str]]) -> FaqEvaluation:
    with imported(settings, entries) as (policy, outcome):
        thresholds = policy.thresholds
        # Each of the file's entries that answers an intent once imported: declared in the file
        # or taken over in the import (``outcome.linked`` names only the latter); an intent the
        # model knows, and the one entry the policy answers it with.
        labels = set(policy.classifier.labels)
        answering = {
            e.id: intent
            for e in entries
            if e.id in policy.kb
            and (intent := policy.kb.get(e.id).intent) in labels
            and (chosen := policy.kb.for_intent(intent)) is not None
            and chosen.id == e.id
        }
        signals = policy.signals([q for q, _ in questions])
        decisions = [policy.decide(s) for s in signals]
    return replace(
        measure(questions, decisions, [[h.entry.id for h in s.hits] for s in signals]),
        import_summary={
            "added": len(outcome.added),
            "updated": len(outcome.updated),
            "unchanged": len(outcome.unchanged),
            "superseded": [list(p) for p in outcome.superseded],
            "linked": answering,
        },
        thresholds=thresholds.to_dict() if thresholds is not None else {},
    )


def _share(count: int, n: int) -> float | None:
    return count / n if n else None


def measure(
    questions: list[tuple[str, str]], decisions: list[Decision], ranked: list[list[str]]
) -> FaqEvaluation:
    """The figures of :class:`FaqEvaluation` (no import summary, no thresholds) for ``(text, kb_id)``
    ``questions`` (``kb_id`` "": no entry answers it), the policy's decision on each and the entry
    ids the search ranked for each, best first."""
    outcomes = [
        Outcome(
            text,
            expected,
            d.route.value,
            d.kb_id,
            d.rule,
            _verdict(d, expected),
            d.reason,
            suggested=_suggested(d, expected),
        )
        for (text, expected), d in zip(questions, decisions, strict=True)
    ]
    named = [(o, r) for o, r in zip(outcomes, ranked, strict=True) if o.expected]
    no_entry = [o for o in outcomes if not o.expected]
    verdicts = Counter(o.verdict for o in outcomes)
    n, m = len(named), len(no_entry)
    return FaqEvaluation(
        questions=n,
        right=_share(verdicts["right"], n),
        wrong=_share(verdicts["wrong"], n),
        handed_off=_share(verdicts["handed_off"], n),
        suggested=_share(sum(o.suggested for o, _ in named), n),
        retrieval_top1=_share(sum(bool(r) and r[0] == o.expected for o, r in named), n),
        retrieval_top5=_share(sum(o.expected in r[:5] for o, r in named), n),
        by_rule=dict(Counter(f"{o.verdict}:{o.rule}" for o, _ in named)),
        no_entry_questions=m,
        no_entry_answered=_share(verdicts[NO_ENTRY_ANSWERED], m),
        no_entry_not_answered=_share(verdicts[NO_ENTRY_NOT_ANSWERED], m),
        no_entry_by_rule=dict(Counter(f"{o.verdict}:{o.rule}" for o in no_entry)),
        outcomes=outcomes,
    )
