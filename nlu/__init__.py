"""Teller's intent classifier: train, evaluate and serve.

Serving needs neither torch nor the training code::

    from nlu import IntentClassifier
    classifier = IntentClassifier.load("models/intent/<version>")
    prediction = classifier.predict(["my card hasn't arrived"])[0]

Training lives in :mod:`nlu.training` and is imported only when used; retraining on operator
corrections behind a promotion gate in :mod:`nlu.retraining`.
"""

from nlu.classifier import IntentClassifier, Prediction
from nlu.data import Corpus, Example, load_corpus, read_messages
from nlu.errors import (
    ArtifactError,
    DataError,
    InvalidInputError,
    ModelNotFoundError,
    NLUError,
    RetrainBusy,
    RetrainError,
    TrainingError,
)
from nlu.registry import ModelRegistry, ModelVersion

__all__ = [
    "ArtifactError",
    "Corpus",
    "DataError",
    "Example",
    "IntentClassifier",
    "InvalidInputError",
    "ModelNotFoundError",
    "ModelRegistry",
    "ModelVersion",
    "NLUError",
    "Prediction",
    "RetrainBusy",
    "RetrainError",
    "TrainingError",
    "load_corpus",
    "read_messages",
]
