"""The brief's executive summary: a one-sentence positioning statement, launch checks and the few
recommendations that matter most.

- **Positioning statement** from April Dunford's components ("Obviously Awesome", 2019): the
  competitive alternatives, the unique attributes, the value they deliver, the best-fit customers
  and the market category. Each is taken from the interview's answers (``competitors``: the name
  before each line's ``|``, as written; ``gap``; ``target_users``; ``product``, split into name and
  category only on the documented forms, else all of it the category of Teller), the value from
  what customers measurably got (the best-resolved needs); :class:`Statement` keeps where each
  came from.
- **Launch checks**: the PM's stated targets (``target_accuracy`` %, ``target_latency_ms``,
  ``target_containment`` %, the ``success_metric``) held against the product's measured figures
  (``accuracy`` and ``latency_ms``, as the caller measures them; containment is the log's strictly
  resolved conversations, :data:`CONTAINMENT_MEANS`, with n and its Wilson interval), pass or fail.
  An answer the PM left empty is "no target stated": a target is never the measured figure itself.
- **Recommendations**: the failed checks first, then the ideas that raise P(D|U) and M most
  (already in line with the product's rules, :mod:`positioning.rules`), and never one that asks the
  product to answer a need its rules decline.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from positioning.rules import Rules
from positioning.scoring import NeedScore, PositioningScore
from positioning.stats import Rate

PASS, FAIL, NO_TARGET, NOT_MEASURED = "pass", "fail", "no target stated", "not measured"


@dataclass(frozen=True)
class Statement:
    """Dunford's five components, each with where it came from (``sources``: component -> source)."""

    product: str
    category: str
    customers: str
    alternatives: str
    unique: str
    value: str
    sources: Mapping[str, str] = field(default_factory=dict)

    def sentence(self) -> str:
        """``"For <customers> who today turn to <alternatives>, <product> is <category> that offers
        <unique attributes>, and <value>."``"""
        return (
            f"For {self.customers} who today turn to {self.alternatives}, {self.product} is "
            f"{self.category} that offers {self.unique}, and {self.value}."
        )

    def components(self) -> list[tuple[str, str, str]]:
        """``(component, text, source)`` in Dunford's order."""
        return [
            ("Competitive alternatives", self.alternatives, self.sources.get("alternatives", "")),
            ("Unique attributes", self.unique, self.sources.get("unique", "")),
            ("Value", self.value, self.sources.get("value", "")),
            ("Best-fit customers", self.customers, self.sources.get("customers", "")),
            ("Market category", self.category, self.sources.get("category", "")),
        ]


def _clean(text: Any) -> str:
    """One line, no trailing full stop, a lower-case start unless it is a name or an acronym."""
    text = " ".join(str(text or "").split()).rstrip(".。!")
    if len(text) > 1 and text[0].isupper() and text[1].islower() and " " in text:
        first = text.split(" ", 1)[0]
        if first.lower() in {"the", "a", "an", "retail", "instant", "small", "young", "busy", "people"}:
            text = text[0].lower() + text[1:]
    return text


#: The documented forms of the product answer: "Name, category", "Name: category", "Name - category"
#: (or an en or em dash), "Name is category". Anything else is the category as a whole.
_PRODUCT_FORMS = (
    r"^(.+?)\s+is\s+(.+)$",
    r"^(.+?)\s*[,\uff0c:\uff1a\u2013\u2014]\s*(.+)$",
    r"^(.+?)\s+-\s+(.+)$",
)
#: What a product's name cannot hold: sentence punctuation (a question, an exclamation, a clause).
_NOT_A_NAME = re.compile('[?!:;,|()\\[\\]"\u201c\u201d\u2013\u2014\uff1f\uff01\uff1a\uff1b\uff0c]')


def _is_name(text: str) -> bool:
    """Does ``text`` read as a product's name: one to four words, no sentence punctuation, not
    starting with a lower-case letter ("Teller", "Lumen Assist", "小助手")?"""
    words = text.split()
    return 1 <= len(words) <= 4 and not _NOT_A_NAME.search(text) and not text[:1].islower()


