"""Deformable RoI pooling against plain RoIAlign: parameters of the offset head and seconds per
call (forward + backward of the sum), on this machine; prints JSON.

    .venv/bin/python benchmarks/deform_roi_pool_cost.py [--repeats 3] [--threads N] [--rois 256]

Setting: the 1024-channel C4 map of two 900x1500 images at stride 16 ([2, 1024, 57, 94]),
``--rois`` RoIs (SeqNet samples 128 per image) of random size (16-400 px wide, 40-800 px high),
14x14 output, adaptive sampling (DeformRoIPool's default). Rows:
  roi_align             plain RoIAlign (aligned), no parameters
  deform_reference_head DeformRoIPool with the offset head at DICL's 14x6 grid (default)
  deform_full_head      the offset head on the whole 14x14 map (mmcv's rule at 14x14)
The deformable rows run with offsets predicted by a head whose last layer is randomised (a
fresh module predicts zero offsets, which is plain pooling). "cpu_s" is process CPU seconds
(steadier than wall seconds on a shared machine); "load_1min" is the machine's load average
when the run started, so a loaded run can be told apart.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics

import torch
from timing import repeat_timings  # benchmarks/timing.py, beside this script

from personsearch.ops import DeformRoIPool, roi_align


def random_rois(count: int, generator: torch.Generator) -> torch.Tensor:
    widths = 16 + torch.rand(count, generator=generator) * 384
    heights = 40 + torch.rand(count, generator=generator) * 760
    x1 = torch.rand(count, generator=generator) * (1500 - widths)
    y1 = torch.rand(count, generator=generator) * (900 - heights)
    batch = (torch.arange(count) % 2).float()
    return torch.stack([batch, x1, y1, x1 + widths, y1 + heights], dim=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--rois", type=int, default=256)
    parser.add_argument("--channels", type=int, default=1024)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(2, args.channels, 57, 94, generator=generator)
    rois = random_rois(args.rois, generator)
    rows = {}

    def timed(name: str, fn, module=None) -> None:
        def call():
            feats = features.detach().requires_grad_()
            fn(feats).sum().backward()
        seconds, cpu_seconds = repeat_timings(call, args.repeats)
        params = sum(p.numel() for p in module.parameters()) if module is not None else 0
        rows[name] = {"params": params, "s": statistics.median(seconds),
                      "cpu_s": statistics.median(cpu_seconds)}

    timed("roi_align", lambda f: roi_align(f, rois, 14, 1 / 16, 0, aligned=True))
    for name, grid in (("deform_reference_head", (14, 6)), ("deform_full_head", None)):
        torch.manual_seed(0)
        module = DeformRoIPool(args.channels, 14, 1 / 16, 0, offset_grid=grid)
        with torch.no_grad():
            module.offset_fc[-1].weight.normal_(0, 1e-4)
        timed(name, lambda f, module=module: module(f, rois), module)
    print(json.dumps({
        "setting": {"map": [2, args.channels, 57, 94], "rois": args.rois, "output": [14, 14],
                    "sampling_ratio": 0, "repeats": args.repeats,
                    "threads": torch.get_num_threads()},
        "rows": rows,
        "load_1min": os.getloadavg()[0],
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
    }, indent=2))


if __name__ == "__main__":
    main()
