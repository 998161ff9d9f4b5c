"""Calibrating the answer policy on dev data: the model's held-out Banking77 split plus out-of-scope queries.

Small-talk and advice thresholds are set so that almost no in-scope banking question is taken for
either. The remaining thresholds are chosen by grid search: among the settings that keep
out-of-scope messages away from intent answers (``min_oos_recall``) and hand off few in-scope
messages (``max_false_handoff``), the one with the most right answers net of wrong ones wins (a
wrong answer undoes a right one; asking back or handing off is neither; fewer clarifications
break ties). Two-fold cross-fitting reports what the chosen procedure does
on messages it was not tuned on.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from bot.policy import ADVICE_TAG, ROUTES, AnswerPolicy, Decision, Route, Signals, Thresholds, route_codes
from retrieval.knowledge_base import Hit

OOS = "oos"
#: Label prefixes of the FAQ dev set: the message should be answered by that KB entry (or, for an
#: advice entry, by the advice route).
KB_LABEL = "kb:"
ADVICE_LABEL = "advice:"


@dataclass(frozen=True)
class Targets:
    min_oos_recall: float = 0.97
    max_false_handoff: float = 0.02
    #: Share of in-scope messages that may be taken for small talk, advice or a general KB entry.
    max_in_scope_diversion: float = 0.003


@dataclass
class PolicyMetrics:
    """How the policy does on a labelled set whose category may be ``oos``."""

    in_scope: int
    out_of_scope: int
    answered_correctly: float
    #: In-scope messages answered (by intent or FAQ) with another intent's answer.
    answered_wrongly: float
    oos_recall: float
    false_handoff: float
    clarify_rate: float
    routes: dict[str, int] = field(default_factory=dict)
    #: Questions on topics only the knowledge base covers, and how many got their entry's answer.
    faq_questions: int = 0
    faq_answered_correctly: float = 0.0
    faq_answered_wrongly: float = 0.0
    #: Out-of-scope messages answered with a knowledge-base entry.
    oos_answered_from_kb: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_INTENT, _FAQ, _CLARIFY, _ADVICE, _HANDOFF = (
    ROUTES.index(r) for r in (Route.INTENT, Route.FAQ, Route.CLARIFY, Route.ADVICE, Route.HANDOFF)
)


@dataclass
class Features:
    """The numbers the policy looks at, as arrays, plus what is needed to score its decisions."""

    values: dict[str, np.ndarray]
    out_of_scope: np.ndarray  # the gold label is "oos"
    faq: np.ndarray  # the message belongs to a KB entry no intent covers
    advice: np.ndarray  # ... and that entry is advice
    intent_right: np.ndarray  # the classifier's top intent is the gold one
    top_right: (
        np.ndarray
    )  # the best KB entry is the gold one (filed under the gold intent, or the gold entry)
    general_right: np.ndarray  # the best general KB entry is the gold entry

    @classmethod
    def from_signals(cls, signals: Sequence[Signals], labels: Sequence[str]) -> Features:
        rows = [s.features() for s in signals]
        values = {key: np.array([r[key] for r in rows], dtype=np.float64) for key in rows[0]}
        entry = [
            label.split(":", 1)[1] if label.startswith((KB_LABEL, ADVICE_LABEL)) else None for label in labels
        ]

        def hit_is(hit: Hit | None, label: str, entry_id: str | None) -> bool:
            if hit is None:
                return False
            return hit.entry.id == entry_id if entry_id is not None else hit.entry.intent == label

        pairs = list(zip(signals, labels, entry, strict=True))
        return cls(
            values,
            np.array([label == OOS for label in labels]),
            np.array([e is not None for e in entry]),
            np.array([label.startswith(ADVICE_LABEL) for label in labels]),
            np.array([s.prediction.intent == label for s, label, _ in pairs]),
            np.array([hit_is(s.top, label, e) for s, label, e in pairs]),
            np.array([e is not None and hit_is(s.general, label, e) for s, label, e in pairs]),
        )

    def subset(self, mask: np.ndarray) -> Features:
        return Features(
            {k: v[mask] for k, v in self.values.items()},
            self.out_of_scope[mask],
            self.faq[mask],
            self.advice[mask],
            self.intent_right[mask],
            self.top_right[mask],
            self.general_right[mask],
        )

    def __len__(self) -> int:
        return len(self.out_of_scope)


def policy_metrics(
    codes: np.ndarray, correct: np.ndarray, out_of_scope: np.ndarray, faq: np.ndarray | None = None
) -> PolicyMetrics:
    """Metrics from each message's route (index into ``ROUTES``), whether its answer was right, and
    whether it was out of scope (or, optionally, an FAQ-only question)."""
    faq = np.zeros(len(codes), dtype=bool) if faq is None else faq
    ins = ~out_of_scope & ~faq
    answered = (codes == _INTENT) | (codes == _FAQ) | (faq & (codes == _ADVICE))
    n_in, n_oos, n_faq = int(ins.sum()), int(out_of_scope.sum()), int(faq.sum())
    counts = np.bincount(codes, minlength=len(ROUTES)) if len(codes) else np.zeros(len(ROUTES), dtype=int)
    return PolicyMetrics(
        in_scope=n_in,
        out_of_scope=n_oos,
        answered_correctly=float(correct[ins].mean()) if n_in else 0.0,
        answered_wrongly=float((answered & ~correct)[ins].mean()) if n_in else 0.0,
        oos_recall=float((codes != _INTENT)[out_of_scope].mean()) if n_oos else 1.0,
        false_handoff=float((codes == _HANDOFF)[ins].mean()) if n_in else 0.0,
        clarify_rate=float((codes == _CLARIFY)[~faq].mean()) if (~faq).any() else 0.0,
        routes={r.value: int(counts[i]) for i, r in enumerate(ROUTES)},
        faq_questions=n_faq,
        faq_answered_correctly=float(correct[faq].mean()) if n_faq else 0.0,
        faq_answered_wrongly=float((answered & ~correct)[faq].mean()) if n_faq else 0.0,
        oos_answered_from_kb=float((codes == _FAQ)[out_of_scope].mean()) if n_oos else 0.0,
    )


def score_routes(features: Features, thresholds: Thresholds) -> PolicyMetrics:
    """What ``thresholds`` would do on ``features``: an answer is right when it is the gold intent's
    (by the classifier, or by an FAQ entry filed under that intent), or the gold KB entry's."""
    codes, general_faq = route_codes(features.values, thresholds)
    faq_answer = codes == _FAQ
    by_entry = faq_answer & np.where(general_faq, features.general_right, features.top_right)
    correct = np.where(
        features.faq,
        by_entry | ((codes == _ADVICE) & features.advice),
        ((codes == _INTENT) & features.intent_right) | (faq_answer & ~general_faq & features.top_right),
    )
    return policy_metrics(codes, correct, features.out_of_scope, features.faq)


