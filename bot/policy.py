"""The answer policy: one decision per customer message, with the reason for it.

Signals for a message:

- the language it is written in (:mod:`nlu.language`): Teller serves English only;
- the intent classifier: top intent and its probability, the runner-up, and the cosine similarity
  of the nearest training example in the base encoder's space (low when the message is unlike
  anything Teller was trained on);
- the knowledge base: the best entries by fused lexical and semantic evidence
  (:mod:`retrieval.knowledge_base`), in particular the best *general* entry (one no intent covers);
- small talk, advice requests and information requests, by similarity to example phrasings;
- the operators' corrections in force: the corrected message nearest to it (:mod:`bot.corrections`),
  answered as the operator said when it is the same message or nearly.

The decision is :data:`RULES`, one ordered table: the first rule whose test holds decides the
route. Each test is written once, over arrays of features, so the same code decides one message
(arrays of length one) and scores thousands of candidate thresholds in calibration
(:mod:`bot.calibration`); each rule also explains itself with the numbers it compared, which
becomes the decision's reason. The thresholds are calibrated on dev data and stored with the model,
and those that depend on the knowledge base are re-fitted whenever it changes.

A message longer than the classifier's window is classified window by window and judged by its
most confident window (:mod:`nlu.classifier`); every other signal (retrieval, small talk, advice,
the scope similarity) then reads that same window's words rather than the whole message, so that
all the rules compare numbers about one stretch of text, the one that carries the question. (Whole,
a long message's embedding is an average diluted by the story around the question, and retrieval
would read a different stretch than the classifier did.) The language is still read from the whole
message. The decision's reason ends with how many windows were judged and which one was kept
(:func:`windows_note`), and serving logs it (``long_message``).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, cast

import numpy as np

from bot.choices import (
    ADVISER_CHOICE,
    ADVISER_LABEL,
    HANDOFF_CHOICE,
    SOMETHING_ELSE,
    TALK_TO_A_PERSON,
    Choice,
    entry_choice,
    feedback_choices,
    intent_choice,
)
from bot.errors import ConfigError
from bot.exemplars import AdviceProbe, ExemplarSet, asks_what_to_do
from bot.privacy.redaction import redact
from bot.stages import timed
from nlu import IntentClassifier, Prediction
from nlu.corrections import OVERRIDE_SIMILARITY, CorrectionMemory, OverrideMatch
from nlu.knn import Memory
from nlu.language import LanguageGate, LanguageResult, handoff_reply
from nlu.spelling import SpellingCorrector, words
from retrieval.entry import OPERATOR_TAG as ENTRY_OPERATOR_TAG
from retrieval.entry import KBEntry
from retrieval.knowledge_base import DEFAULT_TOP_CONFIDENCE, Hit, Holdout, KnowledgeBase

log = logging.getLogger(__name__)

POLICY_FILE = "policy.json"
ADVICE_TAG = "advice"
#: The advice probe's reading (:class:`bot.exemplars.AdviceProbe`) at which a message close to the
#: advice examples is advice whatever its words; between the fitted ``advice_probability`` and this,
#: only a message that asks in so many words what to do is (:func:`bot.exemplars.asks_what_to_do`).
#: Requests to do something sat at 0.52-0.66 on the four operator-FAQ dev banks ("borrow money for a
#: car", "put cash in my account"); advice requests without such words at 0.83 and over ("invest
#: 10k"); 2 cores, 2026-12-06.
ADVICE_SURE = 0.8
#: The reply when nothing fits well enough to answer (rule ``handoff``). A handoff is opened at once
#: (:meth:`bot.ops_desk.OpsDesk.after_reply`, and the expected wait is appended), so the reply says
#: so rather than asking, and offers no "Talk to a person" button for what is already done. Without
#: an ops channel it is replaced by :data:`bot.core.UNSTAFFED`; at a handoff cap, by
#: :data:`bot.abuse.BUSY`.
UNSURE = (
    "I'm not sure I can answer that correctly, and I'd rather not guess, so I'm passing you to a "
    "colleague from our team."
)
#: The reply offering the knowledge base's best few entries when none was sure enough to answer
#: (rule ``suggest``): the customer picks one, or asks for a person.
SUGGEST = "I'm not sure I understood. Is your question one of these?"
#: :data:`SUGGEST` where no person can take over (no "Something else" button to press).
SUGGEST_UNSTAFFED = (
    "I'm not sure I understood. Is your question one of these? If not, please call us on the number "
    "on the back of your card."
)
#: :data:`SUGGEST` and :data:`SUGGEST_UNSTAFFED` when only one entry is offered.
SUGGEST_ONE = "I'm not sure I understood. Is this your question?"
SUGGEST_ONE_UNSTAFFED = (
    "I'm not sure I understood. Is this your question? If not, please call us on the number on the "
    "back of your card."
)
#: The reply to a suggestion's button whose entry was removed since it was offered (and no live
#: entry superseded it): the customer is told why and asked again, with a person a button away
#: (:meth:`AnswerPolicy.entry_gone`), rather than handed off without a word about the button.
ENTRY_GONE = "That option is no longer available, sorry. Could you ask your question again in your own words?"
#: :data:`ENTRY_GONE` where no person can take over (no button for one).
ENTRY_GONE_UNSTAFFED = (
    f"{ENTRY_GONE} For anything I can't help with, please call us on the number on the back of your card."
)
#: How many entries a suggestion offers at most (rule ``suggest``).
SUGGEST_DEPTH = 3
#: How many texts' signals :meth:`AnswerPolicy.signals` keeps for reuse (about 7 KB each, 40 KB for
#: a 10,000-character message: a 384-d vector, ten hits, the text), and for how long (seconds).
#: Review filing asks within a second of the answer, far fewer messages later.
RECENT_SIGNALS = 512
RECENT_SECONDS = 120.0
#: An entry beside the best one is offered only if its fused score is at least this share of the
#: best one's (rule ``suggest``): a button far weaker than the first is noise.
SUGGEST_RELATIVE = 0.5
#: Tag of the entries operators write through the review queue (:mod:`bot.review`): their phrasings
#: are customers' own messages, so they are searched with the starter's prior, never shown as a
#: suggestion's button, and never the bank's own entry that outranks an intent (rule ``bank_entry``).
OPERATOR_TAG = ENTRY_OPERATOR_TAG
#: The small-talk category of "let me talk to a person": handed off, not chatted about.
HUMAN_CATEGORY = "human"
#: The small-talk category of a customer who says only that they are unhappy ("your service is
#: terrible"): handed off with its own reply, as :data:`HUMAN_CATEGORY` is.
COMPLAINT_CATEGORY = "complaint"
#: Small-talk categories that hand the conversation to a person (rule ``human``).
HANDOFF_CATEGORIES = frozenset({HUMAN_CATEGORY, COMPLAINT_CATEGORY})
#: Messages the base encoder reads at once where it hands the classifier its states
#: (:meth:`AnswerPolicy._encode`).
_SHARED_CHUNK = 256
#: What :meth:`AnswerPolicy._shares_trunk` compares the two passes on.
_TRUNK_PROBE = "Where is the card I ordered last week? It still has not arrived."

#: The classifier and the knowledge base agree when the bank's own entry for the predicted intent
#: (not the starter's) is among the knowledge base's best few for the message.
AGREE_DEPTH = 3


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
    """Calibrated decision thresholds.

    ``smalltalk``, ``advice`` and ``in_scope`` compare cosine similarities; ``intent``,
    ``clarify_*``, ``advice_probability``, ``agree_intent`` and ``bank_unless_intent``
    probabilities; ``faq*``, ``bank*`` and ``agree_kb`` the knowledge base's fused scores (in
    ``(0, 1)``, :class:`retrieval.knowledge_base.Fusion`).
    """

    smalltalk: float
    advice: float
    in_scope: float
    intent: float
    clarify_gap: float
    clarify_second: float
    #: A general entry (no intent covers it) good enough to take over from the classifier ...
    faq: float
    #: ... when it matches the message this much better than the predicted intent's own answer.
    faq_margin: float
    #: A knowledge-base match sure enough to answer a message the classifier does not take (compared
    #: with :class:`retrieval.knowledge_base.TopConfidence` of the search, not one entry's score).
    faq_fallback: float
    #: An advice request must also read as advice rather than as an information request (how a
    #: product, rate, fee or term works) by this probability (:class:`bot.exemplars.AdviceProbe`).
    advice_probability: float = 0.5
    #: A bank's own entry (not the starter's) good enough to answer instead of the predicted intent's
    #: answer, when it matches this much better than that answer.
    bank: float = 1.0
    bank_margin: float = 0.0
    #: ... unless the classifier is at least this sure of an intent in scope (1.01: never).
    bank_unless_intent: float = 1.01
    #: The classifier's intent and the knowledge base's best entry (answering that intent) agree:
    #: two independent readings, so lower bars for each (1.0 / 1.0 never fires).
    agree_intent: float = 1.0
    agree_kb: float = 1.0
    #: An operator's correction in force answers a message this similar to the corrected one (base
    #: encoder cosine; the same canonical text counts as 1.0). Not fitted: calibrated once so that a
    #: correction cannot capture another intent's question (:data:`nlu.corrections.OVERRIDE_SIMILARITY`).
    correction: float = OVERRIDE_SIMILARITY
    #: A second, confident tier of the intent rule: a message less like the training examples than
    #: ``in_scope`` asks (a customer's own way of putting a known need), still answered when its
    #: scope similarity reaches ``confident_scope`` and the classifier is at least
    #: ``confident_intent`` sure (1.01: never). Fitted after the model's other thresholds, with an
    #: out-of-scope message answered counted as a wrong answer (:func:`bot.calibration.fit_thresholds`).
    confident_scope: float = 1.01
    confident_intent: float = 1.01
    #: A message nothing answers, whose best knowledge-base match is at least this likely right
    #: (:class:`retrieval.knowledge_base.TopConfidence`, as ``faq_fallback``), is offered the best
    #: few entries to choose from instead of being handed off (rule ``suggest``; 1.01: never).
    #: Fitted on every knowledge-base re-fit so that at most ``Targets.max_oos_suggested`` of the
    #: out-of-scope messages get suggestions (:func:`bot.calibration.fit_suggest`).
    suggest: float = 1.01

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Thresholds:
        """Thresholds from a stored dict; keys added since it was written keep their defaults."""
        return cls(**{k: float(v) for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass
class PolicyConfig:
    """What ``policy.json`` in a model artifact holds: thresholds and how they were calibrated."""

    thresholds: Thresholds
    calibration: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"thresholds": self.thresholds.to_dict(), "calibration": self.calibration}

    def save(self, directory: Path, name: str = POLICY_FILE) -> Path:
        path = directory / name
        staging = directory / f".{name}.{os.getpid()}"
        staging.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        os.replace(staging, path)
        return path

    @classmethod
    def load(cls, directory: Path, name: str = POLICY_FILE) -> PolicyConfig | None:
        path = directory / name
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(Thresholds.from_dict(data["thresholds"]), data.get("calibration", {}))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path}: unreadable policy ({exc}); run `teller calibrate`") from None


SERVED = LanguageResult("en", 1.0, True, "assumed")


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
    #: P(advice rather than information), :class:`bot.exemplars.AdviceProbe`.
    advice_probability: float = 1.0
    language: LanguageResult = SERVED
    #: The knowledge base has an answer for each of the two intents a "Did you mean" would offer.
    alternatives_have_answers: bool = True
    #: The message's retrieval-encoder vector, so a changed knowledge base can be searched again
    #: without embedding anew (calibration).
    vector: np.ndarray | None = field(default=None, compare=False, repr=False)
    #: The operator correction in force nearest to the message (:meth:`AnswerPolicy.with_corrections`),
    #: and whether what it says can be answered (its intent has an answer, or its entry exists).
    correction: OverrideMatch | None = None
    correction_answerable: bool = False
    #: ``nearest`` is in the base encoder's space, the small-talk examples' (a base memory was
    #: shipped with the model); rule ``smalltalk`` compares the two only then.
    nearest_in_base: bool = True

    @property
    def query(self) -> str:
        """What retrieval and the exemplars read: the message, or for a long one the classifier's
        kept window of it (:attr:`nlu.Prediction.judged_text`)."""
        return self.prediction.judged_text

    @property
    def top(self) -> Hit | None:
        return self.hits[0] if self.hits else None

    @property
    def advice_cue(self) -> bool:
        """The message asks in so many words what to do (:func:`bot.exemplars.asks_what_to_do`),
        as typed or as the encoders read it."""
        return asks_what_to_do(self.text) or asks_what_to_do(self.query)

    @property
    def general(self) -> Hit | None:
        """The best entry that no intent covers (and that is not advice)."""
        return next((h for h in self.hits if h.entry.intent is None and ADVICE_TAG not in h.entry.tags), None)

    @property
    def advice_hit(self) -> Hit | None:
        return next((h for h in self.hits if ADVICE_TAG in h.entry.tags), None)

    def bank_hit(self, intent: str) -> Hit | None:
        """The best of the bank's own entries that does not answer ``intent`` (not one an operator
        wrote for a customer's message: a trial saw one such answer take "how do I receive money
        from abroad" from intent ``receiving_money``)."""
        return next(
            (
                h
                for h in self.hits
                if not h.starter and h.entry.intent != intent and OPERATOR_TAG not in h.entry.tags
            ),
            None,
        )

    @property
    def suggestions(self) -> list[Hit]:
        """The entries a suggestion offers (rule ``suggest``): the best :data:`SUGGEST_DEPTH` hits
        that are not advice (advice has its own route and its adviser) and were not written from a
        customer's words (:data:`OPERATOR_TAG`: their phrasing would be shown to others), one per
        label and per intent, a bank's own entry before the starter's on an intent both answer,
        each after the first scoring at least :data:`SUGGEST_RELATIVE` of the first's."""
        eligible = [
            h for h in self.hits if ADVICE_TAG not in h.entry.tags and OPERATOR_TAG not in h.entry.tags
        ]
        banks = {h.entry.intent for h in eligible if not h.starter and h.entry.intent is not None}
        out: list[Hit] = []
        labels: set[str] = set()
        intents: set[str] = set()
        for h in eligible:
            label, intent = h.entry.questions[0], h.entry.intent
            if label in labels or (
                intent is not None and (intent in intents or (h.starter and intent in banks))
            ):
                continue
            if out and h.score < SUGGEST_RELATIVE * out[0].score:
                break
            out.append(h)
            labels.add(label)
            if intent is not None:
                intents.add(intent)
            if len(out) == SUGGEST_DEPTH:
                break
        return out

    def intent_hit(self, intent: str) -> Hit | None:
        """The best retrieved entry that answers ``intent`` (a bank may link several; its own come
        before the starter's)."""
        linked = [h for h in self.hits if h.entry.intent == intent]
        return next((h for h in linked if not h.starter), linked[0] if linked else None)

    def features(self) -> dict[str, float]:
        """The numbers :data:`RULES` compare, by name."""
        p = self.prediction
        general, top, intent_hit = self.general, self.top, self.intent_hit(p.intent)
        bank_hit = self.bank_hit(p.intent)
        return {
            "served": 1.0 if self.language.served else 0.0,
            "p1": p.confidence,
            "p2": p.alternatives[1][1] if len(p.alternatives) > 1 else 0.0,
            "nearest": self.nearest,
            # The nearest training example, where comparable with the small-talk examples.
            "chat_nearest": self.nearest if self.nearest_in_base else -1.0,
            "smalltalk": self.smalltalk_score,
            "wants_human": 1.0 if self.smalltalk_category in HANDOFF_CATEGORIES else 0.0,
            "advice": self.advice_score,
            "advice_p": self.advice_probability,
            "advice_cue": 1.0 if self.advice_cue else 0.0,
            "general": general.score if general else 0.0,
            # The best general entry is the best entry of all (not one ranked under another).
            "general_top": 1.0 if general is not None and general is top else 0.0,
            "intent_entry": intent_hit.score if intent_hit else 0.0,
            "bank": bank_hit.score if bank_hit else 0.0,
            # In scope: close to the intent's training examples or to the bank's own answer entry.
            "scope": max(self.nearest, intent_hit.dense if intent_hit else -1.0),
            "agree": 1.0
            if any(h.entry.intent == p.intent and not h.starter for h in self.hits[:AGREE_DEPTH])
            else 0.0,
            "top": top.score if top else 0.0,
            # How likely the best entry is right, from the whole result list (its lead included).
            "top_conf": DEFAULT_TOP_CONFIDENCE(self.hits, p.intent, p.confidence),
            "top_dense": top.dense if top else -1.0,
            "has_answer": 1.0 if self.intent_has_answer else 0.0,
            # The entry an FAQ rule would answer with (the best of all, or the bank's best) answers
            # another intent than the one the classifier read.
            "other_intent": 1.0
            if any(
                h is not None and h.entry.intent is not None and h.entry.intent != p.intent
                for h in (top, bank_hit)
            )
            else 0.0,
            "both_answered": 1.0 if self.alternatives_have_answers else 0.0,
            "suggestable": 1.0 if self.suggestions else 0.0,
            "correction": self.correction.similarity if self.correction is not None else 0.0,
            "correction_ok": 1.0 if self.correction is not None and self.correction_answerable else 0.0,
        }


