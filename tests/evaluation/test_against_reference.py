"""The vectorised core against the loop-based reference of docs/evaluation.md (eval_reference.py)
on random CUHK-style and PRW-style inputs, 8 seeds, tied scores and tied similarities."""

from __future__ import annotations

import numpy as np
import pytest

from eval_reference import (random_detections, random_features, random_scene,
                            reference_cuhk, reference_detection, reference_prw)
from personsearch.data.records import SceneRecord
from personsearch.evaluation.cuhk_sysu import build_cuhk_sysu_protocol
from personsearch.evaluation.detection import detection_metrics
from personsearch.evaluation.prw import build_prw_protocol
from personsearch.evaluation.search import GalleryDetections, search_metrics

SEEDS = range(8)
TOLERANCE = 1e-12


def records_of(annos):
    return [SceneRecord(image_path=a["name"], image_name=a["name"], width=200, height=160,
                        boxes=a["boxes"].astype(np.float32), person_ids=a["pids"],
                        camera_id=a["cam"], image_index=i) for i, a in enumerate(annos)]


def gallery_of(dets, feats):
    return GalleryDetections.from_per_image([d[:, :4] for d in dets], [d[:, 4] for d in dets],
                                            feats, feat_dim=feats[0].shape[1])


def assert_close(ours: dict, reference: dict) -> None:
    for key, value in reference.items():
        assert abs(ours[key] - value) <= TOLERANCE, (key, ours[key], value)


def random_cuhk_protocol(rng, annos, gallery_size):
    """Queries = labeled persons; gallery lists = positives first, then random negatives."""
    names = [a["name"] for a in annos]
    protocol = []
    by_pid: dict[int, list[int]] = {}
    for g, anno in enumerate(annos):
        for k, pid in enumerate(anno["pids"]):
            if pid >= 0:
                by_pid.setdefault(int(pid), []).append((g, k))
    for pid, places in sorted(by_pid.items()):
        if len(places) < 2:
            continue
        qg, qk = places[0]
        positives = []
        for g, k in places[1:]:
            if g == qg or any(p[0] == names[g] for p in positives):
                continue
            x1, y1, x2, y2 = annos[g]["boxes"][k]
            positives.append((names[g], np.array([x1, y1, x2 - x1, y2 - y1], np.float64)))
        if not positives:
            continue
        has = {g for g, _ in places}
        negatives = [g for g in rng.permutation(len(annos)) if g not in has]
        negatives = negatives[:max(0, gallery_size - len(positives))]
        gallery = positives + [(names[g], None) for g in negatives]
        if rng.random() < 0.2 and gallery:  # a duplicated entry (still counted in count_gt)
            gallery.append(gallery[0])
        protocol.append((names[qg], gallery))
    return protocol


class _Query:
    def __init__(self, name, gallery):
        self.query_name, self.gallery = name, gallery


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("full_set", [False, True])
def test_cuhk_matches_reference(seed, full_set):
    rng = np.random.default_rng(seed)
    tied = seed % 2 == 0
    annos = random_scene(rng, 40, 25, 5, cams=1)
    dets, feats = random_detections(rng, annos, 6, tied_feats=tied, tied_scores=True)
    protocol = random_cuhk_protocol(rng, annos, gallery_size=12)
    query_feats = random_features(rng, len(protocol), 6, tied)
    names = [a["name"] for a in annos]
    expected = reference_cuhk(names, dets, feats, query_feats, protocol, 0.5, full_set)
    built = build_cuhk_sysu_protocol(names, [_Query(n, g) for n, g in protocol], full_set)
    result = search_metrics(gallery_of(dets, feats), query_feats, built, 0.5)
    assert_close(result.summary(), expected)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("ignore_cam_id", [True, False])
def test_prw_matches_reference(seed, ignore_cam_id):
    rng = np.random.default_rng(100 + seed)
    tied = seed % 2 == 0
    annos = random_scene(rng, 45, 12, 6, cams=3)
    dets, feats = random_detections(rng, annos, 5, tied_feats=tied, tied_scores=True)
    query_annos = []
    for g, anno in enumerate(annos):
        for k, pid in enumerate(anno["pids"]):
            if pid >= 0 and rng.random() < 0.3:
                query_annos.append({"name": anno["name"], "boxes": anno["boxes"][k:k + 1],
                                    "pids": np.array([pid]), "cam": anno["cam"]})
    query_feats = random_features(rng, len(query_annos), 5, tied)
    expected = reference_prw(annos, dets, feats, query_annos, query_feats, 0.5, ignore_cam_id)
    built = build_prw_protocol(records_of(annos), records_of(query_annos), ignore_cam_id)
    result = search_metrics(gallery_of(dets, feats), query_feats, built, 0.5)
    assert_close(result.summary(), expected)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("det_thresh", [0.01, 0.5])
@pytest.mark.parametrize("labeled_only", [False, True])
def test_detection_matches_reference(seed, det_thresh, labeled_only):
    rng = np.random.default_rng(200 + seed)
    annos = random_scene(rng, 30, 10, 6)
    dets, _ = random_detections(rng, annos, 2, tied_feats=True, tied_scores=seed % 2 == 0)
    expected = reference_detection(annos, dets, det_thresh, 0.5, labeled_only)
    gt_offsets = np.concatenate([[0], np.cumsum([len(a["boxes"]) for a in annos])])
    det_offsets = np.concatenate([[0], np.cumsum([len(d) for d in dets])])
    ours = detection_metrics(gt_offsets, np.concatenate([a["boxes"] for a in annos]),
                             np.concatenate([a["pids"] for a in annos]), det_offsets,
                             np.concatenate(dets)[:, :4], np.concatenate(dets)[:, 4],
                             det_thresh=det_thresh, labeled_only=labeled_only)
    assert_close(ours, expected)
