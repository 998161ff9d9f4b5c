"""The answer policy: one decision per customer message, with the reason for it.

Signals for a message:

- the intent classifier: top intent and its probability, the runner-up, and the cosine similarity
  of the nearest training example (low when the message is unlike anything Teller was trained on);
- the knowledge base: the best entries by sentence similarity, in particular the best *general*
  entry (one no intent covers) and how well the predicted intent's own entry matches;
- small talk and advice requests, by similarity to example phrasings.

The thresholds are calibrated on dev data (see :mod:`bot.calibration`) and stored with the model.
:func:`route_codes` is the same decision, vectorised, for calibration; a test keeps them equal.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from bot.errors import ConfigError
from bot.exemplars import ExemplarSet
from nlu import IntentClassifier, Prediction
from nlu.knn import Memory
from retrieval.entry import KBEntry
from retrieval.knowledge_base import Hit, KnowledgeBase

POLICY_FILE = "policy.json"
ADVICE_TAG = "advice"
#: The small-talk category of "let me talk to a person": handed off, not chatted about.
HUMAN_CATEGORY = "human"
HANDOFF_CHOICE = "handoff"


class Route(StrEnum):
    INTENT = "intent"
    FAQ = "faq"
    CLARIFY = "clarify"
    SMALLTALK = "smalltalk"
    ADVICE = "advice"
    HANDOFF = "handoff"


ROUTES = list(Route)


@dataclass(frozen=True)
class Thresholds:
    """Calibrated decision thresholds (similarities are cosines, confidences probabilities)."""

    smalltalk: float
    advice: float
    in_scope: float
    intent: float
    clarify_gap: float
    clarify_second: float
    faq: float
    #: How much closer a general entry must be than the nearest training example to take over.
    faq_margin: float
    #: A knowledge-base match good enough to answer a message the classifier does not take.
    faq_fallback: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass
class PolicyConfig:
    """What ``policy.json`` in a model artifact holds: thresholds and how they were calibrated."""

    thresholds: Thresholds
    calibration: dict[str, Any] = field(default_factory=dict)

    def save(self, directory: Path) -> Path:
        path = directory / POLICY_FILE
        staging = directory / f".{POLICY_FILE}.{os.getpid()}"
        payload = {"thresholds": self.thresholds.to_dict(), "calibration": self.calibration}
        staging.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        os.replace(staging, path)
        return path

    @classmethod
    def load(cls, directory: Path) -> PolicyConfig | None:
        path = directory / POLICY_FILE
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(Thresholds(**data["thresholds"]), data.get("calibration", {}))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path}: unreadable policy ({exc}); run `teller calibrate`") from None


@dataclass(frozen=True)
class Choice:
    """A button the customer can press instead of typing: ``value`` is what comes back."""

    label: str
    value: str


@dataclass(frozen=True)
class Signals:
    """Everything the decision looks at for one message."""

    text: str
    prediction: Prediction
    hits: list[Hit]
    smalltalk_category: str | None
    smalltalk_score: float
    advice_score: float
    #: The knowledge base has an answer for the predicted intent.
    intent_has_answer: bool = True
    #: Similarity of the nearest training example in the base encoder's space (the scope signal);
    #: without a base memory, the classifier's own nearest-example similarity.
    nearest: float = 0.0

    @property
    def top(self) -> Hit | None:
        return self.hits[0] if self.hits else None

    @property
    def general(self) -> Hit | None:
        """The best entry that no intent covers (and that is not advice)."""
        return next((h for h in self.hits if h.entry.intent is None and ADVICE_TAG not in h.entry.tags), None)

    @property
    def advice_hit(self) -> Hit | None:
        return next((h for h in self.hits if ADVICE_TAG in h.entry.tags), None)

    def features(self) -> dict[str, float]:
        p = self.prediction
        general, top = self.general, self.top
        return {
            "p1": p.confidence,
            "p2": p.alternatives[1][1] if len(p.alternatives) > 1 else 0.0,
            "nearest": self.nearest,
            "smalltalk": self.smalltalk_score,
            "advice": self.advice_score,
            "general": general.score if general else -1.0,
            "top": top.score if top else -1.0,
            "has_answer": 1.0 if self.intent_has_answer else 0.0,
            "wants_human": 1.0 if self.smalltalk_category == HUMAN_CATEGORY else 0.0,
        }


@dataclass(frozen=True)
class Decision:
    """What Teller replies, and why."""

    route: Route
    answer: str
    reason: str
    intent: str | None
    confidence: float
    kb_id: str | None = None
    choices: tuple[Choice, ...] = ()
    alternatives: tuple[tuple[str, float], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "route": self.route.value,
            "answer": self.answer,
            "kb_id": self.kb_id,
            "reason": self.reason,
            "choices": [asdict(c) for c in self.choices],
        }


def route_codes(f: dict[str, np.ndarray], t: Thresholds) -> tuple[np.ndarray, np.ndarray]:
    """``decide``, vectorised over feature arrays: the route (index into ``ROUTES``) of every message,
    and whether an FAQ answer is the best *general* entry (else it is the best entry overall)."""
    n = len(f["p1"])
    out = np.full(n, ROUTES.index(Route.HANDOFF))
    undecided = np.ones(n, dtype=bool)

    def assign(mask: np.ndarray, route: Route) -> np.ndarray:
        nonlocal undecided
        hit = undecided & mask
        out[hit] = ROUTES.index(route)
        undecided &= ~hit
        return hit

    in_scope = f["nearest"] >= t.in_scope
    chat = (f["smalltalk"] >= t.smalltalk) & (f["smalltalk"] > f["top"])
    assign(chat & (f["wants_human"] > 0), Route.HANDOFF)
    assign(chat, Route.SMALLTALK)
    assign(f["advice"] >= t.advice, Route.ADVICE)
    general = assign((f["general"] >= t.faq) & (f["general"] - f["nearest"] >= t.faq_margin), Route.FAQ)
    close = (f["p2"] >= t.clarify_second) & (f["p1"] - f["p2"] <= t.clarify_gap)
    assign(in_scope & close, Route.CLARIFY)
    assign(in_scope & (f["p1"] >= t.intent) & (f["has_answer"] > 0), Route.INTENT)
    assign(f["top"] >= t.faq_fallback, Route.FAQ)
    return out, general


def _decision(
    route: Route,
    answer: str,
    reason: str,
    prediction: Prediction,
    kb_id: str | None = None,
    choices: tuple[Choice, ...] = (),
) -> Decision:
    return Decision(
        route,
        answer,
        reason,
        prediction.intent,
        prediction.confidence,
        kb_id,
        choices,
        tuple(prediction.alternatives),
    )


class AnswerPolicy:
    """Decides how Teller answers; safe to share between threads."""

    def __init__(
        self,
        classifier: IntentClassifier,
        kb: KnowledgeBase,
        smalltalk: ExemplarSet,
        advice: ExemplarSet,
        thresholds: Thresholds | None = None,
        base_memory: Memory | None = None,
        k: int = 10,
    ) -> None:
        self.classifier = classifier
        self.base_memory = base_memory
        self.kb = kb
        self.smalltalk = smalltalk.embed_with(kb.embedder.embed)
        self.advice = advice.embed_with(kb.embedder.embed)
        self.thresholds = thresholds
        self.k = k

    # ---------------------------------------------------------------------------------- signals

    def signals(self, texts: Sequence[str]) -> list[Signals]:
        """Classifier, retrieval and exemplar evidence for each text (batched)."""
        if not texts:
            return []
        predictions = self.classifier.predict(list(texts))
        vectors = self.kb.embedder.embed(list(texts))
        hits = self.kb.search_vectors(vectors, self.k)
        small_cat, small_score = self.smalltalk.best(vectors)
        _, advice_score = self.advice.best(vectors)
        if self.base_memory is not None:
            nearest = self.base_memory.similarities(vectors).max(axis=1)
        else:
            nearest = np.array([p.nearest_similarity for p in predictions], dtype=np.float32)
        return [
            Signals(
                text,
                predictions[i],
                hits[i],
                small_cat[i],
                float(small_score[i]),
                float(advice_score[i]),
                self.kb.for_intent(predictions[i].intent) is not None,
                float(nearest[i]),
            )
            for i, text in enumerate(texts)
        ]

    # ---------------------------------------------------------------------------------- decision

    def answer(self, text: str) -> Decision:
        return self.decide(self.signals([text])[0])

    def answer_many(self, texts: Sequence[str]) -> list[Decision]:
        return [self.decide(s) for s in self.signals(texts)]

    def decide(self, s: Signals, thresholds: Thresholds | None = None) -> Decision:
        t = thresholds or self.thresholds
        if t is None:
            raise ConfigError("the answer policy has no thresholds; run `teller calibrate`")
        p = s.prediction
        f = s.features()
        in_scope = f["nearest"] >= t.in_scope
        scope = f"nearest training example {f['nearest']:.2f} {'≥' if in_scope else '<'} {t.in_scope:.2f}"

        if f["smalltalk"] >= t.smalltalk and f["smalltalk"] > f["top"]:
            category = s.smalltalk_category or "greeting"
            if category == HUMAN_CATEGORY:
                return _decision(
                    Route.HANDOFF,
                    self.smalltalk.replies[category],
                    f"customer asked for a person ({f['smalltalk']:.2f} ≥ {t.smalltalk:.2f})",
                    p,
                )
            return _decision(
                Route.SMALLTALK,
                self.smalltalk.replies[category],
                f"small talk ({category}) {f['smalltalk']:.2f} ≥ {t.smalltalk:.2f}",
                prediction=p,
            )
        if f["advice"] >= t.advice:
            hit = s.advice_hit
            if hit is not None and hit.score >= t.faq_fallback:
                return _decision(
                    Route.ADVICE,
                    hit.entry.answer,
                    f"advice request {f['advice']:.2f} ≥ {t.advice:.2f}; KB entry {hit.entry.id} "
                    f"{hit.score:.2f}",
                    kb_id=hit.entry.id,
                    choices=self._adviser_choices(),
                    prediction=p,
                )
            return _decision(
                Route.ADVICE,
                self.advice.replies["advice"],
                f"advice request {f['advice']:.2f} ≥ {t.advice:.2f}",
                choices=self._adviser_choices(),
                prediction=p,
            )
        general = s.general
        if general is not None and f["general"] >= t.faq and f["general"] - f["nearest"] >= t.faq_margin:
            return self._faq(
                general,
                f"KB entry {general.entry.id} {general.score:.2f} ≥ {t.faq:.2f}, closer than any training "
                f"example of an intent ({f['nearest']:.2f})",
                p,
            )
        if in_scope and f["p2"] >= t.clarify_second and f["p1"] - f["p2"] <= t.clarify_gap:
            first, second = p.alternatives[0][0], p.alternatives[1][0]
            a, b = self._label(first), self._label(second)
            return _decision(
                Route.CLARIFY,
                f"Did you mean “{a}” or “{b}”?",
                f"{first} {f['p1']:.2f} and {second} {f['p2']:.2f} are close; {scope}",
                choices=(
                    Choice(a, f"intent:{first}"),
                    Choice(b, f"intent:{second}"),
                    Choice("Something else", HANDOFF_CHOICE),
                ),
                prediction=p,
            )
        if in_scope and p.confidence >= t.intent:
            entry = self.kb.for_intent(p.intent)
            if entry is not None:
                return _decision(
                    Route.INTENT,
                    entry.answer,
                    f"intent {p.intent} {p.confidence:.2f} ≥ {t.intent:.2f}; {scope}",
                    kb_id=entry.id,
                    choices=self.feedback_choices(),
                    prediction=p,
                )
        top = s.top
        if top is not None and top.score >= t.faq_fallback:
            return self._faq(
                top, f"KB entry {top.entry.id} {top.score:.2f} ≥ {t.faq_fallback:.2f}; {scope}", p
            )
        return _decision(
            Route.HANDOFF,
            "I'm not sure I can answer that correctly, and I'd rather not guess. "
            "Would you like me to connect you with someone from our team?",
            f"no confident answer: intent {p.intent} {p.confidence:.2f}, {scope}, best KB match "
            f"{f['top']:.2f} < {t.faq_fallback:.2f}",
            choices=(Choice("Talk to a person", HANDOFF_CHOICE),),
            prediction=p,
        )

    def answer_for_intent(self, intent: str) -> Decision:
        """The answer to a chosen intent (a clarify button, or an operator's pick)."""
        entry = self.kb.for_intent(intent)
        if entry is None:
            raise ConfigError(f"no knowledge-base answer for intent {intent!r}")
        return Decision(
            Route.INTENT,
            entry.answer,
            f"customer chose {intent}",
            intent,
            1.0,
            entry.id,
            self.feedback_choices(),
        )

    # ---------------------------------------------------------------------------------- helpers

    def _faq(self, hit: Hit, reason: str, prediction: Prediction) -> Decision:
        return _decision(
            Route.FAQ,
            hit.entry.answer,
            reason,
            prediction,
            kb_id=hit.entry.id,
            choices=self.feedback_choices(),
        )

    def _label(self, intent: str) -> str:
        entry: KBEntry | None = self.kb.for_intent(intent)
        return entry.questions[0] if entry is not None else intent.replace("_", " ").rstrip("?").capitalize()

    def handoff(self, reason: str) -> Decision:
        """Hand the conversation to a person (the customer asked, or a button said so)."""
        return Decision(
            Route.HANDOFF,
            self.smalltalk.replies.get(HUMAN_CATEGORY, "I'll connect you with our team."),
            reason,
            None,
            1.0,
        )

    @staticmethod
    def feedback_choices() -> tuple[Choice, ...]:
        return (Choice("Helpful", "feedback:helpful"), Choice("Not helpful", "feedback:not_helpful"))

    @staticmethod
    def _adviser_choices() -> tuple[Choice, ...]:
        return (Choice("Book an adviser call", HANDOFF_CHOICE), *AnswerPolicy.feedback_choices())
