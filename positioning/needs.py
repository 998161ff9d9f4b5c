"""The needs of a positioning option, and what serves each of them.

A :class:`Need` is the PM's wording with its importance (1-5) and, optionally, how well competitors
already cover it. A :class:`NeedLink` ties it to what answers it in Teller: intents, knowledge-base
entries, and (rarely) whole routes such as ``advice``. Teller suggests links
(:func:`suggest_links`, from the need's wording put to the classifier and the knowledge base, and
from the answers Teller gave to logged messages like it); the PM confirms or edits them
(:func:`parse_link`), each id checked against what Teller knows (:class:`KnownIds`,
:func:`check_link`). A :class:`Resolution` says what counts as resolved for a need (the bank's
choice; by default an answer from a linked intent or entry).

Nothing here imports the application: the classifier and knowledge base come in as a
:data:`Probe`, the encoder as an :data:`~positioning.evidence.Embed`.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from positioning.errors import PositioningError
from positioning.evidence import ANSWER_ROUTES, ANSWERED_ROUTES, HANDOFF, Embed, LoggedExchange, intent_words

SUGGESTED, CONFIRMED, EDITED = "suggested", "confirmed", "edited"


# ---------------------------------------------------------------------------------------- needs


@dataclass(frozen=True)
class Need:
    """One core need: ``importance`` 1-5; ``competitor_coverage`` in [0, 1] (0: competitors leave it
    open, 1: they meet it fully), None when the PM did not rate this need; ``coverage_source`` says
    where the figure came from."""

    text: str
    importance: int
    competitor_coverage: float | None = None
    coverage_source: str = ""


def parse_coverage(raw: str) -> float:
    """A competitor-coverage figure in [0, 1]: an integer 1-5 is the interview's scale
    (``(r - 1) / 4``: 1 -> 0.0, 5 -> 1.0), written "4.0" too; a decimal below 1 (``0.25``) or a
    percentage (``25%``) is a share. Raises :class:`PositioningError` for anything else, and for "1.0",
    which could be either (the rating 1 or the share 1: opposite ends)."""
    text = raw.strip().replace(",", ".")
    try:
        if text.endswith("%"):
            value = float(text[:-1]) / 100
        elif re.fullmatch(r"\d+", text):
            rating = int(text)
            if not 1 <= rating <= 5:
                raise PositioningError(f"competitor coverage {raw!r}: a rating is 1 to 5")
            return (rating - 1) / 4
        else:
            value = float(text)
            if value == 1.0:
                # "1.0": the share 1 (fully met) or the rating 1 (not at all)? A reviewer's "1.0" on
                # the 1-5 question was read as fully met, the opposite of "1".
                raise PositioningError(
                    f"competitor coverage {raw!r} is ambiguous: write 1 for the rating 'not at all', "
                    "or 100% for fully met"
                )
            if value in (2.0, 3.0, 4.0, 5.0):  # "4.0": the rating 4, written with a decimal
                return (value - 1) / 4
    except ValueError:
        raise PositioningError(f"competitor coverage {raw!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise PositioningError(f"competitor coverage {raw!r} must lie between 0 and 1 (or 0% and 100%)")
    return value


def parse_needs(items: Iterable[str]) -> list[Need]:
    """Needs from the interview's lines ``"need | importance"`` or ``"need | importance | competitor
    coverage"`` (coverage as in :func:`parse_coverage`). Raises :class:`PositioningError` naming the
    line that does not parse."""
    needs = []
    for item in items:
        parts = [p.strip() for p in item.split("|")]
        if len(parts) >= 3 and re.fullmatch(r"[1-5]", parts[-2]):
            text, importance, coverage = "|".join(parts[:-2]).strip(), parts[-2], parts[-1]
        elif len(parts) >= 2:
            text, importance, coverage = "|".join(parts[:-1]).strip(), parts[-1], None
        else:
            raise PositioningError(f"need {item!r} has no importance (expected 'need | 1-5')")
        if not text or not re.fullmatch(r"[1-5]", importance):
            raise PositioningError(f"need {item!r} has no importance (expected 'need | 1-5')")
        if coverage is None:
            needs.append(Need(text, int(importance)))
        else:
            needs.append(Need(text, int(importance), parse_coverage(coverage), f"rated per need: {coverage}"))
    return needs


def with_coverage(needs: Sequence[Need], items: Iterable[str] = (), overall: int | None = None) -> list[Need]:
    """The needs with competitor coverage filled in: from ``items`` (``"need | coverage"``, the PM's
    rating of each need), else from the ``overall`` 1-5 rating of the market as a whole. A need
    already rated keeps its figure. Raises :class:`PositioningError` for an unknown need."""
    by_need: dict[str, tuple[float, str]] = {}
    known = {n.text.lower(): n.text for n in needs}
    for item in items:
        text, sep, raw = item.rpartition("|")
        if not sep or text.strip().lower() not in known:
            raise PositioningError(f"competitor coverage {item!r}: expected 'one of the needs | 1-5'")
        by_need[known[text.strip().lower()]] = (parse_coverage(raw), f"rated per need: {raw.strip()}")
    out = []
    for n in needs:
        if n.competitor_coverage is not None:
            out.append(n)
        elif n.text in by_need:
            value, source = by_need[n.text]
            out.append(replace(n, competitor_coverage=value, coverage_source=source))
        elif overall is not None:
            value = parse_coverage(str(overall))
            out.append(replace(n, competitor_coverage=value, coverage_source=f"overall rating {overall}/5"))
        else:
            out.append(n)
    return out


# ---------------------------------------------------------------------------------------- links


@dataclass(frozen=True)
class NeedLink:
    """What serves a need in Teller: its answering ``intents``, knowledge-base entries
    (``kb_ids``), whole ``routes`` (e.g. ``advice``, for a need met by the compliant general answer),
    and ``examples``: customer messages the PM says express the need. ``status`` is ``suggested``
    (by Teller), ``confirmed`` or ``edited`` (by the PM); ``why`` says why each link was suggested."""

    need: str
    intents: tuple[str, ...] = ()
    kb_ids: tuple[str, ...] = ()
    routes: tuple[str, ...] = ()
    examples: tuple[str, ...] = ()
    status: str = SUGGESTED
    why: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.intents or self.kb_ids or self.routes)

    def serves(self, e: LoggedExchange) -> bool:
        """Was this reply given by something linked to the need? (An intent counts only when it
        answered: for other routes the logged intent is the classifier's guess.)"""
        if e.route in self.routes:
            return True
        if e.route == "intent" and e.intent in self.intents:
            return True
        return bool(e.kb_id) and e.kb_id in self.kb_ids and e.route in ("intent", "faq", "advice")

    def describe(self) -> str:
        """``"intent card arrival; entry overdraft_fee"``, or ``"nothing linked"``."""
        parts = [f"intent {intent_words(i)}" for i in self.intents]
        parts += [f"entry {k}" for k in self.kb_ids]
        parts += [f"route {r}" for r in self.routes]
        return "; ".join(parts) or "nothing linked"


_LINK_ITEM = re.compile(r"^(intent|kb|entry|route|example)\s*:\s*(.+)$", re.IGNORECASE)


def parse_link(line: str, status: str = CONFIRMED) -> NeedLink:
    """A link as the PM confirms or edits it: ``"need | intent:card_arrival, kb:overdraft_fee,
    route:advice, example:where is my card"``. Raises :class:`PositioningError` for a malformed
    line."""
    need, sep, rest = line.rpartition("|")
    if not sep or not need.strip():
        raise PositioningError(f"link {line!r}: expected 'need | intent:NAME, kb:ID, ...'")
    found: dict[str, list[str]] = defaultdict(list)
    for part in (p.strip() for p in rest.split(",")):
        if not part:
            continue
        match = _LINK_ITEM.match(part)
        if not match:
            raise PositioningError(f"link {line!r}: {part!r} is not intent:, kb:, route: or example:")
        kind = {"entry": "kb"}.get(match[1].lower(), match[1].lower())
        found[kind].append(match[2].strip())
    return NeedLink(
        need.strip(),
        tuple(found["intent"]),
        tuple(found["kb"]),
        tuple(found["route"]),
        tuple(found["example"]),
        status,
    )


#: Teller's routes, as its log names them: what a ``route:`` link may name.
ROUTES = (*ANSWERED_ROUTES, HANDOFF)


@dataclass(frozen=True)
class KnownIds:
    """What a link may name: the classifier's ``intents``, the knowledge base's entry ids
    (``kb_ids``) and Teller's ``routes``. Passed in by the application (this package does not read
    the model or the knowledge base itself)."""

    intents: frozenset[str]
    kb_ids: frozenset[str]
    routes: frozenset[str] = frozenset(ROUTES)


def _closest(name: str, known: Iterable[str], n: int = 3) -> str:
    """``" (closest: card_arrival, card_delivery_estimate)"``, from :func:`difflib.get_close_matches`
    (case-insensitive), or ``" (none is close)"``."""
    by_lower: dict[str, str] = {}
    for k in sorted(known):
        by_lower.setdefault(k.lower(), k)
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=n, cutoff=0.5)
    if not close:  # a fragment ("arrival") is closer to a name that contains it than difflib says
        close = [k for k in by_lower if name.lower() in k][:n]
    return f" (closest: {', '.join(by_lower[c] for c in close)})" if close else " (none is close)"