def evaluate_policy(
    policy: AnswerPolicy, texts: Sequence[str], labels: Sequence[str]
) -> tuple[PolicyMetrics, list[Decision]]:
    """Decide every message with the policy's own thresholds and score the decisions."""
    decisions = policy.answer_many(texts)
    correct = np.array(
        [
            (d.route == Route.INTENT and d.intent == label)
            or (d.route == Route.FAQ and d.kb_id is not None and policy.kb.get(d.kb_id).intent == label)
            for d, label in zip(decisions, labels, strict=True)
        ]
    )
    codes = np.array([ROUTES.index(d.route) for d in decisions], dtype=np.int64)
    return policy_metrics(codes, correct, np.array([label == OOS for label in labels])), decisions


def _diversion_threshold(scores: np.ndarray, share: float) -> float:
    """The lowest threshold that lets at most ``share`` of ``scores`` reach it."""
    if len(scores) == 0:
        return 1.0
    return float(np.quantile(scores, 1.0 - share)) + 1e-6


def fit_thresholds(features: Features, targets: Targets) -> tuple[Thresholds, bool]:
    """The best thresholds on ``features``; the flag says whether every target could be met."""
    ins = ~features.out_of_scope & ~features.faq
    f = features.values
    smalltalk = max(_diversion_threshold(f["smalltalk"][ins], targets.max_in_scope_diversion), 0.5)
    advice = max(_diversion_threshold(f["advice"][ins], targets.max_in_scope_diversion), 0.5)
    # A general entry may take over from the classifier only where it is closer to the message than
    # any training example (by a margin); for each margin, the FAQ threshold may not divert more
    # in-scope messages than allowed.
    faq_floors = {}
    for margin in (-0.1, -0.05, 0.0, 0.05):
        gap = np.where(f["general"][ins] - f["nearest"][ins] >= margin, f["general"][ins], -1.0)
        faq_floors[margin] = _diversion_threshold(gap, targets.max_in_scope_diversion)

    nearest = f["nearest"][ins]
    scope_grid = sorted({float(np.quantile(nearest, q)) for q in np.linspace(0.0, 0.12, 13)})
    intent_grid = [0.0, 0.2, 0.3, 0.4, 0.5, 0.6]
    # (largest gap between the top two intents, smallest runner-up probability); the first is "never".
    clarify_grid = [(-1.0, 1.0), (0.1, 0.2), (0.2, 0.2), (0.3, 0.15), (0.4, 0.15), (0.5, 0.1)]
    faq_grid = sorted(
        {
            (margin, max(floor, x))
            for margin, floor in faq_floors.items()
            for x in (0.5, 0.55, 0.6, 0.65, 0.7, 0.8)
        }
    )
    fallback_grid = [0.5, 0.55, 0.6, 0.65, 0.7, 0.8]

    best: tuple[tuple[float, ...], Thresholds] | None = None
    fallback: tuple[tuple[float, ...], Thresholds] | None = None
    for in_scope, intent, (clarify_gap, second), (faq_margin, faq), faq_fallback in itertools.product(
        scope_grid, intent_grid, clarify_grid, faq_grid, fallback_grid
    ):
        t = Thresholds(
            smalltalk, advice, in_scope, intent, clarify_gap, second, faq, faq_margin, faq_fallback
        )
        m = score_routes(features, t)
        feasible = m.oos_recall >= targets.min_oos_recall and m.false_handoff <= targets.max_false_handoff
        # A wrong answer undoes a right one; a clarifying question or a handoff is neither. An
        # out-of-scope message answered from the knowledge base counts as wrong: nobody checked it.
        # Counts, not rates, so every message weighs the same.
        net = (
            m.in_scope * (m.answered_correctly - m.answered_wrongly)
            + m.faq_questions * (m.faq_answered_correctly - m.faq_answered_wrongly)
            - m.out_of_scope * m.oos_answered_from_kb
        )
        key = (net, -m.clarify_rate)
        if feasible and (best is None or key > best[0]):
            best = (key, t)
        shortfall = min(0.0, m.oos_recall - targets.min_oos_recall) + min(
            0.0, targets.max_false_handoff - m.false_handoff
        )
        fallback_key = (shortfall, m.answered_correctly)
        if fallback is None or fallback_key > fallback[0]:
            fallback = (fallback_key, t)
    assert fallback is not None
    return (best[1], True) if best is not None else (fallback[1], False)


