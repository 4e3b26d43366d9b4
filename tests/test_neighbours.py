"""The neighbour index: exact below the threshold, HNSW above it with high recall, and picklable."""

from __future__ import annotations

import pickle

import numpy as np

from graphrouter.neighbours import NeighbourIndex, exact_knn


def _unit_rows(n: int, d: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_exact_below_the_threshold() -> None:
    base, queries = _unit_rows(500, 32, 0), _unit_rows(20, 32, 1)
    index = NeighbourIndex(base, exact_below=1000)
    assert not index.approximate
    nb, sim = index.search(queries, 10)
    want_nb, want_sim = exact_knn(queries, base, 10)
    np.testing.assert_array_equal(nb, want_nb)
    assert (np.diff(sim, axis=1) <= 1e-7).all()  # best first
    assert index.search(queries, 10_000)[0].shape == (20, 500)  # k above N: all of them


def test_hnsw_above_the_threshold_has_high_recall_and_survives_pickling() -> None:
    base = _unit_rows(5000, 64, 2)
    queries = base[:200] + 0.05 * _unit_rows(200, 64, 3)  # near stored points, as real queries are
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    index = NeighbourIndex(base, exact_below=1000)
    assert index.approximate
    nb, sim = index.search(queries, 10)
    want, _ = exact_knn(queries, base, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(nb, want, strict=True)])
    assert recall > 0.95, recall
    np.testing.assert_allclose(sim, np.take_along_axis(queries @ base.T, nb, 1), atol=1e-5)
    again = pickle.loads(pickle.dumps(index))
    np.testing.assert_array_equal(again.search(queries, 10)[0], nb)
