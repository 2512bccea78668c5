"""Self-paced reliability criterion (SpCL; CGPS §2.4 step 5).

Shape glossary
--------------
N  number of samples
``normal, tight, loose``  int64 [N] labelings at eps 0.70 / 0.68 / 0.72 (after scene context),
                          every sample labelled (outliers are singletons), labels >= 0

With N_x(i) = samples sharing i's label in labeling x:
    R_comp(i)  = 1 − |N_normal(i) ∩ N_tight(i)| / |N_normal(i) ∪ N_tight(i)|
    R_indep(i) = 1 − |N_normal(i) ∩ N_loose(i)| / |N_normal(i) ∪ N_loose(i)|
    cluster_R_comp(c) = min over members of R_comp;  cluster_R_indep(c) = min of R_indep.
indep_thres = sorted(cluster_R_indep of clusters with > 1 member)[min(n − 1, round(0.9 n))]
(numpy rounding, half to even, as the reference) — computed once, on the first clustering, and
passed back in afterwards. A member i is a candidate for ejection if
cluster_R_indep(c) > indep_thres or R_comp(i) > cluster_R_comp(c); candidates are ejected in
sample order only while their cluster still has > 1 member (CGPS), i.e. the first
min(#candidates, size − 1) candidates of each cluster. Intersections come from the label-pair
contingency (np.unique over pairs), so everything is O(N log N).

Result labels are contiguous: clusters (>= 2 members) first, in order of their label in the
normal labeling, then singletons in sample order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from personsearch.errors import PersonSearchError

__all__ = ["SelfPacedResult", "reliability", "indep_threshold", "self_paced_labels", "contiguous_labels"]


@dataclass(frozen=True)
class SelfPacedResult:
    labels: np.ndarray  # int64 [N], contiguous, clusters then singletons
    num_clusters: int
    num_singletons: int
    num_ejected: int
    indep_thres: float | None


def reliability(reference: np.ndarray, other: np.ndarray) -> np.ndarray:
    """float64 [N]: 1 − |N_ref(i) ∩ N_other(i)| / |N_ref(i) ∪ N_other(i)|."""
    ref_sizes = np.bincount(reference)[reference]
    other_sizes = np.bincount(other)[other]
    pair_key = reference.astype(np.int64) * (int(other.max()) + 1) + other
    _, inverse, counts = np.unique(pair_key, return_inverse=True, return_counts=True)
    intersection = counts[inverse.reshape(-1)].astype(np.float64)
    return 1.0 - intersection / (ref_sizes + other_sizes - intersection)


def indep_threshold(cluster_r_indep: np.ndarray, cluster_sizes: np.ndarray) -> float | None:
    """The 0.9 order statistic of cluster_R_indep over clusters with > 1 member (None if none)."""
    values = np.sort(cluster_r_indep[cluster_sizes > 1])
    if values.size == 0:
        return None
    return float(values[min(values.size - 1, int(np.round(values.size * 0.9)))])


def contiguous_labels(labels: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Relabel: clusters (>= 2 members) 0..C-1 by increasing old label, then singletons by index."""
    sizes = np.bincount(labels)
    is_cluster = sizes > 1
    cluster_ids = np.full(sizes.size, -1, dtype=np.int64)
    num_clusters = int(is_cluster.sum())
    cluster_ids[is_cluster] = np.arange(num_clusters)
    result = cluster_ids[labels]
    singletons = np.flatnonzero(result < 0)
    result[singletons] = num_clusters + np.arange(singletons.size)
    return result, num_clusters, int(singletons.size)


def _check(name: str, labels: np.ndarray, size: int) -> np.ndarray:
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (size,) or (size and labels.min() < 0):
        raise PersonSearchError(f"self-paced: {name} labels must be non-negative int [N={size}]")
    return labels


def self_paced_labels(
    normal: np.ndarray,
    tight: np.ndarray,
    loose: np.ndarray,
    indep_thres: float | None = None,
) -> SelfPacedResult:
    """Eject unreliable members of the normal labeling (see module docstring)."""
    normal = np.asarray(normal, dtype=np.int64)
    size = normal.size
    normal = _check("normal", normal, size)
    tight = _check("tight", tight, size)
    loose = _check("loose", loose, size)
    if size == 0:
        return SelfPacedResult(normal.copy(), 0, 0, 0, indep_thres)

    r_comp = reliability(normal, tight)
    r_indep = reliability(normal, loose)
    num_labels = int(normal.max()) + 1
    cluster_sizes = np.bincount(normal, minlength=num_labels)
    cluster_r_comp = np.full(num_labels, np.inf)
    cluster_r_indep = np.full(num_labels, np.inf)
    np.minimum.at(cluster_r_comp, normal, r_comp)
    np.minimum.at(cluster_r_indep, normal, r_indep)
    if indep_thres is None:
        indep_thres = indep_threshold(cluster_r_indep, cluster_sizes)

    candidate = r_comp > cluster_r_comp[normal]
    if indep_thres is not None:
        candidate |= cluster_r_indep[normal] > indep_thres
    # rank of each candidate among its cluster's candidates, in sample order
    candidates = np.flatnonzero(candidate)  # ascending sample order
    order = np.argsort(normal[candidates], kind="stable")
    sorted_labels = normal[candidates][order]
    first = np.searchsorted(sorted_labels, sorted_labels, side="left")
    rank_in_cluster = np.empty(candidates.size, dtype=np.int64)
    rank_in_cluster[order] = np.arange(candidates.size) - first
    ejected = candidates[rank_in_cluster < cluster_sizes[normal[candidates]] - 1]

    labels = normal.copy()
    labels[ejected] = num_labels + np.arange(ejected.size)
    labels, num_clusters, num_singletons = contiguous_labels(labels)
    return SelfPacedResult(labels, num_clusters, num_singletons, int(ejected.size), indep_thres)
