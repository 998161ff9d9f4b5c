"""A knowledge-base entry: one answer, the questions it answers, and how it is filed."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import asdict, dataclass, field
from typing import Any

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
#: What an entry id looks like (letters, digits, ``_ . : -``, at most 128 characters).
ENTRY_ID_PATTERN = _ID
_SPACE = re.compile(r"\s+")
#: Phrasings per entry, and characters per phrasing: the encoder reads 128 tokens (about 500
#: characters of English) of a phrasing, so a longer one adds nothing but bulk.
MAX_QUESTIONS = 64
#: Tag of the entries operators write through the review queue (``teller review wrong``): their
#: phrasings are customers' own messages, written to answer those; searched with the starter's prior
#: (:data:`retrieval.knowledge_base.STARTER_PRIOR`), never shown as a suggestion's button.
OPERATOR_TAG = "operator"
MAX_QUESTION_CHARS = 500
#: Characters of an answer: two Telegram messages (4,096 each) less a margin for what a reply adds
#: around it (a clarifying lead-in, a handoff offer); the channels split a long answer at paragraph
#: breaks, but an answer longer than this is a document, not a reply. An entry with a longer answer
#: is refused (naming the entry and the limit).
MAX_ANSWER_CHARS = 8000
#: Answer passages embedded per entry (the whole answer and its sentences).
MAX_PASSAGES = 64
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9£$€])|\n\s*\n|\n\s*[-*•]\s+")


def clean(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


def answer_passages(answer: str) -> list[str]:
    """What of an answer is embedded for retrieval: the whole answer, then each sentence of it.

    A customer's question often matches one sentence of an answer ("can I switch to e-statements?"
    against "You can switch to e-statements under Settings > Documents.") better than the answer as
    a whole, whose vector averages every topic it touches. At most ``MAX_PASSAGES``.
    """
    whole = clean(answer)
    if not whole:
        return []
    sentences = [clean(s).lstrip("-*• ") for s in _SENTENCE_END.split(answer.strip())]
    sentences = [s for s in sentences if len(s) >= 12 and s != whole]
    return list(dict.fromkeys([whole, *sentences]))[:MAX_PASSAGES]


def slugify(text: str, max_length: int = 60) -> str:
    """A readable id from a question: ``"What's the overdraft fee?"`` -> ``"whats_the_overdraft_fee"``.
    A question with no Latin letter or digit ("如何开户", "???") gets ``entry_`` and the first 8 hex
    digits of the SHA-1 of its letters and digits (always the same for the same question, and two
    such questions do not share an id, as they did when each was ``entry``)."""
    slug = re.sub(r"[^a-z0-9]+", "_", text.lower().replace("'", "")).strip("_")
    if not slug:
        # Of its letters and digits, compatibility-folded, as a Latin slug ignores punctuation and
        # case: "如何开户" and "如何开户 ?" are one id.
        letters = "".join(ch for ch in unicodedata.normalize("NFKC", text).casefold() if ch.isalnum())
        return "entry_" + hashlib.sha1((letters or text.strip()).encode("utf-8")).hexdigest()[:8]
    return slug[:max_length].rstrip("_")


@dataclass(frozen=True)
class KBEntry:
    """An FAQ entry: the phrasings that retrieve it, its answer, and the intent it answers (if any)."""

    id: str
    questions: tuple[str, ...]
    answer: str
    intent: str | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)

    def problems(self) -> list[str]:
        """What is wrong with this entry (empty when it is valid)."""
        found = []
        if not _ID.match(self.id):
            shown = repr(self.id) if len(self.id) <= 80 else f"{self.id[:60]!r}… ({len(self.id)} characters)"
            found.append(f"invalid id {shown} (letters, digits, _ . : - only, at most 128)")
        if not self.questions or not all(q.strip() for q in self.questions):
            found.append("no question")
        if len(self.questions) > MAX_QUESTIONS:
            found.append(f"more than {MAX_QUESTIONS} questions")
        longest = max((len(q) for q in self.questions), default=0)
        if longest > MAX_QUESTION_CHARS:
            found.append(
                f"a question of entry {self.id!r} has {longest:,} characters; "
                f"the limit is {MAX_QUESTION_CHARS:,}"
            )
        if not self.answer.strip():
            found.append("empty answer")
        elif len(self.answer) > MAX_ANSWER_CHARS:
            found.append(
                f"the answer of entry {self.id!r} has {len(self.answer):,} characters; "
                f"the limit is {MAX_ANSWER_CHARS:,} (MAX_ANSWER_CHARS: two Telegram messages)"
            )
        return found

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["questions"] = list(self.questions)
        data["tags"] = list(self.tags)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KBEntry:
        """The inverse of :meth:`to_dict`. Raises ``KeyError``/``TypeError`` for a malformed dict."""
        return cls(
            str(data["id"]),
            tuple(str(q) for q in data["questions"]),
            str(data["answer"]),
            data.get("intent"),
            tuple(str(t) for t in data.get("tags") or ()),
        )

    @classmethod
    def build(
        cls,
        id: str,
        questions: list[str] | tuple[str, ...],
        answer: str,
        intent: str | None = None,
        tags: list[str] | tuple[str, ...] = (),
    ) -> KBEntry:
        """An entry with whitespace normalised, duplicate phrasings dropped and empty intent as None."""
        seen: dict[str, str] = {}
        for q in questions:
            q = clean(q)
            if q and q.casefold() not in seen:
                seen[q.casefold()] = q
        tag_list = tuple(dict.fromkeys(clean(t).lower() for t in tags if clean(t)))
        return cls(clean(id), tuple(seen.values()), answer.strip(), clean(intent or "") or None, tag_list)
