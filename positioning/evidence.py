"""What customers actually asked: figures from the message log, and unresolved questions grouped
into candidate new needs (agglomerative clustering of sentence embeddings on cosine distance).

Intent names are shown in words (:func:`intent_words`: ``card_arrival`` -> "card arrival").
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from positioning.stats import Rate

HANDOFF = "handoff"
ANSWERED_ROUTES = ("intent", "faq", "advice", "smalltalk", "clarify")

#: Texts in, L2-normalised vectors out (the retrieval encoder).
Embed = Callable[[Sequence[str]], np.ndarray]


@dataclass(frozen=True)
class LoggedExchange:
    """One customer message and how Teller answered it (texts are already redacted).

    ``route`` is Teller's route (``intent``, ``faq``, ``advice``, ``smalltalk``, ``clarify``,
    ``handoff``); ``intent`` the answering intent (for other routes, the classifier's guess);
    ``kb_id`` the knowledge-base entry answered from; ``flagged``: the reply was thumbed down by
    the customer or flagged by an operator. The outcome fields are optional: ``customer`` (who
    asked: a conversation id; empty: unknown, so "asking again" is not detected), ``at`` (when, in
    seconds since the epoch), ``handed_off`` (a handoff to a human was opened for this reply),
    ``channel`` and ``segment`` (the customer segment a bank's backend passed, if any) and
    ``outcomes`` (business outcomes recorded for the exchange, e.g. ``"adviser_call_booked"``);
    ``pressed``: the message was a button the reply before it offered (an intent or entry a
    clarifying question proposed, "Something else"), not words the customer wrote;
    ``message_id``: the customer's message as the log stores it (empty: unknown).
    """

    text: str
    route: str
    intent: str | None = None
    kb_id: str | None = None
    flagged: bool = False
    customer: str = ""
    at: float = 0.0
    handed_off: bool = False
    channel: str = ""
    segment: str | None = None
    outcomes: frozenset[str] = frozenset()
    pressed: bool = False
    message_id: str = ""


@dataclass(frozen=True)
class IntentFigures:
    intent: str
    messages: int
    handoff_rate: float
    flag_rate: float


@dataclass(frozen=True)
class NeedCluster:
    """Unresolved questions that belong together: a candidate new need.

    ``size`` counts distinct questions, ``messages`` every message (repeats included); ``routes``
    says how Teller replied to them (route -> messages), ``guesses`` the classifier's top guesses in
    words (guess -> messages; a guess, not an answer given)."""

    label: str
    size: int
    examples: tuple[str, ...]
    messages: int = 0
    routes: tuple[tuple[str, int], ...] = ()
    guesses: tuple[tuple[str, int], ...] = ()
    #: The listed need most of these messages belong to (then not a new need), if any.
    need: str | None = None


@dataclass
class Evidence:
    period: str
    messages: int
    containment_rate: float
    handoff_rate: float
    flag_rate: float
    intents: list[IntentFigures] = field(default_factory=list)
    candidate_needs: list[NeedCluster] = field(default_factory=list)
    #: Share of the answers given from each knowledge-base entry that were flagged.
    entry_flag_rates: dict[str, float] = field(default_factory=dict)
    #: Customers' need episodes resolved (:mod:`positioning.outcomes`), when measured.
    resolved: Rate | None = None
    #: How many messages the candidate needs were clustered from (all unresolved traffic).
    unresolved_messages: int = 0

    def for_intent(self, intent: str) -> IntentFigures | None:
        return next((f for f in self.intents if f.intent == intent), None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def gather(
    exchanges: Sequence[LoggedExchange],
    period: str,
    embed: Embed | None = None,
    distance: float = 0.45,
    max_clusters: int = 10,
    unresolved: Sequence[LoggedExchange] | None = None,
    resolved: Rate | None = None,
    need_of: Callable[[LoggedExchange], str | None] | None = None,
) -> Evidence:
    """Figures over ``exchanges``; the unresolved ones are clustered with ``embed`` when given.

    Containment is the share of messages Teller answered without a handoff (a lenient figure: it
    counts advice refusals, clarify turns and thumbed-down answers); the flag rate is the share of
    answered messages a customer marked not helpful. ``unresolved`` are the messages to cluster
    into candidate needs: by default every message not answered from an intent or an entry, or
    flagged, or handed off (:func:`unresolved_messages`); :func:`positioning.outcomes.judge` gives
    the stricter set (also those the customer had to ask again). ``resolved`` is the strict share
    of resolved episodes, shown beside containment; ``need_of`` says which listed need a message
    belongs to (:meth:`positioning.outcomes.Outcomes.need_of`), so that a cluster of a need already
    listed is marked as such.
    """
    n = len(exchanges)
    handoffs = [e for e in exchanges if e.route == HANDOFF]
    answered = [e for e in exchanges if e.route in ANSWERED_ROUTES]
    by_intent: dict[str, list[LoggedExchange]] = defaultdict(list)
    for e in exchanges:
        if e.intent:
            by_intent[e.intent].append(e)
    intents = [
        IntentFigures(
            intent,
            len(items),
            sum(e.route == HANDOFF for e in items) / len(items),
            sum(e.flagged for e in items if e.route in ANSWERED_ROUTES)
            / max(1, sum(e.route in ANSWERED_ROUTES for e in items)),
        )
        for intent, items in by_intent.items()
    ]
    intents.sort(key=lambda f: (-f.messages, f.intent))
    pool = list(unresolved) if unresolved is not None else unresolved_messages(exchanges)
    return Evidence(
        period=period,
        messages=n,
        containment_rate=(n - len(handoffs)) / n if n else 0.0,
        handoff_rate=len(handoffs) / n if n else 0.0,
        flag_rate=sum(e.flagged for e in answered) / len(answered) if answered else 0.0,
        intents=intents,
        candidate_needs=cluster_exchanges(pool, embed, distance, max_clusters, need_of)
        if embed is not None
        else [],
        entry_flag_rates=_entry_flag_rates(answered),
        resolved=resolved,
        unresolved_messages=len(pool),
    )


#: The routes whose reply is an answer from an intent or a knowledge-base entry.
ANSWER_ROUTES = ("intent", "faq")


def unresolved_messages(exchanges: Sequence[LoggedExchange]) -> list[LoggedExchange]:
    """The messages not resolved on their own: not answered from an intent or an entry (handoff,
    advice refusal, clarify, small talk), or flagged, or handed off to a human."""
    return [e for e in exchanges if e.route not in ANSWER_ROUTES or e.flagged or e.handed_off]


def intent_words(name: str | None) -> str:
    """An intent or entry name in words: ``card_arrival`` -> "card arrival", ``None`` -> "-"."""
    if not name:
        return "-"
    return " ".join(name.replace("_", " ").replace("-", " ").split())


def _entry_flag_rates(answered: Sequence[LoggedExchange]) -> dict[str, float]:
    by_entry: dict[str, list[bool]] = defaultdict(list)
    for e in answered:
        if e.kb_id:
            by_entry[e.kb_id].append(e.flagged)
    return {kb_id: sum(flags) / len(flags) for kb_id, flags in sorted(by_entry.items())}


def cluster_questions(
    texts: Sequence[str], embed: Embed | None, distance: float = 0.45, max_clusters: int = 10
) -> list[NeedCluster]:
    """Group similar questions; see :func:`cluster_exchanges` (here without routes or guesses)."""
    return cluster_exchanges([LoggedExchange(t, "") for t in texts], embed, distance, max_clusters)


def cluster_exchanges(
    exchanges: Sequence[LoggedExchange],
    embed: Embed | None,
    distance: float = 0.45,
    max_clusters: int = 10,
    need_of: Callable[[LoggedExchange], str | None] | None = None,
) -> list[NeedCluster]:
    """Group the messages by meaning: agglomerative clustering (average linkage) of their
    embeddings on cosine distance, merging while the distance stays below ``distance`` (so no
    number of clusters is fixed in advance), biggest first by messages.

    Each cluster is labelled by its most central distinct question (highest cosine to the
    cluster's mean vector) and keeps up to three examples, the count of messages (repeats
    included), Teller's routes, the classifier's guesses in words and, with ``need_of``, the listed
    need at least half of its messages belong to. ``embed`` maps texts to
    L2-normalised vectors, shape ``(len(texts), dim)``. Returns ``[]`` without ``embed`` or texts.
    """
    messages: dict[str, list[LoggedExchange]] = defaultdict(list)
    for e in exchanges:
        if e.text.strip():
            messages[" ".join(e.text.split())].append(e)
    unique = list(messages)
    if embed is None or not unique:
        return []
    vectors = np.asarray(embed(unique), dtype=np.float32)
    if len(unique) == 1:
        labels = np.zeros(1, dtype=int)
    else:
        from sklearn.cluster import AgglomerativeClustering

        labels = AgglomerativeClustering(
            n_clusters=None, metric="cosine", linkage="average", distance_threshold=distance
        ).fit_predict(vectors)
    weight = Counter({int(label): 0 for label in labels.tolist()})
    for i, label in enumerate(labels.tolist()):
        weight[int(label)] += len(messages[unique[i]])
    order = sorted(weight, key=lambda label: (-weight[label], -int(np.sum(labels == label)), label))
    clusters = []
    for label in order[:max_clusters]:
        members = np.flatnonzero(labels == label)
        centre = vectors[members].mean(axis=0)
        ranked = members[np.argsort(-(vectors[members] @ centre), kind="stable")]
        items = [e for i in members for e in messages[unique[i]]]
        routes = Counter(e.route or "unknown" for e in items)
        guesses = Counter(intent_words(e.intent) for e in items if e.intent)
        owners = Counter(need_of(e) for e in items) if need_of is not None else Counter()
        owner, owned = owners.most_common(1)[0] if owners else (None, 0)
        clusters.append(
            NeedCluster(
                unique[ranked[0]],
                len(members),
                tuple(unique[i] for i in ranked[:3]),
                len(items),
                tuple(routes.most_common()),
                tuple(guesses.most_common(3)),
                owner if owner is not None and 2 * owned >= len(items) else None,
            )
        )
    return clusters
