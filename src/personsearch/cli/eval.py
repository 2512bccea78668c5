"""``personsearch eval CHECKPOINT --dataset prw|cuhk-sysu --root ROOT [--gallery-size N]
[--use-gt-boxes] [--results-out FILE]``: run a trained model on a benchmark's test split and
evaluate it with the same core as ``personsearch evaluate-results`` (``--results-out`` writes
the .npz that command reads, so both give identical numbers)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="checkpoint file (e.g. out/run/checkpoints/last.pt)")
    parser.add_argument("--dataset", required=True, choices=["prw", "cuhk-sysu"])
    parser.add_argument("--root", required=True, help="dataset root folder")
    parser.add_argument("--gallery-size", type=int, default=100,
                        help="CUHK-SYSU gallery size (50...4000, -1 = full pool; default 100)")
    parser.add_argument("--cross-camera", action="store_true",
                        help="PRW: cross-camera gallery (default: every frame but the query's)")
    parser.add_argument("--query-from-detection", action="store_true",
                        help="PRW (CGPS/DICL protocol): query feature from the query frame's "
                             "best-overlapping detection")
    parser.add_argument("--use-gt-boxes", action="store_true",
                        help="gallery = GT boxes with the model's features (re-id upper bound)")
    parser.add_argument("--det-thresh", type=float, default=0.5,
                        help="search keeps gallery detections scoring >= this (default 0.5)")
    parser.add_argument("--min-size", type=int, default=None,
                        help="test resize short side (default: the checkpoint config's eval.min_size)")
    parser.add_argument("--max-size", type=int, default=None,
                        help="test resize long side (default: the checkpoint config's eval.max_size)")
    parser.add_argument("--precision", choices=["fp32", "bf16", "int8", "auto"], default="fp32",
                        help="inference path (default fp32: the model as trained, BN folded); bf16 "
                             "autocast; int8 needs a checkpoint from `personsearch quantize`; auto "
                             "measures the paths on this machine and takes the fastest that passes "
                             "an accuracy check (docs/precision.md). The path used is printed")
    parser.add_argument("--bf16", action="store_true", help="same as --precision bf16")
    parser.add_argument("--reference-path", action="store_true",
                        help="run the model as trained (BatchNorm layers, contiguous tensors) "
                             "instead of the default BN-folded channels_last model; results "
                             "differ only by float rounding")
    parser.add_argument("--test-proposals", type=int, default=None,
                        help="RPN proposals kept per test image (default: the checkpoint's, "
                             "SeqNet 300); fewer means less work per image and may miss persons "
                             "in crowded scenes")
    parser.add_argument("--fusion", choices=["auto", "on", "off"], default="auto",
                        help="DICL: average each detection's feature with its crop-branch "
                             "feature (auto = as the checkpoint's method was trained)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--results-out", help="write detections and features to this .npz")
    parser.add_argument("--json", help="also write the metrics to this JSON file")
    parser.add_argument("--no-progress", action="store_true")


def _precision(args: argparse.Namespace, error_type: type) -> str:
    if args.bf16 and args.precision not in ("fp32", "bf16"):
        raise error_type(f"--bf16 contradicts --precision {args.precision}")
    precision = "bf16" if args.bf16 else args.precision
    if args.reference_path and precision != "fp32":
        raise error_type(f"--reference-path runs the model as trained in float32; it excludes --precision {precision}")
    return precision


def run(args: argparse.Namespace) -> int:
    from personsearch.cli.evaluate_results import format_table, write_json
    from personsearch.engine.checkpoint import load_model
    from personsearch.errors import ConfigError
    from personsearch.evaluation.evaluators import check_protocol_options
    from personsearch.evaluation.inference import evaluate_model, method_feature_extractors

    from personsearch.models.inference import set_test_proposals
    from personsearch.precision.load import load_for_inference

    check_protocol_options(args.dataset, gallery_size=args.gallery_size,
                           cross_camera=args.cross_camera,
                           query_from_detection=args.query_from_detection,
                           det_thresh=args.det_thresh)
    precision = _precision(args, ConfigError)
    if args.reference_path:
        model, info = load_model(args.checkpoint, args.device)
        if args.test_proposals is not None:
            try:
                set_test_proposals(model, args.test_proposals)
            except ValueError as error:
                raise ConfigError(f"--test-proposals: {error}") from None
        path_name, bf16, channels_last = "reference (as trained, float32)", False, False
    else:
        model, info, path = load_for_inference(args.checkpoint, precision, device=args.device,
                                               test_proposals=args.test_proposals, min_size=args.min_size,
                                               max_size=args.max_size)
        path_name, bf16, channels_last = path.name, path.bf16, path.channels_last
    eval_cfg = (info.get("config") or {}).get("eval", {})
    min_size = args.min_size or int(eval_cfg.get("min_size", 900))
    max_size = args.max_size or int(eval_cfg.get("max_size", 1500))
    extractors = method_feature_extractors(info, args.fusion)
    metrics = evaluate_model(
        model, fmt=args.dataset, root=args.root, gallery_size=args.gallery_size,
        det_thresh=args.det_thresh, min_size=min_size, max_size=max_size, device=args.device,
        use_gt_boxes=args.use_gt_boxes, cross_camera=args.cross_camera,
        query_from_detection=args.query_from_detection, bf16=bf16,
        channels_last=channels_last, progress=not args.no_progress,
        results_out=args.results_out, **extractors,
    )
    print(f"checkpoint {args.checkpoint} (method {info.get('method')}, epoch {info.get('epoch')}), "
          f"inference path {path_name}")
    print(format_table(metrics))
    if args.json:
        write_json(Path(args.json), metrics)
    return 0
