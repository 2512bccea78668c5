"""``personsearch evaluate-results`` timed as a whole process on benchmark-sized datasets.

    .venv/bin/python benchmarks/evaluate_results_process.py [--work DIR] [--repeats 3]

Writes a CUHK-SYSU-sized dataset (18,184 images, 6,978 in the gallery pool, 2,900 queries,
TestG50 + TestG100) and a PRW-sized one (11,816 frames, 6,112 test frames, 2,057 queries) in the
real on-disk formats under ``--work`` (kept and reused when it already holds them), a results
``.npz`` for each (~15 random detections per gallery image, random unit 256-d features), then
runs ``python -m personsearch.cli.main evaluate-results`` on each as a subprocess and prints JSON:
the wall seconds of every run (the whole process: interpreter start, imports, annotation
parsing, evaluation). The first run of each dataset starts from an empty annotation parse cache
(``cold``: the MAT files are parsed), the others find the cache written by the first (``warm``;
personsearch/data/parse_cache.py). Every image file is a hard link to one small JPEG, so image decoding is
not part of what is measured (nothing in the evaluation should decode an image).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from personsearch.data.cuhk_sysu import CuhkQuery
from personsearch.data.records import SceneRecord
from personsearch.data.writers import write_cuhk_sysu, write_prw
from personsearch.evaluation.results_file import write_results_file

from timing import cpu_model  # benchmarks/timing.py, beside this script

DIM = 256


def _image_file(folder: Path) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "_template.jpg"
    if not path.exists():
        Image.new("RGB", (1920, 1080), (90, 110, 120)).save(path, quality=50)
    return path


def _link(template: Path, target: Path) -> None:
    if not target.exists():
        os.link(template, target)


def _boxes(rng: np.random.Generator, count: int) -> np.ndarray:
    x1 = rng.integers(0, 1700, count)
    y1 = rng.integers(0, 700, count)
    w = rng.integers(20, 200, count)
    h = rng.integers(50, 380, count)
    return np.stack([x1, y1, x1 + w, y1 + h], 1).astype(np.float32)


def _scene(name: str, boxes: np.ndarray, ids: np.ndarray, camera: int = 0) -> SceneRecord:
    return SceneRecord(image_path=name, image_name=name, width=1920, height=1080, boxes=boxes,
                       person_ids=ids, camera_id=camera, image_index=0)


def write_cuhk(root: Path, rng: np.random.Generator) -> None:
    """18,184 images (11,206 train), 2,900 query identities each shown in 2-4 gallery images."""
    if (root / "annotation" / "test" / "train_test" / "TestG100.mat").exists():
        return
    num_train, num_test, num_queries = 11206, 6978, 2900
    train = []
    for i in range(num_train):
        count = max(1, int(rng.poisson(5.3)))
        ids = np.full(count, -1, np.int64)
        ids[0] = i % 5532
        train.append(_scene(f"s{i + 1}.jpg", _boxes(rng, count), ids))
    test_boxes = [_boxes(rng, max(2, int(rng.poisson(5.9)))) for _ in range(num_test)]
    test_names = [f"s{num_train + g + 1}.jpg" for g in range(num_test)]
    test = [_scene(n, b, np.full(len(b), -1, np.int64)) for n, b in zip(test_names, test_boxes)]
    protocols: dict[int, list[CuhkQuery]] = {50: [], 100: []}
    for q in range(num_queries):
        shown_in = rng.choice(num_test, int(rng.integers(2, 5)), replace=False)
        query_image, positives = int(shown_in[0]), shown_in[1:]
        negatives = np.setdiff1d(rng.choice(num_test, 200, replace=False), shown_in)
        box_index = q % 2  # a different box per query in a shared image is fine for timing
        gallery = []
        for g in positives:
            x1, y1, x2, y2 = test_boxes[g][0]
            gallery.append((test_names[g], np.array([x1, y1, x2 - x1, y2 - y1], np.float64)))
        for size in (50, 100):
            entries = gallery + [(test_names[g], None) for g in negatives[:size - len(gallery)]]
            protocols[size].append(CuhkQuery(test_names[query_image],
                                             test_boxes[query_image][box_index], entries))
    write_cuhk_sysu(root, train, test, protocols)
    template = _image_file(root / "Image" / "SSM")
    for record in train + test:
        _link(template, root / "Image" / "SSM" / record.image_name)


def write_prw_sized(root: Path, rng: np.random.Generator) -> None:
    """11,816 frames (5,704 train, 6,112 test, 6 cameras), 2,057 queries."""
    if (root / "query_info.txt").exists():
        return
    num_train, num_test, num_queries = 5704, 6112, 2057

    def frame(index: int) -> SceneRecord:
        count = max(1, int(rng.poisson(3.0)))
        ids = rng.integers(1, 933, count)
        ids[rng.random(count) < 0.2] = -1
        name = f"c{index % 6 + 1}s1_{index:06d}.jpg"
        return _scene(name, _boxes(rng, count), ids, index % 6 + 1)

    train = [frame(i) for i in range(num_train)]
    test = [frame(num_train + i) for i in range(num_test)]
    queries = []
    while len(queries) < num_queries:
        record = test[int(rng.integers(0, num_test))]
        labeled = np.flatnonzero(record.person_ids >= 0)
        if labeled.size:
            k = labeled[0]
            queries.append(_scene(record.image_name, record.boxes[k:k + 1],
                                  record.person_ids[k:k + 1], record.camera_id))
    write_prw(root, train, test, queries)
    template = _image_file(root / "frames")
    for record in train + test:
        _link(template, root / "frames" / record.image_name)


def write_results(path: Path, gallery_names: list[str], num_queries: int,
                  rng: np.random.Generator) -> None:
    if path.exists():
        return
    dets, feats = [], []
    for _ in gallery_names:
        count = int(rng.poisson(15))
        boxes = _boxes(rng, count)
        scores = rng.uniform(0.3, 1.0, (count, 1)).astype(np.float32)
        vectors = rng.standard_normal((count, DIM)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        dets.append(np.concatenate([boxes, scores], 1))
        feats.append(vectors * scores)
    query_feats = rng.standard_normal((num_queries, DIM)).astype(np.float32)
    query_feats /= np.linalg.norm(query_feats, axis=1, keepdims=True)
    write_results_file(path, gallery_names, dets, feats, query_feats)


def time_process(arguments: list[str], cache: Path) -> float:
    environment = dict(os.environ, PERSONSEARCH_CACHE_DIR=str(cache))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "personsearch.cli.main", "evaluate-results",
                    *arguments], check=True, stdout=subprocess.DEVNULL, env=environment)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--work", help="folder for the datasets (default: a temp folder)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="eval_process_"))
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    write_cuhk(work / "cuhk", rng)
    write_prw_sized(work / "prw", rng)
    os.environ["PERSONSEARCH_CACHE_DIR"] = "off"  # the set-up reads must not warm the cache
    from personsearch.data import load_split

    cuhk_gallery = [r.image_name for r in load_split("cuhk-sysu", work / "cuhk", "gallery")]
    prw_gallery = [r.image_name for r in load_split("prw", work / "prw", "gallery")]
    write_results(work / "cuhk_results.npz", cuhk_gallery, 2900, rng)
    write_results(work / "prw_results.npz", prw_gallery, 2057, rng)
    out: dict = {"setup_s": time.perf_counter() - start, "work": str(work),
                 "cpu": cpu_model(), "cores": os.cpu_count(),
                 "load_average_1min_at_start": os.getloadavg()[0]}
    runs = {
        "cuhk_gallery100": ["--dataset", "cuhk-sysu", "--root", str(work / "cuhk"),
                            "--results", str(work / "cuhk_results.npz"), "--gallery-size", "100"],
        "prw": ["--dataset", "prw", "--root", str(work / "prw"),
                "--results", str(work / "prw_results.npz")],
    }
    cache = work / "parse_cache"
    for name, arguments in runs.items():
        shutil.rmtree(cache, ignore_errors=True)
        out[f"{name}_cold_cache_s"] = time_process(arguments, cache)
        seconds = [time_process(arguments, cache) for _ in range(args.repeats)]
        out[f"{name}_warm_cache_s"] = seconds
        out[f"{name}_warm_cache_best_s"] = min(seconds)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