def calibrate(
    policy: AnswerPolicy,
    in_scope: Sequence[tuple[str, str]],
    out_of_scope: Sequence[str],
    faq: Sequence[tuple[str, str]] = (),
    targets: Targets | None = None,
    seed: int = 0,
) -> tuple[Thresholds, dict[str, Any]]:
    """Thresholds fitted on all the data, and a report with two-fold held-out metrics.

    ``in_scope`` pairs a message with its intent, ``faq`` with the id of the KB entry (one no intent
    covers) that should answer it.
    """
    targets = targets or Targets()
    known = {e.id: e for e in policy.kb.entries()}
    faq = [(text, entry_id) for text, entry_id in faq if entry_id in known]
    texts = [t for t, _ in in_scope] + list(out_of_scope) + [t for t, _ in faq]
    labels = (
        [label for _, label in in_scope]
        + [OOS] * len(out_of_scope)
        + [(ADVICE_LABEL if ADVICE_TAG in known[e].tags else KB_LABEL) + e for _, e in faq]
    )
    features = Features.from_signals(policy.signals(texts), labels)
    thresholds, feasible = fit_thresholds(features, targets)

    rng = np.random.default_rng(seed)
    fold = rng.permutation(len(features)) % 2 == 0
    held_out = []
    for train_mask in (fold, ~fold):
        t, _ = fit_thresholds(features.subset(train_mask), targets)
        test = features.subset(~train_mask)
        held_out.append(score_routes(test, t))
    report = {
        "targets": asdict(targets),
        "targets_met": feasible,
        "in_scope_messages": int((~features.out_of_scope).sum()),
        "out_of_scope_messages": len(out_of_scope),
        "faq_messages": len(faq),
        "fitted": score_routes(features, thresholds).to_dict(),
        "held_out": {
            key: float(np.mean([getattr(m, key) for m in held_out]))
            for key in (
                "answered_correctly",
                "answered_wrongly",
                "oos_recall",
                "false_handoff",
                "clarify_rate",
                "faq_answered_correctly",
                "faq_answered_wrongly",
                "oos_answered_from_kb",
            )
        },
        "smalltalk_loo_recall": float(np.mean(policy.smalltalk.leave_one_out() >= thresholds.smalltalk)),
        "advice_loo_recall": float(np.mean(policy.advice.leave_one_out() >= thresholds.advice)),
    }
    return thresholds, report
