"""SSL's per-epoch DML pseudo-label diagnostics (``methods.common.multilabel_precision_recall``)
at CUHK-SYSU's size: seconds, CPU seconds and peak RSS for N memory slots of which ``labelled``
have a known identity (random clustered unit features, 2.8 labelled boxes per identity).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/dml_diagnostics_scale.py [--n 55272]

Prints one JSON line (with the CPU model, threads and load average).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import cpu_model  # noqa: E402  (benchmarks/timing.py, beside this script)

from personsearch.methods.common import multilabel_precision_recall  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=55272, help="memory slots (CUHK-SYSU: 55,272)")
    parser.add_argument("--labelled", type=int, default=15490, help="slots with a known id")
    parser.add_argument("--images", type=int, default=11206, help="training images")
    parser.add_argument("--threshold", type=float, default=0.7)
    parser.add_argument("--dim", type=int, default=256)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    identities = max(1, int(round(args.labelled / 2.8)))
    true_ids = np.full(args.n, -1)
    labelled = rng.choice(args.n, args.labelled, replace=False)
    true_ids[labelled] = rng.integers(0, identities, labelled.size)
    centres = F.normalize(torch.randn(identities, args.dim), dim=1)
    feats = F.normalize(torch.randn(args.n, args.dim), dim=1)
    noise = 2.0 / args.dim ** 0.5
    feats[labelled] = F.normalize(centres[true_ids[labelled]] + noise * feats[labelled], dim=1)
    slot_images = torch.from_numpy(np.sort(rng.integers(0, args.images, args.n)))
    start, cpu_start = time.perf_counter(), time.process_time()
    result = multilabel_precision_recall(feats, slot_images, args.threshold, true_ids)
    print(json.dumps({
        "n": args.n, "labelled": args.labelled, "images": args.images,
        "seconds": round(time.perf_counter() - start, 1),
        "cpu_seconds": round(time.process_time() - cpu_start, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "threads": torch.get_num_threads(), "cpu": cpu_model(),
        "load_avg": [round(v, 2) for v in os.getloadavg()], **result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
