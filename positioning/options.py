"""Several positioning options scored side by side on the same evidence.

An option is a set of needs (with importance and competitor coverage), what serves each, the
bank's resolution rules and an optional entered M. The log is the same for all; each option
attributes it to its own needs (:func:`positioning.outcomes.judge`), so a message counts for the
need of that option it belongs to. An option may name its own target users (``u=retail``,
``u=everyone``; :func:`option_target`), else it takes the interview's. Every option follows the
interview's rule for U: P(D|U) over the target users' conversations when they have any of the
option's needs, else over all traffic (each option's ``result.p_over`` says which, so two options
are compared on the same customers or the brief shows that they are not).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from positioning.errors import PositioningError
from positioning.evidence import Embed, LoggedExchange
from positioning.needs import Need, NeedLink, Resolution, Vectors, parse_needs
from positioning.outcomes import judge
from positioning.rules import Rules
from positioning.scoring import MarketOverride, PositioningScore, parse_market_override, score
from positioning.segments import EVERYONE, Target


@dataclass(frozen=True)
class Option:
    """One positioning option: ``links`` must hold one :class:`NeedLink` per need (same text)."""

    name: str
    needs: tuple[Need, ...]
    links: tuple[NeedLink, ...]
    resolutions: Mapping[str, Resolution] = field(default_factory=dict)
    m_override: MarketOverride | None = None
    #: What the product must not do itself (its recommendations respect it).
    rules: Rules | None = None
    #: The target users (:func:`positioning.segments.choose_target`): P(D|U) is over their
    #: conversations of this option's needs when they have any, else over all traffic, as for the
    #: interview's own score (:func:`positioning.scoring.score`).
    target: Target | None = None


@dataclass(frozen=True)
class Scored:
    option: Option
    result: PositioningScore


def compare(
    options: Sequence[Option],
    exchanges: Sequence[LoggedExchange],
    embed: Embed | Vectors | None = None,
    **judging: float,
) -> list[Scored]:
    """Every option scored on ``exchanges``, best first (an option with no measurable score last).
    ``judging`` passes ``similarity`` and ``repeat_window`` to :func:`positioning.outcomes.judge`.
    Raises :class:`positioning.errors.PositioningError` as :func:`positioning.scoring.score` does."""
    vectors = embed if isinstance(embed, Vectors) or embed is None else Vectors(embed)
    scored = [
        Scored(
            o,
            score(
                o.needs,
                judge(exchanges, o.links, o.resolutions, vectors, **judging),
                o.m_override,
                o.rules,
                o.target,
            ),
        )
        for o in options
    ]
    return sorted(scored, key=lambda s: 1.0 if s.result.score is None else -s.result.score)


@dataclass(frozen=True)
class OptionSpec:
    """An option as the PM writes it: a name, its needs (importance 1-5, optional competitor
    coverage) and an optional entered M. What serves each need and what counts as resolved come
    from the interview (or Teller's suggestion, for a need the interview does not list)."""

    name: str
    needs: tuple[Need, ...]
    m_override: MarketOverride | None = None
    #: The option's own target users (``u=retail, premier``; ``()`` for ``u=everyone``); None: the
    #: interview's (:func:`option_target`).
    segments: tuple[str, ...] | None = None


def option_target(spec: OptionSpec, seen: Iterable[str], default: Target) -> Target:
    """The target users an option is scored over: its own ``u=`` segments (each must be a segment
    or channel ``seen`` in the log), ``u=everyone`` for all traffic, else ``default`` (the
    interview's). P(D|U) is then over their conversations when they have any of the option's
    needs, else over all traffic (:func:`positioning.scoring.score` says which). Raises
    :class:`PositioningError` naming an unknown segment with the known ones."""
    if spec.segments is None:
        return default
    if not spec.segments:
        return Target((), f"option {spec.name!r}: u=everyone")
    known = list(dict.fromkeys(str(s).lower() for s in seen))
    unknown = [s for s in spec.segments if s not in known]
    if unknown:
        listed = ", ".join(known) if known else "none: the log has no segments or channels yet"
        raise PositioningError(
            f"option {spec.name!r}: u={', '.join(unknown)} is not a segment or channel seen in the log "
            f"(known: {listed}; or u=everyone)"
        )
    return Target(spec.segments, f"option {spec.name!r}: u={', '.join(spec.segments)}")


def parse_option(text: str) -> OptionSpec:
    """``"Service first: track a card | 5; understand a fee | 4 | 2; m=0.8 | market study; u=retail"``:
    the name before the first ``:``, then needs as in :func:`positioning.needs.parse_needs`
    separated by ``;`` (or line breaks), optionally ``m=figure | source``
    (:func:`positioning.scoring.parse_market_override`) and ``u=segment, channel`` (or
    ``u=everyone``): the option's own target users (:func:`option_target`). Raises
    :class:`PositioningError` naming what does not parse."""
    name, sep, rest = text.partition(":")
    if not sep or not name.strip():
        raise PositioningError(f"option {text.strip()!r}: expected 'name: need | importance; ...'")
    needs: list[Need] = []
    override = None
    segments: tuple[str, ...] | None = None
    for item in (i.strip() for i in re.split(r"[;\n]", rest)):
        if not item:
            continue
        if re.match(r"(?i)m\s*=", item):
            override = parse_market_override(item.split("=", 1)[1])
        elif re.match(r"(?i)u\s*=", item):
            named = [s.strip().lower() for s in item.split("=", 1)[1].split(",") if s.strip()]
            if not named:
                raise PositioningError(f"option {name.strip()!r}: u= names no segment (or u=everyone)")
            segments = () if any(s in EVERYONE for s in named) else tuple(dict.fromkeys(named))
        else:
            needs.extend(parse_needs([item]))
    if not needs:
        raise PositioningError(f"option {name.strip()!r} has no needs ('need | importance; ...')")
    texts = [n.text.lower() for n in needs]
    if len(set(texts)) != len(texts):
        raise PositioningError(f"option {name.strip()!r} lists a need twice")
    return OptionSpec(name.strip(), tuple(needs), override, segments)


def parse_options(text: str) -> list[OptionSpec]:
    """Several options: one per line, or separated by ``||`` (a chat command is one line); empty
    lines and lines starting with ``#`` are left out. Raises :class:`PositioningError`."""
    parts = [p.strip() for line in text.splitlines() for p in line.split("||")]
    return [parse_option(p) for p in parts if p and not p.startswith("#")]