def _name_and_category(product: str, default_name: str = "Teller") -> tuple[str, str, str, str]:
    """``"Teller, a chat assistant for X"`` -> ``("Teller", "a chat assistant for X", name source,
    category source)``. The answer is split only on the documented forms (:data:`_PRODUCT_FORMS`)
    and only when the part before reads as a name (:func:`_is_name`); otherwise the whole answer is
    the category and the name is ``default_name`` (Teller's own)."""
    text = _clean(product)
    for pattern in _PRODUCT_FORMS:
        match = re.match(pattern, text)
        if match and _is_name(match[1].strip()):
            return match[1].strip(), match[2].strip(), "the product answer", "the product answer"
    if not text:
        return default_name, "a customer-service assistant", "Teller's settings", "not stated: a default"
    return default_name, text, "Teller's settings", "the product answer"


#: What separates a competitor's name from what it offers, on one line of the competitors answer.
_COMPETITOR_FIELDS = re.compile(r"\s*[|:\uff1a\u2013\u2014]\s*|\s+-\s+|\s*\(")


def _alternatives(items: Any) -> str:
    """The competitors' names (the first field of each line: before ``|``, ``:``, a dash or
    ``(``), as written, joined naturally: "Monzo chat or branch staff", "A, B or C"."""
    names: list[str] = []
    for item in items if isinstance(items, list) else [items] if items else []:
        name = " ".join(_COMPETITOR_FIELDS.split(str(item), maxsplit=1)[0].split()).rstrip(".")
        if name and name.lower() not in (n.lower() for n in names):
            names.append(name)
    if not names:
        return "what they use today"
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


_OUTCOME_RULE = re.compile(r"^outcome '([^']+)' recorded")


def outcome_words(resolution: str) -> str | None:
    """What happened when a need's resolution rule (:meth:`positioning.needs.Resolution.describe`,
    a :class:`NeedScore`'s ``resolution``) is a business outcome: ``"outcome 'adviser_call_booked'
    recorded, ..."`` -> ``"an adviser call booked"``; None for any other rule."""
    match = _OUTCOME_RULE.match(resolution or "")
    if not match:
        return None
    words = " ".join(match[1].replace("_", " ").replace("-", " ").split())
    return ("an " if words[:1].lower() in "aeiou" else "a ") + words


def _value(result: PositioningScore) -> tuple[str, str]:
    """The value customers measurably got: the best-resolved needs, over the same conversations as
    the headline P(D|U) (the target users' when it is over them)."""
    target = result.target if result.over_target else None

    def rate(n: NeedScore) -> Rate:
        return target.by_need.get(n.need, Rate(0, 0)) if target is not None else n.satisfaction

    measured = [n for n in result.needs if rate(n).value is not None]
    good = sorted(
        (n for n in measured if (rate(n).value or 0.0) >= 0.5),
        key=lambda n: (-n.importance, -(rate(n).value or 0.0)),
    )[:2]
    if good:
        parts = []
        for i, n in enumerate(good):
            share, counts = (
                f"{100 * (rate(n).value or 0.0):.0f} %",
                f"({rate(n).successes} of {rate(n).trials})",
            )
            happened = outcome_words(n.resolution)
            if happened:  # resolved by a business outcome: say what happened, not "resolves"
                parts.append(f"{share} of conversations about “{n.need}” ended with {happened} {counts}")
            else:
                lead = "" if i and not outcome_words(good[i - 1].resolution) else "it "
                parts.append(f"{lead}resolves {share} of conversations about “{n.need}” {counts}")
        whose = "the target users' resolved conversations" if target is not None else "resolved conversations"
        return " and ".join(parts), f"measured on Teller's log ({whose})"
    top = sorted(result.needs, key=lambda n: -n.importance)[:2]
    needs = " and ".join(f"“{n.need}”" for n in top)
    if measured:
        return (
            f"it is meant to serve {needs}, though no need is resolved in half its conversations yet",
            "the needs listed; measured satisfaction below 0.5",
        )
    return f"it is meant to serve {needs} (no traffic measured yet)", "the needs listed (no traffic yet)"


