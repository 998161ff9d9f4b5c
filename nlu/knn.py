"""Nearest-neighbour evidence from the training set, in the fine-tuned embedding space.

The classifier keeps the embeddings of its training examples (its "memory"). For a message, the
k most similar training examples vote for their intents with weights ``exp(cosine / tau)``; that
distribution is mixed with the head's. The similarity of the nearest example is also a strong
signal that a message is unlike anything the model was trained on.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any

import faiss
import numpy as np

#: Queries at once from which :meth:`Memory.top` searches on every core: a bulk read, never a
#: server's micro-batch of a few dozen messages.
_BULK = 256


@dataclass(frozen=True)
class Memory:
    """L2-normalised embeddings of the training examples and their intent indices."""

    embeddings: np.ndarray
    targets: np.ndarray
    _index: list[Any] = field(default_factory=list, init=False, repr=False, compare=False)
    _building: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.embeddings) != len(self.targets):
            raise ValueError("embeddings and targets differ in length")
        # Stored once as contiguous float32, so a product with every example needs no copy; the
        # search index of :meth:`top` holds a second copy (float16 codes for an artifact's memory:
        # 6.9 MB for 8,997 x 384).
        object.__setattr__(self, "embeddings", np.ascontiguousarray(self.embeddings, dtype=np.float32))
        object.__setattr__(self, "targets", np.asarray(self.targets, dtype=np.int64))

    def __reduce__(self) -> tuple[type[Memory], tuple[np.ndarray, np.ndarray]]:
        # Pickled and copied as its examples; the index (and its lock) are built again on use.
        return (Memory, (self.embeddings, self.targets))

    def __len__(self) -> int:
        return len(self.targets)

    def similarities(self, queries: np.ndarray) -> np.ndarray:
        """Cosine similarity of each (normalised) query to every stored example."""
        return np.asarray(queries, dtype=np.float32) @ self.embeddings.T

    def nearest(self, queries: np.ndarray) -> np.ndarray:
        """Shape ``(n,)``: each of ``n`` normalised queries' cosine to its most similar stored
        example (0 for an empty memory). The same figures as ``similarities(q).max(axis=1)`` (to
        float rounding), read as :meth:`top` reads them."""
        q = np.asarray(queries, dtype=np.float32)
        if len(self) == 0:
            return np.zeros(len(q), dtype=np.float32)
        return np.asarray(self.top(q, 1)[0][:, 0], dtype=np.float32)

    def top(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(similarities, indices)``, each ``(n, min(k, len(self)))``: each of ``n`` normalised
        queries' ``k`` most similar stored examples, most similar first (an empty memory gives
        ``(n, 0)``). The same examples and cosines as the ``k`` largest of ``similarities(q)`` (to
        float rounding; examples tied on the k-th cosine may be either; a query with a NaN gives
        NaN cosines and index -1). Raises ``ValueError`` if ``k`` is below 1 or the queries are not
        ``(n, dim)`` of the memory's ``dim``.

        Searched in a faiss index of the memory, on one OpenMP thread: a scalar-quantised float16
        index when every stored value is a float16 (as :mod:`nlu.artifact` stores them, so the
        cosines are exact), else a flat float32 one. The float16 index reads each query by the same
        arithmetic whatever its batch, so a served message's figures do not depend on its batch-mates
        (as :mod:`nlu.classifier` promises for an int8 model); the flat index switches to a BLAS
        product for large batches (cosines then differ by about 1e-7). A matrix product streams the
        whole 15 MB of a 10,000 x 384 memory in float32 for each message, and its time depends on what
        else is in the cache: 1.08 ms p50 per query with the cache flushed between queries and 0.25 ms
        with it warm, against 0.42 and 0.18 ms for the float16 index (8,997 x 384, one thread, AMD
        EPYC, 2026-12-05); the int8 classifier's pass took 1.9 -> 1.4 ms (flushed) without the product
        in its graph. A batch costs about what one product and its partition cost: 64 queries with
        their 10 nearest, 12 ms against 11 ms. A batch of at least :data:`_BULK` queries is searched
        on every core (faiss splits the queries; each is read as alone): `teller bench`'s batched
        classifier 759-869 -> 909-926 messages/s (2,000 messages, 2 cores, two alternated rounds)."""
        if k < 1:
            raise ValueError(f"k must be at least 1, not {k}")
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.embeddings.shape[1]:
            raise ValueError(f"queries must be (n, {self.embeddings.shape[1]}), not {q.shape}")
        k = min(k, len(self))
        if k == 0:
            return np.zeros((len(q), 0), dtype=np.float32), np.zeros((len(q), 0), dtype=np.int64)
        index = self._search_index()
        # OpenMP's thread count is per calling thread. A lone query or a server's micro-batch runs
        # on one (idle OpenMP threads would spin against the encoders on the same cores); a bulk
        # read (a calibration, an evaluation, a benchmark) on every core, up to four.
        faiss.omp_set_num_threads(min(4, os.cpu_count() or 1) if len(q) >= _BULK else 1)
        sims, ids = index.search(q, k)
        return np.asarray(sims, dtype=np.float32), np.asarray(ids, dtype=np.int64)

    def prepare(self) -> Memory:
        """Build the index :meth:`top` searches now rather than on the first query (22 ms for
        8,997 x 384, 2 cores, AMD EPYC: what a model's first message after loading would wait).
        Returns the memory itself."""
        self._search_index()
        return self

    def _search_index(self) -> Any:
        """The faiss index :meth:`top` searches, built on first use (thread-safe)."""
        if not self._index:
            with self._building:
                if not self._index:
                    self._index.append(_exact_index(self.embeddings))
        return self._index[0]


