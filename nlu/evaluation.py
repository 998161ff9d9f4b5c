"""Scoring a loaded classifier on a labelled set."""

from __future__ import annotations

from collections.abc import Sequence

from nlu.classifier import IntentClassifier, Prediction
from nlu.data import Example
from nlu.metrics import Metrics, compute_metrics


def evaluate(classifier: IntentClassifier, examples: Sequence[Example]) -> tuple[Metrics, list[Prediction]]:
    """Classify every example and score the predictions against its label."""
    predictions = classifier.predict([e.text for e in examples])
    metrics = compute_metrics(
        [e.label for e in examples],
        [p.intent for p in predictions],
        [p.confidence for p in predictions],
        known_labels=classifier.labels,
    )
    return metrics, predictions
