"""A FAISS inner-product index with stable int64 ids, exact when small and approximate when large.

Vectors are L2-normalised, so inner product is cosine similarity. Below ``approx_threshold``
vectors the index is exact (``IndexFlatIP`` behind an id map). When it grows past the threshold it
moves, without re-embedding, to an inverted-file index (``IndexIVFFlat``) whose ``nprobe`` is raised
until its recall@k against exact search meets ``target_recall``. Adding or removing vectors never
rebuilds the index.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from retrieval.errors import IndexCorruptError

# The direct map lets an IVF index reconstruct and remove vectors by id; the hashtable form supports both.
_NO_MAP: int = faiss.DirectMap.NoMap  # type: ignore[attr-defined]
_HASHTABLE: int = faiss.DirectMap.Hashtable  # type: ignore[attr-defined]

EXACT = "exact"
APPROX = "ivf"


@dataclass(frozen=True)
class RecallCheck:
    k: int
    queries: int
    recall: float
    nprobe: int


class VectorIndex:
    """Cosine-similarity search over vectors keyed by caller-chosen int64 ids."""

    def __init__(self, dim: int, approx_threshold: int = 20_000, target_recall: float = 0.95) -> None:
        self.dim = dim
        self.approx_threshold = approx_threshold
        self.target_recall = target_recall
        # faiss's stubs know only the base Index; the concrete IDMap2 / IVF API is used here.
        self._index: Any = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self.last_recall: RecallCheck | None = None

    # ------------------------------------------------------------------ properties

    @property
    def kind(self) -> str:
        return APPROX if isinstance(self._index, faiss.IndexIVF) else EXACT

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def ids(self) -> np.ndarray:
        """Every stored id (unordered)."""
        if self.kind == EXACT:
            return faiss.vector_to_array(self._index.id_map).astype(np.int64)
        invlists = self._index.invlists
        found = [
            faiss.rev_swig_ptr(invlists.get_ids(i), invlists.list_size(i)).copy()
            for i in range(self._index.nlist)
            if invlists.list_size(i)
        ]
        return np.concatenate(found).astype(np.int64) if found else np.zeros(0, dtype=np.int64)

    # ------------------------------------------------------------------ updates

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        vectors = self._check(vectors)
        if len(ids) != len(vectors):
            raise ValueError("ids and vectors differ in length")
        if len(ids):
            self._index.add_with_ids(vectors, ids)
        if self.kind == EXACT and len(self) > self.approx_threshold:
            self._to_approximate()

    def remove(self, ids: np.ndarray) -> int:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if not len(ids):
            return 0
        # IDSelectorArray is the one selector every index type (including a hashtable direct map) accepts.
        return int(self._index.remove_ids(faiss.IDSelectorArray(len(ids), faiss.swig_ptr(ids))))

    # ------------------------------------------------------------------ search

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, ids)``, each ``(len(queries), k)``; missing neighbours have id -1."""
        queries = self._check(queries)
        if len(self) == 0 or k <= 0:
            return (
                np.full((len(queries), max(k, 0)), -np.inf, dtype=np.float32),
                np.full((len(queries), max(k, 0)), -1, dtype=np.int64),
            )
        if self.kind == EXACT:
            # OpenMP's thread count is per calling thread. A flat search over a few thousand vectors
            # is faster on one thread, and idle OpenMP threads would spin against the models.
            faiss.omp_set_num_threads(1)
        scores, ids = self._index.search(queries, k)
        return scores, ids

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        if self.kind == APPROX and self._index.direct_map.type == _NO_MAP:
            self._index.set_direct_map_type(_HASHTABLE)
        return (
            np.stack([self._index.reconstruct(int(i)) for i in ids])
            if len(ids)
            else np.zeros((0, self.dim), np.float32)
        )

    def check_recall(self, k: int = 10, queries: int = 200, seed: int = 0) -> RecallCheck:
        """Recall@k of this index against exact search, using stored vectors (jittered) as queries."""
        ids = self.ids()
        if not len(ids):
            return RecallCheck(k, 0, 1.0, 0)
        rng = np.random.default_rng(seed)
        sample = rng.choice(ids, size=min(queries, len(ids)), replace=False)
        vectors = self.reconstruct(ids)
        q = self.reconstruct(sample) + rng.normal(scale=0.05, size=(len(sample), self.dim)).astype(np.float32)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        k = min(k, len(ids))
        exact = ids[np.argsort(-(q @ vectors.T), axis=1)[:, :k]]
        _, found = self.search(q, k)
        recall = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(exact, found, strict=True)]))
        nprobe = int(self._index.nprobe) if self.kind == APPROX else 0
        self.last_recall = RecallCheck(k, len(sample), recall, nprobe)
        return self.last_recall

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | Path) -> None:
        """Write atomically: a crash leaves the previous file intact."""
        path = Path(path)
        staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        faiss.write_index(self._index, str(staging))
        os.replace(staging, path)

    @classmethod
    def load(
        cls, path: str | Path, dim: int, approx_threshold: int = 20_000, target_recall: float = 0.95
    ) -> VectorIndex:
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as exc:
            raise IndexCorruptError(f"{path}: unreadable FAISS index ({str(exc).splitlines()[0]})") from None
        if index.d != dim:
            raise IndexCorruptError(f"{path}: index has dimension {index.d}, expected {dim}")
        loaded = cls(dim, approx_threshold, target_recall)
        loaded._index = index
        return loaded

    # ------------------------------------------------------------------ internals

    def _check(self, vectors: np.ndarray) -> np.ndarray:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"expected vectors of shape (n, {self.dim}), got {vectors.shape}")
        return vectors

    def _to_approximate(self) -> None:
        ids = self.ids()
        vectors = self.reconstruct(ids)
        # About 4 sqrt(n) lists, but at least 39 training points per centroid, as k-means wants.
        nlist = max(16, min(int(4 * np.sqrt(len(ids))), len(ids) // 39))
        quantizer = faiss.IndexFlatIP(self.dim)
        ivf = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        ivf.cp.seed = 1234
        ivf.train(vectors)
        ivf.set_direct_map_type(_HASHTABLE)
        ivf.add_with_ids(vectors, ids)
        self._index = ivf
        for nprobe in (8, 16, 32, 64, 128, nlist):
            ivf.nprobe = min(nprobe, nlist)
            if self.check_recall().recall >= self.target_recall:
                break
