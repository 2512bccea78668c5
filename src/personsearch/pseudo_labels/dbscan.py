"""DBSCAN on a sparse precomputed distance graph; outliers become fresh singleton labels.

Shape glossary
--------------
N  number of samples
``distances``  CSR [N, N]; stored entries are candidate neighbours (explicit zeros count),
               absent entries are "farther than any eps" (the Jaccard graph omits d = 1 pairs)
``labels``     int64 [N]; clusters 0..C-1 in DBSCAN's discovery order, then one fresh label
               per outlier in sample order (C..C+O-1)
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.cluster import DBSCAN

from personsearch.errors import PersonSearchError

__all__ = ["dbscan_labels", "outliers_to_singletons"]


def outliers_to_singletons(raw_labels: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Replace every -1 by a fresh unique label after the clusters.

    Returns (labels int64 [N], num_clusters, num_outliers).
    """
    labels = np.asarray(raw_labels, dtype=np.int64).copy()
    num_clusters = int(labels.max()) + 1 if (labels >= 0).any() else 0
    outliers = np.flatnonzero(labels < 0)
    labels[outliers] = num_clusters + np.arange(outliers.size)
    return labels, num_clusters, int(outliers.size)


def dbscan_labels(distances: sp.spmatrix, eps: float, min_samples: int) -> tuple[np.ndarray, int, int]:
    """scikit-learn DBSCAN(metric="precomputed") on the sparse graph (neighbours: stored d <= eps).

    scikit-learn stores the diagonal explicitly itself (a point is its own neighbour, counted
    in ``min_samples`` as in the dense case). Returns (labels, num_clusters, num_outliers).
    """
    if not sp.issparse(distances) or distances.shape[0] != distances.shape[1]:
        raise PersonSearchError("dbscan_labels: distances must be a square scipy sparse matrix")
    if eps <= 0 or min_samples < 1:
        raise PersonSearchError(f"dbscan_labels: need eps > 0 and min_samples >= 1, got {eps}, {min_samples}")
    graph = sp.csr_matrix(distances)
    if graph.nnz and (graph.data < 0).any():
        raise PersonSearchError("dbscan_labels: distances must be non-negative")
    clustering = DBSCAN(eps=eps, min_samples=min_samples, metric="precomputed").fit(graph)
    return outliers_to_singletons(clustering.labels_)
