"""A FAISS inner-product index with stable int64 ids, exact when small and approximate when large.

Vectors are L2-normalised, so inner product is cosine similarity. Below ``approx_threshold``
vectors the index is exact (``IndexFlatIP`` behind an id map). When it grows past the threshold it
moves, without re-embedding, to an inverted-file index (``IndexIVFFlat``, flat quantizer) whose
``nprobe`` is raised until its recall@k against exact search meets ``target_recall``. Adding or
removing vectors does not rebuild the index, except that an approximate index which has grown to
more than ``REGROW`` times the size its lists were trained for is trained again (so a knowledge base
that grows from 20,000 to a million vectors does not keep 500 lists of 2,000 vectors each); the cost
is amortised (each rebuild is over at least four times as many vectors as the previous one).

Choice of index, after the FAISS wiki's "Guidelines to choose an index"
(https://github.com/facebookresearch/faiss/wiki/Guidelines-to-choose-an-index): below a million
vectors "IVFK" with K between 4 sqrt(N) and 16 sqrt(N), trained on 30 K to 256 K vectors; HNSW is
faster still but cannot remove vectors, which the knowledge base does on every edit, so it is out.
(For one to ten million it suggests IVF65536_HNSW32, which wants two million training vectors and
more; at a million the flat quantizer below leaves a wide margin, so it is not used.) K = 4 sqrt(N)
(4,000 lists at a million), trained on at most 64 vectors per list (256,000 at a million, about a
minute on 2 cores; faiss's default of 256 per list would train on all of them, about four times as
long). ``nprobe`` is tuned on the only queries the index has, stored vectors with noise; they
flatter it (at a million they met 0.95 at nprobe 8, where fresh queries got 0.940), so the first
nprobe that meets the target on them is doubled. Measured with ``teller bench
--kb-entries 1000000`` (2 cores shared, seed 0, 1,000 queries that are not stored vectors, the
search the knowledge base makes: one query at a time, depth 256):

    nprobe (IVF4000)     8      16     32     64     128      (p50 ms, 1 thread; an IVF4096 sweep)
    recall@10          0.936  0.970  0.989  0.996  0.998
    p50 / p95 ms       0.32   0.48   0.83   1.60   3.25    / 0.42 0.59 0.98 2.03 3.93

    chosen: nlist 4000, nprobe 16 -> recall@10 0.969, p50 0.49 ms, p95 0.61 ms; build 90 s (148 s
    on a busier machine); RSS +1.96 GB after the build, +4.6 GB at its peak (the exact index, a
    copy of its vectors and the new index together).

Two OpenMP threads gave the same p50 (a single query runs on one thread) and a worse p95 at some
nprobe (5.6 ms at 48 against 1.6 ms).

Search therefore runs on one OpenMP thread: faiss serves a single query on one thread anyway (IVF
search parallelises over queries, and so does a flat search of fewer than 20), and idle OpenMP
threads would spin against the models on the same cores. Building uses every core.
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
# An approximate index retrains once it holds more than this many times what it was trained for.
REGROW = 4
# k-means sample per list (the wiki asks for 30 to 256; faiss's default of 256 takes all of a million).
TRAIN_PER_LIST = 64
SEARCH_THREADS = 1


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
        self._trained_for = 0

    @staticmethod
    def choose_nlist(n: int) -> int:
        """4 sqrt(n) lists, but at least 39 training points per centroid, as k-means wants."""
        return max(16, min(int(4 * np.sqrt(n)), n // 39))

    # ------------------------------------------------------------------ properties

    @property
    def kind(self) -> str:
        return APPROX if isinstance(self._index, faiss.IndexIVF) else EXACT

    @property
    def search_threads(self) -> int:
        return SEARCH_THREADS

    def params(self) -> dict[str, Any]:
        """What the index is: kind, and for the approximate one its lists, probes and quantizer."""
        if self.kind == EXACT:
            return {"kind": EXACT, "index": "IndexFlatIP"}
        return {
            "kind": APPROX,
            "index": "IndexIVFFlat",
            "quantizer": "IndexFlatIP",
            "nlist": int(self._index.nlist),
            "nprobe": int(self._index.nprobe),
            "trained_for": self.trained_for,
        }

    @property
    def trained_for(self) -> int:
        """How many vectors the approximate index's lists were chosen for (0 when exact)."""
        if self.kind == EXACT:
            return 0
        if not self._trained_for:  # loaded from disk: the size its nlist was chosen for
            nlist = int(self._index.nlist)
            self._trained_for = max(int((nlist / 4) ** 2), nlist * 39)
        return self._trained_for

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
        limit = self.approx_threshold if self.kind == EXACT else REGROW * self.trained_for
        if len(self) > limit:
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
        # OpenMP's thread count is per calling thread. A search is faster on one thread (see the module
        # doc), and idle OpenMP threads would spin against the models.
        faiss.omp_set_num_threads(SEARCH_THREADS)
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
        """Recall@k of this index against exact search, using stored vectors (jittered) as queries.

        The index has no queries of its own to tune on; ``teller bench --kb-entries`` measures
        recall on fresh ones.
        """
        ids, vectors = self._stored()
        return self._recall(ids, vectors, k, queries, seed)

    def _recall(self, ids: np.ndarray, vectors: np.ndarray, k: int, queries: int, seed: int) -> RecallCheck:
        if not len(ids):
            return RecallCheck(k, 0, 1.0, 0)
        q, exact = self._truth(ids, vectors, k, queries, seed)
        _, found = self.search(q, exact.shape[1])
        k = exact.shape[1]
        recall = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(exact, found, strict=True)]))
        nprobe = int(self._index.nprobe) if self.kind == APPROX else 0
        self.last_recall = RecallCheck(k, len(q), recall, nprobe)
        return self.last_recall

    def _truth(
        self, ids: np.ndarray, vectors: np.ndarray, k: int, queries: int, seed: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Jittered stored vectors and their exact ``k`` nearest ids."""
        rng = np.random.default_rng(seed)
        sample = rng.choice(len(ids), size=min(queries, len(ids)), replace=False)
        q = vectors[sample] + rng.normal(scale=0.05, size=(len(sample), self.dim)).astype(np.float32)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        k = min(k, len(ids))
        _, rows = faiss.knn(q, vectors, k, metric=faiss.METRIC_INNER_PRODUCT)
        return q, ids[rows]

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

    def _stored(self) -> tuple[np.ndarray, np.ndarray]:
        """Every id and its vector, read in bulk (no per-vector reconstruct)."""
        if self.kind == EXACT:
            n = len(self)
            ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
            vectors = self._index.index.reconstruct_n(0, n) if n else np.zeros((0, self.dim), np.float32)
            return ids, np.ascontiguousarray(vectors, dtype=np.float32)
        invlists = self._index.invlists
        id_parts, vector_parts = [], []
        for i in range(self._index.nlist):
            size = invlists.list_size(i)
            if size:
                id_parts.append(faiss.rev_swig_ptr(invlists.get_ids(i), size).copy())
                codes = faiss.rev_swig_ptr(invlists.get_codes(i), size * invlists.code_size)
                vector_parts.append(codes.view(np.float32).reshape(size, self.dim).copy())
        if not id_parts:
            return np.zeros(0, dtype=np.int64), np.zeros((0, self.dim), np.float32)
        return np.concatenate(id_parts).astype(np.int64), np.concatenate(vector_parts)

    def _to_approximate(self) -> None:
        """(Re)build the inverted-file index over every stored vector and tune its ``nprobe``."""
        ids, vectors = self._stored()
        nlist = self.choose_nlist(len(ids))
        previous = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(os.cpu_count() or 1)  # a rare, heavy job: every core
        try:
            quantizer = faiss.IndexFlatIP(self.dim)
            ivf = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
            ivf.cp.seed = 1234
            ivf.cp.max_points_per_centroid = TRAIN_PER_LIST
            ivf.train(vectors)
            ivf.set_direct_map_type(_HASHTABLE)
            ivf.add_with_ids(vectors, ids)
            q, exact = self._truth(ids, vectors, 10, 200, 0)
        finally:
            faiss.omp_set_num_threads(previous)
        del vectors
        self._index = ivf
        self._trained_for = len(ids)
        k = exact.shape[1]

        def recall_at(nprobe: int) -> float:
            ivf.nprobe = min(nprobe, nlist)
            _, found = self.search(q, k)
            recall = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(exact, found, strict=True)]))
            self.last_recall = RecallCheck(k, len(q), recall, int(ivf.nprobe))
            return recall

        for nprobe in (8, 16, 32, 64, 128, 256, nlist):
            if recall_at(nprobe) >= self.target_recall:
                # Jittered stored vectors flatter the index (see the module doc): one doubling of headroom.
                recall_at(2 * nprobe)
                break
            if nprobe >= nlist:
                break
