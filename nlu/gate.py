"""The promotion gate: a retrained candidate replaces the active model only if it is no worse.

Both models are scored through the serving path (:class:`nlu.IntentClassifier`, the precision
each artifact chose, as ``teller eval`` does) on exactly the same messages:

- the frozen evaluation set (the active model's dev split, less any text an operator corrected):
  the candidate may lose at most ``tolerance_points`` percentage points of accuracy;
- the corrections: the candidate must be strictly more accurate than the active model, or there
  is nothing it learned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nlu.classifier import IntentClassifier
from nlu.corrections import Correction, as_examples
from nlu.data import Example, text_key

#: Accuracy changes smaller than this (in points) are float noise, not a difference.
_EPSILON = 1e-9


@dataclass(frozen=True)
class GateDecision:
    """Whether to promote a candidate, why, and the figures behind it (accuracies in 0..1)."""

    promote: bool
    reasons: list[str]
    active_frozen_accuracy: float
    candidate_frozen_accuracy: float
    #: ``None`` when there were no corrections.
    active_corrections_accuracy: float | None
    candidate_corrections_accuracy: float | None
    frozen_size: int
    corrections_size: int
    #: Frozen examples left out of the comparison because an operator corrected their text.
    frozen_dropped: int = 0
    tolerance_points: float = 0.5

    @property
    def frozen_change_points(self) -> float:
        """Candidate minus active accuracy on the frozen set, in percentage points."""
        return 100.0 * (self.candidate_frozen_accuracy - self.active_frozen_accuracy)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "frozen_change_points": self.frozen_change_points}


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def decide(
    active_frozen_correct: int,
    candidate_frozen_correct: int,
    frozen_size: int,
    active_corrections_correct: int,
    candidate_corrections_correct: int,
    corrections_size: int,
    tolerance_points: float = 0.5,
    frozen_dropped: int = 0,
) -> GateDecision:
    """The gate's rule on counts of correct predictions (pure; :func:`evaluate_gate` measures them)."""
    reasons: list[str] = []
    promote = True
    active_f = active_frozen_correct / frozen_size if frozen_size else 0.0
    cand_f = candidate_frozen_correct / frozen_size if frozen_size else 0.0
    if not frozen_size:
        promote = False
        reasons.append("the frozen evaluation set is empty: there is nothing to compare the models on")
    else:
        change = 100.0 * (candidate_frozen_correct - active_frozen_correct) / frozen_size
        verdict = (
            "within the tolerance"
            if change >= -tolerance_points - _EPSILON
            else "a larger drop than the tolerance allows"
        )
        promote &= verdict == "within the tolerance"
        reasons.append(
            f"frozen set ({frozen_size} messages): candidate {_pct(cand_f)} vs active {_pct(active_f)} "
            f"({change:+.1f} points; at most -{tolerance_points:g} allowed): {verdict}"
        )
    active_c = cand_c = None
    if not corrections_size:
        promote = False
        reasons.append("no corrections: nothing to learn")
    else:
        active_c = active_corrections_correct / corrections_size
        cand_c = candidate_corrections_correct / corrections_size
        better = candidate_corrections_correct > active_corrections_correct
        promote &= better
        reasons.append(
            f"corrections ({corrections_size} messages): candidate {_pct(cand_c)} vs active "
            f"{_pct(active_c)}: " + ("better" if better else "not better, so nothing was learned")
        )
    return GateDecision(
        promote=promote,
        reasons=reasons,
        active_frozen_accuracy=active_f,
        candidate_frozen_accuracy=cand_f,
        active_corrections_accuracy=active_c,
        candidate_corrections_accuracy=cand_c,
        frozen_size=frozen_size,
        corrections_size=corrections_size,
        frozen_dropped=frozen_dropped,
        tolerance_points=tolerance_points,
    )


def frozen_for_comparison(
    frozen: Sequence[Example], corrections: Sequence[Example]
) -> tuple[list[Example], int]:
    """The frozen set less every text an operator corrected, and how many were left out."""
    corrected = {text_key(e.text) for e in corrections}
    kept = [e for e in frozen if text_key(e.text) not in corrected]
    return kept, len(frozen) - len(kept)


def count_correct(classifier: IntentClassifier, examples: Sequence[Example]) -> int:
    """How many of ``examples`` the served classifier labels right (one batched ``predict``)."""
    predictions = classifier.predict([e.text for e in examples]) if examples else []
    return sum(p.intent == e.label for p, e in zip(predictions, examples, strict=True))


def evaluate_gate(
    active_path: str | Path,
    candidate_path: str | Path,
    frozen: Sequence[Example],
    corrections: Sequence[Correction | Example],
    tolerance_points: float = 0.5,
    precision: str | None = None,
) -> GateDecision:
    """Score both models on the frozen set and the corrections and apply :func:`decide`.

    Corrections are merged newest-wins first; frozen texts that were corrected are left out.
    ``precision`` overrides each artifact's own serving precision (e.g. ``TELLER_PRECISION``).
    """
    fixes = as_examples([c for c in corrections if isinstance(c, Correction)])
    fixes += [c for c in corrections if isinstance(c, Example)]
    kept, dropped = frozen_for_comparison(frozen, fixes)
    counts = []
    for path in (active_path, candidate_path):
        classifier = IntentClassifier.load(path, precision=precision)
        counts.append((count_correct(classifier, kept), count_correct(classifier, fixes)))
        del classifier
    (active_f, active_c), (cand_f, cand_c) = counts
    return decide(active_f, cand_f, len(kept), active_c, cand_c, len(fixes), tolerance_points, dropped)
