"""Sparse k-reciprocal Jaccard distance against a dense, literal implementation of the spec."""

from __future__ import annotations

import numpy as np
import pytest

from personsearch.errors import PersonSearchError
from personsearch.pseudo_labels.jaccard import (
    as_unit_features,
    exact_knn,
    jaccard_distance_sparse,
    k_reciprocal_graph,
)


def _clustered_points(seed: int, num_clusters: int, per_cluster: int, noise: float, dim: int = 16):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((num_clusters, dim))
    points = np.repeat(centres, per_cluster, axis=0) + noise * rng.standard_normal((num_clusters * per_cluster, dim))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    return points.astype(np.float32)


def dense_reference(x: np.ndarray, k1: int, k2: int) -> np.ndarray:
    """docs/methods.md §2.4 step 2, one sample at a time, dense N×N (window(k) = min(k+1, k1))."""
    n = x.shape[0]
    dist2 = np.maximum(2.0 - 2.0 * (x.astype(np.float64) @ x.T.astype(np.float64)), 0.0)
    rank = np.argsort(dist2, axis=1, kind="stable")[:, :k1]

    def reciprocal(i: int, k: int) -> np.ndarray:
        window = min(k + 1, k1)
        forward = rank[i, :window]
        return np.array([j for j in forward if i in rank[j, :window]], dtype=np.int64)

    half = int(np.around(k1 / 2))
    r_full = [reciprocal(i, k1) for i in range(n)]
    r_half = [reciprocal(i, half) for i in range(n)]
    v = np.zeros((n, n))
    for i in range(n):
        expansion = list(r_full[i])
        for c in r_full[i]:
            if len(np.intersect1d(r_half[c], r_full[i])) > 2 / 3 * len(r_half[c]):
                expansion.extend(r_half[c])
        expansion = np.unique(expansion)
        logits = -dist2[i, expansion]
        weights = np.exp(logits - logits.max())
        v[i, expansion] = weights / weights.sum()
    v = np.stack([v[rank[i, :k2]].mean(axis=0) for i in range(n)])
    jaccard = np.ones((n, n))
    for i in range(n):
        shared = np.minimum(v[i], v).sum(axis=1)  # row i against every j
        jaccard[i] = 1.0 - shared / (2.0 - shared)
    return np.maximum(jaccard, 0.0), rank


@pytest.mark.parametrize("backend", ["blocked", "faiss"])
def test_knn_is_exact_and_self_first(backend):
    x = _clustered_points(0, 5, 8, 0.3)
    rank = exact_knn(as_unit_features(x), 6, backend=backend)
    dist2 = 2 - 2 * (x.astype(np.float64) @ x.T)
    assert (rank[:, 0] == np.arange(len(x))).all()
    expected = np.sort(dist2, axis=1)[:, :6]
    np.testing.assert_allclose(np.take_along_axis(dist2, rank, axis=1), expected, atol=1e-5)


def test_blocked_knn_lower_bound_path_matches_faiss(monkeypatch):
    # force the sampled lower-bound path (sample smaller than N) and several query blocks
    import personsearch.pseudo_labels.jaccard as jaccard

    monkeypatch.setattr(jaccard, "_KNN_SAMPLE", 64)
    monkeypatch.setattr(jaccard, "_KNN_BLOCK_ELEMENTS", 600 * 150)
    x = as_unit_features(_clustered_points(3, 30, 20, 0.4, dim=24))  # 600 points
    blocked = exact_knn(x, 30)
    reference = exact_knn(x, 30, backend="faiss")
    sims = x.astype(np.float64) @ x.T.astype(np.float64)
    np.testing.assert_allclose(np.take_along_axis(sims, blocked, axis=1),
                               np.take_along_axis(sims, reference, axis=1), atol=1e-6)
    assert (blocked == reference).mean() > 0.99
    # a bound that excludes true neighbours (negative margin) falls back to the full top-k
    monkeypatch.setattr(jaccard, "_KNN_BOUND_MARGIN", -0.5)
    np.testing.assert_array_equal(exact_knn(x, 30), blocked)


