"""Positioning = P(D|U) x M, from what customers got, with every number traced.

- **P(D|U)**, how well the product meets the target users' core needs: the importance-weighted
  mean of each need's *satisfaction*, the share of its customers' episodes that were resolved
  (:mod:`positioning.outcomes`), over the needs that had traffic. A need without traffic shows
  "no traffic" and is left out (the brief says how much importance that leaves unmeasured). The
  interval is :func:`positioning.stats.weighted_mean`'s. The headline is over the target users'
  conversations (U: the segments the PM named or the persona names, :mod:`positioning.segments`)
  when they have any, with all traffic beside it for comparison; without a target, with U =
  everyone, or with no conversation from the target users, it is over all traffic, and the brief
  says so. Per customer segment (channel, or the segment a bank's backend passes) the same mean
  over that segment's episodes.
- **M**, how well the needs match the gap in the market: the openness competitors leave on each
  need, ``1 - competitor coverage`` (coverage in [0, 1], rated per need), weighted by the need's
  importance times its measured demand (its share of all messages):
  ``M = sum(importance x demand x (1 - coverage)) / sum(importance x demand)``. A need customers do
  not ask about has no weight, so it cannot carry the score. A figure from outside (the source
  article's M = 0.8, a market study) may be entered with its source: it is used, and the measured
  M is shown beside it.
- **Opportunity** per need (Ulwick's outcome-driven innovation, "What Customers Want", 2005):
  ``opportunity = importance + max(importance - satisfaction, 0)`` with both on 0-10 (importance
  1-5 x 2, satisfaction x 10). From 12 up a need is marked under-served (Ulwick's scale: 10-12
  worth considering, 12-15 "low-hanging fruit", above 15 extreme); a satisfaction above its
  importance is over-served.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from positioning.errors import PositioningError
from positioning.needs import Need, parse_needs
from positioning.outcomes import ASKED_AGAIN, FLAGGED, HANDED_OFF, NO_OUTCOME, NeedOutcome, Outcomes
from positioning.rules import Rules
from positioning.segments import Target, TargetScore, score_target
from positioning.stats import Estimate, Rate, weighted_mean

__all__ = [
    "UNDER_SERVED",
    "MarketOverride",
    "NeedScore",
    "PositioningScore",
    "opportunity",
    "parse_market_override",
    "parse_needs",
    "score",
]

#: Ulwick's threshold of an attractive (under-served) opportunity, on the 0-20 opportunity scale.
UNDER_SERVED = 12.0
#: What the headline P(D|U) is over when it is not the target users' conversations.
ALL_TRAFFIC = "all traffic"


@dataclass(frozen=True)
class MarketOverride:
    """An M entered rather than measured (in [0, 1]) and where it comes from."""

    value: float
    source: str


def parse_market_override(text: str) -> MarketOverride:
    """``"0.8 | the source article's market study"`` (or ``"80%"``); raises
    :class:`PositioningError` when the figure is not in [0, 1] or the source is missing."""
    raw, sep, source = text.partition("|")
    raw = raw.strip().replace(",", ".")
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise PositioningError(
            f"market match {text!r}: expected 'figure | source', e.g. '0.8 | study'"
        ) from None
    if not 0.0 <= value <= 1.0:
        raise PositioningError(f"market match {value:g} must lie between 0 and 1")
    if not sep or not source.strip():
        raise PositioningError(f"market match {text!r}: say where the figure comes from ('0.8 | source')")
    return MarketOverride(value, source.strip())


def opportunity(importance: int, satisfaction: float) -> float:
    """Ulwick's opportunity score, 0-20: ``imp + max(imp - sat, 0)`` with ``imp = 2 x importance``
    (1-5 -> 2-10) and ``sat = 10 x satisfaction`` (0-1 -> 0-10)."""
    imp, sat = 2.0 * importance, 10.0 * satisfaction
    return imp + max(imp - sat, 0.0)


@dataclass
class NeedScore:
    """One need, measured: satisfaction (with n and interval, None value without traffic), demand,
    competitor coverage, its weight in M, and the opportunity (None without traffic)."""

    need: str
    importance: int
    served_by: str
    link_status: str
    resolution: str
    satisfaction: Rate
    messages: int
    demand: float
    competitor_coverage: float
    coverage_source: str
    m_weight: float
    opportunity: float | None
    opportunity_range: tuple[float, float] | None
    under_served: bool
    over_served: bool
    reasons: dict[str, int] = field(default_factory=dict)
    other_answers: dict[str, int] = field(default_factory=dict)
    by_segment: dict[str, Rate] = field(default_factory=dict)
    examples: tuple[str, ...] = ()

    @property
    def measured(self) -> bool:
        return self.satisfaction.trials > 0


@dataclass
class PositioningScore:
    """The score of one positioning option. ``p_d_given_u``, ``m`` and ``score`` are None when
    there is nothing to measure them on (no traffic for any need, and no M entered); each
    ``*_formula`` is the computation written out with its numbers."""

    p_d_given_u: float | None
    m: float | None
    score: float | None
    needs: list[NeedScore] = field(default_factory=list)
    p_interval: Estimate | None = None
    p_formula: str = ""
    m_measured: float | None = None
    m_formula: str = ""
    m_source: str = "measured"
    score_formula: str = ""
    #: Share of the needs' importance that had traffic (the part P(D|U) is measured on).
    importance_measured: float = 0.0
    #: P(D|U) per customer segment, with the episodes it rests on.
    segments: dict[str, tuple[float | None, int]] = field(default_factory=dict)
    raise_p: list[str] = field(default_factory=list)
    raise_m: list[str] = field(default_factory=list)
    #: P(D|U) for the target users (the persona's segments) beside all traffic, when a target
    #: was given to :func:`score`.
    target: TargetScore | None = None
    #: Whose conversations the headline P(D|U) is over: ``"target users (retail, sme)"`` or
    #: ``"all traffic"``; ``p_scope`` says so in a sentence (and why, when it fell back).
    p_over: str = ALL_TRAFFIC
    p_scope: str = ""
    #: P(D|U) over all traffic, the comparison beside a headline over the target users (the same
    #: as the headline when that is over all traffic), with its interval and formula.
    p_all_traffic: float | None = None
    p_all_interval: Estimate | None = None
    p_all_formula: str = ""

    @property
    def over_target(self) -> bool:
        """Is the headline P(D|U) over the target users' conversations (not all traffic)?"""
        return self.p_over != ALL_TRAFFIC

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for n, need in zip(data["needs"], self.needs, strict=True):
            n["satisfaction"] = need.satisfaction.to_dict()
            n["by_segment"] = {s: r.to_dict() for s, r in need.by_segment.items()}
        return data


