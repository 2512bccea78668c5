"""``personsearch index``: build or inspect a persistent gallery index.

    personsearch index build CHECKPOINT FOLDER --out INDEX [--index-type flat|ivf|hnsw]
                             [--every SECONDS | --keyframes]
                             [--batch-size B] [--min-score S] [--min-size N --max-size N]
                             [--nlist N --nprobe N | --hnsw-m M --ef-construction N --ef-search N]
    personsearch index info INDEX [--json]

FOLDER holds images and video files (mp4, mkv, avi, mov; decoded with PyAV, one frame every
``--every`` seconds, default 1, or every keyframe with ``--keyframes``). Re-running ``build`` on an
existing index adds new or changed files (sha256; a video also when its sampling changed) and
removes deleted ones; an interrupted build resumes where it stopped, inside a video too. An
unreadable video is reported by name and the build goes on. See docs/search.md.
"""

from __future__ import annotations

import argparse
import json

from personsearch.cli import finite_float


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="index_command", metavar="ACTION")
    actions.required = True
    build = actions.add_parser("build", help="detect every person in a folder of images and videos and index them")
    build.add_argument("checkpoint", help="trained model checkpoint (.pt)")
    build.add_argument("images", help="folder of scene images and video files (searched recursively)")
    sampling = build.add_mutually_exclusive_group()
    sampling.add_argument("--every", type=finite_float, default=None, metavar="SECONDS",
                          help="index one video frame every SECONDS (default 1)")
    sampling.add_argument("--keyframes", action="store_true", help="index every keyframe of each video instead")
    build.add_argument("--out", required=True, help="index folder (created, or updated when it exists)")
    build.add_argument("--index-type", choices=("flat", "ivf", "hnsw"), default=None,
                       help="faiss index: flat = exact (default for a new index), ivf / hnsw = approximate")
    build.add_argument("--batch-size", type=int, default=4, help="images per model batch (default 4)")
    build.add_argument("--min-score", type=finite_float, default=None,
                       help="keep detections with score >= S (default 0.5 for a new index)")
    build.add_argument("--min-size", type=int, default=None, help="preprocessing short side (default: checkpoint eval config, else 900)")
    build.add_argument("--max-size", type=int, default=None, help="preprocessing long side cap (default: checkpoint eval config, else 1500)")
    build.add_argument("--nlist", type=int, default=None, help="IVF lists (default ~sqrt(persons))")
    build.add_argument("--nprobe", type=int, default=None, help="IVF lists scanned per query (default 32)")
    build.add_argument("--hnsw-m", type=int, default=None, help="HNSW links per node (default 32)")
    build.add_argument("--ef-construction", type=int, default=None, help="HNSW build breadth (default 80)")
    build.add_argument("--ef-search", type=int, default=None, help="HNSW search breadth (default 128)")
    build.add_argument("--test-proposals", type=int, default=None,
                       help="RPN proposals per image (default: the checkpoint's, SeqNet 300); "
                            "fewer means less work per image and may miss persons in crowded scenes")
    build.add_argument("--precision", choices=("auto", "fp32", "bf16", "int8"), default="auto",
                       help="inference path (default auto: measured once per machine and model, the "
                            "fastest passing an accuracy check; int8 needs a `personsearch quantize` "
                            "checkpoint; docs/precision.md)")
    build.add_argument("--device", default="cpu")
    build.add_argument("--quiet", action="store_true", help="no progress bar")
    info = actions.add_parser("info", help="print counts, model and settings of an index")
    info.add_argument("index", help="index folder")
    info.add_argument("--json", action="store_true", help="print JSON")


def _index_params(args: argparse.Namespace) -> dict:
    if args.index_type == "ivf" or (args.index_type is None and (args.nlist or args.nprobe)):
        return {k: v for k, v in {"nlist": args.nlist, "nprobe": args.nprobe}.items() if v is not None}
    if args.index_type == "hnsw" or (args.index_type is None and (args.hnsw_m or args.ef_construction or args.ef_search)):
        values = {"M": args.hnsw_m, "efConstruction": args.ef_construction, "efSearch": args.ef_search}
        return {k: v for k, v in values.items() if v is not None}
    return {}


def index_info(path: str) -> dict:
    from personsearch.search.store import GalleryStore

    with GalleryStore.open(path, readonly=True) as store:
        settings = store.settings
        meta = store.meta()
        videos = store.videos()
        index = store.vector_index(write_cache=False)
        return {
            "index": str(store.root),
            "images": store.count_images() - store.count_frames(),
            "unreadable_images": store.count_failed(),
            "videos": len(videos),
            "video_frames": store.count_frames(),
            "unreadable_videos": {path: row.error for path, row in videos.items() if row.error},
            "unfinished_videos": sorted(path for path, row in videos.items() if not row.complete),
            "persons": store.count_persons(),
            "model_fingerprint": settings.fingerprint,
            "checkpoint": settings.checkpoint,
            "method": settings.method,
            "embedding_dim": settings.embedding_dim,
            "images_root": settings.images_root,
            "preprocessing": {"min_size": settings.min_size, "max_size": settings.max_size},
            "test_proposals": settings.test_proposals,
            "min_score": settings.min_score,
            "index_type": settings.index_type,
            "index_params": store.vector_params() or settings.index_params,
            "vectors_in_faiss": int(index.ntotal),
            "vector_cache": "rebuilt in memory (" + store.cache_events[-1] + ")" if store.cache_events else "valid",
            "generation": int(meta["generation"]),
            "sizes_bytes": store.sizes(),
        }


def run(args: argparse.Namespace) -> int:
    if args.index_command == "info":
        info = index_info(args.index)
        if args.json:
            print(json.dumps(info, indent=2))
        else:
            width = max(len(k) for k in info)
            for key, value in info.items():
                print(f"{key:<{width}}  {json.dumps(value) if isinstance(value, (dict, list)) else value}")
        return 0

    from personsearch.errors import PersonSearchError
    from personsearch.search.build import build_index, load_embedder
    from personsearch.search.video import Sampling

    if args.batch_size < 1:
        raise PersonSearchError(f"--batch-size must be >= 1, got {args.batch_size}")
    sampling = Sampling(None, keyframes=True) if args.keyframes else Sampling(1.0 if args.every is None else args.every)
    embedder = load_embedder(args.checkpoint, args.min_size, args.max_size, device=args.device,
                             test_proposals=args.test_proposals, precision=args.precision)
    report = build_index(
        args.out, embedder, args.images,
        checkpoint=embedder.checkpoint, index_type=args.index_type, index_params=_index_params(args),
        min_score=args.min_score, batch_size=args.batch_size, progress=not args.quiet, sampling=sampling,
    )
    print(report.summary())
    processed = report.added + report.changed + report.frames_added
    if processed and report.seconds > 0:
        path = getattr(embedder, "precision", None)  # a model embedder says which inference path it ran
        print(f"throughput: {processed / report.seconds:.2f} images/s ({processed} images and frames processed"
              + (f", inference path {path})" if path else ")"))
    print(f"index: {args.out}")
    return 0
