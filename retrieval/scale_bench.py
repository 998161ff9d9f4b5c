"""Knowledge-base vector search at scale: the ``VectorIndex`` Teller serves, on synthetic embeddings.

``run_scale_bench(1_000_000)`` builds the same :class:`~retrieval.index.VectorIndex` the knowledge
base uses (one bulk add, as an import of that many entries would) over synthetic vectors shaped like
all-MiniLM-L6-v2 sentence embeddings, then times single-query searches (one query at a time, as a
message is served, at the depth the knowledge base asks for) and measures recall@10 against exact
search (``faiss.knn``, brute-force inner product, in batch).

The synthetic vectors (384-d, L2-normalised) are clustered the way FAQ-like sentence embeddings are:
topics drawn uniformly on the sphere, each with sub-topics around it, members drawn around a
sub-topic with a spread of its own, sub-topic sizes log-normal (some topics are asked about far more
than others), and a shared direction that makes unrelated sentences mildly similar (cosine about
0.06, as with MiniLM). Nearest-neighbour cosines come out at about 0.5-0.8 (printed with the
results). Queries are drawn afresh from the same process: 70 % are new members of existing
sub-topics, 30 % mixtures of two sub-topics nobody stored; none is a stored vector plus noise.
Everything derives from ``seed``.
"""

from __future__ import annotations

import resource
import time
from dataclasses import asdict, dataclass
from typing import Any

import faiss
import numpy as np

from retrieval.index import VectorIndex

DIM = 384
LATENT = 24  # intrinsic dimension of the meaning the vectors vary along
# What the knowledge base asks the index for once it is past _SCORE_ALL vectors: max(k * 16, 256).
KB_DEPTH = 256


@dataclass(frozen=True)
class ScaleBench:
    entries: int
    vectors: int
    queries: int
    depth: int
    kind: str
    params: dict[str, Any]
    build_seconds: float
    p50_ms: float
    p95_ms: float
    p50_ms_k10: float
    recall_at_10: float
    rss_growth_mb: float
    peak_rss_growth_mb: float
    nn_cosine_p5_p50_p95: tuple[float, float, float]
    threads: int
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _unit(x: np.ndarray) -> np.ndarray:
    return np.asarray(x / np.linalg.norm(x, axis=1, keepdims=True), dtype=np.float32)


def synthetic_embeddings(
    n: int, queries: int, dim: int = DIM, seed: int = 0, chunk: int = 100_000
) -> tuple[np.ndarray, np.ndarray]:
    """``(stored, queries)``: ``n`` clustered unit vectors and ``queries`` fresh ones (see the module doc)."""
    rng = np.random.default_rng(seed)
    topics = max(4, int(2 * np.sqrt(n)))  # 2,000 topics at a million entries
    lift = (rng.standard_normal((LATENT, dim)) / np.sqrt(LATENT)).astype(np.float32)
    shared = _unit(rng.standard_normal((1, dim)))
    centres = rng.standard_normal((topics, LATENT)).astype(np.float32)
    width = rng.uniform(0.3, 0.6, topics).astype(np.float32)  # how far a topic's phrasings wander
    blur = rng.uniform(0.35, 0.9, topics).astype(np.float32)  # how much wording the meaning leaves free
    weight = rng.lognormal(0.0, 1.0, topics)
    weight /= weight.sum()

    def embed(z: np.ndarray, noise: np.ndarray, r: np.random.Generator) -> np.ndarray:
        x = _unit(z @ lift) + noise[:, None] * _unit(r.standard_normal((len(z), dim), dtype=np.float32))
        return _unit(_unit(x) + 0.3 * shared)

    def members(m: int, r: np.random.Generator) -> np.ndarray:
        c = r.choice(topics, size=m, p=weight)
        z = centres[c] + width[c, None] * r.standard_normal((m, LATENT), dtype=np.float32)
        return embed(z, blur[c], r)

    stored = np.empty((n, dim), np.float32)
    for start in range(0, n, chunk):
        stored[start : start + chunk] = members(min(chunk, n - start), rng)
    q_rng = np.random.default_rng(seed + 1)
    fresh = int(queries * 0.7)
    mixed = queries - fresh
    a = q_rng.choice(topics, mixed, p=weight)
    b = q_rng.choice(topics, mixed, p=weight)
    t = q_rng.uniform(0.3, 0.7, (mixed, 1)).astype(np.float32)
    z = t * centres[a] + (1 - t) * centres[b]
    z += q_rng.uniform(0.3, 0.6, (mixed, 1)).astype(np.float32) * q_rng.standard_normal(
        (mixed, LATENT), dtype=np.float32
    )
    blends = embed(z, q_rng.uniform(0.35, 0.9, mixed).astype(np.float32), q_rng)
    return stored, np.vstack([members(fresh, q_rng), blends])


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kilobytes on Linux


def run_scale_bench(
    entries: int,
    queries: int = 1000,
    timed: int = 500,
    seed: int = 0,
    approx_threshold: int | None = None,
) -> ScaleBench:
    """Build a ``VectorIndex`` of ``entries`` synthetic vectors and measure it (see the module doc).

    ``timed`` of the ``queries`` are searched one at a time for the latency figures; recall@10 is over
    all of them. ``approx_threshold`` is the index's own default unless given (a test forces the
    approximate index on a small set with it).
    """
    stored, query = synthetic_embeddings(entries, queries, seed=seed)
    ids = np.arange(entries, dtype=np.int64)
    index = VectorIndex(DIM) if approx_threshold is None else VectorIndex(DIM, approx_threshold)
    rss_before, peak_before = _rss_mb(), _peak_rss_mb()
    started = time.perf_counter()
    index.add(ids, stored)
    build_seconds = time.perf_counter() - started
    rss_growth = _rss_mb() - rss_before
    peak_growth = max(0.0, _peak_rss_mb() - peak_before)

    depth = min(KB_DEPTH, entries)
    for i in range(min(20, queries)):  # warm-up
        index.search(query[i : i + 1], depth)
    deep, shallow = [], []
    for i in range(min(timed, queries)):
        t0 = time.perf_counter()
        index.search(query[i : i + 1], depth)
        t1 = time.perf_counter()
        index.search(query[i : i + 1], 10)
        deep.append(t1 - t0)
        shallow.append(time.perf_counter() - t1)
    # Recall of what serving returns, but searched in one batch to save time: the result is the same.
    _, found = index.search(query, 10)
    exact_scores, exact = faiss.knn(query, stored, 10, metric=faiss.METRIC_INNER_PRODUCT)
    recall = float(np.mean([len(set(e) & set(f)) / 10 for e, f in zip(exact, found, strict=True)]))
    nn = np.percentile(exact_scores[:, 0], [5, 50, 95])
    return ScaleBench(
        entries=entries,
        vectors=len(index),
        queries=queries,
        depth=depth,
        kind=index.kind,
        params=index.params(),
        build_seconds=round(build_seconds, 2),
        p50_ms=round(float(np.percentile(deep, 50)) * 1000, 3),
        p95_ms=round(float(np.percentile(deep, 95)) * 1000, 3),
        p50_ms_k10=round(float(np.percentile(shallow, 50)) * 1000, 3),
        recall_at_10=round(recall, 4),
        rss_growth_mb=round(rss_growth, 1),
        peak_rss_growth_mb=round(peak_growth, 1),
        nn_cosine_p5_p50_p95=(round(float(nn[0]), 3), round(float(nn[1]), 3), round(float(nn[2]), 3)),
        threads=index.search_threads,
        seed=seed,
    )
