"""The exception tree of the ``nlu`` package: catch :class:`NLUError` to catch them all."""

from __future__ import annotations


class NLUError(Exception):
    """Base class of every error raised by :mod:`nlu`."""


class DataError(NLUError):
    """A training, evaluation or message file cannot be used (missing columns, bad encoding, ...)."""


class InvalidInputError(NLUError):
    """A message handed to the classifier cannot be classified (empty or whitespace-only)."""


class ArtifactError(NLUError):
    """A model artifact is missing, incomplete or was written by an incompatible version."""


class ModelNotFoundError(ArtifactError):
    """No model with the requested version exists, or no model is active yet."""


class TrainingError(NLUError):
    """Training cannot start or did not finish (too little data, interrupted run, ...)."""


class RetrainError(NLUError):
    """A retraining run cannot start or cannot be gated (no active model, no frozen set, ...)."""


class RetrainBusy(RetrainError):
    """Another retraining run holds the lock of this models directory."""
