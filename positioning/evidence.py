"""What customers actually asked: figures from the message log, and unanswered questions grouped
into candidate new needs."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

HANDOFF = "handoff"
ANSWERED_ROUTES = ("intent", "faq", "advice", "smalltalk", "clarify")

#: Texts in, L2-normalised vectors out (the retrieval encoder).
Embed = Callable[[Sequence[str]], np.ndarray]


@dataclass(frozen=True)
class LoggedExchange:
    """One customer message and how Teller answered it (texts are already redacted)."""

    text: str
    route: str
    intent: str | None = None
    kb_id: str | None = None
    flagged: bool = False


@dataclass(frozen=True)
class IntentFigures:
    intent: str
    messages: int
    handoff_rate: float
    flag_rate: float


@dataclass(frozen=True)
class NeedCluster:
    """Unanswered questions that belong together: a candidate new need."""

    label: str
    size: int
    examples: tuple[str, ...]


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
) -> Evidence:
    """Figures over ``exchanges``; handoffs are clustered with ``embed`` when given.

    Containment is the share of messages Teller answered without a handoff; the flag rate is the
    share of answered messages a customer marked not helpful.
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
    return Evidence(
        period=period,
        messages=n,
        containment_rate=(n - len(handoffs)) / n if n else 0.0,
        handoff_rate=len(handoffs) / n if n else 0.0,
        flag_rate=sum(e.flagged for e in answered) / len(answered) if answered else 0.0,
        intents=intents,
        candidate_needs=cluster_questions([e.text for e in handoffs], embed, distance, max_clusters)
        if embed is not None
        else [],
        entry_flag_rates=_entry_flag_rates(answered),
    )


def _entry_flag_rates(answered: Sequence[LoggedExchange]) -> dict[str, float]:
    by_entry: dict[str, list[bool]] = defaultdict(list)
    for e in answered:
        if e.kb_id:
            by_entry[e.kb_id].append(e.flagged)
    return {kb_id: sum(flags) / len(flags) for kb_id, flags in sorted(by_entry.items())}


def cluster_questions(
    texts: Sequence[str], embed: Embed | None, distance: float = 0.45, max_clusters: int = 10
) -> list[NeedCluster]:
    """Group similar questions (average-linkage, cosine distance below ``distance``), biggest first;
    each group is labelled by its most central question."""
    unique = list(dict.fromkeys(t.strip() for t in texts if t.strip()))
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
    counts = Counter(labels.tolist())
    clusters = []
    for label, size in counts.most_common(max_clusters):
        members = np.flatnonzero(labels == label)
        centre = vectors[members].mean(axis=0)
        order = members[np.argsort(-(vectors[members] @ centre))]
        clusters.append(NeedCluster(unique[order[0]], int(size), tuple(unique[i] for i in order[:3])))
    return clusters
