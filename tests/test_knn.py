"""The nearest-neighbour memory's shortcut for a message's nearest training example."""

from __future__ import annotations

import numpy as np
import pytest

from nlu.knn import Memory


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
