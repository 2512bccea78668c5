"""Sparse k-reciprocal Jaccard distance (CGPS §2.4 step 2; SpCL ``compute_jaccard_distance``).

Shape glossary
--------------
N  number of samples (memory slots; CUHK-SYSU 55,272)
D  feature dimension
k1 length of the nearest-neighbour list (includes the sample itself), default 30
k2 local-query-expansion length, default 6

Definitions (X = L2-normalised features, rank[i] = the k1 nearest neighbours of i by Euclidean
distance, i.e. by inner product, nearest first, self included):

* window(k) = min(k + 1, k1) leading entries of rank[i]. The reference code slices
  ``initial_rank[i, :k + 1]`` on a list that has only k1 columns, so the k1 window holds k1
  entries and the round(k1/2) = 15 window holds 16 entries (self + 15). We follow the code.
* R(i, k) = { j in window_k(i) : i in window_k(j) } (k-reciprocal set; symmetric relation).
* expansion: E(i) = R(i, k1) ∪ ⋃ { R(c, k1/2) : c in R(i, k1),
  |R(c, k1/2) ∩ R(i, k1)| > 2/3 · |R(c, k1/2)| }.
* V[i, j] = softmax_{j in E(i)}( −‖x_i − x_j‖² ) with ‖x_i − x_j‖² = 2 − 2⟨x_i, x_j⟩; 0 outside.
* local query expansion: V[i] <- mean of V[rank[i, m]] for m < k2.
* s(i, j) = Σ_l min(V[i, l], V[j, l]);  d_J(i, j) = max(0, 1 − s / (2 − s)).

Pairs whose V rows share no support have s = 0 and d_J = 1; the result is a sparse CSR matrix
holding only pairs with d_J <= ``max_distance`` (the diagonal, d = 0, is always stored, explicit
zeros included), so no N×N array is ever formed. Cost is O(N·k1·D) for the kNN scan's memory
and O(Σ_l |column_l(V)|²) for the Jaccard sums, done in row chunks of bounded size.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from personsearch.errors import PersonSearchError

__all__ = [
    "as_unit_features",
    "exact_knn",
    "k_reciprocal_graph",
    "expanded_neighbourhoods",
    "encode_neighbourhoods",
    "jaccard_distance_sparse",
]

# Upper bound on (row, column, row) triples materialised at once in the Jaccard sums.
_TRIPLES_PER_CHUNK = 4_000_000
# Size (float32 elements) of the dense per-chunk accumulator of the Jaccard sums.
_ACCUMULATOR_ELEMENTS = 16_000_000
# Columns used for the per-row lower bound of the k-th best similarity (blocked kNN).
_KNN_SAMPLE = 4096
# Slack subtracted from that lower bound (fp32 rounding of a 256-term unit dot product << 1e-4).
_KNN_BOUND_MARGIN = 1e-4
# Size (float32 elements) of one block of the similarity matrix in the blocked kNN.
_KNN_BLOCK_ELEMENTS = 1 << 26
# float32 holds every integer below this exactly (order numbers of the de-duplication trick).
_FLOAT_EXACT_ORDER = 1 << 24
# Upper bound on gathered feature pairs at once when computing V's distances.
_PAIRS_PER_CHUNK = 262_144


def as_unit_features(features: np.ndarray | torch.Tensor) -> np.ndarray:
    """float32 [N, D] C-contiguous copy with unit rows; clear error on bad input."""
    if isinstance(features, torch.Tensor):
        features = features.detach().cpu().numpy()
    array = np.asarray(features)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise PersonSearchError(f"pseudo labels: features must be [N, D] with N, D > 0, got {array.shape}")
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(array).all():
        raise PersonSearchError("pseudo labels: features contain NaN or inf")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    if (norms == 0).any():
        raise PersonSearchError(
            f"pseudo labels: {int((norms == 0).sum())} feature rows are all zero and cannot be normalised"
        )
    return np.ascontiguousarray(array / norms, dtype=np.float32)


def exact_knn(unit_features: np.ndarray, k: int, backend: str = "blocked") -> np.ndarray:
    """Exact k nearest neighbours (int64 [N, k], nearest first, self normally first).

    Ranking by inner product on unit rows equals ranking by Euclidean distance.
    ``backend="faiss"``: faiss ``IndexFlatIP`` (brute force). ``backend="blocked"`` (default,
    about 2× less CPU than faiss at N = 55k): the k-th best similarity of every row over a fixed
    subset of ``_KNN_SAMPLE`` columns is a lower bound tau_i of its k-th best over all columns, so
    the full fp32 similarity blocks only need to be scanned for entries >= tau_i (a few hundred
    per row) and the exact top k is selected among those. Both are exact up to fp32 rounding
    and tie order.
    """
    num_samples, dim = unit_features.shape
    if not 1 <= k <= num_samples:
        raise PersonSearchError(f"pseudo labels: k1={k} needs 1 <= k1 <= N={num_samples}")
    if backend == "faiss":
        import faiss  # local import: only needed for this backend

        index = faiss.IndexFlatIP(dim)
        index.add(unit_features)
        _, rank = index.search(unit_features, k)
        if (rank < 0).any():
            raise PersonSearchError("pseudo labels: faiss returned fewer neighbours than requested")
        return rank.astype(np.int64, copy=False)
    if backend != "blocked":
        raise PersonSearchError(f"pseudo labels: unknown kNN backend {backend!r} (blocked | faiss)")
    features = torch.from_numpy(unit_features)
    sample = features[: max(_KNN_SAMPLE, k)]
    block = max(1, _KNN_BLOCK_ELEMENTS // num_samples)
    rank = np.empty((num_samples, k), dtype=np.int64)
    for start in range(0, num_samples, block):
        queries = features[start:start + block]
        similarities = queries @ features.t()  # [B, N]
        if sample.shape[0] == num_samples:
            rank[start:start + block] = similarities.topk(k, dim=1).indices.numpy()
            continue
        # margin: the two matmuls may round the same dot product differently
        lower_bound = (queries @ sample.t()).topk(k, dim=1).values[:, -1:] - _KNN_BOUND_MARGIN
        rows, cols = (similarities >= lower_bound).nonzero(as_tuple=True)
        values = similarities[rows, cols]
        counts = torch.bincount(rows, minlength=queries.shape[0])
        if int(counts.min()) < k:  # cannot happen unless rounding exceeds the margin; stay exact
            rank[start:start + block] = similarities.topk(k, dim=1).indices.numpy()
            continue
        column_in_row = torch.arange(rows.numel()) - (torch.cumsum(counts, 0) - counts)[rows]
        padded = torch.full((queries.shape[0], int(counts.max())), float("-inf"))
        padded_cols = torch.zeros(padded.shape, dtype=torch.int64)
        padded[rows, column_in_row] = values
        padded_cols[rows, column_in_row] = cols
        best = padded.topk(k, dim=1).indices
        rank[start:start + block] = torch.gather(padded_cols, 1, best).numpy()
    return rank


def k_reciprocal_graph(rank: np.ndarray, window: int) -> sp.csr_matrix:
    """R[i, j] = 1 iff j in rank[i, :window] and i in rank[j, :window] (int32 CSR, symmetric)."""
    num_samples = rank.shape[0]
    cols = rank[:, :window]
    rows = np.repeat(np.arange(num_samples), cols.shape[1])
    forward = sp.csr_matrix(
        (np.ones(rows.size, dtype=np.int32), (rows, cols.reshape(-1))), shape=(num_samples, num_samples)
    )
    forward.sum_duplicates()
    forward.data[:] = 1
    reciprocal = forward.multiply(forward.T).tocsr()
    reciprocal.eliminate_zeros()
    reciprocal.data[:] = 1
    return reciprocal.astype(np.int32)


def expanded_neighbourhoods(rank: np.ndarray, k1: int) -> sp.csr_matrix:
    """E (int32 CSR, entries 1): R(i, k1) expanded with accepted R(c, round(k1/2)) sets."""
    half = int(np.around(k1 / 2))
    full_set = k_reciprocal_graph(rank, min(k1 + 1, rank.shape[1]))
    half_set = k_reciprocal_graph(rank, min(half + 1, rank.shape[1]))
    half_sizes = np.diff(half_set.indptr)
    # overlap[i, c] = |R(i, k1) ∩ R(c, half)| (half_set is symmetric), kept only where c in R(i, k1)
    overlap = (full_set @ half_set).multiply(full_set).tocoo()
    accepted = overlap.data > (2.0 / 3.0) * half_sizes[overlap.col]
    accept = sp.csr_matrix(
        (np.ones(int(accepted.sum()), dtype=np.int32), (overlap.row[accepted], overlap.col[accepted])),
        shape=full_set.shape,
    )
    expanded = (full_set + accept @ half_set).tocsr()
    expanded.sum_duplicates()
    expanded.data[:] = 1
    expanded.sort_indices()
    return expanded


def _pair_dot(unit_features: torch.Tensor, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    out = np.empty(rows.size, dtype=np.float32)
    for start in range(0, rows.size, _PAIRS_PER_CHUNK):
        stop = min(start + _PAIRS_PER_CHUNK, rows.size)
        row_feats = unit_features[torch.from_numpy(rows[start:stop])]
        col_feats = unit_features[torch.from_numpy(cols[start:stop])]
        out[start:stop] = (row_feats * col_feats).sum(dim=1).numpy()
    return out


def encode_neighbourhoods(unit_features: np.ndarray, expanded: sp.csr_matrix) -> sp.csr_matrix:
    """V (float32 CSR): row-wise softmax of −‖x_i − x_j‖² over the entries of ``expanded``."""
    coo = expanded.tocoo()
    rows = coo.row.astype(np.int64)
    cols = coo.col.astype(np.int64)
    sims = _pair_dot(torch.from_numpy(unit_features), rows, cols)
    neg_dist = -(2.0 - 2.0 * sims.astype(np.float64))
    num_samples = expanded.shape[0]
    row_max = np.full(num_samples, -np.inf)
    np.maximum.at(row_max, rows, neg_dist)
    weights = np.exp(neg_dist - row_max[rows])
    row_sum = np.bincount(rows, weights=weights, minlength=num_samples)
    values = (weights / row_sum[rows]).astype(np.float32)
    encoded = sp.csr_matrix((values, (rows, cols)), shape=expanded.shape)
    encoded.sort_indices()
    return encoded


def _query_expand(encoded: sp.csr_matrix, rank: np.ndarray, k2: int) -> sp.csr_matrix:
    if k2 == 1:
        return encoded
    num_samples = rank.shape[0]
    cols = rank[:, :k2]
    rows = np.repeat(np.arange(num_samples), cols.shape[1])
    averaging = sp.csr_matrix(
        (np.full(rows.size, 1.0 / cols.shape[1], dtype=np.float32), (rows, cols.reshape(-1))),
        shape=(num_samples, num_samples),
    )
    expanded = (averaging @ encoded).tocsr()
    expanded.sort_indices()
    return expanded


def _shared_mass_threshold(max_distance: float) -> float:
    """Smallest s with 1 − s/(2 − s) <= max_distance, i.e. s >= 2(1 − d)/(2 − d)."""
    return 2.0 * (1.0 - max_distance) / (2.0 - max_distance)


def _jaccard_from_encoding(encoded: sp.csr_matrix, max_distance: float) -> sp.csr_matrix:
    """d_J for every pair sharing support with d_J <= max_distance (CSR, diagonal stored).

    s(i, j) is accumulated for j >= i only (s is symmetric) and mirrored. Rows are processed in
    chunks; for each nonzero V[i, l] the entries V[j, l], j >= i, of column l are expanded into
    (i, j, min) triples, summed into a dense per-chunk accumulator [rows, N] and read back at
    the touched positions, so memory stays bounded by the chunk size.
    """
    num_samples = encoded.shape[0]
    # keep a little slack so rounding at the threshold never drops a pair; filtered exactly below
    min_shared = max(_shared_mass_threshold(min(max_distance, 1.0)) - 1e-4, 0.0)
    keep_all_overlaps = max_distance >= 1.0
    by_column = encoded.tocsc()
    by_column.sort_indices()
    column_ptr = by_column.indptr.astype(np.int64)
    column_rows = by_column.indices.astype(np.int64)
    column_vals = torch.from_numpy(by_column.data.astype(np.float32))
    column_rows_t = torch.from_numpy(column_rows)
    column_keys = np.repeat(np.arange(num_samples, dtype=np.int64), np.diff(column_ptr)) * num_samples + column_rows
    entry_ptr = encoded.indptr.astype(np.int64)
    entry_cols = encoded.indices.astype(np.int64)
    entry_vals = encoded.data.astype(np.float32)
    entry_rows = np.repeat(np.arange(num_samples, dtype=np.int64), np.diff(entry_ptr))
    # first position in column l holding a row j >= i (columns are sorted by row)
    entry_starts = np.searchsorted(column_keys, entry_cols * num_samples + entry_rows)
    entry_counts = column_ptr[entry_cols + 1] - entry_starts
    del column_keys
    row_cost = np.bincount(entry_rows, weights=entry_counts, minlength=num_samples)
    cumulative_cost = np.cumsum(row_cost)
    max_rows = max(1, min(num_samples, _ACCUMULATOR_ELEMENTS // num_samples))
    accumulator = torch.zeros(max_rows * num_samples, dtype=torch.float32)

    result_rows: list[np.ndarray] = []
    result_cols: list[np.ndarray] = []
    result_vals: list[np.ndarray] = []
    start_row = 0
    while start_row < num_samples:
        base = cumulative_cost[start_row - 1] if start_row else 0.0
        stop_row = int(np.searchsorted(cumulative_cost, base + _TRIPLES_PER_CHUNK, side="right"))
        stop_row = min(max(stop_row, start_row + 1), start_row + max_rows, num_samples)
        lo, hi = entry_ptr[start_row], entry_ptr[stop_row]
        counts = entry_counts[lo:hi]
        total = int(counts.sum())
        first_triple = np.cumsum(counts) - counts
        positions = np.repeat(entry_starts[lo:hi] - first_triple, counts)
        positions += np.arange(total, dtype=np.int64)
        positions_t = torch.from_numpy(positions)
        minima = torch.from_numpy(np.repeat(entry_vals[lo:hi], counts))
        torch.minimum(minima, column_vals.index_select(0, positions_t), out=minima)
        flat = torch.from_numpy(np.repeat((entry_rows[lo:hi] - start_row) * num_samples, counts))
        flat += column_rows_t.index_select(0, positions_t)
        del positions, positions_t
        accumulator.index_add_(0, flat, minima)
        shared = accumulator.index_select(0, flat)
        accumulator.index_fill_(0, flat, 0.0)
        if keep_all_overlaps:
            hits, hit_shared = flat, shared
        else:
            selected = (shared > min_shared).nonzero().squeeze(1)
            hits, hit_shared = flat.index_select(0, selected), shared.index_select(0, selected)
        if hits.numel() < _FLOAT_EXACT_ORDER:
            # de-duplicate hits without sorting: the last writer of each position owns it
            hit_order = torch.arange(hits.numel(), dtype=torch.float32)
            accumulator.index_copy_(0, hits, hit_order)
            owner = accumulator.index_select(0, hits) == hit_order
            accumulator.index_fill_(0, hits, 0.0)
        else:
            owner = torch.zeros(hits.numel(), dtype=torch.bool)
            sorted_hits, order = torch.sort(hits, stable=True)
            first = torch.ones_like(sorted_hits, dtype=torch.bool)
            first[1:] = sorted_hits[1:] != sorted_hits[:-1]
            owner[order[first]] = True
        hits, hit_shared = hits[owner].numpy(), hit_shared[owner].numpy().astype(np.float64)
        result_rows.append(hits // num_samples + start_row)
        result_cols.append(hits % num_samples)
        result_vals.append(hit_shared)
        start_row = stop_row

    upper_rows = np.concatenate(result_rows)
    upper_cols = np.concatenate(result_cols)
    shared = np.concatenate(result_vals)
    distance = np.maximum(1.0 - shared / (2.0 - shared), 0.0)
    keep = (distance <= max_distance) & (upper_rows != upper_cols)
    upper_rows, upper_cols, distance = upper_rows[keep], upper_cols[keep], distance[keep]
    # mirror the upper triangle and add the explicit diagonal (explicit zeros are kept)
    diagonal = np.arange(num_samples, dtype=np.int64)
    rows = np.concatenate([upper_rows, upper_cols, diagonal])
    cols = np.concatenate([upper_cols, upper_rows, diagonal])
    vals = np.concatenate([distance, distance, np.zeros(num_samples)])
    order = np.lexsort((cols, rows))
    indptr = np.zeros(num_samples + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=num_samples), out=indptr[1:])
    return sp.csr_matrix((vals[order], cols[order], indptr), shape=(num_samples, num_samples))


def jaccard_distance_sparse(
    features: np.ndarray | torch.Tensor,
    k1: int = 30,
    k2: int = 6,
    max_distance: float = 1.0,
    rank: np.ndarray | None = None,
) -> sp.csr_matrix:
    """Sparse k-reciprocal Jaccard distance (float64 CSR [N, N]).

    Stores every pair with d_J <= ``max_distance`` among pairs whose encodings share support
    (all other pairs have d_J = 1), plus the explicit diagonal. ``rank`` (int64 [N, >= k1])
    may be given to reuse a neighbour list; otherwise it is computed with :func:`exact_knn`.
    """
    unit = as_unit_features(features)
    if k1 < 1 or k2 < 1:
        raise PersonSearchError(f"pseudo labels: k1 and k2 must be >= 1, got k1={k1}, k2={k2}")
    if k2 > k1:
        raise PersonSearchError(f"pseudo labels: k2={k2} must not exceed k1={k1}")
    k1 = min(k1, unit.shape[0])
    k2 = min(k2, k1)
    if rank is None:
        rank = exact_knn(unit, k1)
    rank = np.asarray(rank, dtype=np.int64)[:, :k1]
    expanded = expanded_neighbourhoods(rank, k1)
    encoded = encode_neighbourhoods(unit, expanded)
    encoded = _query_expand(encoded, rank, k2)
    return _jaccard_from_encoding(encoded, max_distance)
