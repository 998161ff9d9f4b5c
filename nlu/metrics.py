"""Classification metrics: accuracy, macro-F1, per-intent scores, confusions and calibration."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support


@dataclass(frozen=True)
class IntentScore:
    intent: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class Confusion:
    """``count`` messages of intent ``true`` were classified as ``predicted``."""

    true: str
    predicted: str
    count: int


@dataclass
class Metrics:
    """What ``teller eval`` reports about a labelled set."""

    n: int
    accuracy: float
    macro_f1: float
    ece: float
    per_intent: list[IntentScore] = field(default_factory=list)
    confusions: list[Confusion] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    confusion_matrix: list[list[int]] = field(default_factory=list)
    unknown_labels: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, float | int]:
        return {"n": self.n, "accuracy": self.accuracy, "macro_f1": self.macro_f1, "ece": self.ece}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    """ECE with equal-width confidence bins (Guo et al. 2017)."""
    if len(confidence) == 0:
        return 0.0
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            ece += in_bin.mean() * abs(confidence[in_bin].mean() - correct[in_bin].mean())
    return float(ece)


def compute_metrics(
    true: Sequence[str],
    predicted: Sequence[str],
    confidence: Sequence[float],
    known_labels: Sequence[str] | None = None,
    top_confusions: int = 10,
) -> Metrics:
    """Score predictions against gold labels.

    Gold labels outside ``known_labels`` (the model's intents) still count as errors; they are
    listed in ``unknown_labels``.
    """
    if len(true) != len(predicted) or len(true) != len(confidence):
        raise ValueError("true, predicted and confidence must have the same length")
    labels = sorted(set(true) | set(predicted))
    y_true = np.asarray(true, dtype=object)
    y_pred = np.asarray(predicted, dtype=object)
    correct = (y_true == y_pred).astype(float)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    gold = set(true)
    per_intent = [
        IntentScore(label, float(p), float(r), float(f), int(s))
        for label, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)
    ]
    matrix = confusion_matrix(y_true, y_pred, labels=labels)
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    pairs = [Confusion(labels[i], labels[j], int(off[i, j])) for i, j in zip(*np.nonzero(off), strict=True)]
    pairs.sort(key=lambda c: (-c.count, c.true, c.predicted))
    gold_f1 = [s.f1 for s in per_intent if s.intent in gold]
    return Metrics(
        n=len(true),
        accuracy=float(correct.mean()) if len(true) else 0.0,
        macro_f1=float(np.mean(gold_f1)) if gold_f1 else 0.0,
        ece=expected_calibration_error(np.asarray(confidence, dtype=float), correct),
        per_intent=per_intent,
        confusions=pairs[:top_confusions],
        labels=labels,
        confusion_matrix=matrix.tolist(),
        unknown_labels=sorted(gold - set(known_labels)) if known_labels is not None else [],
    )
