"""Mask quality on synthetic data, where the true person masks are known.

Writes masks with each method into a view of a synthetic dataset (symbolic links to its images
and annotations, its own ``masks/``), and measures them against the generator's masks: per
person, IoU of the pixels labelled k+1 in the generated map and in the true map (over the whole
image), averaged over every person of the split. ``schp`` runs with *random* weights (a
released checkpoint cannot be downloaded here): its IoU says nothing about SCHP, only that the
pipeline runs end to end and writes valid maps.

    personsearch data synth out/synth --format prw --frames 600 --seed 0
    .venv/bin/python benchmarks/mask_quality.py --data out/synth --methods grabcut,box,schp \
        --out out/mask_quality > benchmarks/results/mask_quality.json

Prints JSON: per method the mean / median IoU over persons and the mean per box height, the
persons and images measured, the seconds the mask run took (on whatever else the machine was
running; null when the view already held every mask, e.g. ``--out`` pointing at the views of
benchmarks/mask_ablation.py) and how many persons GrabCut left as their whole box.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def dataset_view(source: Path, view: Path) -> Path:
    """``view`` with a symbolic link to every entry of ``source`` except masks/ and
    diagnostics/ (so masks written into the view never touch the source's)."""
    view.mkdir(parents=True, exist_ok=True)
    for entry in source.iterdir():
        if entry.name in ("masks", "diagnostics"):
            continue
        link = view / entry.name
        if not link.exists():
            link.symlink_to(entry.resolve())
    return view


def per_person_iou(true_root: Path, test_root: Path, records) -> np.ndarray:
    """[persons] IoU of label k+1 between the two roots' mask maps, every box of every record."""
    from personsearch.data.masks import load_person_masks

    ious = []
    for record in records:
        truth = load_person_masks(true_root, record)
        test = load_person_masks(test_root, record)
        if truth is None or test is None:
            raise SystemExit(f"no mask for {record.image_name} in {true_root if truth is None else test_root}")
        for k in range(record.num_boxes):
            a, b = truth == k + 1, test == k + 1
            union = int((a | b).sum())
            ious.append(float((a & b).sum()) / union if union else 1.0)
    return np.asarray(ious)


def random_schp_weights(path: Path, num_classes: int = 20, seed: int = 0) -> None:
    """A checkpoint with the released files' layout ({'state_dict': {'module.<name>': ...}})
    holding a randomly initialised network (BN statistics left at 0 / 1)."""
    import torch

    from personsearch.models.schp import SCHPNet

    torch.manual_seed(seed)
    state = SCHPNet(num_classes).state_dict()
    torch.save({"state_dict": {"module." + k: v for k, v in state.items()
                               if not k.endswith("num_batches_tracked")}}, path)


HEIGHT_BUCKETS = ((0, 50), (50, 100), (100, 200), (200, 100000))


def person_heights(records) -> np.ndarray:
    return np.concatenate([r.boxes[:, 3] - r.boxes[:, 1] for r in records]) if records \
        else np.zeros(0)


def iou_summary(ious: np.ndarray, heights: np.ndarray) -> dict:
    """Mean / median IoU over persons, and the mean per box-height bucket (pixels)."""
    buckets = {}
    for low, high in HEIGHT_BUCKETS:
        inside = (heights >= low) & (heights < high)
        name = f"{low}-{high}px" if high < 100000 else f">={low}px"
        buckets[name] = {"persons": int(inside.sum()),
                         "mean_iou": float(ious[inside].mean()) if inside.any() else None}
    return {"persons": int(ious.size), "mean_iou": float(ious.mean()),
            "median_iou": float(np.median(ious)), "by_box_height": buckets}


def measure(data: Path, out: Path, method: str, split: str, workers: int,
            schp_images: int) -> dict:
    from personsearch.data import load_split
    from personsearch.data.masks_generate import generate_masks

    records = load_split("prw", data, split)
    view = dataset_view(data, out / method)
    kwargs: dict = {"workers": workers}
    if method == "schp":
        # random weights, CPU: a shape / pipeline check on a few images only
        weights = out / "schp_random_lip.pth"
        if not weights.is_file():
            random_schp_weights(weights)
        records = records[:schp_images]
        view = out / "schp_subset"
        view.mkdir(parents=True, exist_ok=True)
        # the first images only (a 66M-parameter network on a CPU), written one at a time
        from personsearch.data.masks_methods import MaskStats, SchpParser
        from personsearch.data.masks_generate import _read_image, write_mask

        parser = SchpParser(str(weights), device="cpu")
        stats = MaskStats()
        start = time.perf_counter()
        for record in records:
            write_mask(view, record, parser.label_map(_read_image(record), record.boxes,
                                                      record.image_path, stats))
        seconds = time.perf_counter() - start
        ious = per_person_iou(data, view, records)
        return {"images": len(records), **iou_summary(ious, person_heights(records)),
                "seconds": round(seconds, 2),
                "note": "random weights: pipeline / shape check only, not SCHP's quality",
                "input_size": list(parser.input_size)}
    summary = generate_masks("prw", view, method=method, split=split, progress=False, **kwargs)
    ious = per_person_iou(data, view, records)
    reused = summary.written == 0
    return {"images": len(records), **iou_summary(ious, person_heights(records)),
            # masks already in the view (an earlier run wrote them): no time to report
            "seconds": None if reused else round(summary.seconds, 2), "masks_reused": reused,
            "written": summary.written,
            "whole_box_fallbacks": None if reused else summary.stats.box_fallbacks,
            "fallback_reasons": None if reused else summary.stats.reasons}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="synthetic PRW-format dataset (with masks/)")
    parser.add_argument("--methods", default="grabcut,box,schp")
    parser.add_argument("--split", default="train")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--schp-images", type=int, default=3)
    parser.add_argument("--out", default=None, help="folder for the mask views (default: temp)")
    args = parser.parse_args()
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="mask_quality_"))
    results = {"command": " ".join(["benchmarks/mask_quality.py"] + sys.argv[1:]),
               "data": args.data, "split": args.split, "workers": args.workers,
               "cpu_count": os.cpu_count(), "methods": {}}
    for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
        results["methods"][method] = measure(Path(args.data), out, method, args.split,
                                             args.workers, args.schp_images)
        print(f"{method}: {results['methods'][method]}", file=sys.stderr, flush=True)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
