"""From network outputs to calibrated intent probabilities, the same in training and serving."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nlu.calibration import softmax
from nlu.knn import Memory, knn_vote, mix, vote


@dataclass(frozen=True)
class Scorer:
    """Temperature-scaled head probabilities, blended with a k-nearest-neighbour vote over the memory."""

    num_labels: int
    temperature: float
    memory: Memory | None = None
    knn_k: int = 10
    knn_tau: float = 0.05
    knn_weight: float = 0.3

    def __call__(self, logits: np.ndarray, similarities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(probabilities, nearest training-example similarity)`` from logits and memory similarities."""
        probs = softmax(logits, self.temperature)
        if self.memory is None:
            return probs, np.zeros(len(logits), dtype=np.float32)
        votes, nearest = knn_vote(
            similarities, self.memory.targets, self.num_labels, self.knn_k, self.knn_tau
        )
        return (mix(probs, votes, self.knn_weight) if self.knn_weight > 0 else probs), nearest

    def from_embeddings(self, logits: np.ndarray, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """What ``self(logits, memory.similarities(embeddings))`` gives (to float rounding), reading
        only each embedding's ``knn_k`` nearest examples (:meth:`nlu.knn.Memory.top`) instead of its
        similarity to every one. ``logits`` ``(n, num_labels)``, ``embeddings`` ``(n, dim)``
        normalised; returns ``(probabilities (n, num_labels), nearest similarity (n,))``."""
        if self.memory is None:
            return self(logits, np.zeros((len(logits), 0), dtype=np.float32))
        # An empty memory gives no neighbours (k of 0): the uniform vote, as every similarity's scoring.
        sims, ids = self.memory.top(embeddings, max(1, self.knn_k) if self.knn_weight > 0 else 1)
        if (ids < 0).any():  # a NaN embedding: as every similarity's scoring reads it (NaN throughout)
            return self(logits, self.memory.similarities(embeddings))
        votes, nearest = vote(sims, self.memory.targets[ids], self.num_labels, self.knn_tau)
        probs = softmax(logits, self.temperature)
        return (mix(probs, votes, self.knn_weight) if self.knn_weight > 0 else probs), nearest