def test_reciprocal_graph_hand_case():
    # rank lists (self first): 0:[0,1,2] 1:[1,0,3] 2:[2,3,0] 3:[3,2,1]; window 2 -> 0<->1, 2<->3
    rank = np.array([[0, 1, 2], [1, 0, 3], [2, 3, 0], [3, 2, 1]])
    graph = k_reciprocal_graph(rank, 2).toarray()
    expected = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]])
    np.testing.assert_array_equal(graph, expected)
    # window 3: 0-2 reciprocal (2 has 0 in top-3), 1-3 reciprocal, 0-1, 2-3 as before
    graph3 = k_reciprocal_graph(rank, 3).toarray()
    expected3 = np.array([[1, 1, 1, 0], [1, 1, 0, 1], [1, 0, 1, 1], [0, 1, 1, 1]])
    np.testing.assert_array_equal(graph3, expected3)


@pytest.mark.parametrize("seed,k1,k2", [(0, 30, 6), (1, 20, 6), (2, 10, 3)])
def test_sparse_matches_dense_reference(seed, k1, k2):
    x = _clustered_points(seed, 12, 16, 0.55)  # 192 points, overlapping clusters
    x = np.concatenate([x, _clustered_points(seed + 100, 8, 1, 0.0)])  # + 8 isolated points
    dense, rank = dense_reference(x, k1, k2)
    sparse = jaccard_distance_sparse(x, k1=k1, k2=k2, max_distance=1.0).tocoo()
    stored = np.ones_like(dense)
    stored[sparse.row, sparse.col] = sparse.data
    # every pair with d < 1 must be stored with the reference value; absent pairs have d = 1
    np.testing.assert_allclose(stored, dense, atol=2e-5)
    has_overlap = dense < 1 - 1e-6
    assert has_overlap.sum() > 4 * len(x)  # the case really exercises shared supports
    assert (np.diff(sparse.tocsr().indptr) > 0).all()
    # thresholded graph: exactly the pairs with d <= max_distance (diagonal always present)
    thresholded = jaccard_distance_sparse(x, k1=k1, k2=k2, max_distance=0.7)
    coo = thresholded.tocoo()
    mask = np.zeros_like(dense, dtype=bool)
    mask[coo.row, coo.col] = True
    expected_mask = (dense <= 0.7) | np.eye(len(x), dtype=bool)
    borderline = np.abs(dense - 0.7) < 1e-5
    assert ((mask == expected_mask) | borderline).all()
    assert (coo.data[coo.row == coo.col] == 0).all()


def test_small_chunks_and_sort_deduplication_give_the_same_graph(monkeypatch):
    import personsearch.pseudo_labels.jaccard as jaccard

    x = _clustered_points(5, 10, 12, 0.5)
    expected = jaccard_distance_sparse(x, k1=20, k2=6, max_distance=0.72).toarray()
    monkeypatch.setattr(jaccard, "_TRIPLES_PER_CHUNK", 500)  # many row chunks
    monkeypatch.setattr(jaccard, "_FLOAT_EXACT_ORDER", 0)  # sort-based de-duplication path
    monkeypatch.setattr(jaccard, "_PAIRS_PER_CHUNK", 100)
    np.testing.assert_array_equal(jaccard_distance_sparse(x, k1=20, k2=6, max_distance=0.72).toarray(), expected)


def test_rejects_bad_features():
    with pytest.raises(PersonSearchError):
        jaccard_distance_sparse(np.zeros((5, 4)))
    with pytest.raises(PersonSearchError):
        jaccard_distance_sparse(np.full((5, 4), np.nan))
    with pytest.raises(PersonSearchError):
        jaccard_distance_sparse(np.ones(4))