def positioning_statement(
    answers: Mapping[str, Any], result: PositioningScore, default_name: str = "Teller"
) -> Statement:
    """The statement from the interview's answers and the measured result (see the module);
    ``default_name`` names the product when its answer does not (:func:`_name_and_category`)."""
    product, category, name_source, category_source = _name_and_category(
        str(answers.get("product") or ""), default_name
    )
    customers = _clean(answers.get("target_users")) or "the bank's customers"
    unique = _clean(answers.get("gap")) or "answers competitors leave open"
    value, value_source = _value(result)
    return Statement(
        product,
        category,
        customers,
        _alternatives(answers.get("competitors")),
        unique[0].lower() + unique[1:] if unique[:2].istitle() else unique,
        value,
        {
            "alternatives": "the competitors answer",
            "unique": "the gap answer",
            "value": value_source,
            "customers": "the target users answer",
            "category": category_source,
            "name": name_source,
        },
    )


# ------------------------------------------------------------------------------ launch checks


@dataclass(frozen=True)
class LaunchCheck:
    """One target against one measured figure: ``status`` is ``pass``, ``fail``, ``no target
    stated`` or ``not measured``; ``target`` and ``measured`` as shown; ``note`` says how it is
    measured."""

    name: str
    target: str
    measured: str
    status: str
    note: str = ""


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    return None


def _check(
    name: str, target: float | None, measured: float | None, unit: str, higher: bool, note: str
) -> LaunchCheck:
    def show(v: float | None) -> str:
        return "-" if v is None else f"{v:g}{unit}"

    if measured is None:
        status = NOT_MEASURED
    elif target is None:
        status = NO_TARGET
    else:
        status = PASS if (measured >= target if higher else measured <= target) else FAIL
    bound = "at least" if higher else "at most"
    return LaunchCheck(
        name, f"{bound} {show(target)}" if target is not None else "-", show(measured), status, note
    )


#: What containment means, everywhere in the brief (one definition): the share of customers'
#: conversations resolved without a person, in the strict sense of :mod:`positioning.outcomes`.
CONTAINMENT_MEANS = (
    "conversations resolved without a person: answered, not flagged or thumbed down, not followed by "
    "a handoff or by the customer asking again; advice refusals are not contained"
)


def containment_text(resolved: Rate | None) -> str:
    """Containment as the brief shows it: ``"46.0 % (63/137 conversations, 95 % CI 37.9-54.3 %)"``,
    or ``"-"`` without conversations."""
    if resolved is None or not resolved.trials or resolved.interval is None:
        return "-"
    low, high = resolved.interval
    return (
        f"{100 * (resolved.value or 0.0):.1f} % ({resolved.successes}/{resolved.trials} conversations, "
        f"95 % CI {100 * low:.1f}-{100 * high:.1f} %)"
    )


def containment_check(target: float | None, resolved: Rate | None) -> LaunchCheck:
    """The PM's containment target (%) against containment as the brief measures it
    (:data:`CONTAINMENT_MEANS`, from ``resolved``: the strictly resolved conversations of the log);
    pass on the point estimate, the interval shown beside it."""
    measured = 100 * resolved.value if resolved is not None and resolved.value is not None else None
    check = _check("Containment", target, measured, " %", True, CONTAINMENT_MEANS)
    return replace(check, measured=containment_text(resolved)) if measured is not None else check


#: Words of a success metric -> the figure that measures it.
_METRICS = (
    ("containment", "containment"),
    ("contain", "containment"),
    ("resolv", "resolved"),
    ("resolu", "resolved"),
    ("first contact", "resolved"),
    ("first-contact", "resolved"),
    ("without a person", "resolved"),
    ("accura", "accuracy"),
    ("latenc", "latency_ms"),
    ("response time", "latency_ms"),
    ("csat", "p_d_given_u"),
    ("satisf", "p_d_given_u"),
    ("handoff", "handoff"),
    ("escalat", "handoff"),
)


