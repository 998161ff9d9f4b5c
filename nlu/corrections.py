"""Operator corrections: "this message means that intent", merged newest-wins per text; and the
corrections in force as a nearest-neighbour memory that answers them before any retrain.

:class:`CorrectionMemory` holds the corrections in force embedded by the base sentence encoder
(all-MiniLM-L6-v2, the retrieval encoder: the same vectors whatever intent model is served, so the
memory survives a model swap). A message matches a correction when its canonical form
(:func:`canonical`: case, punctuation, digits, spacing, greetings and thanks set aside) is the
corrected one's, or when their cosine similarity reaches :data:`OVERRIDE_SIMILARITY`.

:data:`OVERRIDE_SIMILARITY` is calibrated so that a correction cannot capture another intent's
question: among the 9,999 distinct messages of the vendored Banking77 train file
(``nlu/corpora/banking77/train.csv``, about 50 million pairs), embedded by that encoder, the most
similar pair with *different* intents has cosine 0.9854 ("How do I verify my identity?",
``verify_my_identity`` / "How to verify my identity", ``why_verify_identity``; the next are 0.9846
and 0.9838, "Where do I find my card PIN?" / "Where do I find PIN for my card?"): a correction
matching at 0.99 or above would have captured none of them. The figure is that highest
cross-intent similarity plus a margin of half a point, rounded up; :func:`cross_intent_ceiling`
recomputes it on any labelled set (the tests run it on their toy corpus). What it lets through,
measured on eight trivial rewrites of each of the 97 hand-written messages of
``nlu/data/correction_demo.csv``: all of those that add a greeting, a "please" or a "thanks",
change the casing, drop the punctuation or add question marks (by canonical form), and
40 % of those with one word inserted ("my" -> "my own"). A reworded paraphrase does not match:
spreading a correction to how other customers put the same need is what proposals and retraining
are for (:mod:`bot.corrections`).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from nlu.data import Example, normalize_text, text_key
from nlu.errors import DataError

#: Cosine similarity (base encoder) at which a message counts as nearly identical to a corrected
#: one; see the module docstring for how it was calibrated.
OVERRIDE_SIMILARITY = 0.99


@dataclass(frozen=True)
class Correction:
    """One operator's statement that ``text`` should be classified as ``label``."""

    text: str
    #: An intent name of the model.
    label: str
    author: str
    #: ISO 8601 time, e.g. ``2026-11-28T17:00:00Z``; a time without offset is taken as UTC.
    created_at: str
    #: Where the correction came from (e.g. the id of the flagged message), if anywhere.
    source_id: str | None = None

    @property
    def key(self) -> str:
        """The text as matched against other texts (whitespace collapsed, case folded)."""
        return text_key(self.text)

    def to_example(self) -> Example:
        return Example(normalize_text(self.text), self.label.strip())


def parse_time(value: str) -> datetime:
    """An ISO 8601 time as an aware datetime (UTC when no offset is given)."""
    try:
        moment = datetime.fromisoformat(value.strip())
    except (AttributeError, ValueError):
        raise DataError(f"created_at {value!r} is not an ISO 8601 time") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def merge_corrections(corrections: Sequence[Correction]) -> list[Correction]:
    """One correction per text: the newest (by ``created_at``, then by list order) wins.

    Texts are matched by :func:`canonical`, as the answer policy matches a correction to a message
    (a greeting, "please", digits or punctuation apart are the same question: two such corrections
    were both trained on, one of them against what was served). The winners keep their order in
    the input. Raises :class:`DataError` for an empty text or label or an unreadable time.
    """
    best: dict[str, tuple[datetime, int]] = {}
    for i, correction in enumerate(corrections):
        if not normalize_text(correction.text):
            raise DataError(f"correction {i + 1}: empty text")
        if not correction.label.strip():
            raise DataError(f"correction {i + 1}: empty intent for {correction.text[:40]!r}")
        try:
            rank = (parse_time(correction.created_at), i)
        except DataError as exc:
            raise DataError(f"correction {i + 1}: {exc}") from None
        key = canonical(correction.text)
        if key not in best or rank >= best[key]:
            best[key] = rank
    return [corrections[i] for i in sorted(i for _, i in best.values())]


def check_labels(corrections: Sequence[Correction], labels: Collection[str]) -> None:
    """Raise :class:`DataError` if a correction names an intent outside ``labels``."""
    unknown = sorted({c.label.strip() for c in corrections} - set(labels))
    if unknown:
        raise DataError(
            f"corrections name {len(unknown)} unknown intent(s): {', '.join(unknown[:5])}"
            f"{' ...' if len(unknown) > 5 else ''}; use the model's intent names"
        )


def as_examples(corrections: Sequence[Correction]) -> list[Example]:
    """The merged corrections as labelled examples."""
    return [c.to_example() for c in merge_corrections(corrections)]


# ------------------------------------------------------------------------------------ the memory

