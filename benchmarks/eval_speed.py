"""Evaluation speed on CUHK-SYSU-sized and PRW-sized synthetic inputs. Prints JSON (seconds).

    .venv/bin/python benchmarks/eval_speed.py [--skip-full-set]

CUHK-SYSU: 6,978 gallery images x ~15 detections, 2,900 queries, 100-image galleries (and the
full pool, gallery_size -1). PRW: 6,112 frames x ~15 detections, 2,057 queries, both galleries.
Features are random unit 256-d vectors (score weighted), so the numbers measure speed only.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from personsearch.data.records import SceneRecord
from personsearch.evaluation.cuhk_sysu import build_cuhk_sysu_protocol
from personsearch.evaluation.detection import detection_metrics
from personsearch.evaluation.prw import build_prw_protocol
from personsearch.evaluation.search import GalleryDetections, search_metrics

DIM = 256


class _Query:
    def __init__(self, query_name, gallery):
        self.query_name, self.gallery = query_name, gallery


def synthetic_gallery(rng, num_images, persons_per_image, dets_per_image, num_ids, cams):
    records, boxes_list, scores_list, feats_list = [], [], [], []
    for g in range(num_images):
        n = max(1, int(rng.poisson(persons_per_image)))
        x1 = rng.integers(0, 1700, n)
        y1 = rng.integers(0, 700, n)
        w = rng.integers(20, 200, n)
        h = rng.integers(50, 380, n)
        boxes = np.stack([x1, y1, x1 + w, y1 + h], 1).astype(np.float32)
        pids = rng.integers(0, num_ids, n)
        pids[rng.random(n) < 0.25] = -1
        records.append(SceneRecord(f"/x/c{g % cams + 1}s1_{g:06d}.jpg",
                                   f"c{g % cams + 1}s1_{g:06d}.jpg", 1920, 1080, boxes, pids,
                                   g % cams + 1, g))
        m = int(rng.poisson(dets_per_image))
        from_gt = boxes[rng.integers(0, n, m)] + rng.normal(0, 6, (m, 4)).astype(np.float32)
        from_gt[:, 2:] = np.maximum(from_gt[:, 2:], from_gt[:, :2] + 1)
        scores = rng.uniform(0.3, 1.0, m).astype(np.float32)
        feats = rng.standard_normal((m, DIM)).astype(np.float32)
        feats /= np.linalg.norm(feats, axis=1, keepdims=True)
        boxes_list.append(from_gt)
        scores_list.append(scores)
        feats_list.append(feats * scores[:, None])
    return records, GalleryDetections.from_per_image(boxes_list, scores_list, feats_list, DIM)


CPU_SECONDS: dict[str, float] = {}


def _cpu(out: dict, key: str, name: str) -> None:
    out[key[:-2] + "_cpu_s"] = CPU_SECONDS[name]


def timed(function, *args, **kwargs):
    """(value, wall seconds); the process CPU seconds (all threads) go to CPU_SECONDS."""
    start, cpu_start = time.perf_counter(), time.process_time()
    value = function(*args, **kwargs)
    CPU_SECONDS[function.__name__] = time.process_time() - cpu_start
    return value, time.perf_counter() - start


def detection(records, gallery, det_thresh):
    gt_offsets = np.concatenate([[0], np.cumsum([r.num_boxes for r in records])])
    return detection_metrics(gt_offsets, np.concatenate([r.boxes for r in records]),
                             np.concatenate([r.person_ids for r in records]),
                             gallery.image_offsets, gallery.boxes, gallery.scores, det_thresh)


def cuhk(rng, out, skip_full_set):
    records, gallery = synthetic_gallery(rng, 6978, 5.9, 15, 2900, 1)
    out["cuhk_num_detections"] = int(len(gallery.scores))
    names = [r.image_name for r in records]
    queries = []
    for i in range(2900):
        query_image = int(rng.integers(0, 6978))
        positives = rng.choice(6978, int(rng.integers(1, 5)), replace=False)
        positives = positives[positives != query_image]
        negatives = rng.choice(6978, 140, replace=False)
        negatives = [g for g in negatives if g != query_image and g not in positives]
        gallery_list = []
        for g in positives:
            x1, y1, x2, y2 = records[g].boxes[0]
            gallery_list.append((names[g], np.array([x1, y1, x2 - x1, y2 - y1])))
        gallery_list += [(names[g], None) for g in negatives[:100 - len(gallery_list)]]
        queries.append(_Query(names[query_image], gallery_list))
    query_feats = rng.standard_normal((2900, DIM)).astype(np.float32)
    query_feats /= np.linalg.norm(query_feats, axis=1, keepdims=True)
    protocol, out["cuhk_build_protocol_s"] = timed(build_cuhk_sysu_protocol, names, queries)
    result, out["cuhk_search_gallery100_s"] = timed(search_metrics, gallery, query_feats,
                                                    protocol, 0.5)
    _cpu(out, "cuhk_search_gallery100_s", "search_metrics")
    out["cuhk_mAP_random_features"] = result.summary()["mAP"]
    _, out["cuhk_detection_s"] = timed(detection, records, gallery, 0.01)
    if not skip_full_set:
        full, out["cuhk_build_full_set_s"] = timed(build_cuhk_sysu_protocol, names, queries,
                                                   True)
        _, out["cuhk_search_full_set_s"] = timed(search_metrics, gallery, query_feats, full, 0.5)


def prw(rng, out):
    records, gallery = synthetic_gallery(rng, 6112, 4.1, 15, 544, 6)
    out["prw_num_detections"] = int(len(gallery.scores))
    queries = []
    for i in range(2057):
        while True:
            g = int(rng.integers(0, 6112))
            labeled = np.flatnonzero(records[g].person_ids >= 0)
            if len(labeled):
                break
        k = labeled[0]
        queries.append(SceneRecord(records[g].image_path, records[g].image_name, 1920, 1080,
                                   records[g].boxes[k:k + 1], records[g].person_ids[k:k + 1],
                                   records[g].camera_id, i))
    query_feats = rng.standard_normal((2057, DIM)).astype(np.float32)
    query_feats /= np.linalg.norm(query_feats, axis=1, keepdims=True)
    protocol, out["prw_build_protocol_s"] = timed(build_prw_protocol, records, queries)
    _, out["prw_search_s"] = timed(search_metrics, gallery, query_feats, protocol, 0.5)
    _cpu(out, "prw_search_s", "search_metrics")
    cross, out["prw_build_cross_camera_s"] = timed(build_prw_protocol, records, queries, False)
    _, out["prw_search_cross_camera_s"] = timed(search_metrics, gallery, query_feats, cross, 0.5)
    _cpu(out, "prw_search_cross_camera_s", "search_metrics")
    _, out["prw_detection_s"] = timed(detection, records, gallery, 0.01)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--skip-full-set", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    out: dict[str, float] = {"load_average_1min_at_start": os.getloadavg()[0]}
    cuhk(rng, out, args.skip_full_set)
    prw(rng, out)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
