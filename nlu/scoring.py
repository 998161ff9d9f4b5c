"""From network outputs to calibrated intent probabilities, the same in training and serving."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nlu.calibration import softmax
from nlu.knn import Memory, knn_vote, mix


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
