"""Gallery search at scale: exact vs approximate faiss indexes on synthetic embeddings.

    .venv/bin/python benchmarks/search_scale.py [--n 1000000] [--dim 256] [--queries 200]
        [--threads 2] [--types flat,ivf,hnsw] [--nprobe 32] [--hnsw-m 32] [--ef-search 128]

Gallery: ``--n`` clustered random unit vectors (seeded): ``--clusters`` unit centres, each
vector = centre + Gaussian noise (``--noise`` per dimension), normalised -- a stand-in for
person embeddings where each identity forms a cluster. Defaults: 20,000 identities of ~50
persons; noise 0.04 in 256-d gives cosine ~0.84 to the centre, ~0.71 between two persons of one
identity and ~0 between identities (re-id embeddings of one person typically sit at 0.6-0.8). Queries: ``--queries`` fresh
vectors from the same distribution, searched ONE AT A TIME (the interactive case), top-10.

Prints one JSON object: per index type (a list, one entry per ``--nprobe`` / ``--ef-search``
value) the build time (train + add), on-disk size of the
serialised index (the ``vectors.faiss`` cache format of personsearch.search.vectors), query
latency p50/p99 in milliseconds, and recall@10 of the approximate indexes against exact search
(|approx top-10 ∩ exact top-10| / 10, averaged over queries). Uses the same index construction
code as ``personsearch index build``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

from personsearch.search import vectors as vector_index


def make_gallery(n: int, dim: int, clusters: int, noise: float, seed: int, chunk: int = 100_000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    gallery = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        labels = rng.integers(0, clusters, stop - start)
        block = centres[labels] + noise * rng.standard_normal((stop - start, dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        gallery[start:stop] = block
    return gallery, centres


def make_queries(centres: np.ndarray, count: int, noise: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 1)
    labels = rng.integers(0, len(centres), count)
    queries = centres[labels] + noise * rng.standard_normal((count, centres.shape[1]), dtype=np.float32)
    return (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)


def time_queries(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[list[float], np.ndarray]:
    index.search(queries[:2], k)  # warm-up
    latencies, results = [], []
    for query in queries:
        start = time.perf_counter()
        _, hit_ids = index.search(query[None], k)
        latencies.append(time.perf_counter() - start)
        results.append(hit_ids[0])
    return latencies, np.stack(results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--clusters", type=int, default=20_000)
    parser.add_argument("--noise", type=float, default=0.04)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--types", default="flat,ivf,hnsw")
    parser.add_argument("--nlist", type=int, default=None, help="IVF lists (default: auto)")
    parser.add_argument("--nprobe", default=str(vector_index.DEFAULT_PARAMS["ivf"]["nprobe"]),
                        help="IVF lists scanned per query; a comma list measures each")
    parser.add_argument("--hnsw-m", type=int, default=vector_index.DEFAULT_PARAMS["hnsw"]["M"])
    parser.add_argument("--ef-construction", type=int, default=vector_index.DEFAULT_PARAMS["hnsw"]["efConstruction"])
    parser.add_argument("--ef-search", default=str(vector_index.DEFAULT_PARAMS["hnsw"]["efSearch"]),
                        help="HNSW search breadth; a comma list measures each")
    args = parser.parse_args(argv)

    faiss.omp_set_num_threads(args.threads)
    types = [t.strip() for t in args.types.split(",") if t.strip()]
    nprobes = [int(v) for v in str(args.nprobe).split(",")]
    ef_searches = [int(v) for v in str(args.ef_search).split(",")]
    params = {
        "flat": {},
        "ivf": {"nlist": args.nlist, "nprobe": nprobes[0]},
        "hnsw": {"M": args.hnsw_m, "efConstruction": args.ef_construction, "efSearch": ef_searches[0]},
    }
    sweeps = {"flat": [{}], "ivf": [{"nprobe": v} for v in nprobes], "hnsw": [{"efSearch": v} for v in ef_searches]}

    start = time.perf_counter()
    gallery, centres = make_gallery(args.n, args.dim, args.clusters, args.noise, args.seed)
    queries = make_queries(centres, args.queries, args.noise, args.seed)
    ids = np.arange(args.n, dtype=np.int64)
    report: dict = {
        "command": "python benchmarks/search_scale.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "n": args.n, "dim": args.dim, "clusters": args.clusters, "noise": args.noise,
        "queries": args.queries, "k": args.k, "threads": args.threads,
        "faiss": faiss.__version__, "cpu_count": os.cpu_count(), "machine": platform.machine(),
        "load_average_start": [round(v, 2) for v in os.getloadavg()],
        "data_seconds": round(time.perf_counter() - start, 2),
        "indexes": {},
    }
    exact_hits = None
    with tempfile.TemporaryDirectory() as tmp:
        for index_type in ["flat"] + [t for t in types if t != "flat"]:
            start = time.perf_counter()
            index, resolved = vector_index.build_index(index_type, args.dim, params[index_type], gallery, ids)
            build_seconds = time.perf_counter() - start
            path = Path(tmp) / f"{index_type}.faiss"
            vector_index.write_cache(path, index, generation=1)
            disk_bytes = path.stat().st_size
            path.unlink()
            for search_params in sweeps[index_type]:
                resolved = {**resolved, **search_params}
                vector_index.apply_search_params(index, index_type, resolved)
                latencies, hits = time_queries(index, queries, args.k)
                entry = {
                    "params": dict(resolved),
                    "build_seconds": round(build_seconds, 2),
                    "disk_bytes": disk_bytes,
                    "latency_ms_p50": round(float(np.percentile(latencies, 50)) * 1e3, 3),
                    "latency_ms_p99": round(float(np.percentile(latencies, 99)) * 1e3, 3),
                    "latency_ms_mean": round(float(np.mean(latencies)) * 1e3, 3),
                }
                if index_type == "flat":
                    exact_hits = hits
                else:
                    overlap = [len(set(a.tolist()) & set(b.tolist())) / args.k for a, b in zip(hits, exact_hits)]
                    entry["recall_at_10"] = round(float(np.mean(overlap)), 4)
                if index_type in types:
                    report["indexes"].setdefault(index_type, []).append(entry)
                print(json.dumps({index_type: entry}), file=sys.stderr, flush=True)
            del index
    report["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
