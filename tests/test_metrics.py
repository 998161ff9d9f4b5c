from __future__ import annotations

import numpy as np
import pytest

from nlu.calibration import fit_temperature, softmax
from nlu.metrics import compute_metrics, expected_calibration_error


def test_metrics_on_a_known_example() -> None:
    true = ["a", "a", "a", "b", "b", "c"]
    pred = ["a", "a", "b", "b", "b", "a"]
    m = compute_metrics(true, pred, [0.9] * 6, known_labels=["a", "b"])
    assert m.accuracy == pytest.approx(4 / 6)
    scores = {s.intent: s for s in m.per_intent}
    assert scores["a"].precision == pytest.approx(2 / 3)
    assert scores["a"].recall == pytest.approx(2 / 3)
    assert scores["b"].precision == pytest.approx(2 / 3)
    assert scores["b"].recall == pytest.approx(1.0)
    assert scores["c"].f1 == 0.0
    assert m.macro_f1 == pytest.approx((2 / 3 + 0.8 + 0.0) / 3)
    assert [(c.true, c.predicted, c.count) for c in m.confusions] == [("a", "b", 1), ("c", "a", 1)]
    assert m.unknown_labels == ["c"]
    assert m.confusion_matrix[0] == [2, 1, 0]


def test_ece_by_hand() -> None:
    # Two bins: 0.9-confident (1 of 2 right) and 0.6-confident (1 of 1 right).
    ece = expected_calibration_error(np.array([0.9, 0.9, 0.6]), np.array([1.0, 0.0, 1.0]), bins=10)
    assert ece == pytest.approx((2 / 3) * 0.4 + (1 / 3) * 0.4)
    assert expected_calibration_error(np.array([1.0, 1.0]), np.array([1.0, 1.0])) == 0.0


def test_temperature_recovers_overconfidence() -> None:
    rng = np.random.default_rng(0)
    true_logits = rng.normal(size=(2000, 5)) * 2
    targets = np.array([rng.choice(5, p=p) for p in softmax(true_logits)])
    assert fit_temperature(true_logits * 3.0, targets) == pytest.approx(3.0, rel=0.15)