def score(
    needs: Sequence[Need],
    outcomes: Outcomes,
    m_override: MarketOverride | None = None,
    rules: Rules | None = None,
    target: Target | None = None,
) -> PositioningScore:
    """Score one option: its ``needs`` (with competitor coverage) against the measured
    ``outcomes`` (from :func:`positioning.outcomes.judge` with a link for each need). ``rules``:
    what the product must not do itself (:mod:`positioning.rules`); the ideas to raise P(D|U) never
    ask it to answer a need they cover. ``target``: the target users' segments
    (:func:`positioning.segments.choose_target`), measured into ``result.target``.

    The headline P(D|U) (and so the positioning score) is over the target users' conversations
    when ``target`` names segments and one of them had a conversation of a need; otherwise (no
    target, U = everyone, or no traffic from the target users) it is over all traffic.
    ``result.p_over`` and ``result.p_scope`` say which; ``result.p_all_*`` is all traffic, beside it.

    Raises :class:`PositioningError` when there are no needs, a need has no outcome, or a need has
    no competitor coverage and no M is entered.
    """
    if not needs:
        raise PositioningError("no needs to score")
    scored = []
    for need in needs:
        measured = outcomes.for_need(need.text)
        if measured is None:
            raise PositioningError(f"need {need.text!r} has no measured outcome (no link given for it)")
        if need.competitor_coverage is None and m_override is None:
            raise PositioningError(f"need {need.text!r} has no competitor coverage (rate it 1-5 or 0-1)")
        scored.append(_need_score(need, measured))

    measured_parts = [(float(n.importance), n.satisfaction) for n in scored if n.measured]
    all_estimate = weighted_mean(measured_parts)
    total_importance = sum(n.importance for n in scored)
    p_all = all_estimate.value if all_estimate else None
    all_formula = _p_formula(scored, p_all)
    measured_importance = sum(n.importance for n in scored if n.measured)
    focus = (
        score_target({n.text: n.importance for n in needs}, outcomes, target) if target is not None else None
    )
    if focus is not None and focus.measured:
        estimate, p_formula = focus.estimate, _target_formula(focus, scored)
        all_formula = _p_formula(scored, p_all, "P(D|all traffic)")
        over = f"target users ({', '.join(focus.segments)})"
        measured_importance = sum(n.importance for n in scored if focus.by_need[n.need].trials)
    else:
        estimate, p_formula, over = all_estimate, all_formula, ALL_TRAFFIC
    p = estimate.value if estimate else None

    m_measured, m_formula = _market(scored)
    if m_override is not None:
        m: float | None = m_override.value
        m_source = f"entered: {m_override.source}"
        m_formula = f"M = {m_override.value:.2f}, entered ({m_override.source}); measured: {m_formula}"
    else:
        m, m_source = m_measured, "measured"
    value = p * m if p is not None and m is not None else None
    result = PositioningScore(
        p,
        m,
        value,
        scored,
        estimate,
        p_formula,
        m_measured,
        m_formula,
        m_source,
        _score_formula(p, m, value, estimate),
        measured_importance / total_importance,
        _segments(scored),
    )
    result.raise_p = _raise_p(scored, rules, focus if focus is not None and focus.measured else None)
    result.raise_m = _raise_m(scored)
    result.target = focus
    result.p_over, result.p_scope = over, _scope(focus, all_estimate)
    result.p_all_traffic, result.p_all_interval, result.p_all_formula = p_all, all_estimate, all_formula
    return result