# ------------------------------------------------------------------------------------------ rules

Features = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class Rule:
    """One row of the decision table: when ``test`` holds (and no earlier rule's did), ``route``.

    ``test`` maps feature arrays (one value per message) and thresholds to a boolean array;
    ``explain`` gives the reason for one message from its features (floats).
    """

    name: str
    route: Route
    test: Callable[[Features, Thresholds], np.ndarray]
    explain: Callable[[Mapping[str, float], Thresholds], str]


def _chat(f: Features, t: Thresholds) -> np.ndarray:
    return (f["smalltalk"] >= t.smalltalk) & (f["smalltalk"] > f["top_dense"])


def _in_scope(f: Features, t: Thresholds) -> np.ndarray:
    return np.asarray(f["scope"] >= t.in_scope)


def _scope(f: Mapping[str, float], t: Thresholds) -> str:
    sign = "≥" if f["scope"] >= t.in_scope else "<"
    return f"in scope {f['scope']:.2f} {sign} {t.in_scope:.2f}"


#: The rule for a customer who asked for a person or said only that they are unhappy: handed off,
#: with the small talk's words for it.
PERSON_RULE = "human"
#: The rule for a message an operator corrected (the same text, or nearly): answered as corrected.
CORRECTION_RULE = "correction"
#: The rule that hands off a message written in a language Teller does not serve, with a reply in
#: that language (:func:`nlu.language.handoff_reply`).
LANGUAGE_RULE = "language"
#: The rule that hands off a message the classifier is sure is about an intent no entry answers any
#: more (its entry removed with `teller kb remove`) when the entry that would answer instead answers
#: another intent: a trial found "I lost my card", read as `lost_or_stolen_card` at 0.99, answered
#: with the card-delivery entry once the bank's lost-card entry was removed. An entry no intent
#: covers still answers (it may be the bank's own on the topic). Never met in calibration, where
#: every intent has an answer.
UNANSWERED_RULE = "unanswered_intent"

