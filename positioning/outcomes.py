"""What customers got: each logged message tied to a need, grouped into episodes, and each episode
judged resolved or not.

Definitions (all measured on the log, none on Teller's confidence):

- **Attribution.** A message belongs to a need when its reply came from something linked to the
  need (:meth:`NeedLink.serves`). Something linked to several needs (say ``route:advice`` for
  both 理财建议 and 投资分析) serves each of them: its conversations count for every one of those
  needs (one episode per need, each judged by that need's rule) and each need's outcome says the
  link is shared (:attr:`NeedOutcome.shared_with`). Counting them twice does not bend P(D|U): it is
  a weighted mean of per-need rates, not a sum over conversations, and each need's rate is what its
  customers got. Demand (a share of all messages) may then add up to more than 1 over the needs;
  M only uses it as relative weights. The overall resolved share and the unresolved traffic count
  each conversation once (resolved when it is resolved for every need it counts for). Giving all of
  the shared traffic to the most similar need instead would leave the other at "no traffic" though
  its link answered customers. Otherwise, with an encoder, to the need whose prototype is
  nearest if the cosine is at least ``similarity`` (prototypes: the need's wording, the PM's
  example messages, and the mean vector of the messages the need's links answered). Otherwise it
  belongs to no need.
- **Episode** (the unit of satisfaction, "a customer's conversation about a need"): one customer's
  consecutive messages attributed to the same need, each sent within ``repeat_window`` seconds of
  the previous one. Messages of no need continue an episode when they are that close in time and
  at least ``similarity`` alike. A button the customer pressed on a clarifying question (an intent
  or an entry it offered, :attr:`~positioning.evidence.LoggedExchange.pressed`) continues that
  question's episode within the window; a question tied to no need then belongs to the need of the
  pressed button's answer: one conversation, not two. Without a customer id every message is its own episode.
- **Asking again**: an episode in which the customer wrote again after a reply that was not a
  clarifying question (the same customer's next message, within the window, tied to the same
  need).
- **Resolved** (default :class:`~positioning.needs.Resolution`): the last reply was given by one of
  the rule's routes from something linked to the need, no reply in the episode was flagged or
  thumbed down, none was handed off, the customer did not ask again, and the customer's next
  message within the window was not handed off either ("followed by a handoff"). A bank may choose
  an outcome (e.g. an adviser call booked) or its own check per need. A reply on the ``advice``
  route is Teller declining to advise: it never resolves an episode by itself, only through an
  outcome the bank records (:class:`~positioning.needs.Resolution`). The outcome may be recorded
  on an exchange of the episode or on the same customer's next message within the window when
  that message belongs to no listed need (the "Book an adviser call" button press, a handoff).

Satisfaction of a need = resolved episodes / episodes, with a Wilson interval (:mod:`positioning.stats`);
demand = the need's share of all messages.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from positioning.evidence import Embed, LoggedExchange, intent_words
from positioning.needs import ADVICE, DEFAULT_RESOLUTION, NeedLink, Resolution, Vectors
from positioning.stats import Rate

RESOLVED = "resolved"
HANDED_OFF = "handed off"
FLAGGED = "flagged or thumbed down"
ASKED_AGAIN = "asked again"
FOLLOWED_BY_HANDOFF = "followed by a handoff"
NO_OUTCOME = "outcome not recorded"


@dataclass(frozen=True)
class Episode:
    """One customer's messages about one need (``need`` None: about no listed need), oldest first,
    and the verdict for that need: ``reason`` is ``"resolved"`` or why not. ``shared``: the other
    listed needs the same messages count for (served by something linked to each), each with an
    episode of its own."""

    need: str | None
    customer: str
    exchanges: tuple[LoggedExchange, ...]
    resolved: bool
    reason: str
    segment: str
    shared: tuple[str, ...] = ()


@dataclass
class NeedOutcome:
    """A need's measured outcome: ``satisfaction`` (resolved episodes / episodes), ``messages``
    attributed to it, ``demand`` (their share of all messages, 0-1), why episodes were not
    resolved (reason -> episodes), answers given by things not linked to it (in words ->
    messages), ``by_segment`` satisfaction per customer segment, and up to three unresolved
    example messages. ``shared_with``: the other needs whose links serve some of the same
    conversations (need -> conversations counted for both)."""

    need: str
    link: NeedLink
    resolution: str
    satisfaction: Rate
    messages: int
    demand: float
    linked_messages: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    other_answers: dict[str, int] = field(default_factory=dict)
    by_segment: dict[str, Rate] = field(default_factory=dict)
    examples: tuple[str, ...] = ()
    shared_with: dict[str, int] = field(default_factory=dict)


@dataclass
class Outcomes:
    """Every need's :class:`NeedOutcome`, every episode (a conversation shared by several needs
    has one per need), and the messages of unresolved conversations (all traffic, each message
    once, for clustering candidate needs); ``resolved`` is the strict share over all
    conversations, of any need or none, each counted once."""

    messages: int
    needs: list[NeedOutcome]
    episodes: list[Episode]
    unresolved: list[LoggedExchange]
    resolved: Rate
    repeat_window: float
    similarity: float
    attributed: dict[LoggedExchange, str] = field(default_factory=dict)

    def for_need(self, need: str) -> NeedOutcome | None:
        return next((n for n in self.needs if n.need == need), None)

    def need_of(self, exchange: LoggedExchange) -> str | None:
        """The listed need a logged message was attributed to, if any."""
        return self.attributed.get(exchange)


def _channel_segment(channel: str | None, segmented: bool) -> str:
    """The segment a conversation without one counts under: its channel, named as such when other
    conversations of the log have a segment ("web (no segment)"): a reviewer found the brief's
    segment table give "web" 0.00 over 3 conversations (the web ones without a backend segment)
    beside an option for "web" at 0.91 (every web conversation, segments or not)."""
    if not channel:
        return "all"
    return f"{channel} (no segment)" if segmented else channel


def judge(
    exchanges: Sequence[LoggedExchange],
    links: Sequence[NeedLink],
    resolutions: Mapping[str, Resolution] | None = None,
    embed: Embed | Vectors | None = None,
    *,
    similarity: float = 0.55,
    repeat_window: float = 1800.0,
) -> Outcomes:
    """Attribute, group and judge ``exchanges`` (see the module's definitions).

    ``links``: one per need (its ``need`` is the need's text); ``resolutions``: need text ->
    rule (default :data:`~positioning.needs.DEFAULT_RESOLUTION`); ``embed``: texts -> L2-normalised
    vectors (without it, only linked replies are attributed and repeats of no need are not
    detected); ``similarity``: the cosine threshold of attribution; ``repeat_window``: seconds.
    """
    resolutions = resolutions or {}
    vectors = embed if isinstance(embed, Vectors) or embed is None else Vectors(embed)
    texts = [e.text for e in exchanges]
    segmented = any(e.segment for e in exchanges)
    matrix = vectors(texts) if vectors is not None and texts else None
    needs_of = _attribute(exchanges, links, vectors, matrix, similarity)
    link_of = {link.need: link for link in links}

    # Episodes: per customer, in time order.
    by_customer: dict[str, list[int]] = defaultdict(list)
    for i, e in enumerate(exchanges):
        by_customer[e.customer or f"\x00{i}"].append(i)
    episodes: list[Episode] = []
    conversations: list[tuple[bool, tuple[LoggedExchange, ...]]] = []
    for customer, indices in by_customer.items():
        indices.sort(key=lambda i: (exchanges[i].at, i))
        groups: list[list[int]] = []
        for i in indices:
            if groups and _continues(
                exchanges, needs_of, matrix, groups[-1][-1], i, repeat_window, similarity
            ):
                groups[-1].append(i)
            else:
                groups.append([i])
        anonymous = customer.startswith("\x00")
        for g, group in enumerate(groups):
            following = groups[g + 1] if g + 1 < len(groups) and not anonymous else None
            soon = (
                following is not None
                and exchanges[following[0]].at - exchanges[group[-1]].at <= repeat_window
            )
            followed_by_handoff = soon and following is not None and _handed_off(exchanges[following[0]])
            # Outcomes recorded on the customer's next message of no listed need (the adviser
            # button pressed after an advice reply, say) belong to this conversation too.
            later = (
                frozenset().union(*(exchanges[i].outcomes for i in following))
                if soon and following is not None and not needs_of[following[0]]
                else frozenset()
            )
            # A clarifying question tied to no need is tied by the button pressed on it, if any (one
            # tied to a need keeps it: a press does not move an episode to another need).
            needs = needs_of[group[0]] or next(
                (needs_of[i] for i in group if exchanges[i].pressed and needs_of[i]), ()
            )
            items = tuple(exchanges[i] for i in group)
            segment = items[0].segment or _channel_segment(items[0].channel, segmented)
            verdicts = []
            for need in needs or (None,):
                rule = resolutions.get(need, DEFAULT_RESOLUTION) if need else DEFAULT_RESOLUTION
                link = link_of.get(need) if need else None
                reason = _verdict(items, link, rule, followed_by_handoff, later)
                verdicts.append(reason == RESOLVED)
                episodes.append(
                    Episode(
                        need,
                        "" if anonymous else customer,
                        items,
                        reason == RESOLVED,
                        reason,
                        segment,
                        tuple(n for n in needs if n != need),
                    )
                )
            conversations.append((all(verdicts), items))

    total = len(exchanges)
    results = []
    for link in links:
        mine = [ep for ep in episodes if ep.need == link.need]
        messages = [e for ep in mine for e in ep.exchanges]
        rule = resolutions.get(link.need, DEFAULT_RESOLUTION)
        segments: dict[str, list[bool]] = defaultdict(list)
        for ep in mine:
            segments[ep.segment].append(ep.resolved)
        others = Counter(_answer_words(e) for e in messages if e.route in rule.routes and not link.serves(e))
        shared = Counter(other for ep in mine for other in ep.shared)
        description = rule.describe()
        if shared:
            description += "; its link is shared with " + ", ".join(
                f"“{other}” ({count} conversation{'s' if count != 1 else ''} count for both)"
                for other, count in shared.most_common()
            )
        results.append(
            NeedOutcome(
                link.need,
                link,
                description,
                Rate(sum(ep.resolved for ep in mine), len(mine)),
                len(messages),
                len(messages) / total if total else 0.0,
                sum(link.serves(e) for e in messages),
                dict(Counter(ep.reason for ep in mine if not ep.resolved).most_common()),
                dict(others.most_common(5)),
                {s: Rate(sum(v), len(v)) for s, v in sorted(segments.items())},
                tuple(dict.fromkeys(e.text for ep in mine if not ep.resolved for e in ep.exchanges))[:3],
                dict(shared.most_common()),
            )
        )
    unresolved = [e for ok, items in conversations if not ok for e in items]
    return Outcomes(
        total,
        results,
        episodes,
        unresolved,
        Rate(sum(ok for ok, _ in conversations), len(conversations)),
        repeat_window,
        similarity,
        {e: needs[0] for e, needs in zip(exchanges, needs_of, strict=True) if needs},
    )


def _handed_off(e: LoggedExchange) -> bool:
    return e.handed_off or e.route == "handoff"


def _answer_words(e: LoggedExchange) -> str:
    if e.route == "intent" and e.intent:
        return f"intent {intent_words(e.intent)}"
    return f"entry {e.kb_id}" if e.kb_id else e.route


def _attribute(
    exchanges: Sequence[LoggedExchange],
    links: Sequence[NeedLink],
    vectors: Vectors | None,
    matrix: np.ndarray | None,
    similarity: float,
) -> list[tuple[str, ...]]:
    """The needs of each message (possibly none): every need whose link served it (a link shared
    by several needs serves each, see the module's definitions), else the nearest need by
    prototype if it is close enough."""
    linked = [[j for j, link in enumerate(links) if link.serves(e)] for e in exchanges]
    prototypes: list[np.ndarray] = []
    if vectors is not None and matrix is not None and links:
        for j, link in enumerate(links):
            rows = [vectors([link.need])[0]]
            if link.examples:
                rows += list(vectors(list(link.examples)))
            served = [i for i, js in enumerate(linked) if j in js]
            if served:
                centre = matrix[served].mean(axis=0)
                norm = float(np.linalg.norm(centre))
                if norm > 0:
                    rows.append(centre / norm)
            prototypes.append(np.stack(rows))
    out: list[tuple[str, ...]] = []
    for i, js in enumerate(linked):
        if js:
            out.append(tuple(dict.fromkeys(links[j].need for j in js)))
            continue
        sims = (
            np.array([float(np.max(p @ matrix[i])) for p in prototypes])  # type: ignore[index]
            if prototypes
            else None
        )
        if sims is not None and sims.size and float(sims.max()) >= similarity:
            out.append((links[int(np.argmax(sims))].need,))
        else:
            out.append(())
    return out


def _continues(
    exchanges: Sequence[LoggedExchange],
    needs_of: Sequence[tuple[str, ...]],
    matrix: np.ndarray | None,
    previous: int,
    current: int,
    window: float,
    similarity: float,
) -> bool:
    """Does message ``current`` continue the episode that ``previous`` (the same customer's message
    just before it) belongs to?"""
    if exchanges[current].at - exchanges[previous].at > window:
        return False
    if exchanges[current].pressed and exchanges[previous].route == "clarify":
        return True  # a button of the clarifying question: its answer
    if needs_of[current] != needs_of[previous]:
        return False
    if needs_of[current]:
        return True
    return matrix is not None and float(matrix[current] @ matrix[previous]) >= similarity


def _verdict(
    items: Sequence[LoggedExchange],
    link: NeedLink | None,
    rule: Resolution,
    followed_by_handoff: bool,
    later: frozenset[str] = frozenset(),
) -> str:
    """``"resolved"`` or the first reason the episode was not. ``later``: outcomes recorded on the
    customer's next message of no listed need, within the window (they count as this episode's)."""
    if rule.check is not None:
        return RESOLVED if rule.check(items) else "the bank's check failed"
    flagged = any(e.flagged for e in items)
    if rule.outcome:
        if flagged:
            return FLAGGED
        recorded = rule.outcome in later or any(rule.outcome in e.outcomes for e in items)
        return RESOLVED if recorded else NO_OUTCOME
    if any(_handed_off(e) for e in items):
        return HANDED_OFF
    if flagged:
        return FLAGGED
    if any(e.route != "clarify" for e in items[:-1]):
        return ASKED_AGAIN
    last = items[-1]
    # An advice reply is Teller declining to advise: resolved only through an outcome (above).
    if last.route == ADVICE or last.route not in rule.routes:
        return f"not answered ({last.route})"
    if link is not None and not link.serves(last):
        return f"answered by {_answer_words(last)}"
    if followed_by_handoff:
        return FOLLOWED_BY_HANDOFF
    return RESOLVED
