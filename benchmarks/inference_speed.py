"""Inference speed of the SeqNet-style detector + re-id (ResNet-50 C4) on one gallery image,
and the change in synthetic-benchmark mAP between the inference paths.

Paths (``model.detect``: backbone, RPN, stage-1 head, stage-2 re-id head, NMS; batch 1, a
900x1500 input padded to a multiple of 32):
  reference       the model as trained: BatchNorm layers, contiguous float32 tensors
  fast            BN folded into the convolutions + channels_last, float32
                  (models.inference.prepare_for_inference: the default of `personsearch eval`
                  and of indexing)
  fast_bf16       fast + torch.autocast("cpu", bfloat16)

Weights are random (no pretrained file is needed for timing), so stage-1 scores are
meaningless: the score threshold is 0 and the number of boxes stage 2 re-embeds is set by a
cap on the detections kept after stage-1 NMS (``--stage2``: "all" keeps every NMS survivor,
the worst case; a trained model keeps the boxes scoring > 0.5, a handful per frame: PRW has
2.9 persons per frame, CUHK-SYSU 5.3). The number of RPN proposals is SeqNet's 300 unless
``--proposals`` lists others. Times: wall clock and process CPU seconds, with the load average.

``--map-checkpoint CKPT --map-root ROOT`` also evaluates a trained checkpoint (e.g. the SSL
synthetic run) on its PRW-format test split through each path and with fewer test proposals,
and reports mAP / top-1 and the change from the reference path in points. The GFLOPs of each
part (FlopCounterMode) are reported next to its seconds.

Usage: .venv/bin/python benchmarks/inference_speed.py [--threads 2] [--repeats 2]
       [--proposals 300,100] [--stage2 all,20] [--map-checkpoint CKPT --map-root ROOT]
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from contextlib import nullcontext

import torch

from personsearch.models import build_model
from personsearch.models.inference import prepare_for_inference
from timing import repeat_timings  # benchmarks/timing.py, beside this script

PATHS = ("reference", "fast", "fast_bf16")


def _autocast(path: str):
    return torch.autocast("cpu", dtype=torch.bfloat16) if path.endswith("bf16") else nullcontext()


def _time(fn, repeats: int) -> dict:
    seconds, cpu_seconds = repeat_timings(fn, repeats)
    return {"seconds_mean": statistics.mean(seconds), "seconds_min": min(seconds), "seconds_all": seconds,
            "cpu_seconds_mean": statistics.mean(cpu_seconds)}


def _model_for(path: str, backbone: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(backbone=backbone, box_score_thresh=0.0).eval()
    if path != "reference":
        prepare_for_inference(model)
    return model


@torch.no_grad()
def _stage_times(model, images, image_sizes, repeats: int, path: str) -> dict:
    """Seconds of each part of ``detect`` (300 proposals): backbone, RPN, stage 1 (RoIAlign +
    res5 + predictor), and stage 2 per re-embedded RoI."""
    heads = model.roi_heads
    with _autocast(path):
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
        """(GFLOPs of fn(), its result)."""
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


@torch.no_grad()
def _conv_rates(repeats: int) -> dict:
    """GFLOP/s of single res5-sized convolutions (300 RoIs, channels_last) in fp32 and in bf16:
    what these cores can do at best, and whether bf16 is faster here."""
    shapes = {"conv1x1_1024to512_14x14": (1024, 512, 1, 14), "conv3x3_512to512_7x7": (512, 512, 3, 7),
              "conv1x1_512to2048_7x7": (512, 2048, 1, 7)}
    out = {}
    for name, (c_in, c_out, k, hw) in shapes.items():
        conv = torch.nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False).eval().to(memory_format=torch.channels_last)
        x = torch.randn(300, c_in, hw, hw).contiguous(memory_format=torch.channels_last)
        gflop = 2 * 300 * c_out * c_in * k * k * hw * hw / 1e9
        fp32 = _time(lambda: conv(x), repeats)["seconds_min"]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            x_bf16 = x.to(torch.bfloat16)
            bf16 = _time(lambda: conv(x_bf16), repeats)["seconds_min"]
        out[name] = {"gflop": gflop, "fp32_gflop_per_s": gflop / fp32, "bf16_gflop_per_s": gflop / bf16}
    return out


def _timings(args, padded_h: int, padded_w: int) -> tuple[list[dict], dict]:
    images = torch.randn(1, 3, padded_h, padded_w, generator=torch.Generator().manual_seed(0))
    image_sizes = [(args.height, args.width)]
    rows, stages = [], {}
    for path in PATHS:
        model = _model_for(path, args.backbone)
        path_images = images if path == "reference" else images.contiguous(memory_format=torch.channels_last)
        grid = [(300, "all")] if path == "reference" else [(p, s) for p in args.proposals for s in args.stage2]
        for proposals, stage2 in grid:
            model.rpn.post_nms_top_n["testing"] = proposals
            model.roi_heads.detections_per_image = 300 if stage2 == "all" else int(stage2)
            with torch.no_grad(), _autocast(path):
                stage2_rois = int(model.detect(path_images, image_sizes)[0].boxes.shape[0])
                timing = _time(lambda: model.detect(path_images, image_sizes), args.repeats)
            rows.append({"path": path, "proposals": proposals, "stage2_cap": stage2,
                         "detections": stage2_rois, **timing})
            print(json.dumps(rows[-1]), flush=True, file=sys.stderr)
        model.rpn.post_nms_top_n["testing"] = 300
        model.roi_heads.detections_per_image = 300
        stages[path] = _stage_times(model, path_images, image_sizes, args.repeats, path)
        if path == "fast":
            stages["gflops"] = _stage_gflops(model, path_images, image_sizes)
    return rows, stages


def _map_rows(checkpoint: str, root: str, proposals: list[int]) -> dict:
    from personsearch.engine.checkpoint import load_model
    from personsearch.evaluation.inference import evaluate_model

    out = {}
    variants = [(path, 0) for path in PATHS] + [("fast", p) for p in proposals if p != 0]
    reference = None
    for path, test_proposals in variants:
        model, info = load_model(checkpoint)
        eval_cfg = (info.get("config") or {}).get("eval", {})
        default_proposals = int(model.rpn.post_nms_top_n["testing"])
        if test_proposals and test_proposals == default_proposals:
            continue
        if test_proposals:
            model.rpn.post_nms_top_n["testing"] = test_proposals
        if path != "reference":
            prepare_for_inference(model)
        start = time.perf_counter()
        metrics = evaluate_model(model, fmt="prw", root=root, min_size=int(eval_cfg.get("min_size", 900)),
                                 max_size=int(eval_cfg.get("max_size", 1500)), progress=False,
                                 bf16=path.endswith("bf16"), channels_last=path != "reference")
        name = path if not test_proposals else f"{path}_proposals_{test_proposals}"
        out[name] = {"mAP": metrics["mAP"], "top1": metrics["top1"], "det_ap": metrics["det_ap"],
                     "proposals": test_proposals or default_proposals,
                     "eval_seconds": time.perf_counter() - start}
        if path == "reference" and not test_proposals:
            reference = out[name]
        else:
            out[name]["mAP_change_points"] = 100 * (metrics["mAP"] - reference["mAP"])
            out[name]["top1_change_points"] = 100 * (metrics["top1"] - reference["top1"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--height", type=int, default=900)
    parser.add_argument("--width", type=int, default=1500)
    parser.add_argument("--proposals", default="300", help="comma list of test proposal counts (SeqNet: 300)")
    parser.add_argument("--stage2", default="all,20", help="comma list of stage-2 caps ('all' or a number)")
    parser.add_argument("--map-checkpoint", help="trained checkpoint for the mAP change (synthetic PRW)")
    parser.add_argument("--map-root", help="its PRW-format dataset root (e.g. out/synth)")
    args = parser.parse_args()
    args.proposals = [int(p) for p in args.proposals.split(",")]
    args.stage2 = [s if s == "all" else int(s) for s in args.stage2.split(",")]
    if bool(args.map_checkpoint) != bool(args.map_root):
        parser.error("--map-checkpoint and --map-root go together")

    torch.set_num_threads(args.threads)
    padded_h = (args.height + 31) // 32 * 32
    padded_w = (args.width + 31) // 32 * 32
    load_before = os.getloadavg()
    rows, stages = _timings(args, padded_h, padded_w)
    results = {
        "benchmark": "inference_speed",
        "weights": "random (timing only; score threshold 0, stage 2 capped as listed)",
        "backbone": args.backbone,
        "input": [1, 3, padded_h, padded_w],
        "image_size": [args.height, args.width],
        "threads": args.threads,
        "repeats": args.repeats,
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "timings": rows,
        "stage_seconds_300_proposals": {k: v for k, v in stages.items() if k != "gflops"},
        "stage_gflops_300_proposals": stages["gflops"],
        "conv_rates": _conv_rates(args.repeats),
        "load_average_before_after_timing": [load_before[0], os.getloadavg()[0]],
        "target_seconds_per_image": 2.0,
    }
    if args.map_checkpoint:
        results["map"] = _map_rows(args.map_checkpoint, args.map_root, args.proposals)
        results["map_checkpoint"] = args.map_checkpoint
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