RULES: tuple[Rule, ...] = (
    Rule(
        LANGUAGE_RULE,
        Route.HANDOFF,
        lambda f, t: f["served"] < 0.5,
        lambda f, t: "written in a language Teller does not serve",
    ),
    Rule(
        CORRECTION_RULE,
        Route.INTENT,
        lambda f, t: (f["correction"] >= t.correction) & (f["correction_ok"] > 0),
        lambda f, t: (
            "the same message as one an operator corrected"
            if f["correction"] >= 1.0
            else f"nearly the same message as one an operator corrected ({f['correction']:.3f} ≥ "
            f"{t.correction:.3f})"
        ),
    ),
    Rule(
        PERSON_RULE,
        Route.HANDOFF,
        lambda f, t: _chat(f, t) & (f["wants_human"] > 0),
        lambda f, t: (
            f"customer asked for a person or said they are unhappy ({f['smalltalk']:.2f} ≥ {t.smalltalk:.2f})"
        ),
    ),
    Rule(
        "smalltalk",
        Route.SMALLTALK,
        # Closer to its examples than to any of the intents' training examples too: "I don't see
        # any change in my balance" (a Banking77 question) is 0.71 from "what is my balance".
        lambda f, t: _chat(f, t) & (f["smalltalk"] > f["chat_nearest"]),
        lambda f, t: (
            f"small talk {f['smalltalk']:.2f} ≥ {t.smalltalk:.2f}"
            + (
                f", nearer than any intent's example ({f['chat_nearest']:.2f})"
                if f["chat_nearest"] >= 0
                else ""
            )
        ),
    ),
    Rule(
        "advice",
        Route.ADVICE,
        lambda f, t: (
            (f["advice"] >= t.advice)
            & (
                (f["advice_p"] >= ADVICE_SURE)
                | ((f["advice_p"] >= t.advice_probability) & (f["advice_cue"] > 0))
            )
        ),
        lambda f, t: (
            f"advice request {f['advice']:.2f} ≥ {t.advice:.2f}, asking what to do rather than how "
            + (
                f"something works ({f['advice_p']:.2f} ≥ {ADVICE_SURE:.2f})"
                if f["advice_p"] >= ADVICE_SURE
                else f"something works ({f['advice_p']:.2f} ≥ {t.advice_probability:.2f}, in so many words)"
            )
        ),
    ),
    Rule(
        "agreement",
        Route.INTENT,
        lambda f, t: (f["agree"] > 0) & (f["p1"] >= t.agree_intent) & (f["intent_entry"] >= t.agree_kb),
        lambda f, t: (
            f"the classifier ({f['p1']:.2f} ≥ {t.agree_intent:.2f}) and the knowledge base "
            f"({f['intent_entry']:.2f} ≥ {t.agree_kb:.2f}, among its {AGREE_DEPTH} best) agree"
        ),
    ),
    Rule(
        UNANSWERED_RULE,
        Route.HANDOFF,
        lambda f, t: (
            (f["has_answer"] < 0.5)
            & (f["p1"] >= t.confident_intent)
            & _in_scope(f, t)
            & (f["other_intent"] > 0)
        ),
        lambda f, t: (
            f"the classifier is sure of an intent ({f['p1']:.2f} ≥ {t.confident_intent:.2f}; {_scope(f, t)}) "
            "that no entry answers now, and the best entry answers another intent"
        ),
    ),
    Rule(
        "general_entry",
        Route.FAQ,
        lambda f, t: (
            (f["general_top"] > 0)
            & (f["general"] >= t.faq)
            & (f["general"] - f["intent_entry"] >= t.faq_margin)
        ),
        lambda f, t: (
            f"general KB entry, the best match, {f['general']:.2f} ≥ {t.faq:.2f}, against the predicted "
            f"intent's answer {f['intent_entry']:.2f} (margin {f['general'] - f['intent_entry']:+.2f} ≥ "
            f"{t.faq_margin:+.2f})"
        ),
    ),
    Rule(
        "bank_entry",
        Route.FAQ,
        lambda f, t: (
            (f["bank"] >= t.bank)
            & (f["bank"] - f["intent_entry"] >= t.bank_margin)
            & ~(_in_scope(f, t) & (f["p1"] >= t.bank_unless_intent))
        ),
        lambda f, t: (
            f"the bank's own entry {f['bank']:.2f} ≥ {t.bank:.2f}, against the predicted intent's answer "
            f"{f['intent_entry']:.2f} (margin {f['bank'] - f['intent_entry']:+.2f} ≥ {t.bank_margin:+.2f})"
        ),
    ),
    Rule(
        "clarify",
        Route.CLARIFY,
        lambda f, t: (
            _in_scope(f, t)
            & (f["p2"] >= t.clarify_second)
            & (f["p1"] - f["p2"] <= t.clarify_gap)
            & (f["both_answered"] > 0)
        ),
        lambda f, t: f"the top two intents are close ({f['p1']:.2f} and {f['p2']:.2f}); {_scope(f, t)}",
    ),
    Rule(
        "intent",
        Route.INTENT,
        lambda f, t: _in_scope(f, t) & (f["p1"] >= t.intent) & (f["has_answer"] > 0),
        lambda f, t: f"intent {f['p1']:.2f} ≥ {t.intent:.2f}; {_scope(f, t)}",
    ),
    Rule(
        "confident_intent",
        Route.INTENT,
        lambda f, t: (
            (f["scope"] >= t.confident_scope) & (f["p1"] >= t.confident_intent) & (f["has_answer"] > 0)
        ),
        lambda f, t: (
            f"intent {f['p1']:.2f} ≥ {t.confident_intent:.2f}, sure enough for the lower scope bar "
            f"({f['scope']:.2f} ≥ {t.confident_scope:.2f}; {_scope(f, t)})"
        ),
    ),
    Rule(
        "best_entry",
        Route.FAQ,
        lambda f, t: f["top_conf"] >= t.faq_fallback,
        lambda f, t: (
            f"KB entry {f['top']:.2f}, confidence {f['top_conf']:.2f} ≥ {t.faq_fallback:.2f}; {_scope(f, t)}"
        ),
    ),
    Rule(
        "suggest",
        Route.CLARIFY,
        lambda f, t: (f["top_conf"] >= t.suggest) & (f["suggestable"] > 0),
        lambda f, t: (
            f"no confident answer, but the best KB entries are worth offering: confidence "
            f"{f['top_conf']:.2f} ≥ {t.suggest:.2f} (< {t.faq_fallback:.2f} to answer); {_scope(f, t)}"
        ),
    ),
    Rule(
        "handoff",
        Route.HANDOFF,
        lambda f, t: np.ones(len(f["p1"]), dtype=bool),
        lambda f, t: (
            f"no confident answer: intent {f['p1']:.2f}, {_scope(f, t)}, best KB match {f['top']:.2f} "
            f"(confidence {f['top_conf']:.2f} < {t.faq_fallback:.2f})"
        ),
    ),
)
RULE_NAMES = [r.name for r in RULES]
#: Each rule's route, as an index into ``ROUTES`` (``RULE_ROUTES[first_rules(f, t)]`` routes a batch).
RULE_ROUTES = np.array([ROUTES.index(r.route) for r in RULES])


