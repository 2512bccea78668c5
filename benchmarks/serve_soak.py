"""Loopback soak of the search server: ``personsearch serve`` in its own process on 127.0.0.1,
loaded by concurrent clients for a fixed number of requests (it stops by itself).

    .venv/bin/python benchmarks/serve_soak.py [--checkpoint CKPT] [--frames 40] [--clients 8]
        [--requests-per-client 400] [--upload-size 4000x3000] [--upload-store-mb 32]
        [--out benchmarks/results/serve_soak.json]

Gallery: ``--frames`` synthetic PRW-format frames (personsearch.data.synth, 960x540, seeded)
indexed with ``personsearch index build``. Model: ``--checkpoint``, or by default a small-backbone
model with random (seeded) weights, detections kept at any score (``--min-score 0``) and
preprocessing 360 / 640 -- the soak measures the server, not the search quality. The request mix
and what is measured are in personsearch/search/soak.py: latency p50 / p99 per kind of request,
every unexpected status, and the server's RSS at the start, after the warm-up (20 % of the
requests), at every tenth of the run and at the end, and the server's upload store at the end
(the default ``--upload-store-mb 32`` is filled early in the run, so RSS is seen with the store
full and evicting). Prints the JSON and writes it to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def random_checkpoint(path: Path) -> Path:
    import torch

    from personsearch.engine.checkpoint import save_checkpoint
    from personsearch.models import build_model

    torch.manual_seed(0)
    kwargs = {"backbone": "small", "box_score_thresh": 0.0, "detections_per_image": 10, "embedding_dim": 64}
    model = build_model(**kwargs)
    save_checkpoint(path, {"format_version": 1, "model_kwargs": kwargs, "model": model.state_dict(), "method": "seqnet",
                           "config": {"eval": {"min_size": 360, "max_size": 640}}})
    return path


def main(argv: list[str] | None = None) -> int:
    from personsearch.atomic import atomic_write_text
    from personsearch.cli.main import main as cli
    from personsearch.data.synth.generate import generate_dataset
    from personsearch.data.synth.output import image_dir
    from personsearch.search.soak import ServerProcess, run_soak

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None, help="a trained checkpoint (default: random small model)")
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests-per-client", type=int, default=400)
    parser.add_argument("--upload-size", default="4000x3000", help="WIDTHxHEIGHT of the uploaded photo")
    parser.add_argument("--upload-store-mb", type=float, default=32.0,
                        help="the server's --upload-store-mb (default 32: small enough that the run fills it "
                             "and old uploads are evicted)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "serve_soak.json"))
    args = parser.parse_args(argv)
    upload_size = tuple(int(v) for v in args.upload_size.lower().split("x"))

    work = Path(tempfile.mkdtemp(prefix="serve_soak_"))
    try:
        generate_dataset(work / "synth", "prw", frames=args.frames, seed=0, workers=1)
        images = image_dir(work / "synth", "prw")
        checkpoint = args.checkpoint or str(random_checkpoint(work / "random_small.pt"))
        build = ["index", "build", checkpoint, str(images), "--out", str(work / "index"), "--quiet"]
        if args.checkpoint is None:
            build += ["--min-score", "0"]
        if cli(build) != 0:
            return 1
        started = time.perf_counter()
        with ServerProcess(work / "index", ("--upload-store-mb", str(args.upload_store_mb))) as server:
            startup_s = time.perf_counter() - started
            report = run_soak(server, clients=args.clients, requests_per_client=args.requests_per_client,
                              upload_size=upload_size)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = {
        "command": "python benchmarks/serve_soak.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "model": args.checkpoint or "random-weight small backbone, preprocessing 360/640, --min-score 0",
        "frames": args.frames, "upload_store_mb": args.upload_store_mb, "server_startup_s": round(startup_s, 2),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        **report,
    }
    text = json.dumps(report, indent=2)
    atomic_write_text(args.out, text + "\n")
    print(text)
    return 0 if report["unexpected"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
