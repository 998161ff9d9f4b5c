"""`teller bench --kb-entries`: the scale benchmark, run small with the approximate index forced."""

from __future__ import annotations

import faiss
import numpy as np

from bot.cli.modelling import kb_scale_rows
from retrieval.index import APPROX, EXACT, REGROW, VectorIndex
from retrieval.scale_bench import run_scale_bench, synthetic_embeddings


def test_the_scale_bench_measures_the_approximate_index() -> None:
    result = run_scale_bench(20_000, queries=300, timed=50, approx_threshold=5_000)
    assert result.kind == APPROX and result.vectors == 20_000
    assert result.params["nlist"] == VectorIndex.choose_nlist(20_000)
    assert 1 <= result.params["nprobe"] <= result.params["nlist"]
    assert result.recall_at_10 >= 0.95
    assert 0 < result.p50_ms <= result.p95_ms
    assert result.build_seconds > 0
    rows = dict(kb_scale_rows(result.to_dict()))
    text = " ".join(f"{k} {v}" for k, v in rows.items())
    for field in (
        "20,000 entries",
        "20,000 vectors",
        "ivf",
        "nlist",
        "nprobe",
        "build",
        "p50 / p95",
        "recall@10",
    ):
        assert field in text, field
    assert "RSS growth" in text


def test_synthetic_queries_are_fresh_and_cosines_look_like_sentence_embeddings() -> None:
    stored, queries = synthetic_embeddings(20_000, 200, seed=3)
    assert np.allclose(np.linalg.norm(stored, axis=1), 1, atol=1e-4)
    scores, _ = faiss.knn(queries, stored, 1, metric=faiss.METRIC_INNER_PRODUCT)
    assert scores.max() < 0.98  # no query is a stored vector, jittered or not
    assert 0.45 < float(np.median(scores)) < 0.9
    again, _ = synthetic_embeddings(20_000, 200, seed=3)
    assert np.array_equal(stored, again)


def test_an_approximate_index_is_retrained_when_it_has_grown() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(6000, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = VectorIndex(16, approx_threshold=1000)
    index.add(np.arange(1200), vectors[:1200])
    assert index.kind == APPROX and index.trained_for == 1200
    first = index.params()["nlist"]
    index.add(np.arange(1200, REGROW * 1200), vectors[1200 : REGROW * 1200])
    assert index.trained_for == 1200  # not past REGROW times yet
    index.add(np.arange(REGROW * 1200, 6000), vectors[REGROW * 1200 :])
    assert index.trained_for == 6000 and index.params()["nlist"] > first
    assert len(index) == 6000 and sorted(index.ids()) == list(range(6000))
    assert VectorIndex(16).params()["kind"] == EXACT