def windows_note(prediction: Prediction) -> str:
    """How a long message was read, for the decision's reason ("" for a message that fits the
    classifier's window): e.g. "long message: judged 3 windows, kept window 3 (characters 410-980
    of 980)". Windows are counted from 1 here; :attr:`nlu.Prediction.window` counts from 0."""
    if prediction.windows <= 1:
        return ""
    note = f"long message: judged {prediction.windows} windows, kept window {prediction.window + 1}"
    if prediction.span is not None:
        note += f" (characters {prediction.span[0]}-{prediction.span[1]} of {len(prediction.text)})"
    return note


class _Reads:
    """Thresholds that note which of their fields are read (:class:`RuleTests`)."""

    def __init__(self, thresholds: Thresholds) -> None:
        self._thresholds = thresholds
        self.names: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        self.names.add(name)
        return getattr(self._thresholds, name)


class RuleTests:
    """Each rule's test on one fixed set of features, remembered by the values of the thresholds
    that test reads: a threshold search asks the same tests again and again (the knowledge-base
    thresholds vary while the classifier's stay put, and the reverse), so each distinct test is
    computed once. Which fields a rule reads is noted on its first call (every test reads all its
    thresholds unconditionally: they are combined with ``&``, not ``and``).

    At most :attr:`LIMIT` results are kept (each is one boolean per message); past it the memo is
    cleared and refilled.
    """

    LIMIT = 20_000

    def __init__(self, features: Features) -> None:
        self.features = features
        self._reads: dict[int, tuple[str, ...]] = {}
        self._memo: dict[tuple[int, tuple[Any, ...]], np.ndarray] = {}

    def test(self, index: int, thresholds: Thresholds) -> np.ndarray:
        """``RULES[index].test`` of the features and ``thresholds``: a boolean array, one per message."""
        names = self._reads.get(index)
        if names is None:  # the first call: note what the test reads as it runs
            reads = _Reads(thresholds)
            result = np.asarray(RULES[index].test(self.features, cast(Thresholds, reads)), dtype=bool)
            names = self._reads[index] = tuple(sorted(reads.names))
            key = (index, tuple(getattr(thresholds, n) for n in names))
        else:
            key = (index, tuple(getattr(thresholds, n) for n in names))
            cached = self._memo.get(key)
            if cached is not None:
                return cached
            result = np.asarray(RULES[index].test(self.features, thresholds), dtype=bool)
        if len(self._memo) >= self.LIMIT:
            self._memo.clear()
        self._memo[key] = result
        return result