def check_link(link: NeedLink, known: KnownIds | None = None) -> NeedLink:
    """``link`` itself when every id it names exists (as Teller spells it): intents among
    ``known.intents``, entries among ``known.kb_ids``, routes among ``known.routes`` (without
    ``known``: routes among :data:`ROUTES`, ids not checked). Raises :class:`PositioningError`
    naming every unknown id with the closest known ones (:mod:`difflib`)."""
    kinds = [("route", "Teller's routes", link.routes, known.routes if known else frozenset(ROUTES))]
    if known is not None:
        kinds += [
            ("intent", "the classifier's intents", link.intents, known.intents),
            ("kb", "the knowledge base's entries", link.kb_ids, known.kb_ids),
        ]
    problems = [
        f"{kind}:{name} is not one of {where}{_closest(name, ids)}"
        for kind, where, given, ids in kinds
        for name in given
        if name not in ids
    ]
    if problems:
        raise PositioningError(f"{link.need}: " + "; ".join(problems))
    return link


def format_link(link: NeedLink) -> str:
    """The inverse of :func:`parse_link` (what the interview shows the PM to confirm or edit)."""
    parts = [f"intent:{i}" for i in link.intents] + [f"kb:{k}" for k in link.kb_ids]
    parts += [f"route:{r}" for r in link.routes] + [f"example:{x}" for x in link.examples]
    return f"{link.need} | {', '.join(parts)}"