_DIGITS = re.compile(r"\d+")
_APOSTROPHES = re.compile("['`\u2019]")
_NON_WORD = re.compile(r"[^\w\s]|_")
#: Words around a question that do not change it: greetings before, thanks and "please" after.
_OPENERS = re.compile(
    r"^(?:(?:hi|hello|hey|hiya|good (?:morning|afternoon|evening)|dear (?:sir|madam|team)|excuse me"
    r"|please|pls|plz|um+|so|ok(?:ay)?)\b\s*)+"
)
_CLOSERS = re.compile(
    r"(?:\s*\b(?:please|pls|plz|thanks?(?: you)?(?: (?:so|very) much)?(?: in advance)?|thx|ty|cheers"
    r"|help(?: me)?|asap|urgently)\s*)+$"
)


def canonical(text: str) -> str:
    """A text as a correction matches it exactly: case-folded, digits as ``0``, punctuation as
    spaces, spacing collapsed, leading greetings and trailing thanks or "please" removed (a text
    that is nothing but those keeps them)."""
    folded = _APOSTROPHES.sub("", _DIGITS.sub("0", text.casefold()))
    folded = " ".join(_NON_WORD.sub(" ", folded).split())
    core = _CLOSERS.sub("", _OPENERS.sub("", folded)).strip()
    return core or folded


@dataclass(frozen=True)
class Override:
    """A correction in force as the answer policy applies it: this text is ``label`` (or is answered
    by knowledge-base entry ``kb_id``), said by ``author`` at ``created_at``."""

    id: int
    text: str
    label: str | None
    kb_id: str | None
    author: str
    created_at: str
    #: The correction it was proposed from (a confirmed proposal), if any.
    origin_id: int | None = None


@dataclass(frozen=True)
class OverrideMatch:
    override: Override
    #: Cosine similarity to the corrected text (1.0 for the same canonical text).
    similarity: float
    #: Whether the texts are the same once canonical.
    exact: bool


class CorrectionMemory:
    """Corrections in force and their base-encoder vectors (L2-normalised rows). Immutable."""

    def __init__(self, overrides: Sequence[Override], vectors: np.ndarray, head: str = "") -> None:
        if len(overrides) != len(vectors):
            raise ValueError("overrides and vectors differ in length")
        self.overrides = list(overrides)
        self.vectors = (
            np.ascontiguousarray(vectors, dtype=np.float32)
            if len(overrides)
            else np.zeros((0, 0), dtype=np.float32)
        )
        self.keys = [canonical(o.text) for o in self.overrides]
        self._by_key: dict[str, int] = {}
        for i, key in enumerate(self.keys):  # the newest correction of a canonical text wins
            if key not in self._by_key or self.overrides[i].id > self.overrides[self._by_key[key]].id:
                self._by_key[key] = i
        #: The store's signature of its corrections when the memory was read (:mod:`bot.corrections`).
        self.head = head

    def __len__(self) -> int:
        return len(self.overrides)

    def match(
        self, texts: Sequence[str], vectors: np.ndarray, stored: Sequence[str] | None = None
    ) -> list[OverrideMatch | None]:
        """For each text (and its base-encoder vector), the most similar correction: the one with the
        same canonical text, else the nearest by cosine (ties: the newest); None without corrections.
        ``stored``: each text as a correction's text would have been stored (e.g. with its personal
        data redacted), matched by canonical text too: a correction made from a message with a
        phone number in it is stored with the number hidden, and must still answer that message."""
        if not self.overrides or not len(texts):
            return [None] * len(texts)
        if stored is not None and len(stored) != len(texts):
            raise ValueError("stored and texts differ in length")
        sims = np.asarray(vectors, dtype=np.float32) @ self.vectors.T
        ids = np.array([o.id for o in self.overrides])
        out: list[OverrideMatch | None] = []
        for i, text in enumerate(texts):
            exact = self._by_key.get(canonical(text))
            if exact is None and stored is not None:
                exact = self._by_key.get(canonical(stored[i]))
            if exact is not None:
                out.append(OverrideMatch(self.overrides[exact], 1.0, True))
                continue
            best = max(range(len(ids)), key=lambda j: (round(float(sims[i, j]), 6), ids[j]))
            out.append(OverrideMatch(self.overrides[best], float(sims[i, best]), False))
        return out


def cross_intent_ceiling(vectors: np.ndarray, labels: Sequence[str], block: int = 2048) -> float:
    """The highest cosine similarity between two of ``vectors`` (L2-normalised rows) whose labels
    differ: the similarity at which a correction would first capture another intent's message."""
    targets = np.unique(np.asarray(labels), return_inverse=True)[1]
    vectors = np.asarray(vectors, dtype=np.float32)
    best = -1.0
    for start in range(0, len(vectors), block):
        sims = vectors[start : start + block] @ vectors.T
        sims[targets[start : start + block, None] == targets[None, :]] = -1.0
        best = max(best, float(sims.max()))
    return best
