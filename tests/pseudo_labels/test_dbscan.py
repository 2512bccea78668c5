"""DBSCAN on the sparse precomputed graph: explicit zeros count, outliers become singletons."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from personsearch.errors import PersonSearchError
from personsearch.pseudo_labels.dbscan import dbscan_labels, outliers_to_singletons


def _graph() -> sp.csr_matrix:
    rows, cols, vals = [], [], []

    def connect(members, distance):
        for i in members:
            for j in members:
                if i != j:
                    rows.append(i), cols.append(j), vals.append(distance)

    connect([0, 1, 2, 3], 0.1)  # cluster A
    connect([4, 5, 6, 7, 8], 0.2)  # cluster B
    connect([9, 10, 11, 12], 0.0)  # cluster C: only explicit zeros
    rows += [13, 0]; cols += [0, 13]; vals += [0.8, 0.8]  # 13: beyond eps of A
    # 14: nothing stored at all (Jaccard distance 1 to everyone)
    return sp.csr_matrix((vals, (rows, cols)), shape=(15, 15))


def test_three_clusters_and_outliers():
    graph = _graph()
    assert graph.nnz == 12 + 20 + 12 + 2  # the zeros are stored
    labels, num_clusters, num_outliers = dbscan_labels(graph, eps=0.7, min_samples=4)
    # clusters in discovery order A=0, B=1, C=2; outliers 13, 14 -> 3, 4 in sample order
    np.testing.assert_array_equal(labels, [0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 3, 4])
    assert (num_clusters, num_outliers) == (3, 2)


def test_min_samples_and_eps_matter():
    graph = _graph()
    # min_samples 5: A and C (4 members incl. self) are no longer dense; B stays
    labels, num_clusters, _ = dbscan_labels(graph, eps=0.7, min_samples=5)
    np.testing.assert_array_equal(labels, [1, 2, 3, 4, 0, 0, 0, 0, 0, 5, 6, 7, 8, 9, 10])
    assert num_clusters == 1
    # eps 0.05: only C (distance 0) survives
    labels, num_clusters, _ = dbscan_labels(graph, eps=0.05, min_samples=4)
    assert num_clusters == 1 and len(set(labels[9:13])) == 1 and len(set(labels)) == 15 - 3


def test_outliers_to_singletons_and_errors():
    labels, clusters, outliers = outliers_to_singletons(np.array([-1, 0, -1, 1, 0]))
    np.testing.assert_array_equal(labels, [2, 0, 3, 1, 0])
    assert (clusters, outliers) == (2, 2)
    with pytest.raises(PersonSearchError):
        dbscan_labels(np.zeros((3, 3)), 0.5, 4)
