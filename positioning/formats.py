"""Answer formats the brief reads, checked while the PM answers (a question's ``format``).

- ``need_link``: ``"need | intent:card_arrival, kb:overdraft_fee, route:advice, example:..."``
  (:func:`positioning.needs.parse_link`): what serves the need in Teller; every intent, entry and
  route must be one Teller knows (:func:`positioning.needs.check_link`, ids passed in by the caller).
- ``need_rating``: ``"need | 1-5"`` (or a share, ``0.25`` / ``25%``;
  :func:`positioning.needs.parse_coverage`): how well competitors already cover the need.
- ``need_resolution``: ``"need | routes=intent,faq; outcome=adviser_call_booked"``
  (:func:`positioning.needs.parse_resolution`): what counts as resolved for the need.
- ``market_match``: ``"0.8 | source"`` (:func:`positioning.scoring.parse_market_override`): an M
  entered with where it comes from.

The first three are *per need*: the part before the last ``|`` names one of the needs (the items of
the question's ``per`` question), by its wording (any case) or its number.
"""

from __future__ import annotations

from collections.abc import Sequence

from positioning.errors import PositioningError
from positioning.needs import KnownIds, check_link, parse_coverage, parse_link, parse_resolution
from positioning.scoring import parse_market_override

FORMATS = ("need_link", "need_rating", "need_resolution", "market_match")
PER_NEED = ("need_link", "need_rating", "need_resolution")


def item_names(items: Sequence[str]) -> list[str]:
    """The names of a list answer's items: each item's text before its first ``|``
    (``"understand a fee | 4"`` -> ``"understand a fee"``)."""
    return [str(i).split("|", 1)[0].strip() for i in items]


def numbered(names: Sequence[str]) -> str:
    """``"1. track a card; 2. understand a fee"``."""
    return "; ".join(f"{i}. {n}" for i, n in enumerate(names, start=1))


def _need(ref: str, names: Sequence[str] | None) -> str:
    ref = ref.strip()
    if not ref:
        raise ValueError("each line starts with one of the needs, then '|'")
    if names is None:
        return ref
    if ref.isdigit() and 1 <= int(ref) <= len(names):
        return names[int(ref) - 1]
    for name in names:
        if name.lower() == ref.lower():
            return name
    raise ValueError(f"{ref!r} is not one of the needs ({numbered(names)})")


def check(fmt: str, item: str, names: Sequence[str] | None = None, known: KnownIds | None = None) -> str:
    """``item`` checked against ``fmt`` and written out in full (a need named by its number gets its
    wording). ``names``: the needs a per-need line may name (None: any); ``known``: the intents,
    entries and routes a ``need_link`` may name (None: routes checked against Teller's, ids not
    checked; :func:`positioning.needs.check_link`). Raises :class:`ValueError` with a message for
    the PM."""
    item = " ".join(str(item).split())
    try:
        if fmt == "market_match":
            parse_market_override(item)
            return item
        need, sep, rest = item.rpartition("|")
        if not sep:
            example = {
                "need_link": "need | intent:NAME, kb:ID",
                "need_rating": "need | 1-5",
                "need_resolution": "need | routes=intent,faq; outcome=NAME",
            }.get(fmt, "need | ...")
            raise ValueError(f"{item!r}: expected '{example}'")
        name, rest = _need(need, names), rest.strip()
        if fmt == "need_link":
            check_link(parse_link(f"{name} | {rest}"), known)
        elif fmt == "need_rating":
            parse_coverage(rest)
        elif fmt == "need_resolution":
            parse_resolution(rest)
        else:
            raise ValueError(f"unknown answer format {fmt!r}")
        return f"{name} | {rest}".rstrip()
    except PositioningError as exc:
        raise ValueError(str(exc)) from None


def check_items(
    fmt: str, items: Sequence[str], names: Sequence[str] | None = None, known: KnownIds | None = None
) -> list[str]:
    """Every item checked (:func:`check`, ``known`` as there); a per-need format takes each need
    once. Raises :class:`ValueError` naming every line at fault, one per line."""
    out, problems = [], []
    for item in items:
        try:
            out.append(check(fmt, item, names, known))
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        raise ValueError("\n".join(problems))
    if fmt in PER_NEED:
        seen: set[str] = set()
        for line in out:
            name = line.rpartition("|")[0].strip().lower()
            if name in seen:
                raise ValueError(f"{line.rpartition('|')[0].strip()!r} is given twice; one line per need")
            seen.add(name)
    return out
