"""Speed of the pure-PyTorch detection ops (and the `small` backbone) on this machine; prints JSON.

    .venv/bin/python benchmarks/ops_speed.py [--repeats 3] [--threads N] [--skip-backbone]

nms: 12,000 random boxes (x, y uniform in a 1500x900 image, w, h in [8, 308]), IoU 0.7; 12,000
RPN-like boxes (jittered around 30 objects), IoU 0.7; 12,000 near-identical boxes covering the
image (an untrained RPN), IoU 0.7; the first 2,000 of the first two at IoU 0.4 / 0.5.
roi_align: 2,000 random RoIs, 1024 channels, 14x14 output, sampling_ratio 2, on a
1024x57x94 map (a 900x1500 image at stride 16), forward and backward (gradient of the sum).
deform_roi_pool: 300 RoIs, 1024 channels, 14x6 output (DICL), forward + backward.
backbone: the `small` body on one 3x544x960 image, forward (no grad), fp32; GFLOPs counted.
Reported times are the median of the repeats, after one warm-up run: wall seconds (`*_s`) and,
in "cpu_s", the process CPU seconds (steadier on a shared, loaded machine).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics

import torch
from timing import repeat_timings  # benchmarks/timing.py, beside this script


CPU_TIMES: dict[str, float] = {}


def timed(fn, repeats: int, name: str | None = None) -> float:
    """Median wall seconds of ``repeats`` runs; the median process CPU seconds go to CPU_TIMES[name]."""
    times, cpu_times = repeat_timings(fn, repeats)
    if name:
        CPU_TIMES[name] = statistics.median(cpu_times)
    return statistics.median(times)


def random_rois(num: int, image_hw: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    height, width = image_hw
    xy = torch.rand(num, 2, generator=generator) * torch.tensor([width, height])
    wh = torch.rand(num, 2, generator=generator) * torch.tensor([width / 3, height / 2]) + 16
    boxes = torch.cat([xy, torch.min(xy + wh, torch.tensor([float(width), float(height)]))], 1)
    return torch.cat([torch.zeros(num, 1), boxes], 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--skip-backbone", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("PERSONSEARCH_PURE_OPS", "1")
    if args.threads:
        torch.set_num_threads(args.threads)

    from personsearch.models.backbones import build_backbone
    from personsearch.ops import DeformRoIPool, nms, roi_align

    g = torch.Generator().manual_seed(0)
    results: dict[str, object] = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "load_avg_1min": os.getloadavg()[0],
        "repeats": args.repeats,
    }

    xy = torch.rand(12000, 2, generator=g) * torch.tensor([1500.0, 900.0])
    boxes = torch.cat([xy, xy + torch.rand(12000, 2, generator=g) * 300 + 8], 1)
    scores = torch.rand(12000, generator=g)
    results["nms_12000_s"] = timed(lambda: nms(boxes, scores, 0.7), args.repeats, "nms_12000")
    results["nms_12000_kept"] = int(nms(boxes, scores, 0.7).numel())
    g_rpn = torch.Generator().manual_seed(1)  # own stream: the inputs below stay as before
    centres = torch.rand(30, 2, generator=g_rpn) * torch.tensor([1400.0, 800.0])
    sizes = torch.rand(30, 2, generator=g_rpn) * 200 + 30
    owner = torch.randint(0, 30, (12000,), generator=g_rpn)
    centre = centres[owner] + torch.randn(12000, 2, generator=g_rpn) * sizes[owner] * 0.15
    size = sizes[owner] * torch.exp(torch.randn(12000, 2, generator=g_rpn) * 0.15)
    rpn_boxes = torch.cat([centre - size / 2, centre + size / 2], 1)
    rpn_scores = torch.rand(12000, generator=g_rpn)
    results["nms_rpn_like_12000_s"] = timed(lambda: nms(rpn_boxes, rpn_scores, 0.7), args.repeats, "nms_rpn_like_12000")
    results["nms_rpn_like_12000_kept"] = int(nms(rpn_boxes, rpn_scores, 0.7).numel())
    # near-identical boxes covering the image (an untrained RPN): one is kept
    covering = (torch.tensor([[0.0, 0.0, 1500.0, 900.0]])
                + (torch.rand(12000, 4, generator=g_rpn) * 40) * torch.tensor([1.0, 1.0, -1.0, -1.0]))
    covering_scores = torch.rand(12000, generator=g_rpn)
    results["nms_all_overlapping_12000_s"] = timed(
        lambda: nms(covering, covering_scores, 0.7), args.repeats, "nms_all_overlapping_12000")
    results["nms_2000_iou0.4_s"] = timed(lambda: nms(boxes[:2000], scores[:2000], 0.4), args.repeats, "nms_2000_iou0.4")
    results["nms_rpn_like_2000_iou0.5_s"] = timed(
        lambda: nms(rpn_boxes[:2000], rpn_scores[:2000], 0.5), args.repeats, "nms_rpn_like_2000_iou0.5"
    )

    features = torch.randn(1, 1024, 57, 94, generator=g, requires_grad=True)
    rois = random_rois(2000, (900, 1500), g)
    results["roi_align_2000x1024x14x14_forward_s"] = timed(
        lambda: roi_align(features.detach(), rois, 14, 1 / 16, 2), args.repeats, "roi_align_forward"
    )

    def forward_backward() -> None:
        out = roi_align(features, rois, 14, 1 / 16, 2)
        out.sum().backward()
        features.grad = None

    results["roi_align_2000x1024x14x14_forward_backward_s"] = timed(forward_backward, args.repeats, "roi_align_forward_backward")
    results["roi_align_2000x1024x14x14_backward_s"] = (
        results["roi_align_2000x1024x14x14_forward_backward_s"] - results["roi_align_2000x1024x14x14_forward_s"]
    )

    torch.manual_seed(0)
    deform = DeformRoIPool(1024, (14, 6), 1 / 16, 0)
    deform_rois = rois[:300]

    def deform_step() -> None:
        deform(features, deform_rois).sum().backward()
        features.grad = None

    results["deform_roi_pool_300x1024x14x6_forward_backward_s"] = timed(deform_step, args.repeats, "deform_roi_pool_forward_backward")

    if not args.skip_backbone:
        from torch.utils.flop_counter import FlopCounterMode

        body = build_backbone("small").body.eval()
        image = torch.randn(1, 3, 544, 960, generator=g)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            body(image)
        results["small_body_544x960_gflops"] = counter.get_total_flops() / 1e9
        with torch.no_grad():
            results["small_body_544x960_forward_s"] = timed(lambda: body(image), args.repeats)
            cl_image = image.contiguous(memory_format=torch.channels_last)
            body_cl = body.to(memory_format=torch.channels_last)
            results["small_body_544x960_channels_last_forward_s"] = timed(lambda: body_cl(cl_image), args.repeats)

    results["cpu_s"] = CPU_TIMES
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
