"""Nearest-neighbour evidence from the training set, in the fine-tuned embedding space.

The classifier keeps the embeddings of its training examples (its "memory"). For a message, the
k most similar training examples vote for their intents with weights ``exp(cosine / tau)``; that
distribution is mixed with the head's. The similarity of the nearest example is also a strong
signal that a message is unlike anything the model was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Batches up to this size are compared with the memory one query at a time (:meth:`Memory.nearest`).
_ONE_BY_ONE = 4


@dataclass(frozen=True)
class Memory:
    """L2-normalised embeddings of the training examples and their intent indices."""

    embeddings: np.ndarray
    targets: np.ndarray

    def __post_init__(self) -> None:
        if len(self.embeddings) != len(self.targets):
            raise ValueError("embeddings and targets differ in length")
        # Stored once as contiguous float32, so a lookup is one matrix product and no copy.
        object.__setattr__(self, "embeddings", np.ascontiguousarray(self.embeddings, dtype=np.float32))
        object.__setattr__(self, "targets", np.asarray(self.targets, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.targets)

    def similarities(self, queries: np.ndarray) -> np.ndarray:
        """Cosine similarity of each (normalised) query to every stored example."""
        return np.asarray(queries, dtype=np.float32) @ self.embeddings.T

    def nearest(self, queries: np.ndarray) -> np.ndarray:
        """Shape ``(n,)``: each of ``n`` normalised queries' cosine to its most similar stored
        example (0 for an empty memory). The same figures as ``similarities(q).max(axis=1)``, read
        the cheaper way for the batch's size: a batch of 2-4 read as ``queries @ embeddings.T``
        copies the whole memory into the matrix product's packed form first, 2.4 ms at 10,000 x 384
        on one BLAS thread against 0.27 ms per query read one by one (measured with OpenBLAS, AMD
        EPYC); larger batches are read as ``embeddings @ queries.T``, 1.7 ms for 8 against 2.6."""
        q = np.asarray(queries, dtype=np.float32)
        if len(self) == 0:
            return np.zeros(len(q), dtype=np.float32)
        if len(q) <= _ONE_BY_ONE:
            return np.array([float((self.embeddings @ row).max()) for row in q], dtype=np.float32)
        return np.asarray((self.embeddings @ q.T).max(axis=0), dtype=np.float32)


def knn_vote(
    similarities: np.ndarray, targets: np.ndarray, num_labels: int, k: int, tau: float
) -> tuple[np.ndarray, np.ndarray]:
    """``(probabilities, nearest_similarity)`` per row of ``similarities`` (queries x memory)."""
    n = len(similarities)
    if similarities.shape[1] == 0:
        return np.full((n, num_labels), 1.0 / num_labels, dtype=np.float32), np.zeros(n, dtype=np.float32)
    k = min(k, similarities.shape[1])
    top = np.argpartition(-similarities, k - 1, axis=1)[:, :k]
    top_sims = np.take_along_axis(similarities, top, axis=1)
    weights = np.exp((top_sims - top_sims.max(axis=1, keepdims=True)) / tau)
    probs = np.zeros((n, num_labels), dtype=np.float64)
    np.add.at(probs, (np.repeat(np.arange(n), k), targets[top].ravel()), weights.ravel())
    probs /= probs.sum(axis=1, keepdims=True)
    return probs.astype(np.float32), top_sims.max(axis=1)


def mix(head_probs: np.ndarray, knn_probs: np.ndarray, knn_weight: float) -> np.ndarray:
    """The head's distribution blended with the neighbours' vote."""
    return np.asarray((1.0 - knn_weight) * head_probs + knn_weight * knn_probs, dtype=np.float32)