def _target_formula(focus: TargetScore, scored: Sequence[NeedScore]) -> str:
    """The target users' P(D|U) written out (``w x resolved/conversations`` per need), with the needs
    they had no conversation of left out by name."""
    left_out = [n.need for n in scored if not focus.by_need[n.need].trials]
    tail = f" (left out, no traffic from the target users: {', '.join(left_out)})" if left_out else ""
    return focus.formula + tail


def _scope(focus: TargetScore | None, all_traffic: Estimate | None) -> str:
    """Whose conversations the headline P(D|U) is over, in a sentence (and why all traffic, when it
    falls back)."""
    overall = all_traffic.text() if all_traffic else "no traffic"
    if focus is None:
        return "P(D|U) is over all traffic: no target users were given."
    if focus.everyone:
        return f"P(D|U) is over all traffic: U is everyone ({focus.source})."
    names = ", ".join(focus.segments)
    if not focus.measured:
        return (
            f"P(D|U) is over all traffic: the target users ({names}, {focus.source}) had no conversation "
            "of these needs, so there is nothing of theirs to measure yet."
        )
    assert focus.estimate is not None
    return (
        f"P(D|U) is over the target users' conversations ({names}, {focus.source}; "
        f"{focus.conversations} conversations); over all traffic it is {overall} "
        f"({focus.all_conversations} conversations), for comparison."
    )


def _need_score(need: Need, measured: NeedOutcome) -> NeedScore:
    rate = measured.satisfaction
    coverage = need.competitor_coverage if need.competitor_coverage is not None else 0.0
    opp = opportunity(need.importance, rate.value) if rate.value is not None else None
    interval = rate.interval
    opp_range = (
        (opportunity(need.importance, interval[1]), opportunity(need.importance, interval[0]))
        if interval
        else None
    )
    return NeedScore(
        need.text,
        need.importance,
        measured.link.describe(),
        measured.link.status,
        measured.resolution,
        rate,
        measured.messages,
        measured.demand,
        coverage,
        need.coverage_source or ("not rated" if need.competitor_coverage is None else ""),
        need.importance * measured.demand,
        opp,
        opp_range,
        opp is not None and opp >= UNDER_SERVED - 1e-9,
        rate.value is not None and 10 * rate.value > 2 * need.importance,
        measured.reasons,
        measured.other_answers,
        measured.by_segment,
        measured.examples,
    )


