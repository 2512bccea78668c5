"""Inference speed of the SeqNet-style detector + re-id (ResNet-50 C4) on one gallery image.

Measures `model.detect` (backbone, RPN, stage-1 head, stage-2 re-id head, NMS) on a
900x1500 input (padded to a multiple of 32), batch 1, in two settings:
  fp32                      plain float32, contiguous tensors
  bf16_channels_last        torch.autocast("cpu", bfloat16) + channels_last model and input
Weights are random (no pretrained file is needed for timing). Random stage-1 scores sit near
0.5, so with SeqNet's 0.5 score threshold stage 2 may see no box at all; the benchmark
therefore uses --score-thresh 0.0 by default: every stage-1 box that survives NMS 0.4 goes
through stage 2 (a worst case for a trained model, which keeps far fewer). The RoI counts
of both stages are reported next to the times. Both wall-clock and process CPU seconds are
reported, with the load average: on a shared machine the wall time grows with the load,
CPU seconds / threads approximates the wall time on idle cores.

Usage: .venv/bin/python benchmarks/inference_speed.py [--threads 2] [--repeats 2]
       [--backbone resnet50] [--proposals 300] [--score-thresh 0.0]
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from contextlib import nullcontext

import torch

from personsearch.models import build_model
from personsearch.models.roi_heads import _person_boxes


def _time_detect(model, images, image_sizes, repeats: int, bf16: bool) -> dict:
    context = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else nullcontext
    with context():
        detections = model.detect(images, image_sizes)  # warm-up
    seconds, cpu_seconds = [], []
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        with context():
            detections = model.detect(images, image_sizes)
        seconds.append(time.perf_counter() - start)
        cpu_seconds.append(time.process_time() - cpu_start)
    return {
        "seconds_per_image_mean": statistics.mean(seconds),
        "seconds_per_image_min": min(seconds),
        "seconds_all": seconds,
        "cpu_seconds_per_image_mean": statistics.mean(cpu_seconds),
        "detections": int(detections[0].boxes.shape[0]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--height", type=int, default=900)
    parser.add_argument("--width", type=int, default=1500)
    parser.add_argument("--proposals", type=int, default=300, help="rpn_post_nms_top_n_test (SeqNet: 300)")
    parser.add_argument("--score-thresh", type=float, default=0.0, help="box_score_thresh (SeqNet: 0.5)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model(
        backbone=args.backbone, rpn_post_nms_top_n_test=args.proposals, box_score_thresh=args.score_thresh
    ).eval()
    padded_h = (args.height + 31) // 32 * 32
    padded_w = (args.width + 31) // 32 * 32
    images = torch.randn(1, 3, padded_h, padded_w)
    image_sizes = [(args.height, args.width)]

    # count the RoIs each stage sees, for context
    load_before = os.getloadavg()
    with torch.no_grad():
        features = model.backbone(images)
        proposals, _ = model.rpn(features, image_sizes)
        _, feat_res5 = model.roi_heads.box_head(model.roi_heads.pooler(features, proposals))
        class_logits, box_regression = model.roi_heads.box_predictor(feat_res5)
        stage1_scores = torch.softmax(class_logits, dim=1)[:, 1]
        stage1_boxes = _person_boxes(box_regression, proposals[0], image_sizes[0])
        stage2_rois = model.roi_heads._postprocess(stage1_boxes, stage1_scores, model.roi_heads.nms_thresh).numel()
    results = {
        "benchmark": "inference_speed",
        "weights": "random (timing only; detection counts are not meaningful)",
        "backbone": args.backbone,
        "input": [1, 3, padded_h, padded_w],
        "image_size": [args.height, args.width],
        "threads": args.threads,
        "repeats": args.repeats,
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "box_score_thresh": args.score_thresh,
        "rpn_proposals": int(proposals[0].shape[0]),
        "stage1_scores_above_thresh": int((stage1_scores > args.score_thresh).sum()),
        "stage2_rois": int(stage2_rois),
    }
    results["fp32"] = _time_detect(model, images, image_sizes, args.repeats, bf16=False)
    model = model.to(memory_format=torch.channels_last)
    images = images.contiguous(memory_format=torch.channels_last)
    results["bf16_channels_last"] = _time_detect(model, images, image_sizes, args.repeats, bf16=True)
    results["load_average_before_after"] = [load_before[0], os.getloadavg()[0]]
    results["target_seconds_per_image"] = 2.0
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
