"""The "U" of P(D|U): the target users as segments of the log, and P(D|U) measured on them.

A logged message carries a channel (``web``, ``telegram``, ``slack``) and, when a bank's backend
passes one, a ``segment`` (``retail``, ``premier``, ...). The PM names the target users' segments or
channels in the interview (``target_segments``, full interview, optional; Teller suggests those seen
in the log, the ones the persona names first). Otherwise (the quick interview, or the question
skipped) they are mapped from the persona's own words: a segment or channel seen in the log whose
name occurs in the ``target_users`` answer ("Retail customers ..." -> ``retail``). With none named
and none found, U is everyone: P(D|U) is over all traffic.

P(D|U) for the target users is the importance-weighted mean of resolved shares over the episodes
whose segment or channel is one of the target's; it is the headline P(D|U) (:mod:`positioning.scoring`)
whenever one of them has a conversation of a need, with all traffic beside it for comparison. Each
target segment is shown on its own too, and one with no conversation of the needs says "no traffic".
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from positioning.evidence import LoggedExchange
from positioning.outcomes import Episode, Outcomes
from positioning.stats import Estimate, Rate, weighted_mean

#: Answers of ``target_segments`` that mean every customer.
EVERYONE = ("everyone", "all", "all traffic", "all customers", "everybody", "*")
NAMED, MAPPED, EVERYONE_NAMED, NONE_FOUND = (
    "named by the PM in the interview",
    "mapped from the persona's wording",
    "the PM named everyone",
    "no segments named, and the persona names none seen in the log",
)


def segment_key(e: LoggedExchange) -> str:
    """The segment a message counts under: the bank's segment, else its channel."""
    return e.segment or e.channel or "all"


def seen_segments(exchanges: Iterable[LoggedExchange]) -> Counter[str]:
    """Messages per segment and per channel seen in the log (a message with a segment counts
    under both its segment and its channel)."""
    counts: Counter[str] = Counter()
    for e in exchanges:
        counts.update(list(dict.fromkeys(n.lower() for n in (e.segment, e.channel) if n)))
    return counts


def _words(name: str) -> str:
    return " ".join(re.split(r"[\s_\-]+", name.strip().lower()))


#: Words that exclude what follows them in the persona's clause ("Retail customers, not premier").
_NEGATION = re.compile(
    r"(?<!\w)(?:not|non|except|excluding|other than|no|apart from|but not|never|rather than|instead of)(?!\w)"
)
#: Words that exclude what comes before them in the clause ("premier customers; retail excluded").
_AFTER_NEGATION = re.compile(r"(?<!\w)(?:excluded|not included|left out)(?!\w)")
#: What ends a negation's reach: a new clause.
_CLAUSE = re.compile(r"[,;.:!?()\n]|(?<!\w)(?:but|and also|while|whereas)(?!\w)")


def map_persona(persona: str, seen: Iterable[str]) -> list[str]:
    """The names in ``seen`` that the persona's text names, as whole words (a plural "s" allowed;
    ``_`` and ``-`` in a name read as spaces), in the order of ``seen``. A name that comes after a
    negation in its clause ("not", "except", "excluding", "other than", "rather than", "instead
    of": "Retail customers, not premier"), right after "no" or "non" ("non-retail"), or before
    "excluded" / "not included" / "left out" in its clause, is excluded, even when it is named
    elsewhere too."""
    text = " ".join(re.split(r"[ \t_\-]+", str(persona or "").lower()))
    negated: list[tuple[int, int]] = []  # spans of text under a negation, to the clause's end
    for match in _NEGATION.finditer(text):
        if match.group(0) in ("no", "non"):  # "non-retail", "no premier": the next word only
            word = re.match(r"\s*\w+", text[match.end() :])
            negated.append((match.end(), match.end() + (word.end() if word else 0)))
            continue
        end = _CLAUSE.search(text, match.end())
        negated.append((match.end(), end.start() if end else len(text)))
    for match in _AFTER_NEGATION.finditer(text):
        starts = [m.end() for m in _CLAUSE.finditer(text, 0, match.start())]
        negated.append((starts[-1] if starts else 0, match.start()))
    found = []
    for name in seen:
        words = _words(name)
        if not words:
            continue
        hits = list(re.finditer(rf"(?<!\w){re.escape(words)}(?:s|es)?(?!\w)", text))
        if hits and not any(a <= h.start() < b for h in hits for a, b in negated):
            found.append(name)
    return found


def excluded_by_persona(persona: str, seen: Iterable[str]) -> list[str]:
    """The names in ``seen`` that the persona names only to exclude them ("not retail
    customers"), in the order of ``seen``: named once the negations are ignored, but not by
    :func:`map_persona`."""
    seen = list(seen)
    kept = set(map_persona(persona, seen))
    plain = " ".join(re.split(r"[ \t_\-]+", str(persona or "").lower()))
    named = map_persona(_AFTER_NEGATION.sub(" ", _NEGATION.sub(" ", plain)), seen)
    return [name for name in named if name not in kept]


@dataclass(frozen=True)
class Target:
    """The target users' segments (empty: everyone) and how they were chosen (``source``)."""

    segments: tuple[str, ...]
    source: str

    @property
    def everyone(self) -> bool:
        return not self.segments

    def holds(self, episode: Episode) -> bool:
        if self.everyone:
            return True
        first = episode.exchanges[0]
        names = {n.lower() for n in (episode.segment, first.segment, first.channel) if n}
        return bool(names & set(self.segments))


