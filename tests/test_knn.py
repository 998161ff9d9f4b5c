"""The nearest-neighbour memory: its search for a message's nearest training examples, and the vote
scored from them alone."""

from __future__ import annotations

import numpy as np
import pytest

from nlu.knn import Memory
from nlu.scoring import Scorer


def _unit(rows: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("batch", [1, 2, 3, 4, 5, 8, 17])
def test_nearest_is_the_largest_similarity_whatever_the_batch(batch: int) -> None:
    memory = Memory(_unit(500, 32, 0), np.arange(500) % 7)
    queries = _unit(batch, 32, batch)
    expected = memory.similarities(queries).max(axis=1)
    got = memory.nearest(queries)
    assert got.shape == (batch,) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_an_empty_memory_has_nothing_near() -> None:
    memory = Memory(np.zeros((0, 8), dtype=np.float32), np.zeros(0, dtype=np.int64))
    assert memory.nearest(_unit(3, 8, 1)).tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("fp16", [False, True])
@pytest.mark.parametrize("batch", [1, 4, 5, 9])
def test_top_finds_the_k_largest_similarities_in_order(batch: int, fp16: bool) -> None:
    stored = _unit(400, 24, 3)
    if fp16:  # as an artifact stores its memory: the faiss index holds float16 codes, exactly
        stored = stored.astype(np.float16).astype(np.float32)
    memory = Memory(stored, np.arange(400) % 5)
    queries = _unit(batch, 24, 40 + batch)
    sims, ids = memory.top(queries, 7)
    full = memory.similarities(queries)
    assert sims.shape == ids.shape == (batch, 7) and sims.dtype == np.float32 and ids.dtype == np.int64
    expected = np.sort(full, axis=1)[:, ::-1][:, :7]
    np.testing.assert_allclose(sims, expected, atol=1e-6)
    np.testing.assert_allclose(np.take_along_axis(full, ids, axis=1), sims, atol=1e-6)
    assert (np.diff(sims, axis=1) <= 1e-7).all()  # most similar first


def test_top_caps_k_at_the_memory_and_refuses_nothing_asked() -> None:
    memory = Memory(_unit(3, 8, 2), np.arange(3))
    sims, ids = memory.top(_unit(2, 8, 5), 10)
    assert sims.shape == (2, 3) and sorted(ids[0].tolist()) == [0, 1, 2]
    empty = Memory(np.zeros((0, 8), dtype=np.float32), np.zeros(0, dtype=np.int64))
    assert empty.top(_unit(2, 8, 5), 3)[0].shape == (2, 0)
    with pytest.raises(ValueError, match="at least 1"):
        memory.top(_unit(1, 8, 5), 0)


@pytest.mark.parametrize("batch", [1, 3, 12])
@pytest.mark.parametrize("weight", [0.0, 0.3])
def test_scoring_from_embeddings_is_scoring_from_every_similarity(batch: int, weight: float) -> None:
    labels = 6
    memory = Memory(_unit(300, 16, 7).astype(np.float16).astype(np.float32), np.arange(300) % labels)
    scorer = Scorer(labels, 1.3, memory, knn_k=10, knn_tau=0.05, knn_weight=weight)
    logits = np.random.default_rng(batch).standard_normal((batch, labels)).astype(np.float32)
    embeddings = _unit(batch, 16, 70 + batch)
    probs, nearest = scorer(logits, memory.similarities(embeddings))
    got_probs, got_nearest = scorer.from_embeddings(logits, embeddings)
    np.testing.assert_allclose(got_probs, probs, atol=1e-6)
    np.testing.assert_allclose(got_nearest, nearest, atol=1e-6)
    # An empty memory votes uniformly and has nothing near, as every similarity's scoring does.
    empty = Memory(np.zeros((0, 16), dtype=np.float32), np.zeros(0, dtype=np.int64))
    scorer = Scorer(labels, 1.3, empty, knn_k=10, knn_tau=0.05, knn_weight=weight)
    expected = scorer(logits, np.zeros((batch, 0), dtype=np.float32))
    for got, want in zip(scorer.from_embeddings(logits, embeddings), expected, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-7)


def test_a_memory_refuses_queries_of_another_size_and_survives_a_copy() -> None:
    import copy
    import pickle

    memory = Memory(_unit(50, 8, 4), np.arange(50) % 3)
    with pytest.raises(ValueError, match=r"\(n, 8\)"):
        memory.top(_unit(2, 16, 1), 3)
    with pytest.raises(ValueError, match=r"\(n, 8\)"):
        memory.top(np.ones(8, dtype=np.float32), 3)
    queries = _unit(3, 8, 9)
    expected = memory.top(queries, 4)
    for again in (copy.deepcopy(memory), pickle.loads(pickle.dumps(memory))):
        for got, want in zip(again.top(queries, 4), expected, strict=True):
            np.testing.assert_array_equal(got, want)


def test_a_nan_embedding_is_scored_as_every_similarity_scores_it() -> None:
    memory = Memory(_unit(40, 8, 6).astype(np.float16).astype(np.float32), np.arange(40) % 5)
    scorer = Scorer(5, 1.0, memory, knn_k=10, knn_tau=0.05, knn_weight=0.3)
    embeddings = np.vstack([_unit(1, 8, 2), np.full((1, 8), np.nan, dtype=np.float32)])
    logits = np.zeros((2, 5), dtype=np.float32)
    probs, nearest = scorer.from_embeddings(logits, embeddings)
    want_probs, want_nearest = scorer(logits, memory.similarities(embeddings))
    np.testing.assert_allclose(nearest[0], want_nearest[0], atol=1e-6)
    np.testing.assert_array_equal(np.isnan(probs), np.isnan(want_probs))
    assert np.isnan(probs[1]).all() and np.isnan(nearest[1]) and not np.isnan(probs[0]).any()
    np.testing.assert_allclose(probs[0], want_probs[0], atol=1e-6)


def test_a_bulk_search_on_every_core_reads_each_query_as_alone() -> None:
    from nlu.knn import _BULK

    memory = Memory(_unit(2000, 32, 11).astype(np.float16).astype(np.float32), np.arange(2000) % 9)
    queries = _unit(_BULK + 44, 32, 12)
    sims, ids = memory.top(queries, 10)
    for i in (0, 1, _BULK - 1, _BULK + 43):
        alone_sims, alone_ids = memory.top(queries[i : i + 1], 10)
        np.testing.assert_array_equal(sims[i], alone_sims[0])
        np.testing.assert_array_equal(ids[i], alone_ids[0])


def test_prepare_builds_the_index_before_the_first_query() -> None:
    memory = Memory(_unit(30, 8, 13), np.arange(30) % 3)
    assert not memory._index
    assert memory.prepare() is memory and len(memory._index) == 1
    index = memory._index[0]
    memory.top(_unit(1, 8, 14), 2)
    assert memory._index == [index]  # built once
