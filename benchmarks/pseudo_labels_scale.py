"""Scale benchmark of the CGPS pseudo labeler at CUHK-SYSU size.

N = 55,272 random-cluster 256-d unit features: 8,000 cluster centres, every feature a centre
plus isotropic Gaussian noise (noise norm ``--noise`` relative to the unit centre), boxes
grouped ~5 per image in random order. Runs the full ``CGPSPseudoLabeler`` (faiss kNN,
sparse Jaccard, 3× DBSCAN, scene context, self-paced) once and prints one JSON line:
{"n", "seconds" (wall), "cpu_seconds" (user + sys of this process, all threads),
"peak_rss_gb", stage seconds, cluster counts, pairwise precision/recall
against the generating clusters, load average}.

    .venv/bin/python benchmarks/pseudo_labels_scale.py [--n 55272] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=55_272)
    parser.add_argument("--clusters", type=int, default=8_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--noise", type=float, default=0.8, help="noise norm relative to the unit centre")
    parser.add_argument("--boxes-per-image", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(args.threads)

    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    import faiss

    faiss.omp_set_num_threads(args.threads)
    from personsearch.pseudo_labels.cgps import CGPSPseudoLabeler
    from personsearch.pseudo_labels.diagnostics import pseudo_label_precision_recall

    rng = np.random.default_rng(args.seed)
    centres = rng.standard_normal((args.clusters, args.dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    true_ids = rng.integers(0, args.clusters, args.n)
    noise = rng.standard_normal((args.n, args.dim)).astype(np.float32) * (args.noise / np.sqrt(args.dim))
    features = centres[true_ids] + noise
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    slot_images = np.arange(args.n) // args.boxes_per_image
    del centres, noise

    labeler = CGPSPseudoLabeler()
    usage_before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    result = labeler(features, slot_images)
    seconds = time.perf_counter() - start
    usage_after = resource.getrusage(resource.RUSAGE_SELF)
    cpu_seconds = (usage_after.ru_utime + usage_after.ru_stime) - (usage_before.ru_utime + usage_before.ru_stime)
    peak_rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB on Linux
    quality = pseudo_label_precision_recall(result.labels, true_ids)
    report = {
        "n": args.n,
        "seconds": round(seconds, 2),
        "peak_rss_gb": round(peak_rss_gb, 3),
        "cpu_seconds": round(cpu_seconds, 2),
        "threads": args.threads,
        "load_average_1min": os.getloadavg()[0],
        "num_clusters": result.num_clusters,
        "num_outliers": result.num_outliers,
        "precision": round(quality["precision"], 4),
        "recall": round(quality["recall"], 4),
        **{key: (round(value, 2) if isinstance(value, float) else value) for key, value in result.stats.items()},
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
