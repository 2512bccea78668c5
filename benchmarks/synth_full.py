"""Generation time and disk size of the full-size synthetic datasets (issue 11 item 1).

    .venv/bin/python benchmarks/synth_full.py --like prw-full --fraction 0.05 --workers 2
    .venv/bin/python benchmarks/synth_full.py --like cuhk-sysu-full --fraction 0.05 --workers 2

Generates ``fraction`` of the preset's images (``--frames`` = fraction x real count, identities
in proportion, the real image sizes) into a temporary folder and prints JSON: the measured
seconds (images + masks, annotation files), bytes on disk per part, counts, peak RSS -- and,
labelled ``extrapolated_full``, an estimate for the full preset. The estimate is linear in the
number of images for everything except CUHK-SYSU's TestG{50..4000}.mat files, whose size and
writing time grow with queries x gallery entries; those are scaled by that product instead.
The full run itself (``full_run_command``) was not measured by this script.

    .venv/bin/python benchmarks/synth_full.py --testg-probe 290
    .venv/bin/python benchmarks/synth_full.py --like prw-full --plan-only

measures instead the step that does not scale with the images: building and writing
CUHK-SYSU TestG50 + TestG4000 for N queries over a full-size 6,978-image pool (fake records,
no images), with seconds, gallery entries, microseconds per entry and peak RSS, and the same
figures extrapolated (labelled) to the full 2,900 queries x 7,650 entries of TestG50..4000.
``--plan-only`` prints the counts of the full-size preset's plan (every box the full run
writes) without drawing an image.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from personsearch.data.cuhk_sysu import GALLERY_SIZES, protocol_path
from personsearch.data.synth import generate_dataset
from personsearch.data.synth.like import like_arguments
from personsearch.data.synth.output import cuhk_gallery_sizes


def _bytes(root: Path) -> dict[str, int]:
    parts = {"images": 0, "masks": 0, "testg": 0, "annotations": 0, "diagnostics": 0}
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        size = path.stat().st_size
        rel = path.relative_to(root).parts
        if rel[0] in ("frames", "Image"):
            parts["images"] += size
        elif rel[0] in ("masks", "diagnostics"):
            parts[rel[0]] += size
        elif path.name.startswith("TestG"):
            parts["testg"] += size
        else:
            parts["annotations"] += size
    parts["total"] = sum(parts.values())
    return parts


def testg_probe(queries: int, seed: int = 0) -> dict:
    """Build and write TestG50 and TestG4000 for ``queries`` query identities over a fake
    6,978-image pool (each query identity in 3 images, 6 boxes per image)."""
    import numpy as np

    from personsearch.data import writers
    from personsearch.data.records import SceneRecord
    from personsearch.data.synth.like import CUHK_TEST_IMAGES

    rng = np.random.default_rng(seed)
    pool_ids = [[-1] * 6 for _ in range(CUHK_TEST_IMAGES)]
    picks = []
    for pid in range(queries):
        images = rng.choice(CUHK_TEST_IMAGES, size=3, replace=False)
        for image in images:
            slot = pool_ids[image].index(-1) if -1 in pool_ids[image] else None
            if slot is None:
                pool_ids[image].append(pid)
                slot = len(pool_ids[image]) - 1
            else:
                pool_ids[image][slot] = pid
        picks.append((int(images[0]), pool_ids[int(images[0])].index(pid)))
    boxes = np.array([[10 + 40 * k, 20, 40 + 40 * k, 110] for k in range(8)], np.float32)
    pool = [SceneRecord(image_path="", image_name=f"s{i + 1}.jpg", width=800, height=600,
                        boxes=boxes[:len(ids)], person_ids=np.array(ids), image_index=i)
            for i, ids in enumerate(pool_ids)]
    train = [SceneRecord(image_path="", image_name="s0.jpg", width=800, height=600,
                         boxes=boxes[:1], person_ids=np.array([0]))]
    clock = {}
    wall, cpu = time.perf_counter(), time.process_time()
    protocols = {size: writers.build_cuhk_protocol(pool, picks, size, seed=seed)
                 for size in (50, 4000)}
    clock["build_testg50_and_4000"] = (time.perf_counter() - wall, time.process_time() - cpu)
    with tempfile.TemporaryDirectory(prefix="testg_probe_") as scratch:
        wall, cpu = time.perf_counter(), time.process_time()
        # Images.mat (pool only), pool.mat, Train.mat, TestG50.
        writers.write_cuhk_sysu(scratch, train, pool, {50: protocols[50]})
        clock["write_images_pool_train_testg50"] = (time.perf_counter() - wall,
                                                    time.process_time() - cpu)
        wall, cpu = time.perf_counter(), time.process_time()
        path, var = protocol_path(scratch, 4000)
        writers._savemat(path, {var: writers._protocol_struct(protocols[4000])})
        clock["write_testg4000"] = (time.perf_counter() - wall, time.process_time() - cpu)
        testg4000_bytes = path.stat().st_size
    entries = queries * 4000
    full_entries = 2900 * sum(GALLERY_SIZES)
    build_cpu = clock["build_testg50_and_4000"][1] / (queries * 4050)
    write_cpu = clock["write_testg4000"][1] / entries
    return {
        "testg_probe": {"queries": queries, "pool_images": CUHK_TEST_IMAGES,
                        "testg4000_entries": entries},
        "measured": {
            **{f"{name}_seconds_wall": round(w, 1) for name, (w, c) in clock.items()},
            **{f"{name}_seconds_cpu": round(c, 1) for name, (w, c) in clock.items()},
            "build_cpu_us_per_entry": round(build_cpu * 1e6, 1),
            "write_cpu_us_per_entry": round(write_cpu * 1e6, 1),
            "testg4000_bytes": testg4000_bytes,
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        },
        "extrapolated_full": {
            "note": "ESTIMATE, not measured: 2,900 queries x 7,650 entries (TestG50..4000) at "
                    "the measured CPU seconds and bytes per TestG4000 entry; one idle core",
            "entries": full_entries,
            "cpu_seconds_build_and_write": round((build_cpu + write_cpu) * full_entries),
            "testg_bytes": round(testg4000_bytes / entries * full_entries),
        },
        "loadavg_1min_at_end": round(os.getloadavg()[0], 2),
    }


def plan_counts(name: str, seed: int = 0) -> dict:
    """The full-size preset's annotation counts from its plan alone (no pixels are drawn; the
    plan decides every box, so these are the counts the full run writes)."""
    from personsearch.data.synth.plan import build_plan
    from personsearch.data.synth.protocol import cuhk_queries, prw_queries
    from personsearch.data.synth.settings import make_settings

    args = like_arguments(name)
    fmt, frames = args.pop("fmt"), args.pop("frames")
    width, height = args.pop("width"), args.pop("height")
    cpu = time.process_time()
    plan = build_plan(make_settings(fmt, frames, seed, width, height, **args))
    queries = (prw_queries if fmt == "prw" else cuhk_queries)(plan)
    result = {"like": name, "plan_cpu_seconds": round(time.process_time() - cpu, 1),
              "queries": len(queries)}
    for split in ("train", "test"):
        frames_ = plan.split_frames(split)
        persons = [p for f in frames_ for p in f.persons]
        result[split] = {"images": len(frames_), "boxes": len(persons),
                         "labeled_boxes": sum(p.labeled for p in persons),
                         "identities": len({p.true_id for p in persons if p.labeled}),
                         "max_boxes_per_image": max(len(f.persons) for f in frames_)}
    sizes: dict[str, int] = {}
    for frame in plan.frames:
        key = f"{frame.width}x{frame.height}"
        sizes[key] = sizes.get(key, 0) + 1
    result["image_sizes"] = sizes
    result["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--like", choices=("prw-full", "cuhk-sysu-full"))
    parser.add_argument("--plan-only", action="store_true",
                        help="with --like: the full-size plan's counts only (no images)")
    parser.add_argument("--testg-probe", type=int, default=None, metavar="QUERIES",
                        help="only measure CUHK-SYSU TestG building/writing at full pool size")
    parser.add_argument("--fraction", type=float, default=0.05,
                        help="share of the preset's images to generate (default 1/20)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="folder to keep the dataset in (new/empty)")
    args = parser.parse_args(argv)
    if args.testg_probe is not None:
        json.dump(testg_probe(args.testg_probe, args.seed), sys.stdout, indent=1)
        print()
        return 0
    if args.like is None:
        parser.error("give --like or --testg-probe")
    if args.plan_only:
        json.dump(plan_counts(args.like, args.seed), sys.stdout, indent=1)
        print()
        return 0

    full = like_arguments(args.like)
    frames = max(4, round(full["frames"] * args.fraction))
    kwargs = like_arguments(args.like, frames=frames)
    with tempfile.TemporaryDirectory(prefix="synth_full_") as scratch:
        root = Path(args.out) if args.out else Path(scratch) / "data"
        start = time.perf_counter()
        cpu_start = os.times()
        counts = generate_dataset(root, seed=args.seed, workers=args.workers, progress=True,
                                  **kwargs)
        wall = time.perf_counter() - start
        cpu_end = os.times()
        sizes = _bytes(root)
        test_images = counts["frames"]["test"]
    cpu = (cpu_end.user - cpu_start.user + cpu_end.system - cpu_start.system
           + cpu_end.children_user - cpu_start.children_user
           + cpu_end.children_system - cpu_start.children_system)
    scale = full["frames"] / frames
    queries = counts["queries"]
    result = {
        "like": args.like,
        "fraction": args.fraction,
        "frames": frames,
        "workers": args.workers,
        "cpu_count": os.cpu_count(),
        "loadavg_1min_at_end": round(os.getloadavg()[0], 2),
        "measured": {
            "seconds": round(wall, 1),
            "seconds_images": counts["seconds_images"],
            "seconds_annotations": counts["seconds_annotations"],
            "cpu_seconds_all_processes": round(cpu, 1),
            "bytes": sizes,
            "peak_rss_main_mib": round(
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "counts": {k: v for k, v in counts.items() if not k.startswith("seconds")},
        },
    }
    # --- extrapolation to the full preset (an estimate, not a measurement) -----------------
    testg_factor = 1.0
    if kwargs["fmt"] == "cuhk-sysu" and queries:
        written = cuhk_gallery_sizes(test_images)
        full_entries = full["num_test_ids"] * sum(GALLERY_SIZES)
        testg_factor = full_entries / (queries * sum(written))
        result["measured"]["testg_sizes_written"] = written
    est_bytes = {part: round(value * (testg_factor if part == "testg" else scale))
                 for part, value in sizes.items() if part != "total"}
    est_bytes["total"] = sum(est_bytes.values())
    annotation_factor = testg_factor if kwargs["fmt"] == "cuhk-sysu" else scale
    est_images = counts["seconds_images"] * scale
    est_annotations = counts["seconds_annotations"] * annotation_factor
    result["extrapolated_full"] = {
        "note": ("ESTIMATE, not measured: images/masks/counts x (full frames / frames); "
                 + ("CUHK-SYSU annotation seconds and TestG bytes x (2900 queries x "
                    f"{sum(GALLERY_SIZES)} gallery entries) / (measured queries x entries "
                    "written), assuming TestG writing dominates that step"
                    if kwargs["fmt"] == "cuhk-sysu" else "annotations linear too")
                 + f"; same machine load and --workers {args.workers}"),
        "frames": full["frames"],
        "seconds_images": round(est_images),
        "seconds_annotations": round(est_annotations),
        "seconds": round(est_images + est_annotations),
        "cpu_seconds_all_processes_if_linear": round(cpu * scale),
        "bytes": est_bytes,
        "boxes": {k: round(v * scale) for k, v in counts["boxes"].items()},
    }
    result["full_run_command"] = (f"personsearch data synth data/{args.like} --like {args.like} "
                                  f"--workers {args.workers}")
    json.dump(result, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
