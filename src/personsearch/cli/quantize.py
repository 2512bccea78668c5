"""``personsearch quantize CHECKPOINT --out INT8.pt [--images 32] [--format F --root ROOT]``:
post-training static INT8 quantization (ONNX Runtime, per-channel weights), calibrated on
training images of the checkpoint's dataset (its config's data section unless --format/--root
say otherwise). The result loads wherever a checkpoint does; `--precision int8` (or auto) runs
its INT8 graphs. See docs/precision.md."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="trained float32 checkpoint (.pt)")
    parser.add_argument("--out", required=True, help="INT8 checkpoint to write")
    parser.add_argument("--images", type=int, default=32, help="training images to calibrate on (default 32)")
    parser.add_argument("--check-images", type=int, default=2,
                        help="further training images stored for --precision auto's accuracy check (default 2)")
    parser.add_argument("--format", choices=["prw", "cuhk-sysu", "coco"], default=None,
                        help="dataset format (default: the checkpoint config's data.format)")
    parser.add_argument("--root", default=None, help="dataset root (default: the checkpoint config's data.root)")
    parser.add_argument("--rois-per-call", type=int, default=32,
                        help="RoIs sampled from each res5 call for calibration (default 32)")
    parser.add_argument("--threads", type=int, default=None, help="torch / ONNX Runtime threads")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from personsearch.errors import ConfigError

    for flag, value, low in (("--images", args.images, 1), ("--check-images", args.check_images, 1),
                             ("--rois-per-call", args.rois_per_call, 1)):
        if value < low:
            raise ConfigError(f"{flag} must be >= {low}, got {value}")
    import torch

    from personsearch.precision.checkpoint import quantize_checkpoint

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    summary = quantize_checkpoint(args.checkpoint, args.out, images=args.images, check_images=args.check_images,
                                  fmt=args.format, root=args.root, rois_per_call=args.rois_per_call,
                                  progress=not args.no_progress)
    print(json.dumps(summary, indent=2))
    print(f"INT8 checkpoint: {args.out}")
    return 0