def merge_links(suggested: Sequence[NeedLink], confirmed: Iterable[NeedLink]) -> list[NeedLink]:
    """The suggestions, each replaced by the PM's confirmed or edited link for the same need."""
    by_need = {c.need.lower(): c for c in confirmed}
    return [by_need.get(s.need.lower(), s) for s in suggested]


@dataclass(frozen=True)
class Candidate:
    """Something that may serve a need: ``kind`` ``intent`` or ``kb``, its id, and ``score`` in
    [0, 1] from ``source`` (the classifier's probability, or retrieval's fused score)."""

    kind: str
    id: str
    score: float
    source: str


#: Need wording -> Teller's top-k candidates for it (classifier and knowledge base), injected by the
#: application.
Probe = Callable[[str], Sequence[Candidate]]


class Vectors:
    """Texts -> L2-normalised vectors through ``embed``, each distinct text embedded once."""

    def __init__(self, embed: Embed) -> None:
        self.embed = embed
        self._cache: dict[str, np.ndarray] = {}

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            for text, vector in zip(missing, np.asarray(self.embed(missing), dtype=np.float32), strict=True):
                self._cache[text] = vector
        if not texts:
            return np.zeros((0, 1), dtype=np.float32)
        return np.stack([self._cache[t] for t in texts])