def launch_checks(
    answers: Mapping[str, Any],
    measured: Mapping[str, Any],
    result: PositioningScore | None = None,
    resolved: Rate | None = None,
    handoff_rate: float | None = None,
) -> list[LaunchCheck]:
    """The PM's targets against the measured figures (see the module). ``measured``: ``accuracy``
    (%) and ``latency_ms`` (95th percentile), as the caller measures them (a ``containment`` figure
    there is not read); ``resolved``: the strictly resolved conversations of the log, which *is*
    containment (:func:`containment_check`, one definition everywhere); ``handoff_rate`` (0-1) for a
    success metric that names handoffs."""
    checks = [
        _check(
            "Classifier accuracy",
            _number(answers.get("target_accuracy")),
            _number(measured.get("accuracy")),
            " %",
            True,
            "dev split of the model in service (held out of its training; its thresholds are fitted there)",
        ),
        _check(
            "Reply latency (95th percentile)",
            _number(answers.get("target_latency_ms")),
            _number(measured.get("latency_ms")),
            " ms",
            False,
            "Teller's recent replies",
        ),
        containment_check(_number(answers.get("target_containment")), resolved),
    ]
    metric = str(answers.get("success_metric") or "").strip()
    if metric:
        kind = next((k for word, k in _METRICS if word in metric.lower()), None)
        same = {c.name.split(" ")[0].lower(): c for c in checks}
        if kind in ("containment", "resolved"):  # one figure: conversations resolved without a person
            base = same["containment"]
            checks.append(
                LaunchCheck(f"Success metric: {metric}", base.target, base.measured, base.status, "as above")
            )
        elif kind == "accuracy":
            base = same["classifier"]
            checks.append(
                LaunchCheck(f"Success metric: {metric}", base.target, base.measured, base.status, "as above")
            )
        elif kind == "latency_ms":
            base = same["reply"]
            checks.append(
                LaunchCheck(f"Success metric: {metric}", base.target, base.measured, base.status, "as above")
            )
        elif kind == "p_d_given_u" and result is not None and result.p_d_given_u is not None:
            shown = result.p_interval.text() if result.p_interval else f"{result.p_d_given_u:.2f}"
            checks.append(
                LaunchCheck(
                    f"Success metric: {metric}",
                    "-",
                    shown,
                    NO_TARGET,
                    "P(D|U): importance-weighted resolved share",
                )
            )
        elif kind == "handoff" and handoff_rate is not None:
            checks.append(
                LaunchCheck(
                    f"Success metric: {metric}", "-", f"{handoff_rate:.0%}", NO_TARGET, "share handed off"
                )
            )
        else:
            checks.append(
                LaunchCheck(
                    f"Success metric: {metric}", "-", "-", NOT_MEASURED, "Teller does not measure this itself"
                )
            )
    return checks


# ------------------------------------------------------------------------------ recommendations

#: What a recommendation must not ask of a need the product's rules decline.
_SERVE_IT = re.compile(
    r"(?i)knowledge-base entry|add an? entry|training examples|labelled examples|answer it"
)


def _advice_for(check: LaunchCheck) -> str:
    if check.name.startswith("Classifier accuracy"):
        return (
            f"Accuracy is {check.measured}, short of the target ({check.target}): retrain with the "
            "operators' corrections before launch, or lower the target with the risk team."
        )
    if check.name.startswith("Reply latency"):
        return (
            f"Replies take {check.measured} at the 95th percentile, over the target ({check.target}): "
            "profile the serving path (quantised model, batching) before launch."
        )
    if check.name.startswith("Containment"):
        return (
            f"Containment is {check.measured}, short of the target ({check.target}): the under-served "
            "needs below are where it is lost."
        )
    return f"{check.name}: {check.measured} against {check.target}."


def recommendations(
    result: PositioningScore, checks: Sequence[LaunchCheck] = (), rules: Rules | None = None, limit: int = 5
) -> list[str]:
    """The failed launch checks, then the ideas that raise P(D|U) and M, at most ``limit``; an idea
    that asks the product to serve a need its ``rules`` decline is left out."""
    ideas = [_advice_for(c) for c in checks if c.status == FAIL and not c.name.startswith("Success")]
    declined = [n.need for n in result.needs if rules is not None and rules.declines(n.need)]
    for idea in [*result.raise_p, *result.raise_m[:1]]:
        if any(f"“{need}”" in idea for need in declined) and _SERVE_IT.search(idea):
            continue
        ideas.append(idea)
    return ideas[:limit]
