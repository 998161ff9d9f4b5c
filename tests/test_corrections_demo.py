"""The correction demonstration's account of why the policy does not answer what the model reads
right (:func:`bot.correction_demo.explain`), on the toy model."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from bot.assistant import build_policy
from bot.correction_demo import (
    KB_ENTRY,
    LOW_CONFIDENCE,
    OUT_OF_SCOPE,
    OUT_OF_SCOPE_UNSURE,
    RUNNER_UP,
    explain,
)
from bot.settings import get_settings

#: Rules that decide before the scope, confidence and clarify bars are looked at.
EARLIER = ("human", "smalltalk", "advice")


def test_explain_names_the_bar_that_kept_each_message_the_model_reads_right_from_an_answer(
    teller_env: Path, toy_rows: list[tuple[str, str]]
) -> None:
    policy = build_policy(get_settings())
    calibrated = policy.thresholds
    assert calibrated is not None
    texts, labels = [t for t, _ in toy_rows], [y for _, y in toy_rows]
    read_right = sum(p.intent == y for p, y in zip(policy.classifier.predict(texts), labels, strict=True))

    own = explain(policy, texts, labels, other=calibrated)
    assert own.total == len(texts) and own.model_right == read_right > 0
    assert own.answered == own.answered_other  # the same thresholds twice
    assert own.model_right - sum(own.reasons.values()) <= own.answered

    never_clarify = {"clarify_gap": -1.0, "clarify_second": 1.0}
    cases = [
        # No message is in scope, any confidence would do: in scope, it would be answered.
        ({"in_scope": 1.01, "intent": 0.0, **never_clarify}, OUT_OF_SCOPE),
        # Out of scope, and no confidence is enough either.
        ({"in_scope": 1.01, "intent": 1.01, **never_clarify}, OUT_OF_SCOPE_UNSURE),
        # Everything in scope, no confidence enough.
        ({"in_scope": -1.0, "intent": 1.01, **never_clarify}, LOW_CONFIDENCE),
        # Everything in scope, and every message is asked back.
        ({"in_scope": -1.0, "intent": 0.0, "clarify_gap": 1.0, "clarify_second": 0.0}, RUNNER_UP),
    ]
    for bars, expected in cases:
        policy.thresholds = replace(calibrated, **bars)
        explained = explain(policy, texts, labels, other=calibrated)
        # Only the rules before these bars (small talk, advice, the knowledge base's) decide otherwise.
        assert set(explained.reasons) <= {expected, KB_ENTRY, *EARLIER}, (bars, explained.reasons)
        assert explained.reasons[expected] > 0
        # What the calibrated thresholds answer does not depend on the policy's own.
        assert explained.answered_other == own.answered
