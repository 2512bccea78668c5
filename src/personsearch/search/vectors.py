"""faiss vector indexes for the gallery: construction, search parameters and the on-disk cache
file format.

Shapes
------
vectors   float32 [N, D] unit-norm person embeddings (cosine = inner product)
ids       int64 [N] person ids (SQLite ``persons.id``)
queries   float32 [Q, D] unit-norm query embeddings
sims      float32 [Q, k] inner products, descending;  hit_ids int64 [Q, k] (-1 = no hit)

Index types
-----------
flat   exact: ``IndexFlatIP`` (inside an ``IndexIDMap2``). The default.
ivf    approximate: ``IndexIVFFlat`` with an inner-product coarse quantizer. ``nlist`` (number of
       lists) defaults to ``sqrt(N)`` rounded to a power of two and capped so that every
       list has about 39 training points or more; ``nprobe`` lists are scanned per query.
hnsw   approximate: ``IndexHNSWFlat`` (``M`` links per node, ``efConstruction``, ``efSearch``).

Cache file (``vectors.faiss``): 8-byte magic ``PSVEC001``, then little-endian uint64
generation, uint64 vector count, 32-byte sha256 of the payload, then the payload
(``faiss.serialize_index``). The generation must equal the SQLite generation, otherwise the file
is stale and is rebuilt from SQLite (the source of truth).
"""

from __future__ import annotations

import hashlib
import math
import struct
from pathlib import Path

import faiss
import numpy as np

from personsearch.atomic import atomic_open

INDEX_TYPES = ("flat", "ivf", "hnsw")
MAGIC = b"PSVEC001"
_HEADER = struct.Struct("<8sQQ32s")

DEFAULT_PARAMS: dict[str, dict[str, int | None]] = {
    "flat": {},
    "ivf": {"nlist": None, "nprobe": 64},
    "hnsw": {"M": 16, "efConstruction": 80, "efSearch": 128},
}


class VectorCacheInvalid(Exception):
    """The cache file is missing, stale or corrupt (a reason string); rebuild it."""


def default_params(index_type: str) -> dict[str, int | None]:
    if index_type not in INDEX_TYPES:
        raise ValueError(f"unknown index type {index_type!r} (choose from {', '.join(INDEX_TYPES)})")
    return dict(DEFAULT_PARAMS[index_type])


def auto_nlist(n_vectors: int) -> int:
    """Number of IVF lists for ``n_vectors``: ~sqrt(N) as a power of two, >= 39 points each."""
    if n_vectors <= 0:
        return 1
    target = math.sqrt(n_vectors)
    nlist = 2 ** int(round(math.log2(max(target, 1.0))))
    return int(max(1, min(nlist, n_vectors // 39)))


def new_index(index_type: str, dim: int, params: dict, n_vectors: int) -> tuple[faiss.Index, dict]:
    """An empty (untrained for ivf) index and the resolved parameters."""
    resolved = {**default_params(index_type), **{k: v for k, v in params.items() if v is not None}}
    if index_type == "flat":
        return faiss.IndexIDMap2(faiss.IndexFlatIP(dim)), resolved
    if index_type == "ivf":
        nlist = int(resolved.get("nlist") or auto_nlist(n_vectors))
        nlist = max(1, min(nlist, max(1, n_vectors)))
        resolved["nlist"] = nlist
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.max_points_per_centroid = 64  # k-means on <= 64 * nlist points (fast enough)
        return index, resolved
    hnsw = faiss.IndexHNSWFlat(dim, int(resolved["M"]), faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = int(resolved["efConstruction"])
    return faiss.IndexIDMap2(hnsw), resolved


def apply_search_params(index: faiss.Index, index_type: str, params: dict) -> None:
    if index_type == "ivf":
        faiss.extract_index_ivf(index).nprobe = int(params.get("nprobe") or 1)
    elif index_type == "hnsw":
        faiss.downcast_index(index.index).hnsw.efSearch = int(params.get("efSearch") or 16)


def build_index(
    index_type: str, dim: int, params: dict, vectors: np.ndarray, ids: np.ndarray
) -> tuple[faiss.Index, dict]:
    """Build (train + add) an index over ``vectors`` [N, D] with ``ids`` [N]."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, dim)
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    index, resolved = new_index(index_type, dim, params, len(vectors))
    if index_type == "ivf" and len(vectors):
        index.train(vectors)
        resolved["trained_on"] = int(len(vectors))
    if len(vectors):
        index.add_with_ids(vectors, ids)
    apply_search_params(index, index_type, resolved)
    return index, resolved


def supports_remove(index_type: str) -> bool:
    return index_type in ("flat", "ivf")


def search(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if queries.ndim == 1:
        queries = queries[None]
    k = max(1, min(int(k), max(1, index.ntotal)))
    sims, hit_ids = index.search(queries, k)
    return sims, hit_ids


def write_cache(path: Path, index: faiss.Index, generation: int) -> None:
    """Write the index atomically (:func:`personsearch.atomic.atomic_open`, fsynced)."""
    payload = faiss.serialize_index(index).tobytes()
    header = _HEADER.pack(MAGIC, int(generation), int(index.ntotal), hashlib.sha256(payload).digest())
    with atomic_open(path, fsync=True) as handle:
        handle.write(header)
        handle.write(payload)


def read_cache(path: Path, generation: int, count: int, dim: int) -> faiss.Index:
    """Load the cache file; VectorCacheInvalid(reason) when missing, stale or corrupt."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise VectorCacheInvalid("missing") from None
    except OSError as error:
        raise VectorCacheInvalid(f"unreadable ({error})") from None
    if len(data) < _HEADER.size:
        raise VectorCacheInvalid("truncated header")
    magic, file_generation, file_count, digest = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise VectorCacheInvalid("not a personsearch vector file")
    if file_generation != generation:
        raise VectorCacheInvalid(f"stale (generation {file_generation}, index at {generation})")
    payload = data[_HEADER.size:]
    if hashlib.sha256(payload).digest() != digest:
        raise VectorCacheInvalid("checksum mismatch")
    try:
        index = faiss.deserialize_index(np.frombuffer(payload, dtype=np.uint8))
    except Exception as error:  # faiss raises RuntimeError for a bad payload
        raise VectorCacheInvalid(f"cannot deserialize ({error})") from None
    if index.ntotal != count or file_count != count:
        raise VectorCacheInvalid(f"holds {index.ntotal} vectors, index has {count}")
    if index.d != dim:
        raise VectorCacheInvalid(f"dimension {index.d}, index has {dim}")
    return index