def suggest_links(
    needs: Sequence[str],
    probe: Probe | None,
    exchanges: Sequence[LoggedExchange] = (),
    embed: Embed | Vectors | None = None,
    *,
    min_probe: float = 0.2,
    similarity: float = 0.55,
    min_share: float = 0.2,
    min_messages: int = 2,
    min_score: float = 0.5,
    max_links: int = 3,
    advice: AdviceWorded | None = None,
) -> list[NeedLink]:
    """Teller's suggestion of what serves each need, for the PM to confirm or edit.

    Two sources, added up per candidate: the need's wording put to Teller (``probe``: every
    candidate scoring at least ``min_probe``), and the log: among the answered, unflagged messages
    whose cosine to the need's wording is at least ``similarity``, the intents and entries that
    answered at least ``min_share`` of them (and ``min_messages`` messages). Candidates whose
    combined score reaches ``min_score`` are kept, the best ``max_links`` of them, each with its
    reason (so a lukewarm classifier guess alone, like "lost or stolen card" at 0.3 for "open a safe
    box", is not suggested: it would count another need's traffic as this one's). Returns one
    :class:`NeedLink` per need, in order, with status ``suggested`` (possibly empty: nothing fits).

    A need worded as advice (``advice``, the application's advice signal: "investment advice",
    "理财建议") also gets ``route:advice``: every reply declining to advise, not only those from one
    knowledge-base entry. Such a reply resolves nothing by itself; :func:`advice_resolutions`
    suggests the outcome that does.
    """
    vectors = embed if isinstance(embed, Vectors) or embed is None else Vectors(embed)
    answered = [e for e in exchanges if e.route in ANSWER_ROUTES and not e.flagged and e.text.strip()]
    message_vectors = vectors([e.text for e in answered]) if vectors is not None and answered else None
    links = []
    for need in needs:
        scores: dict[tuple[str, str], float] = defaultdict(float)
        why: dict[tuple[str, str], list[str]] = defaultdict(list)
        for c in probe(need) if probe is not None else ():
            if c.score >= min_probe:
                scores[(c.kind, c.id)] += c.score
                why[(c.kind, c.id)].append(f"{c.source} {c.score:.2f}")
        if vectors is not None and message_vectors is not None:
            sims = message_vectors @ vectors([need])[0]
            near = [answered[i] for i in np.flatnonzero(sims >= similarity)]
            served = Counter(
                ("intent", e.intent) if e.route == "intent" and e.intent else ("kb", e.kb_id or "")
                for e in near
            )
            for key, count in served.items():
                share = count / len(near)
                if key[1] and count >= min_messages and share >= min_share:
                    scores[key] += share
                    why[key].append(f"answered {count} of {len(near)} logged messages like it")
        kept = [k for k in scores if scores[k] >= min_score]
        best = sorted(kept, key=lambda k: (-scores[k], k))[:max_links]
        worded = advice is not None and advice(need)
        links.append(
            NeedLink(
                need,
                tuple(i for kind, i in best if kind == "intent"),
                tuple(i for kind, i in best if kind == "kb"),
                routes=(ADVICE,) if worded else (),
                why=tuple(
                    f"{'intent ' + intent_words(i) if kind == 'intent' else 'entry ' + i}: "
                    + ", ".join(why[(kind, i)])
                    for kind, i in best
                )
                + ((ADVICE_WHY,) if worded else ()),
            )
        )
    return links


# ---------------------------------------------------------------------------------- resolution

#: Teller's route for an advice request: a refusal to advise, with an offer of an adviser call.
ADVICE = "advice"
#: Why ``routes=advice`` alone is refused (:class:`Resolution`, :func:`parse_resolution`).
ADVICE_NEEDS_OUTCOME = (
    "a reply on the advice route is Teller declining to advise, so it cannot count as resolved by "
    "itself; count what the bank does next instead, e.g. 'routes=advice; outcome=adviser_call_booked' "
    "(or just 'outcome=adviser_call_booked')"
)


#: A bank's own test of an episode (the customer's messages about the need, oldest first).
EpisodeCheck = Callable[[Sequence[LoggedExchange]], bool]