def _p_formula(scored: Sequence[NeedScore], p: float | None, label: str = "P(D|U)") -> str:
    """``"P(D|U) = (5x0.68 + 3x0.47) / 8 = 0.60"`` over all traffic (``label`` names it when it is
    the comparison beside the target users')."""
    measured = [n for n in scored if n.measured]
    left_out = [n.need for n in scored if not n.measured]
    tail = f" (left out, no traffic: {', '.join(left_out)})" if left_out else ""
    if not measured:
        return f"{label}: no traffic for any need" + tail
    terms = " + ".join(f"{n.importance}x{n.satisfaction.value:.2f}" for n in measured)
    weights = sum(n.importance for n in measured)
    return f"{label} = ({terms}) / {weights} = {p:.2f}{tail}"


def _market(scored: Sequence[NeedScore]) -> tuple[float | None, str]:
    weighted = [n for n in scored if n.m_weight > 0]
    if not weighted:
        return None, "no demand measured for any need, so no M"
    total = sum(n.m_weight for n in weighted)
    m = sum(n.m_weight * (1 - n.competitor_coverage) for n in weighted) / total
    terms = " + ".join(f"{n.importance}x{n.demand:.2f}x(1-{n.competitor_coverage:.2f})" for n in weighted)
    weights = " + ".join(f"{n.importance}x{n.demand:.2f}" for n in weighted)
    zero = [n.need for n in scored if n.m_weight <= 0]
    tail = f" (no weight, no demand: {', '.join(zero)})" if zero else ""
    return m, f"M = ({terms}) / ({weights}) = {m:.2f}{tail}"


def _score_formula(p: float | None, m: float | None, value: float | None, estimate: Estimate | None) -> str:
    if value is None or p is None or m is None:
        return (
            "Positioning: not measurable yet (" + ("no traffic for any need" if p is None else "no M") + ")"
        )
    low, high = (estimate.low * m, estimate.high * m) if estimate else (value, value)
    return (
        f"Positioning = {p:.2f} x {m:.2f} = {value:.2f} "
        f"(the 95 % CI of P(D|U) carried through: {low:.2f}-{high:.2f})"
    )


def _segments(scored: Sequence[NeedScore]) -> dict[str, tuple[float | None, int]]:
    names = sorted({s for n in scored for s in n.by_segment})
    out: dict[str, tuple[float | None, int]] = {}
    for name in names:
        parts = [(float(n.importance), n.by_segment[name]) for n in scored if name in n.by_segment]
        estimate = weighted_mean(parts)
        out[name] = (estimate.value if estimate else None, sum(r.trials for _, r in parts))
    return out


