"""Positioning = P(D|U) x M, with every number traceable.

- P(D|U), how well the product meets the target users' core needs: each need the PM listed, with its
  importance, is put to Teller itself (classifier and knowledge base). A need Teller answers
  counts with the confidence of that answer, times the measured quality of the intent or entry
  that answers it (dev accuracy, and 1 - the share of its answers customers flagged). The
  importance-weighted mean over the needs is P(D|U).
- M, how well those needs match the gap in the market: (gap size - 1)/4 x (1 - (competitor
  coverage - 1)/4), from the two 1-5 answers. A gap that matters and that competitors leave open
  gives M = 1.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from positioning.errors import PositioningError
from positioning.evidence import Evidence

_NEED = re.compile(r"^(?P<need>.*\S)\s*\|\s*(?P<importance>[1-5])\s*$")


@dataclass(frozen=True)
class Coverage:
    """How Teller answers a need: the route, what answers it, and how sure it is."""

    route: str
    intent: str | None
    kb_id: str | None
    confidence: float
    answered: bool


#: Need text -> how Teller would answer it (injected by the application).
CoverageFn = Callable[[str], Coverage]


@dataclass(frozen=True)
class Quality:
    """Measured quality of an intent or KB entry: dev accuracy and the share of answers flagged."""

    accuracy: float
    flag_rate: float
    source: str


@dataclass(frozen=True)
class NeedScore:
    need: str
    importance: int
    coverage: Coverage
    quality: Quality
    satisfaction: float


@dataclass
class PositioningScore:
    p_d_given_u: float
    m: float
    score: float
    needs: list[NeedScore] = field(default_factory=list)
    gap_size: int = 0
    competitor_coverage: int = 0
    raise_p: list[str] = field(default_factory=list)
    raise_m: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def measured_quality(
    evidence: Evidence, intent_accuracy: dict[str, float], faq_accuracy: float
) -> Callable[[Coverage], Quality]:
    """Quality from measurements: an intent's dev accuracy (per-intent recall) and its flag rate in
    the logs; for a KB entry, the FAQ accuracy measured at calibration and the entry's flag rate."""

    def quality(coverage: Coverage) -> Quality:
        if coverage.route == "intent" and coverage.intent:
            figures = evidence.for_intent(coverage.intent)
            return Quality(
                intent_accuracy.get(coverage.intent, 0.0),
                figures.flag_rate if figures else 0.0,
                f"intent {coverage.intent}",
            )
        if coverage.kb_id:
            return Quality(
                faq_accuracy, evidence.entry_flag_rates.get(coverage.kb_id, 0.0), f"entry {coverage.kb_id}"
            )
        return Quality(0.0, 0.0, "none")

    return quality


def parse_needs(items: list[str]) -> list[tuple[str, int]]:
    needs = []
    for item in items:
        match = _NEED.match(item)
        if not match:
            raise PositioningError(f"need {item!r} has no importance (expected 'need | 1-5')")
        needs.append((match.group("need"), int(match.group("importance"))))
    return needs


def market_match(gap_size: int, competitor_coverage: int) -> float:
    for name, value in (("gap size", gap_size), ("competitor coverage", competitor_coverage)):
        if not 1 <= value <= 5:
            raise PositioningError(f"{name} must be 1-5, got {value}")
    return (gap_size - 1) / 4 * (1 - (competitor_coverage - 1) / 4)


def score(
    needs: list[tuple[str, int]],
    coverage: CoverageFn,
    quality: Callable[[Coverage], Quality],
    gap_size: int,
    competitor_coverage: int,
) -> PositioningScore:
    """Score the needs and the market answers; suggestions say what would raise each term."""
    if not needs:
        raise PositioningError("no needs to score")
    scored = []
    for need, importance in needs:
        cov = coverage(need)
        q = quality(cov)
        satisfaction = cov.confidence * q.accuracy * (1 - q.flag_rate) if cov.answered else 0.0
        scored.append(NeedScore(need, importance, cov, q, satisfaction))
    total = sum(n.importance for n in scored)
    p = sum(n.importance * n.satisfaction for n in scored) / total
    m = market_match(gap_size, competitor_coverage)
    result = PositioningScore(p, m, p * m, scored, gap_size, competitor_coverage)
    result.raise_p = _raise_p(scored, total)
    result.raise_m = _raise_m(gap_size, competitor_coverage)
    return result


def _raise_p(scored: list[NeedScore], total: int) -> list[str]:
    """The needs whose shortfall costs P(D|U) most, and what would close it."""
    ideas = []
    for n in sorted(scored, key=lambda n: -(n.importance * (1 - n.satisfaction)))[:5]:
        gain = n.importance * (1 - n.satisfaction) / total
        if gain < 0.005:
            continue
        if not n.coverage.answered:
            ideas.append(
                f"“{n.need}” is not answered today (Teller's route: {n.coverage.route}): add a "
                f"knowledge-base entry or labelled examples for it (up to +{gain:.2f})."
            )
        elif n.quality.flag_rate >= 0.1:
            ideas.append(
                f"“{n.need}” is answered by {n.coverage.intent or n.coverage.kb_id}, but "
                f"{n.quality.flag_rate:.0%} of those answers are flagged: review and correct that answer "
                f"(up to +{gain:.2f})."
            )
        elif n.quality.accuracy < 0.9:
            ideas.append(
                f"“{n.need}” goes to {n.coverage.intent or n.coverage.kb_id}, recognised with "
                f"{n.quality.accuracy:.0%} accuracy: add training examples (up to +{gain:.2f})."
            )
        else:
            ideas.append(
                f"“{n.need}” is answered with confidence {n.coverage.confidence:.2f}: more varied "
                f"phrasings in training or the KB would firm it up (up to +{gain:.2f})."
            )
    return ideas


def _raise_m(gap_size: int, competitor_coverage: int) -> list[str]:
    ideas = []
    if competitor_coverage > 1:
        ideas.append(
            f"Competitors already cover these needs ({competitor_coverage}/5): position on what they "
            "leave out (speed, round-the-clock answers, a human when needed) rather than on the same needs."
        )
    if gap_size < 5:
        ideas.append(
            f"The gap matters {gap_size}/5 to the users: interview them to find needs whose gap is "
            "felt more, or target the persona who feels it most."
        )
    return ideas