@dataclass(frozen=True)
class Resolution:
    """What counts as resolved for one need (the bank's choice).

    By default (``outcome`` and ``check`` unset), an episode is resolved when its last reply came
    by one of ``routes`` (never ``advice``: see below) from something linked to the need, nothing in
    it was flagged or handed off, the customer did not ask again after an answer, and the
    customer's next message within the window was not handed off. With ``outcome`` (e.g.
    ``"adviser_call_booked"`` for an advice need), it is resolved when an exchange of the episode
    carries that business outcome and none was flagged, whatever the route. ``check`` replaces
    both with the bank's own function.

    A reply on the ``advice`` route is Teller declining to advise (by design: it hands the customer
    to an adviser), so it never resolves anything by itself: ``routes`` may name ``advice`` only
    with an ``outcome`` (or a ``check``); otherwise :class:`PositioningError`
    (:data:`ADVICE_NEEDS_OUTCOME`). With an outcome the routes play no part anyway.
    """

    routes: tuple[str, ...] = ANSWER_ROUTES
    outcome: str | None = None
    check: EpisodeCheck | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if ADVICE in self.routes and not self.outcome and self.check is None:
            raise PositioningError(ADVICE_NEEDS_OUTCOME)

    def describe(self) -> str:
        if self.check is not None:
            return "the bank's own check"
        if self.outcome:
            return f"outcome {self.outcome!r} recorded, nothing flagged"
        return f"answered by a linked {'/'.join(self.routes)}, not flagged, not handed off, not asked again"


DEFAULT_RESOLUTION = Resolution()


def parse_resolution(text: str) -> Resolution:
    """``"routes=intent,faq,advice; outcome=adviser_call_booked"`` (either part optional; empty:
    the default). Raises :class:`PositioningError` for an unknown key, and for ``routes`` naming
    ``advice`` without an ``outcome`` (an advice reply is a refusal: :class:`Resolution`)."""
    routes: tuple[str, ...] = ANSWER_ROUTES
    outcome = None
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        if not sep or key not in ("routes", "outcome"):
            raise PositioningError(f"resolution {text!r}: expected 'routes=a,b' and/or 'outcome=name'")
        if key == "routes":
            routes = tuple(r.strip() for r in value.split(",") if r.strip())
        else:
            outcome = value.strip() or None
    if ADVICE in routes and not outcome:
        raise PositioningError(f"resolution {text.strip()!r}: {ADVICE_NEEDS_OUTCOME}")
    return Resolution(routes, outcome)


def parse_resolutions(items: Iterable[str]) -> dict[str, Resolution]:
    """``"need | routes=...; outcome=..."`` lines -> need -> :class:`Resolution`."""
    out = {}
    for item in items:
        need, sep, rule = item.rpartition("|")
        if not sep or not need.strip():
            raise PositioningError(f"resolution {item!r}: expected 'need | routes=...; outcome=...'")
        out[need.strip()] = parse_resolution(rule)
    return out


#: Is a need's wording a request for advice? (The application's advice signal, passed in.)
AdviceWorded = Callable[[str], bool]
#: The outcome that resolves an advice need by default: the customer booked the adviser call
#: Teller offers with its refusal (``POST /api/outcomes``, or the "Book an adviser call" button).
ADVICE_OUTCOME = "adviser_call_booked"
#: The suggested resolution of a need linked to the advice route, as the PM writes it.
ADVICE_RESOLUTION = f"routes={ADVICE}; outcome={ADVICE_OUTCOME}"
#: Why ``route:advice`` is suggested (a link's ``why``).
ADVICE_WHY = (
    "route advice: the need is worded as advice, so every reply declining to advise counts for it "
    f"(resolved when {ADVICE_OUTCOME.replace('_', ' ')}: '{ADVICE_RESOLUTION}')"
)


def advice_resolutions(links: Iterable[NeedLink], rules: Mapping[str, Resolution]) -> dict[str, Resolution]:
    """``rules`` with the suggested resolution (:data:`ADVICE_RESOLUTION`) for every need linked to
    the advice route that has no rule of its own: an advice reply is a refusal, so without an
    outcome such a need could never be resolved."""
    out = dict(rules)
    have = {k.lower() for k in rules}
    for link in links:
        if ADVICE in link.routes and link.need.lower() not in have:
            out[link.need] = parse_resolution(ADVICE_RESOLUTION)
    return out