def _raise_p(
    scored: Sequence[NeedScore], rules: Rules | None = None, focus: TargetScore | None = None
) -> list[str]:
    """The needs whose shortfall costs P(D|U) most, and what would close it (never "answer it"
    for a need Teller declines by design, such as investment advice). Each "up to +x" is what the
    headline P(D|U) would gain were every conversation of that need resolved: worked out over the
    same conversations and needs as the headline (``focus``: the target users', when the headline
    is theirs), ``importance x (1 - satisfaction) / importance of the needs measured`` (a reviewer
    found it over all traffic and every need's importance, unmeasured ones included, while the
    headline was the target users' over the needs they brought)."""
    ideas = []
    unmeasured = [n for n in scored if not n.measured]
    for n in unmeasured:
        ideas.append(
            f"“{n.need}” has no traffic ({n.served_by}): confirm what serves it, or check that "
            "customers need it at all; until then it is left out of P(D|U)."
        )

    def satisfaction(n: NeedScore) -> float | None:
        rate = focus.by_need.get(n.need) if focus is not None else n.satisfaction
        return rate.value if rate is not None else None

    measured = [n for n in scored if n.measured and satisfaction(n) is not None]
    if focus is not None:
        for n in scored:
            if n.measured and satisfaction(n) is None:
                ideas.append(
                    f"“{n.need}”: the target users had no conversation of it, so it does not move their "
                    "P(D|U); it is measured over all traffic only."
                )
    total = sum(n.importance for n in measured)
    for n in sorted(measured, key=lambda n: -(n.importance * (1 - (satisfaction(n) or 0.0))))[:5]:
        value = satisfaction(n) or 0.0
        gain = n.importance * (1 - value) / total
        if gain < 0.005 or not n.reasons:
            continue
        reason, count = next(iter(n.reasons.items()))
        episodes = n.satisfaction.trials
        share = f"{count} of {episodes} conversations" + (" of all traffic" if focus is not None else "")
        rule = rules.declines(n.need) if rules else None
        if reason == NO_OUTCOME:
            # The bank already counts an outcome (an adviser call booked, say) as resolved: what is
            # missing is the outcome itself, not a rule.
            ideas.append(
                f"“{n.need}”: {share} ended without the outcome the bank counts as resolved "
                f"({n.resolution}): make that next step easier to take (offer it in the reply) and "
                "check that the bank's backend records it (POST /api/outcomes) "
                f"(up to +{gain:.2f})."
            )
        elif rule is not None:
            ideas.append(
                f"“{n.need}”: {share} were not resolved ({reason}). Teller must not serve it itself "
                f"({rule.source}): "
                "count the adviser booking as resolved (a "
                "resolution outcome for this need, e.g. outcome=adviser_call_booked) or leave the need "
                f"out of this option (up to +{gain:.2f})."
            )
        elif reason == "not answered (advice)":
            ideas.append(
                f"“{n.need}”: {share} got Teller's advice refusal, by design. Either count an "
                "adviser booking as resolved (a resolution outcome for this need) or leave the need "
                f"out of this option (up to +{gain:.2f})."
            )
        elif reason == HANDED_OFF:
            ideas.append(
                f"“{n.need}”: {share} were handed off to a person: if Teller may answer them, add a "
                f"knowledge-base entry or labelled examples (up to +{gain:.2f})."
            )
        elif reason == FLAGGED:
            ideas.append(
                f"“{n.need}”: {share} got an answer customers or operators flagged: review and correct "
                f"{n.served_by} (up to +{gain:.2f})."
            )
        elif reason == ASKED_AGAIN:
            ideas.append(
                f"“{n.need}”: in {share} the customer had to ask again: the answer from {n.served_by} "
                f"does not settle it (up to +{gain:.2f})."
            )
        elif reason.startswith("answered by"):
            ideas.append(
                f"“{n.need}”: {share} were {reason}, which is not linked to the need: link it if it "
                f"serves the need, else add training examples (up to +{gain:.2f})."
            )
        else:
            ideas.append(f"“{n.need}”: {share} {reason} (up to +{gain:.2f}).")
    return ideas


def _raise_m(scored: Sequence[NeedScore]) -> list[str]:
    ideas = []
    covered = [n for n in scored if n.m_weight > 0 and n.competitor_coverage >= 0.5]
    for n in sorted(covered, key=lambda n: -n.m_weight)[:3]:
        ideas.append(
            f"Competitors already cover “{n.need}” ({n.competitor_coverage:.0%}) and it is "
            f"{n.demand:.0%} of traffic: position on what they leave out there (speed, round-the-clock "
            "answers, a human when needed) rather than on the need itself."
        )
    idle = [n.need for n in scored if n.m_weight <= 0]
    if idle:
        ideas.append(
            "No customer asks about " + ", ".join(f"“{x}”" for x in idle) + ": however open the "
            "market, these needs carry no weight in M until there is demand."
        )
    return ideas