def _exact_index(embeddings: np.ndarray) -> Any:
    """A faiss inner-product index holding ``embeddings`` exactly: float16 codes when every value is
    a float16 (half the bytes to stream per query), float32 otherwise."""
    dim = embeddings.shape[1]
    index: Any
    if np.array_equal(embeddings.astype(np.float16).astype(np.float32), embeddings):
        index = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
    else:
        index = faiss.IndexFlatIP(dim)
    index.add(embeddings)
    return index


def knn_vote(
    similarities: np.ndarray, targets: np.ndarray, num_labels: int, k: int, tau: float
) -> tuple[np.ndarray, np.ndarray]:
    """``(probabilities, nearest_similarity)`` per row of ``similarities`` (queries x memory)."""
    k = min(k, similarities.shape[1])
    top = (
        np.argpartition(-similarities, k - 1, axis=1)[:, :k]
        if k > 0
        else np.zeros((len(similarities), 0), dtype=np.int64)
    )
    return vote(np.take_along_axis(similarities, top, axis=1), targets[top], num_labels, tau)


def vote(
    top_similarities: np.ndarray, top_targets: np.ndarray, num_labels: int, tau: float
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`knn_vote` from each query's ``k`` nearest examples alone: their cosines and intent
    indices, each ``(n, k)`` in any order (``k`` of 0 gives the uniform vote and a nearest of 0).
    Each votes ``exp((cosine - best) / tau)`` for its intent; returns ``(probabilities (n,
    num_labels), nearest cosine (n,))``."""
    n, k = top_similarities.shape
    if k == 0:
        return np.full((n, num_labels), 1.0 / num_labels, dtype=np.float32), np.zeros(n, dtype=np.float32)
    weights = np.exp((top_similarities - top_similarities.max(axis=1, keepdims=True)) / tau)
    probs = np.zeros((n, num_labels), dtype=np.float64)
    np.add.at(probs, (np.repeat(np.arange(n), k), np.asarray(top_targets).ravel()), weights.ravel())
    probs /= probs.sum(axis=1, keepdims=True)
    return probs.astype(np.float32), top_similarities.max(axis=1)


def mix(head_probs: np.ndarray, knn_probs: np.ndarray, knn_weight: float) -> np.ndarray:
    """The head's distribution blended with the neighbours' vote."""
    return np.asarray((1.0 - knn_weight) * head_probs + knn_weight * knn_probs, dtype=np.float32)
