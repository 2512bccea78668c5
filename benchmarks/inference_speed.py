"""Inference speed of the SeqNet-style detector + re-id (ResNet-50 C4) on one gallery image per
inference path, side by side, and the accuracy change of each path on a trained checkpoint.

Paths (``model.detect``: backbone, RPN, stage-1 head, stage-2 re-id head, NMS; batch 1, a
900x1500 input padded to a multiple of 32):
  reference   the model as trained: BatchNorm layers, contiguous float32 tensors
  fp32        BN folded into the convolutions + channels_last, float32 (`personsearch eval`'s
              default; called "fast" in results before issue 16)
  bf16        fp32 + torch.autocast("cpu", bfloat16)
  int8        BN folded; backbone, RPN head and both res5 heads run by ONNX Runtime from INT8
              QDQ graphs (precision.int8: per-channel int8 weights, uint8 activations), the
              rest float32 PyTorch. For the random-weight timing model the graphs are
              calibrated on ``--calibration-images`` procedural images at the benchmark size.

Weights are random (no pretrained file is needed for timing), so stage-1 scores are
meaningless: the score threshold is 0 and the number of boxes stage 2 re-embeds is set by a
cap on the detections kept after stage-1 NMS (``--stage2``; a trained model keeps a handful per
frame: PRW has 2.9 persons per frame, CUHK-SYSU 5.3). Proposals: ``--proposals`` (SeqNet 300).
Times: wall clock and process CPU seconds (ONNX Runtime's threads included), with the load
average, the CPU model and its flags.

Also printed: per-stage seconds and GOP/s at 300 proposals for every path (GFLOPs counted on
the fp32 model with FlopCounterMode, 2 per MAC); embedding cosine and detection agreement of
each path against fp32 on the procedural images (precision.check); the path
``--precision auto`` picks on this machine for this model (precision.auto, not cached).

``--map-checkpoint CKPT --map-root ROOT``: evaluate a trained checkpoint on its PRW-format test
split through each path (an INT8 checkpoint is written first with ``personsearch quantize``
defaults when CKPT has no INT8 graphs, calibrated on CKPT's training images) and report mAP /
top-1 / detection AP and their change from the reference path in points.

Usage: .venv/bin/python benchmarks/inference_speed.py [--threads 2] [--repeats 2]
       [--proposals 300,100,50] [--stage2 20] [--paths reference,fp32,bf16,int8]
       [--map-checkpoint CKPT --map-root ROOT] [--out FILE.json]
Prints one JSON object (and writes it to --out).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from personsearch.models import build_model
from personsearch.precision.paths import InferencePath, prepare_path
from timing import repeat_timings  # benchmarks/timing.py, beside this script

PATHS = ("reference", "fp32", "bf16", "int8")
REFERENCE = InferencePath("reference", bf16=False, channels_last=False)


def _time(fn, repeats: int) -> dict:
    seconds, cpu_seconds = repeat_timings(fn, repeats)
    return {"seconds_mean": statistics.mean(seconds), "seconds_min": min(seconds), "seconds_all": seconds,
            "cpu_seconds_mean": statistics.mean(cpu_seconds)}


def _random_model(backbone: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(backbone=backbone, box_score_thresh=0.0).eval()


def _int8_info(args, check_images) -> dict:
    """An info dict like load_model's with INT8 graphs of the random-weight model, calibrated on
    the check images at the benchmark size."""
    from personsearch.data.transforms import batch_images, preprocess
    from personsearch.models.inference import prepare_for_inference
    from personsearch.precision.int8 import quantized_parts

    model = prepare_for_inference(_random_model(args.backbone), channels_last=False)
    model.roi_heads.detections_per_image = 20
    batches = [batch_images([preprocess(image, args.height, args.width)[0]]) for image in check_images]
    start = time.perf_counter()
    graphs = quantized_parts(model, batches)
    seconds = time.perf_counter() - start
    return {"path": "random weights", "fingerprint": "random-weights-seed-0",
            "int8": {"graphs": {name: torch.frombuffer(bytearray(g), dtype=torch.uint8) for name, g in graphs.items()}},
            "quantize_seconds": seconds}


def _model_for(path: str, backbone: str, info: dict) -> tuple[torch.nn.Module, InferencePath]:
    model = _random_model(backbone)
    if path == "reference":
        return model, REFERENCE
    return model, prepare_path(model, path, info)


@torch.no_grad()
def _stage_times(model, path: InferencePath, images, image_sizes, repeats: int) -> dict:
    """Seconds of each part of ``detect`` (300 proposals): backbone, RPN, stage 1 (RoIAlign +
    res5 + predictor), and stage 2 per re-embedded RoI."""
    heads = model.roi_heads
    with path.autocast():
        features = model.backbone(images)
        proposals, _ = model.rpn(features, image_sizes)
        out = {"backbone": _time(lambda: model.backbone(images), repeats)["seconds_mean"],
               "rpn": _time(lambda: model.rpn(features, image_sizes), repeats)["seconds_mean"],
               "stage1_head": _time(lambda: heads.box_predictor(heads.box_head(heads.pooler(features, proposals))[1]),
                                    repeats)["seconds_mean"]}
        boxes = [proposals[0][:100]]
        stage2 = _time(lambda: heads.reid_features(heads.pooler(features, boxes)), repeats)["seconds_mean"]
    out["stage2_per_roi"] = stage2 / boxes[0].shape[0]
    out["proposals"] = int(proposals[0].shape[0])
    return out


@torch.no_grad()
def _stage_gflops(model, images, image_sizes) -> dict:
    """GFLOPs of the same parts (torch.utils.flop_counter: convolutions and matmuls, 2 per MAC)."""
    from torch.utils.flop_counter import FlopCounterMode

    heads = model.roi_heads

    def count(fn) -> tuple[float, object]:
        with FlopCounterMode(display=False) as counter:
            result = fn()
        return counter.get_total_flops() / 1e9, result

    out = {}
    out["backbone"], features = count(lambda: model.backbone(images))
    out["rpn"], (proposals, _) = count(lambda: model.rpn(features, image_sizes))
    out["stage1_head"], _ = count(lambda: heads.box_predictor(heads.box_head(heads.pooler(features, proposals))[1]))
    boxes = [proposals[0][:100]]
    stage2, _ = count(lambda: heads.reid_features(heads.pooler(features, boxes)))
    out["stage2_per_roi"] = stage2 / boxes[0].shape[0]
    return out


def _timings(args, info: dict, padded_h: int, padded_w: int) -> tuple[list[dict], dict, dict]:
    images = torch.randn(1, 3, padded_h, padded_w, generator=torch.Generator().manual_seed(0))
    image_sizes = [(args.height, args.width)]
    rows, stages, gflops = [], {}, {}
    for name in args.paths:
        model, path = _model_for(name, args.backbone, info)
        path_images = images.contiguous(memory_format=torch.channels_last) if path.channels_last else images
        for proposals in args.proposals:
            for stage2 in args.stage2:
                model.rpn.post_nms_top_n["testing"] = proposals
                model.roi_heads.detections_per_image = 300 if stage2 == "all" else int(stage2)
                with torch.no_grad(), path.autocast():
                    stage2_rois = int(model.detect(path_images, image_sizes)[0].boxes.shape[0])
                    timing = _time(lambda: model.detect(path_images, image_sizes), args.repeats)
                rows.append({"path": name, "proposals": proposals, "stage2_cap": stage2,
                             "detections": stage2_rois, **timing})
                print(json.dumps(rows[-1]), flush=True, file=sys.stderr)
        model.rpn.post_nms_top_n["testing"] = 300
        model.roi_heads.detections_per_image = 300
        stages[name] = _stage_times(model, path, path_images, image_sizes, args.repeats)
        if name == "fp32":
            gflops = _stage_gflops(model, path_images, image_sizes)
        print(json.dumps({"stages": name, **stages[name]}), flush=True, file=sys.stderr)
    for name, seconds in stages.items():
        if gflops:
            seconds["gop_per_s"] = {part: gflops[part] / seconds[part] for part in gflops}
    return rows, stages, gflops


def _accuracy_and_auto(args, info: dict, check_images) -> tuple[dict, dict]:
    """Embedding cosine / detection agreement of each path vs fp32 on the check images, and
    auto's pick (its own candidates; measured, not cached)."""
    from personsearch.precision import auto
    from personsearch.precision.check import Tolerances

    candidates = [name for name in args.paths if name != "reference"]
    if "fp32" not in candidates:
        return {}, {}
    builders = {name: (lambda model, name=name: prepare_path(model, name, info)) for name in candidates}
    model = _random_model(args.backbone)
    model.roi_heads.detections_per_image = 20
    measured = auto._measure(model, builders, check_images, args.height, args.width, Tolerances(), score_thresh=0.5)
    with tempfile.TemporaryDirectory() as folder:
        choice = auto.choose_path(model, info, min_size=args.height, max_size=args.width, test_proposals=300,
                                  images=check_images, folder=Path(folder))
    return measured, {"chosen": choice.name, "messages": choice.messages,
                      "candidates": {n: r.get("seconds_per_image") for n, r in choice.record["candidates"].items()},
                      "skipped": choice.record["skipped"]}