def choose_target(answers: Mapping[str, Any], seen: Iterable[str]) -> Target:
    """U from the interview: the ``target_segments`` answer (``everyone`` for all), else the
    segments and channels of ``seen`` that the ``target_users`` persona names, else everyone."""
    named = [str(x).strip().lower() for x in answers.get("target_segments") or [] if str(x).strip()]
    if named:
        if any(n in EVERYONE for n in named):
            return Target((), EVERYONE_NAMED)
        return Target(tuple(dict.fromkeys(named)), NAMED)
    persona = str(answers.get("target_users") or "")
    seen = list(seen)
    mapped = map_persona(persona, seen)
    if mapped:
        return Target(tuple(mapped), MAPPED)
    excluded = excluded_by_persona(persona, seen)
    others = [name for name in seen if name not in excluded]
    if excluded and others:  # "anyone except retail": everyone the persona does not exclude
        return Target(tuple(others), MAPPED)
    return Target((), NONE_FOUND)


@dataclass
class TargetScore:
    """P(D|U) for the target users beside all traffic, each with its conversations (episodes of
    the needs) and interval; ``per_segment``: each target segment alone (None: no traffic)."""

    segments: tuple[str, ...]
    source: str
    estimate: Estimate | None
    conversations: int
    all_traffic: Estimate | None
    all_conversations: int
    per_segment: dict[str, tuple[Estimate | None, int]] = field(default_factory=dict)
    formula: str = ""
    #: Each need's resolved share over the target users' conversations (need text -> rate).
    by_need: dict[str, Rate] = field(default_factory=dict)

    @property
    def everyone(self) -> bool:
        return not self.segments

    @property
    def measured(self) -> bool:
        """Does P(D|U) stand on the target users' own conversations (segments named or mapped, and
        at least one conversation of a need from them)? Else the headline falls back to all traffic."""
        return not self.everyone and self.estimate is not None

    @property
    def without_traffic(self) -> list[str]:
        return [s for s, (_, n) in self.per_segment.items() if n == 0]

    def text(self) -> str:
        """One paragraph for the brief and the chat: what U is and P(D|U) for it beside all traffic
        (or, when the target users have no conversation of the needs, that it falls back to all
        traffic)."""
        overall = _estimate(self.all_traffic, self.all_conversations)
        if self.everyone:
            return f"U = everyone ({self.source}): P(D|U) is over all traffic, {overall}."
        if not self.measured:
            return (
                f"U = {', '.join(self.segments)} ({self.source}), but no conversation of these needs came "
                f"from {'it' if len(self.segments) == 1 else 'them'}: P(D|U) falls back to all traffic, "
                f"{overall}."
            )
        parts = [
            f"U = {', '.join(self.segments)} ({self.source}): P(D|U) = "
            f"{_estimate(self.estimate, self.conversations)}; over all traffic, for comparison, {overall}."
        ]
        if len(self.per_segment) > 1:
            parts.append(
                "Per target segment: "
                + "; ".join(f"{s} {_estimate(e, n)}" for s, (e, n) in self.per_segment.items())
                + "."
            )
        missing = self.without_traffic
        if missing:
            parts.append(
                f"No traffic from {', '.join(missing)} for these needs, so no P(D|U) for "
                + ("it" if len(missing) == 1 else "them")
                + "."
            )
        return " ".join(parts)


def _estimate(e: Estimate | None, n: int) -> str:
    if e is None:
        return "no traffic"
    return f"{e.value:.2f} (95 % CI {e.low:.2f}-{e.high:.2f}, {n} conversation{'s' if n != 1 else ''})"


def _measure(
    importance: Mapping[str, int], episodes: Sequence[Episode]
) -> tuple[Estimate | None, int, list[tuple[str, int, Rate]]]:
    rates = []
    for need, weight in importance.items():
        mine = [ep for ep in episodes if ep.need == need]
        rates.append((need, weight, Rate(sum(ep.resolved for ep in mine), len(mine))))
    estimate = weighted_mean([(float(w), r) for _, w, r in rates])
    return estimate, sum(r.trials for _, _, r in rates), rates


def score_target(importance: Mapping[str, int], outcomes: Outcomes, target: Target) -> TargetScore:
    """P(D|U) for ``target`` (need text -> importance 1-5 in ``importance``; the episodes of
    ``outcomes``) beside all traffic, per target segment, and the formula written out."""
    everything, total, _ = _measure(importance, outcomes.episodes)
    if target.everyone:
        return TargetScore((), target.source, everything, total, everything, total)
    kept = [ep for ep in outcomes.episodes if target.holds(ep)]
    estimate, n, rates = _measure(importance, kept)
    per_segment = {}
    for name in target.segments:
        alone = Target((name,), target.source)
        e, k, _ = _measure(importance, [ep for ep in kept if alone.holds(ep)])
        per_segment[name] = (e, k)
    measured = [(need, w, r) for need, w, r in rates if r.trials]
    if measured and estimate is not None:
        terms = " + ".join(f"{w}x{r.successes}/{r.trials}" for _, w, r in measured)
        formula = (
            f"P(D|U={', '.join(target.segments)}) = ({terms}) / {sum(w for _, w, _ in measured)} "
            f"= {estimate.value:.2f}"
        )
    else:
        formula = f"P(D|U={', '.join(target.segments)}): no traffic from these segments for any need"
    return TargetScore(
        target.segments,
        target.source,
        estimate,
        n,
        everything,
        total,
        per_segment,
        formula,
        {need: r for need, _, r in rates},
    )
