"""The product's own rules: what the assistant must not do itself, so that no recommendation asks it
to (never "add a knowledge-base entry" for investment advice that the bank says it must not give).

Two sources: the rules the caller states for its product (Teller's answer policy declines
personalised investment advice), and the PM's own words in the interview ("must not give
investment advice", "never quotes exchange rates", or the scenario "Advice triage to advisers").
A need is declined when its wording shares a topic word with a rule.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: Words that say nothing about a topic ("must not *give* customers *any* advice").
_STOP = frozenset(
    re.split(
        r"\s+",
        """a an the any to of for on in or and with by be is are it its their our your them they
        give gives giving provide provides offer offers make makes do does answer answers handle
        handles customer customers client clients user users teller bot assistant product itself
        personal personalised personalized individual specific real actual without about from that
        this those these own ever""".strip(),
    )
)
#: "must not X", "never X", "should not X", "may not X", "will not X", "cannot X", "no X"
#: (Chinese: 不能, 不得, 禁止, 不提供, 不做).
_NEGATION = re.compile(
    r"(?i)(?:\bmust\s+not|\bmustn't|\bnever|\bshould\s+not|\bshouldn't|\bmay\s+not|\bwill\s+not|"
    r"\bwon't|\bcannot|\bcan't|\bdoes\s+not|\bdoesn't|\bnot\s+allowed\s+to|不能|不得|禁止|不提供|不做)"
    r"\s*([^.;,\n\u3002\uff1b\uff0c]+)"
)
#: Verbs a Chinese rule starts with ("provide", "give", "do", "answer", "carry out").
_CJK_VERB = re.compile(r"^(?:\u63d0\u4f9b|\u7ed9\u51fa|\u7ed9|\u505a|\u56de\u7b54|\u8fdb\u884c)")
#: Topic words of investment advice, in English and Chinese (the source article's 理财建议, 投资分析).
ADVICE_WORDS = (
    "advice",
    "advise",
    "invest",
    "investment",
    "investments",
    "portfolio",
    "stocks",
    "shares",
    "isa",
    "pension",
    "理财",
    "投资",
    "建议",
)


@dataclass(frozen=True)
class Rule:
    """A topic the product must not serve itself (``words`` decide which needs it covers) and
    ``source``: who says so, in their words."""

    words: tuple[str, ...]
    source: str

    def covers(self, need: str) -> bool:
        text = need.lower()
        tokens = set(re.findall(r"[a-z]+", text))
        for word in self.words:
            if re.search(r"[a-z]", word):
                if word in tokens or (len(word) >= 5 and any(t.startswith(word) for t in tokens)):
                    return True
            elif word in text:  # CJK: no word boundaries
                return True
        return False


@dataclass(frozen=True)
class Rules:
    """The product's rules (:class:`Rule`), in the order given."""

    rules: tuple[Rule, ...] = ()

    def declines(self, need: str) -> Rule | None:
        """The first rule that keeps the product from serving ``need`` itself, or None."""
        return next((r for r in self.rules if r.covers(need)), None)

    def __bool__(self) -> bool:
        return bool(self.rules)


#: Teller's own rule: its answer policy declines personalised investment advice (it gives the
#: compliant general answer and offers an adviser).
TELLER_ADVICE_RULE = Rule(
    ADVICE_WORDS, "Teller's answer policy: no personal investment advice (it offers an adviser instead)"
)


def topic_words(phrase: str) -> tuple[str, ...]:
    """The words of ``phrase`` that name a topic (stop words dropped; CJK runs kept whole)."""
    words = [w for w in re.findall(r"[a-z]+", phrase.lower()) if w not in _STOP and len(w) > 2]
    # CJK has no spaces: a run, less the verb it starts with ("提供理财建议" -> "理财建议").
    words += [_CJK_VERB.sub("", w) or w for w in re.findall(r"[\u4e00-\u9fff]{2,}", phrase)]
    return tuple(dict.fromkeys(words))


def rules_from_answers(answers: Mapping[str, Any]) -> list[Rule]:
    """The rules the PM stated in the interview: every "must not / never / cannot ..." phrase in a
    text answer, and advice triage to advisers among the application scenarios."""
    found: list[Rule] = []
    for key, value in answers.items():
        texts: Iterable[Any] = value if isinstance(value, list) else [value]
        for text in texts:
            if not isinstance(text, str):
                continue
            if key == "application_scenarios" and text.lower().startswith("advice triage"):
                found.append(Rule(ADVICE_WORDS, "the PM's scenario: advice triage to advisers"))
                continue
            for match in _NEGATION.finditer(text):
                words = topic_words(match[1])
                if words:
                    found.append(Rule(words, f"the PM's answer to {key}: “{match[0].strip()}”"))
    return found


def product_rules(answers: Mapping[str, Any], own: Sequence[Rule] = ()) -> Rules:
    """The caller's ``own`` rules for its product, then those the PM stated (:func:`rules_from_answers`)."""
    return Rules((*own, *rules_from_answers(answers)))