def _map_rows(checkpoint: str, root: str, proposals: list[int], paths: list[str]) -> dict:
    from personsearch.engine.checkpoint import load_checkpoint, load_model
    from personsearch.evaluation.inference import evaluate_model
    from personsearch.precision.checkpoint import quantize_checkpoint
    from personsearch.precision.load import load_for_inference

    out, reference = {}, None
    int8_checkpoint = checkpoint
    if "int8" in paths and load_checkpoint(checkpoint).get("int8") is None:
        int8_checkpoint = str(Path(tempfile.mkdtemp(prefix="inference_speed_")) / "int8.pt")
        start = time.perf_counter()
        out["int8_quantization"] = quantize_checkpoint(checkpoint, int8_checkpoint, progress=False)
        out["int8_quantization"]["seconds"] = time.perf_counter() - start
    variants = [(path, 0) for path in paths] + [(path, p) for path in ("fp32", "int8") if path in paths
                                                 for p in proposals]
    for name, test_proposals in variants:
        source = int8_checkpoint if name == "int8" else checkpoint
        if name == "reference":
            model, info = load_model(source)
            path = REFERENCE
        else:
            model, info, path = load_for_inference(source, name, log=lambda message: None)
        eval_cfg = (info.get("config") or {}).get("eval", {})
        default_proposals = int(model.rpn.post_nms_top_n["testing"])
        if test_proposals and test_proposals >= default_proposals:
            continue
        if test_proposals:
            model.rpn.post_nms_top_n["testing"] = test_proposals
        start = time.perf_counter()
        metrics = evaluate_model(model, fmt="prw", root=root, min_size=int(eval_cfg.get("min_size", 900)),
                                 max_size=int(eval_cfg.get("max_size", 1500)), progress=False,
                                 bf16=path.bf16, channels_last=path.channels_last)
        key = name if not test_proposals else f"{name}_proposals_{test_proposals}"
        out[key] = {"mAP": metrics["mAP"], "top1": metrics["top1"], "det_ap": metrics["det_ap"],
                    "proposals": test_proposals or default_proposals, "eval_seconds": time.perf_counter() - start}
        if reference is None:
            reference = out[key]
            out[key]["is_reference_for_changes"] = True
        else:
            for metric in ("mAP", "top1", "det_ap"):
                out[key][f"{metric}_change_points"] = 100 * (metrics[metric] - reference[metric])
        print(json.dumps({"map": key, **out[key]}), flush=True, file=sys.stderr)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--height", type=int, default=900)
    parser.add_argument("--width", type=int, default=1500)
    parser.add_argument("--proposals", default="300,100,50", help="comma list of test proposal counts (SeqNet: 300)")
    parser.add_argument("--stage2", default="20", help="comma list of stage-2 caps ('all' or a number)")
    parser.add_argument("--paths", default=",".join(PATHS), help="comma list of paths to time")
    parser.add_argument("--calibration-images", type=int, default=2,
                        help="procedural images the random model's INT8 graphs are calibrated on (and checked on)")
    parser.add_argument("--map-checkpoint", help="trained checkpoint for the accuracy change (synthetic PRW)")
    parser.add_argument("--map-root", help="its PRW-format dataset root (e.g. out/synth)")
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args()
    args.proposals = [int(p) for p in args.proposals.split(",")]
    args.stage2 = [s if s == "all" else int(s) for s in args.stage2.split(",")]
    args.paths = args.paths.split(",")
    unknown = sorted(set(args.paths) - set(PATHS))
    if unknown:
        parser.error(f"unknown paths {unknown}; choose from {PATHS}")
    if bool(args.map_checkpoint) != bool(args.map_root):
        parser.error("--map-checkpoint and --map-root go together")

    from personsearch.precision.auto import machine_record, procedural_images

    torch.set_num_threads(args.threads)
    padded_h = (args.height + 31) // 32 * 32
    padded_w = (args.width + 31) // 32 * 32
    check_images = procedural_images(args.calibration_images, height=args.height, width=args.width)
    load_before = os.getloadavg()
    info = _int8_info(args, check_images) if "int8" in args.paths else {"path": "random weights", "int8": None}
    rows, stages, gflops = _timings(args, info, padded_h, padded_w)
    accuracy, auto_pick = _accuracy_and_auto(args, info, check_images)
    load_after = os.getloadavg()
    machine = machine_record()
    results = {
        "benchmark": "inference_speed",
        "weights": "random (timing only; score threshold 0, stage 2 capped as listed)",
        "backbone": args.backbone,
        "input": [1, 3, padded_h, padded_w],
        "image_size": [args.height, args.width],
        "threads": args.threads,
        "repeats": args.repeats,
        "cpu": machine["cpu"],
        "cpu_flags": machine["cpu_flags"],
        "torch": machine["torch"],
        "onnxruntime": machine["onnxruntime"],
        "load_average_1min_before_after": [load_before[0], load_after[0]],
        "timings": rows,
        "seconds_per_image_300_proposals": {r["path"]: r["seconds_mean"] for r in rows if r["proposals"] == 300},
        "stage_seconds_300_proposals": stages,
        "stage_gflops_300_proposals": gflops,
        "int8_calibration_seconds": info.get("quantize_seconds"),
        "accuracy_vs_fp32_on_procedural_images": accuracy,
        "auto": auto_pick,
        "target_seconds_per_image": 2.0,
        "command": "python benchmarks/inference_speed.py " + " ".join(sys.argv[1:]),
    }
    if args.map_checkpoint:
        results["map"] = _map_rows(args.map_checkpoint, args.map_root, args.proposals, args.paths)
        results["map_checkpoint"] = args.map_checkpoint
    text = json.dumps(results, indent=2)
    if args.out:
        from personsearch.atomic import atomic_write_text

        atomic_write_text(args.out, text + "\n")
    print(text)


if __name__ == "__main__":
    main()