def first_rules(f: Features, t: Thresholds, tests: RuleTests | None = None) -> np.ndarray:
    """For each message, the index in :data:`RULES` of the rule that decides it. ``tests``, when
    given, remembers the rules' tests on ``f`` across calls (it must have been made for ``f``)."""
    n = len(f["p1"])
    out = np.full(n, len(RULES) - 1)
    undecided = np.ones(n, dtype=bool)
    for i, rule in enumerate(RULES[:-1]):
        hit = undecided & (tests.test(i, t) if tests is not None else rule.test(f, t))
        out[hit] = i
        undecided &= ~hit
    return out


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
    #: The rule of :data:`RULES` that decided, and the message's language.
    rule: str = ""
    language: str = "en"

    def to_dict(self) -> dict[str, Any]:
        return {
            "route": self.route.value,
            "answer": self.answer,
            "kb_id": self.kb_id,
            "reason": self.reason,
            "rule": self.rule,
            "language": self.language,
            "choices": [asdict(c) for c in self.choices],
        }


@dataclass(frozen=True)
class KBExemplars:
    """What the policy's examples take from the knowledge base as it is now: the bank's name
    customers see ("" for none), the small talk naming it, and the advice examples with the
    knowledge base's advice questions among them (:func:`bot.assistant.kb_exemplars`)."""

    bank: str
    smalltalk: ExemplarSet
    advice: ExemplarSet
    #: The knowledge base's revision they were read at.
    revision: int = -1


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
        information: ExemplarSet | None = None,
        language: LanguageGate | None = None,
        cache_dir: Path | None = None,
        speller: SpellingCorrector | None = None,
        bank: str = "",
        exemplars: Callable[[KnowledgeBase], KBExemplars] | None = None,
        exemplars_revision: int | None = None,
    ) -> None:
        """``bank``: the bank's name customers see ("" for none). ``exemplars``: where the small
        talk, the advice examples and the bank's name come from as the knowledge base changes
        (:meth:`follow_kb_exemplars`); ``smalltalk``, ``advice`` and ``bank`` are what it gave at
        the knowledge base's revision ``exemplars_revision`` (default: as it is now). Without it,
        they stay as given."""
        self.classifier = classifier
        #: (classifier, encoder, whether they share the trunk), see :meth:`_shares_trunk`.
        self._trunk_shared: tuple[object, object, bool] | None = None
        #: Corrects misspelt words before the encoders and the keyword index read a message
        #: (:mod:`nlu.spelling`); the knowledge base's own words are learnt as it changes.
        self.speller = speller
        self._speller_lock = threading.Lock()
        self._speller_revision = -1
        self._read_with: SpellingCorrector | None = None
        self.base_memory = base_memory
        self.kb = kb
        self.information = (information or ExemplarSet([], [], {})).embed_with(kb.embedder.embed)
        #: Where derived files may be kept (the calibration messages' signals, the advice probe).
        self.cache_dir = cache_dir
        #: The bank's name customers see ("" for none), as of the knowledge base's last change.
        self.bank = bank
        self.smalltalk: ExemplarSet
        #: Each reply of the policy's that offers a person (a small-talk reply: "I'll connect you"),
        #: with what is said instead where no person can take over (:func:`bot.core.unstaffed`).
        self.unstaffed_words: dict[str, str] = {}
        self._use_smalltalk(smalltalk)
        self.advice: ExemplarSet
        self.advice_probe: AdviceProbe
        self._use_advice(advice)
        self._exemplars = exemplars
        self._exemplars_lock = threading.Lock()
        #: The knowledge base's revision the examples were taken at.
        self._exemplars_revision = kb.revision if exemplars_revision is None else exemplars_revision
        self.language = language
        self.thresholds = thresholds
        #: ``(model version, knowledge-base revision)`` the knowledge-base thresholds were fitted for.
        self.kb_fit: tuple[str, int] | None = None
        self.k = k
        #: Operators' corrections in force, answered before any other rule but the language's
        #: (:mod:`bot.corrections` keeps this current in every running server); None: none.
        self.corrections: CorrectionMemory | None = None
        #: The signals of the latest texts read, by :meth:`_reading_key`, with when they were read
        #: (``time.monotonic()``; :meth:`signals` with ``reuse``): review filing asks again about
        #: the message just answered.
        self._recent: OrderedDict[tuple[str, str, int, int], tuple[float, Signals]] = OrderedDict()
        self._recent_lock = threading.Lock()

    def _use_smalltalk(self, smalltalk: ExemplarSet) -> None:
        smalltalk = smalltalk.embed_with(self.kb.embedder.embed)
        unstaffed = {
            smalltalk.replies[category]: said
            for category, said in smalltalk.unstaffed.items()
            if category in smalltalk.replies
        }
        # A suggestion's way out is "Something else" (a person): without one, say where to turn.
        unstaffed[SUGGEST] = SUGGEST_UNSTAFFED
        unstaffed[SUGGEST_ONE] = SUGGEST_ONE_UNSTAFFED
        unstaffed[ENTRY_GONE] = ENTRY_GONE_UNSTAFFED
        # The replies of earlier small talk keep their unstaffed words: a decision made with the old
        # reply (the bank's name since changed), or a stored one replayed, still finds them.
        unstaffed = {**self.unstaffed_words, **unstaffed}
        self.smalltalk, self.unstaffed_words = smalltalk, unstaffed

    def _use_advice(self, advice: ExemplarSet) -> None:
        advice = advice.embed_with(self.kb.embedder.embed)
        probe = AdviceProbe(advice, self.information, self.cache_dir)
        self.advice, self.advice_probe = advice, probe

    def follow_kb_exemplars(self) -> bool:
        """Take the small talk, the advice examples and the bank's name anew from the knowledge
        base (the ``exemplars`` source) if its revision moved since they were taken: a running
        server answers as a fresh process would after ``kb add`` gives the bank an advice entry or
        ``kb sync`` replaces the starter (whose name the replies carried). Returns whether anything
        changed. Called by :func:`bot.assistant.follow_kb` (a server's re-fit thread), never on a
        message's path: re-embedding and re-fitting the advice probe can take a second or two,
        and messages meanwhile are read with the examples they find."""
        if self._exemplars is None or self.kb.revision == self._exemplars_revision:
            return False
        with self._exemplars_lock:
            if self.kb.revision == self._exemplars_revision:
                return False
            fresh = self._exemplars(self.kb)
            revision = fresh.revision  # read with the entries: a change after it is taken next time
            # The small talk differs only by the bank's name it carries; the advice by its examples.
            renamed, advice = fresh.bank != self.bank, fresh.advice.texts != self.advice.texts
            if renamed:
                self._use_smalltalk(fresh.smalltalk)
                self.bank = fresh.bank
            if advice:
                self._use_advice(fresh.advice)
            self._exemplars_revision = revision
            changed = renamed or advice
        if changed:
            log.info("kb_exemplars_followed", extra={"fields": {"kb_revision": revision}})
        return changed

    # ---------------------------------------------------------------------------------- signals

    def signals(
        self,
        texts: Sequence[str],
        holdout: Sequence[Holdout | None] | None = None,
        reuse: bool = False,
    ) -> list[Signals]:
        """Classifier, retrieval, exemplar and language evidence for each text (batched).

        For a text longer than the classifier's window, everything but the language is about the
        window the classifier kept (:attr:`Signals.query`; see the module's docstring).
        ``holdout`` (calibration only) leaves, per text, some of one entry's texts out of retrieval.
        ``reuse``: a text among the latest :data:`RECENT_SIGNALS` read in the last
        :data:`RECENT_SECONDS` with the same model, the same knowledge-base revision and the same
        examples gets the signals it was given then, without reading it again (review filing asks
        about the message just answered: the second reading had cost a whole message's encoder
        passes on the server's cores). The signals of every text read without ``holdout`` are kept
        for that, unless redaction would change the text: the store keeps such a message redacted,
        so it is never asked about in its own words, and they are not kept in memory.
        """
        if not texts:
            return []
        texts = list(texts)
        if reuse and holdout is None:
            keys = [self._reading_key(t) for t in texts]
            now = time.monotonic()
            with self._recent_lock:
                kept = [self._recent.get(key) for key in keys]
            known = [k[1] if k is not None and now - k[0] <= RECENT_SECONDS else None for k in kept]
            missing = [t for t, s in zip(texts, known, strict=True) if s is None]
            fresh = iter(self.signals(missing) if missing else [])
            return [s if s is not None else next(fresh) for s in known]
        # Keyed before reading: a knowledge-base change landing meanwhile must not label signals
        # read before it as read after it.
        keys = [self._reading_key(t) for t in texts] if holdout is None else []
        found = self._read(texts, holdout)
        if keys:
            keeping = [(key, s) for key, s in zip(keys, found, strict=True) if redact(key[0]) == key[0]]
            now = time.monotonic()
            with self._recent_lock:
                for key, s in keeping:
                    self._recent[key] = (now, s)
                    self._recent.move_to_end(key)
                while self._recent and (
                    len(self._recent) > RECENT_SIGNALS
                    or now - next(iter(self._recent.values()))[0] > RECENT_SECONDS
                ):
                    self._recent.popitem(last=False)
        return found

    def _reading_key(self, text: str) -> tuple[str, str, int, int]:
        """What a text's signals depend on besides the text: the model, the knowledge base's revision
        (its entries, the speller's words) and that of the small-talk and advice examples."""
        return text, self.classifier.version, self.kb.revision, self._exemplars_revision

    def _read(self, texts: list[str], holdout: Sequence[Holdout | None] | None) -> list[Signals]:
        """:meth:`signals` of ``texts``, read now."""
        with timed("signals"):
            languages = self.language.detect(texts) if self.language is not None else [SERVED] * len(texts)
        predictions, vectors = self._encode(texts, [language.served for language in languages])
        queries = [p.judged_text for p in predictions]
        with timed("retrieval"):
            hits = self.kb.search_vectors(vectors, self.k, queries, holdout)
        with timed("signals"):
            small_cat, small_score = self.smalltalk.best(vectors)
            _, advice_score = self.advice.best(vectors)
            advice_p = self.advice_probe.probability(vectors)
            if self.base_memory is not None:
                nearest = self.base_memory.nearest(vectors)
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
                float(advice_p[i]),
                languages[i],
                self._alternatives_answered(predictions[i]),
                vectors[i],
                nearest_in_base=self.base_memory is not None,
            )
            for i, text in enumerate(texts)
        ]

    def read(self, texts: Sequence[str], served: Sequence[bool] | None = None) -> list[str]:
        """What the encoders and the keyword index read of ``texts``: each with its misspelt words
        corrected (:attr:`speller`, with the knowledge base's words as they are now), except those
        ``served`` says are in a language Teller does not serve (all are, without it); the texts as
        they are without a speller. The language is told from what was typed, and what is stored
        keeps it."""
        speller = self._kb_speller()
        if speller is None:
            return list(texts)
        return [
            t if served is not None and not served[i] else speller.correct(t) for i, t in enumerate(texts)
        ]

    def _kb_speller(self) -> SpellingCorrector | None:
        """:attr:`speller` with the knowledge base's words learnt, built anew when its revision
        moved (the revision and the entries are read as one step, under its lock)."""
        if self.speller is None:
            return None
        with self._speller_lock:
            if self._speller_revision != self.kb.revision or self._read_with is None:
                with self.kb.lock:
                    revision, entries = self.kb.revision, self.kb.entries()
                texts = (t for e in entries for t in (*e.questions, e.answer))
                self._read_with = self.speller.with_domain(w for t in texts for w in words(t))
                self._speller_revision = revision
            return self._read_with

    def _encode(
        self, texts: list[str], served: Sequence[bool] | None = None
    ) -> tuple[list[Prediction], np.ndarray]:
        """The classifier's predictions and the base encoder's ``(n, dim)`` vectors of what it
        judged (for a long text, the window the classifier kept).

        Where the classifier starts from the base encoder's lowest layers (:mod:`nlu.trunk`), the
        base encoder's pass comes first and hands the classifier their output: the classifier then
        runs only its upper layers (the ``classifier`` stage), and a long message whose kept window
        is not the whole text has that window embedded again.

        Measured and not adopted: running the base encoder's pass on a worker thread beside the
        classifier's. Alone the two passes took 4.8 ms instead of 7.9 (2 cores, one intra-op thread
        each), but a whole message through ``POST /api/messages`` was no faster (p50 18.6-20.3 ms
        against 19.8-23.3 ms sequential, within the run-to-run spread), 2026-12-01.
        """
        read = self.read(texts, served)
        if read and self._shares_trunk():
            embedder = cast(Any, self.kb.embedder)
            predictions, parts = [], []
            for start in range(0, len(read), _SHARED_CHUNK):  # states held at once stay bounded
                chunk = read[start : start + _SHARED_CHUNK]
                with timed("base_encoder"):
                    vectors, states = embedder.embed_states(chunk)
                with timed("classifier"):
                    predictions += self.classifier.predict(chunk, shared=states)
                parts.append(vectors)
            vectors = np.concatenate(parts)
            again = [i for i, p in enumerate(predictions) if p.span is not None]
            if again:
                with timed("base_encoder"):
                    vectors[again] = embedder.embed([predictions[i].judged_text for i in again])
            return predictions, vectors
        with timed("classifier"):
            predictions = self.classifier.predict(read)
        with timed("base_encoder"):
            vectors = self.kb.embedder.embed([p.judged_text for p in predictions])
        return predictions, vectors

    def _shares_trunk(self) -> bool:
        """Whether the knowledge base's encoder computes the classifier's frozen layers as its trunk
        does: the same key (:mod:`nlu.trunk`) and, on a probe message, the same states bit for bit
        (:meth:`nlu.classifier.IntentClassifier.same_trunk`). Read once per classifier and encoder;
        a split classifier that cannot share is logged as ``trunk_not_shared`` (with why), a probe
        that fails as ``trunk_probe_failed`` (that batch reads apart, the next probes again)."""
        classifier, embedder = self.classifier, self.kb.embedder
        known = self._trunk_shared
        if known is None or known[0] is not classifier or known[1] is not embedder:
            wanted = getattr(classifier, "trunk_key", None)  # None: a model served whole
            if wanted is None:
                known = self._trunk_shared = (classifier, embedder, False)
                return False
            have = getattr(embedder, "trunk_key", None)
            why = "keys differ" if have != wanted else ""
            if not why:
                try:
                    _, states = cast(Any, embedder).embed_states([_TRUNK_PROBE])
                    same = classifier.same_trunk(states[0])
                except Exception as exc:  # this batch reads apart; the next one probes again
                    log.warning("trunk_probe_failed", extra={"fields": {"error": type(exc).__name__}})
                    return False
                why = "" if same else "states differ"
            if why:  # e.g. a model exported by another ONNX Runtime than the encoder's cached graph
                fields = {
                    "model": classifier.version,
                    "reason": why,
                    "model_key": wanted,
                    "encoder_key": have,
                }
                log.warning("trunk_not_shared", extra={"fields": fields})
            known = self._trunk_shared = (classifier, embedder, not why)
        return known[2]

    def research(self, signals: Sequence[Signals]) -> list[Signals]:
        """The same signals with the knowledge base searched again (after it changed)."""
        if not signals:
            return []
        if any(s.vector is None for s in signals):
            raise ConfigError("these signals carry no vectors to search with")
        vectors = np.stack([s.vector for s in signals if s.vector is not None])
        hits = self.kb.search_vectors(vectors, self.k, [s.query for s in signals])
        return [
            replace(
                s,
                hits=h,
                intent_has_answer=self.kb.for_intent(s.prediction.intent) is not None,
                alternatives_have_answers=self._alternatives_answered(s.prediction),
            )
            for s, h in zip(signals, hits, strict=True)
        ]

    def _alternatives_answered(self, prediction: Prediction) -> bool:
        """Whether the two intents a "Did you mean" would offer for ``prediction`` both have an answer
        entry (a button for an intent without one could not be answered)."""
        return all(self.kb.for_intent(label) is not None for label, _ in prediction.alternatives[:2])

    def with_corrections(self, signals: Sequence[Signals]) -> list[Signals]:
        """The same signals, each with the operator correction in force nearest to its message (by
        canonical text, else by the base encoder's cosine on the window the classifier kept).
        Calibration never calls this: the thresholds are fitted on what the model does alone."""
        memory = self.corrections
        if memory is None or not len(memory) or not signals:
            return list(signals)
        if any(s.vector is None for s in signals):
            raise ConfigError("these signals carry no vectors to match corrections with")
        vectors = np.stack([s.vector for s in signals if s.vector is not None])
        # (corrections are stored as messages are, redacted: matched so as well as typed)
        matches = memory.match([s.text for s in signals], vectors, [redact(s.text) for s in signals])
        return [
            replace(s, correction=m, correction_answerable=m is not None and self._answerable(m))
            for s, m in zip(signals, matches, strict=True)
        ]

    def _answerable(self, match: OverrideMatch) -> bool:
        o = match.override
        if o.label is not None:
            return o.label in self.classifier.labels and self.kb.for_intent(o.label) is not None
        return o.kb_id is not None and o.kb_id in self.kb

    # ---------------------------------------------------------------------------------- decision

    def answer(self, text: str) -> Decision:
        return self.answer_many([text])[0]

    def answer_many(self, texts: Sequence[str]) -> list[Decision]:
        """One decision per text, in order (batched); a long message's window choice is logged."""
        decisions = []
        signals = self.signals(texts)
        with timed("policy"):
            signals = self.with_corrections(signals)
        for s in signals:
            with timed("policy"):
                decision = self.decide(s)
            p = s.prediction
            if p.windows > 1:
                log.info(
                    "long_message",
                    extra={
                        "fields": {
                            "characters": len(p.text),
                            "windows": p.windows,
                            "kept_window": p.window + 1,
                            "span": list(p.span) if p.span is not None else None,
                            "intent": p.intent,
                            "confidence": round(p.confidence, 4),
                            "route": decision.route.value,
                            "rule": decision.rule,
                        }
                    },
                )
            decisions.append(decision)
        return decisions

    def decide(self, s: Signals, thresholds: Thresholds | None = None) -> Decision:
        """The first rule of :data:`RULES` that holds for ``s``, rendered as a reply."""
        t = thresholds or self.thresholds
        if t is None:
            raise ConfigError("the answer policy has no thresholds; run `teller calibrate`")
        f = s.features()
        rule = RULES[int(first_rules({k: np.array([v]) for k, v in f.items()}, t)[0])]
        decision = self._render(rule, s, f, t)
        note = windows_note(s.prediction)
        reason = f"{decision.reason}; {note}" if note else decision.reason
        return replace(decision, reason=reason, rule=rule.name, language=s.language.language)

    def _render(self, rule: Rule, s: Signals, f: Mapping[str, float], t: Thresholds) -> Decision:
        p = s.prediction
        reason = rule.explain(f, t)
        if rule.name == LANGUAGE_RULE:
            return _decision(
                Route.HANDOFF,
                handoff_reply(s.language.language),
                f"{reason} ({s.language.language}, {s.language.reason})",
                p,
                # No "Talk to a person" button: the handoff is opened with this reply (an English
                # button pressed would only post its value into the operator's thread).
            )
        if rule.name == CORRECTION_RULE:
            return self._corrected(s, reason)
        if rule.name == PERSON_RULE:
            category = s.smalltalk_category or HUMAN_CATEGORY  # one of HANDOFF_CATEGORIES (the test)
            return _decision(Route.HANDOFF, self.smalltalk.replies[category], f"{reason} ({category})", p)
        if rule.name == "smalltalk":
            category = s.smalltalk_category or "greeting"
            return _decision(Route.SMALLTALK, self.smalltalk.replies[category], f"{reason} ({category})", p)
        if rule.name == "advice":
            hit = s.advice_hit
            if hit is not None and hit.score >= t.faq_fallback:
                return _decision(
                    Route.ADVICE,
                    hit.entry.answer,
                    f"{reason}; KB entry {hit.entry.id} {hit.score:.2f}",
                    p,
                    kb_id=hit.entry.id,
                    choices=self._adviser_choices(),
                )
            return _decision(
                Route.ADVICE, self.advice.replies["advice"], reason, p, choices=self._adviser_choices()
            )
        if rule.name == "general_entry":
            general = s.general
            assert general is not None  # the rule's test needs a general entry's score
            return self._faq(general, f"{reason}: {general.entry.id}", p)
        if rule.name == "bank_entry":
            bank = s.bank_hit(p.intent)
            assert bank is not None  # the rule's test needs a bank entry's score
            return self._faq(bank, f"{reason}: {bank.entry.id}", p)
        if rule.name == "clarify":
            first, second = p.alternatives[0][0], p.alternatives[1][0]
            a, b = self._label(first), self._label(second)
            return _decision(
                Route.CLARIFY,
                f"Did you mean “{a}” or “{b}”?",
                f"{first} and {second}: {reason}",
                p,
                choices=(
                    intent_choice(a, first),
                    intent_choice(b, second),
                    Choice(SOMETHING_ELSE, HANDOFF_CHOICE),
                ),
            )
        if rule.name in ("intent", "confident_intent", "agreement"):
            hit = s.intent_hit(p.intent)
            entry = hit.entry if hit is not None else self.kb.for_intent(p.intent)
            assert entry is not None  # the rule's test needs the intent to have an answer
            return _decision(
                Route.INTENT,
                entry.answer,
                f"{p.intent} {reason}",
                p,
                kb_id=entry.id,
                choices=self.feedback_choices(),
            )
        if rule.name == "best_entry":
            top = s.top
            assert top is not None
            return self._faq(top, f"{reason}: {top.entry.id}", p)
        if rule.name == "suggest":
            offered = s.suggestions
            return _decision(
                Route.CLARIFY,
                SUGGEST if len(offered) > 1 else SUGGEST_ONE,
                f"{reason}: {', '.join(h.entry.id for h in offered)}",
                p,
                choices=(
                    *(entry_choice(h.entry.questions[0], h.entry.id) for h in offered),
                    Choice(SOMETHING_ELSE, HANDOFF_CHOICE),
                ),
            )
        return _decision(Route.HANDOFF, UNSURE, f"{reason} (intent {p.intent})", p)

    def answer_for_intent(self, intent: str) -> Decision:
        """The answer to a chosen intent (a clarify button, or an operator's pick). Raises
        :class:`ConfigError` when the knowledge base has no answer entry for it (see
        :meth:`has_answer`)."""
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

    def has_answer(self, intent: str) -> bool:
        """Whether ``intent`` is one of the classifier's and the knowledge base answers it."""
        return intent in self.classifier.labels and self.kb.for_intent(intent) is not None

    def answer_for_entry(self, entry_id: str) -> Decision:
        """The answer of a chosen knowledge-base entry (a suggestion's button, rule ``suggest``).

        An entry superseded since it was offered is answered by the entry that superseded it (as the
        search would now answer). An advice entry (never offered, but a customer may type its id)
        is answered as the advice rule answers it, with the adviser's button.

        Raises :class:`retrieval.errors.EntryNotFoundError` when the entry is no longer in the
        knowledge base and no live entry superseded it (removed since it was offered).
        """
        entry = self.kb.current(entry_id)
        advice = ADVICE_TAG in entry.tags  # never offered: its id was typed
        reason = f"customer chose knowledge-base entry {entry_id}" + ("" if advice else " from a suggestion")
        if entry.id != entry_id:
            reason += f"; answered by {entry.id}, which superseded it since"
        if advice:
            return Decision(
                Route.ADVICE, entry.answer, reason, entry.intent, 1.0, entry.id, self._adviser_choices()
            )
        return Decision(Route.FAQ, entry.answer, reason, entry.intent, 1.0, entry.id, self.feedback_choices())

    @staticmethod
    def entry_gone() -> Decision:
        """The reply to a suggestion's button whose entry is gone (:meth:`answer_for_entry` raised
        :class:`retrieval.errors.EntryNotFoundError`): route ``clarify``, :data:`ENTRY_GONE` with a
        "Talk to a person" button. The reason does not repeat the pressed value (a customer may
        type one, and the reason is stored as is)."""
        return Decision(
            Route.CLARIFY,
            ENTRY_GONE,
            "customer chose an entry no longer in the knowledge base; asked to rephrase",
            None,
            1.0,
            choices=(Choice(TALK_TO_A_PERSON, HANDOFF_CHOICE),),
        )

    # ---------------------------------------------------------------------------------- helpers

    def _corrected(self, s: Signals, reason: str) -> Decision:
        """The answer an operator's correction gives: its intent's answer (the bank's own entry for
        it first, as for the intent rule), or its entry's."""
        assert s.correction is not None  # the rule's test needs a correction
        o, p = s.correction.override, s.prediction
        origin = f", proposed from #{o.origin_id}" if o.origin_id is not None else ""
        said = f"operator correction #{o.id} by {o.author} ({o.created_at[:10]}{origin})"
        model = f"the model read {p.intent} {p.confidence:.2f}"
        if o.label is not None:
            hit = s.intent_hit(o.label)
            entry = hit.entry if hit is not None else self.kb.for_intent(o.label)
            assert entry is not None  # the rule's test needs the intent to have an answer
            return Decision(
                Route.INTENT,
                entry.answer,
                f"{o.label}: {said}: {reason}; {model}",
                o.label,
                1.0,
                entry.id,
                self.feedback_choices(),
                tuple(p.alternatives),
            )
        assert o.kb_id is not None
        entry = self.kb.get(o.kb_id)
        return Decision(
            Route.FAQ,
            entry.answer,
            f"KB entry {o.kb_id}: {said}: {reason}; {model}",
            p.intent,
            p.confidence,
            entry.id,
            self.feedback_choices(),
            tuple(p.alternatives),
        )

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
        return feedback_choices()

    @staticmethod
    def _adviser_choices() -> tuple[Choice, ...]:
        return (Choice(ADVISER_LABEL, ADVISER_CHOICE), *AnswerPolicy.feedback_choices())
