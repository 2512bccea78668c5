"""Every metric on tiny cases whose expected numbers are worked out by hand in the comments."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from eval_reference import reference_query_from_detection
from personsearch.data.records import SceneRecord
from personsearch.evaluation import (GalleryDetections, SearchProtocol, average_precision,
                                     detection_metrics, evaluate_search, gt_box_detections,
                                     search_metrics, size_adaptive_iou_threshold)
from personsearch.evaluation.cuhk_sysu import build_cuhk_sysu_protocol
from personsearch.evaluation.prw import query_feats_from_detections


def record(name, boxes, pids, cam=1, index=0):
    return SceneRecord(name, name, 400, 300, np.asarray(boxes, np.float32).reshape(-1, 4),
                       np.asarray(pids, np.int64), cam, index)


def gallery(per_image):
    """per_image: list of [(box, score, sim)] -> GalleryDetections with 1-d features = sim."""
    return GalleryDetections.from_per_image(
        [np.asarray([d[0] for d in dets], np.float32).reshape(-1, 4) for dets in per_image],
        [np.asarray([d[1] for d in dets], np.float32) for dets in per_image],
        [np.asarray([[d[2]] for d in dets], np.float32).reshape(-1, 1) for dets in per_image],
        feat_dim=1)


def test_size_adaptive_threshold():
    # 10*25 / (20*35) = 250/700; 15*40 / (25*50) = 600/1250; 20*50/(30*60) = 0.556 -> cap 0.5
    values = size_adaptive_iou_threshold(np.array([10, 15, 20]), np.array([25, 40, 50]))
    assert values[0] == pytest.approx(250 / 700) and abs(values[0] - 0.357) < 1e-3
    assert values[1] == pytest.approx(0.48)
    assert values[2] == 0.5


def test_ap_hand_and_sklearn():
    # scores 0.9 (pos), 0.9 (neg), 0.1 (pos): one tie group at 0.9 -> P=1/2, R=1/2;
    # then 0.1 -> P=2/3, R=1. AP = 1/2*1/2 + 1/2*2/3 = 7/12.
    assert average_precision([1, 0, 1], [0.9, 0.9, 0.1]) == pytest.approx(7 / 12, abs=1e-15)
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(1, 60))
        scores = (rng.integers(0, 6, n) / 3).astype(np.float32)
        labels = rng.random(n) < 0.4
        if labels.any():
            assert average_precision(labels, scores) == average_precision_score(labels, scores)


def test_matching_takes_most_similar_overlapping_detection():
    # GT [0,0,100,200] (thr 0.5). A = the GT box (IoU 1, sim 0.5), B = [0,0,100,120]
    # (IoU 0.6, sim 0.875), C far away (IoU 0, sim 0.9375). Positive = B (most similar
    # overlapping), not A. List: C neg 0.9375, B pos 0.875, A neg 0.5 -> AP = 1/2; top1 miss.
    dets = gallery([[([0, 0, 100, 200], 0.9, 0.5), ([0, 0, 100, 120], 0.9, 0.875),
                     ([200, 0, 300, 200], 0.9, 0.9375)]])
    protocol = SearchProtocol([np.array([0])], [np.array([0])], [np.array([[0, 0, 100, 200]])],
                              [np.array([0.5])])
    result = search_metrics(dets, np.ones((1, 1), np.float32), protocol)
    assert result.average_precisions[0] == 0.5
    assert result.hits[0].tolist() == [False, True, True]


def test_count_gt_includes_images_without_kept_detection():
    # Query 0 (s0) has GT in s1 (detected, sim 0.75) and s2 (its only detection scores 0.4 <
    # 0.5, dropped); s3 is a negative with sim 0.5. List: [pos 0.75, neg 0.5] -> AP 1;
    # count_tp 1, count_gt 2 -> AP = 0.5; top1 hit.
    names = ["s0.jpg", "s1.jpg", "s2.jpg", "s3.jpg"]
    dets = gallery([[([0, 0, 50, 100], 0.9, 0.25)], [([10, 10, 60, 110], 0.9, 0.75)],
                    [([10, 10, 60, 110], 0.4, 1.0)], [([0, 0, 50, 100], 0.9, 0.5)]])

    class Query:
        query_name = "s0.jpg"
        gallery = [("s1.jpg", np.array([10, 10, 50, 100.7])),
                   ("s2.jpg", np.array([10, 10, 50, 100])), ("s3.jpg", None)]

    protocol = build_cuhk_sysu_protocol(names, [Query()])
    assert protocol.count_gt.tolist() == [2]
    assert protocol.gt_boxes[0][0].tolist() == [10, 10, 60, 110]  # int32 of xywh, then x + w
    result = search_metrics(dets, np.ones((1, 1), np.float32), protocol)
    assert result.count_tp.tolist() == [1]
    assert result.average_precisions[0] == 0.5
    assert result.hits[0].tolist() == [True, True, True]
    # Full set: s0 is the query image (left out even though its sim 0.25 would rank last);
    # no other pool image outside the list -> same numbers. Put s3 outside the list instead:
    Query.gallery = Query.gallery[:2]
    full = build_cuhk_sysu_protocol(names, [Query()], full_set=True)
    assert full.gallery_images[0].tolist() == [1, 2, 3]
    assert search_metrics(dets, np.ones((1, 1), np.float32), full).average_precisions[0] == 0.5
    without_full = build_cuhk_sysu_protocol(names, [Query()])
    assert without_full.gallery_images[0].tolist() == [1, 2]


def test_cuhk_full_set_adds_pool_negatives():
    # List: s1 (GT, matched, sim 0.5). Pool adds s2 (sim 0.75, negative); s0 is the query
    # image (sim 0.875), never a gallery item. AP gallery list = 1; full set: neg 0.75 above
    # pos 0.5 -> AP = 1/2, top1 miss, top5 hit.
    names = ["s0.jpg", "s1.jpg", "s2.jpg"]
    dets = gallery([[([0, 0, 50, 100], 0.9, 0.875)], [([0, 0, 50, 100], 0.9, 0.5)],
                    [([0, 0, 50, 100], 0.9, 0.75)]])

    class Query:
        query_name = "s0.jpg"
        gallery = [("s1.jpg", np.array([0, 0, 50, 100]))]

    small = search_metrics(dets, np.ones((1, 1), np.float32),
                           build_cuhk_sysu_protocol(names, [Query()]))
    full = search_metrics(dets, np.ones((1, 1), np.float32),
                          build_cuhk_sysu_protocol(names, [Query()], full_set=True))
    assert small.average_precisions[0] == 1.0
    assert full.average_precisions[0] == 0.5
    assert full.hits[0].tolist() == [False, True, True]


def prw_scene():
    box = [10, 10, 60, 160]
    frames = [record("c1s1_000001.jpg", [box], [7], 1, 0), record("c1s1_000002.jpg", [box], [7], 1, 1),
              record("c2s1_000003.jpg", [box, [100, 10, 150, 160]], [7, 7], 2, 2),
              record("c2s1_000004.jpg", [box], [-1], 2, 3)]
    queries = [record("c1s1_000001.jpg", [box], [7], 1, 0)]
    dets = gallery([[(box, 0.9, 1.0)], [(box, 0.9, 0.875)], [(box, 0.9, 0.5)],
                    [(box, 0.9, 0.75)]])
    return frames, queries, dets


def test_prw_same_and_cross_camera():
    # Same-camera gallery (default): frames 2,3,4. List: f2 pos 0.875, f4 neg 0.75, f3 pos 0.5
    # -> AP = (1/1 + 2/3) / 2 = 5/6; count_gt 2 (pid 7 twice in f3 counts once, first box).
    # Cross-camera: only c2 frames f3, f4: neg 0.75 then pos 0.5 -> AP 1/2; top1 miss.
    frames, queries, dets = prw_scene()
    same = evaluate_search("prw", frames, queries, dets, np.ones((1, 1), np.float32))
    cross = evaluate_search("prw", frames, queries, dets, np.ones((1, 1), np.float32),
                            ignore_cam_id=False)
    assert same["mAP"] == pytest.approx(5 / 6, abs=1e-15) and same["top1"] == 1.0
    assert cross["mAP"] == 0.5 and cross["top1"] == 0.0 and cross["top5"] == 1.0


def test_gt_box_variant():
    # GT boxes become detections with score 1: detection recall/AP are 1. Features: f1's GT
    # 0.875, f2's two GT 0.5 (pid 7, first) and 0.25, f3's 0.75. Same-camera list:
    # pos .875, neg .75, pos .5, neg .25 -> AP = (1 + 2/3)/2 = 5/6.
    frames, queries, _ = prw_scene()
    gt = gt_box_detections(frames, [np.array([[1.0]]), np.array([[0.875]]),
                                    np.array([[0.5], [0.25]]), np.array([[0.75]])])
    assert gt.scores.tolist() == [1.0] * 5
    metrics = evaluate_search("prw", frames, queries, gt, np.ones((1, 1), np.float32))
    assert metrics["det_recall"] == 1.0 and metrics["det_ap"] == 1.0
    assert metrics["mAP"] == pytest.approx(5 / 6, abs=1e-15)


def test_mutual_best_detection_matching():
    # g0 [0,0,10,10], g1 [20,0,30,10] (unlabeled). d0 = g0 exactly (IoU 1, score 0.6),
    # d1 [1,0,11,10] (IoU with g0 90/110, score 0.9). g0's best det is d0, so d1 is not a TP
    # although IoU >= 0.5 (greedy by score would take d1). TP = 1 of 2 GT: recall 1/2;
    # ranked d1 (neg), d0 (pos) -> AP 1/2 -> det_ap = 1/4.
    # A second image with only an unlabeled GT and one det: counted normally (GT 3, TP 2 with
    # its exact det) -> recall 2/3; labeled_only skips g1 and that whole image: recall 1/1.
    gt_boxes = np.array([[0, 0, 10, 10], [20, 0, 30, 10], [0, 0, 10, 10]], np.float32)
    ids = np.array([3, -1, -1])
    dets = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 10]], np.float32)
    scores = np.array([0.6, 0.9, 0.3], np.float32)
    args = ([0, 2, 3], gt_boxes, ids, [0, 2, 3], dets, scores)
    first_image = detection_metrics([0, 2], gt_boxes[:2], ids[:2], [0, 2], dets[:2], scores[:2])
    assert first_image["det_recall"] == 0.5 and first_image["det_ap"] == 0.25
    everything = detection_metrics(*args)
    # ranked 0.9 neg, 0.6 pos, 0.3 pos -> AP = 1/2*1/2 + 1/2*2/3 = 7/12, x recall 2/3
    assert everything["det_recall"] == pytest.approx(2 / 3)
    assert everything["det_ap"] == pytest.approx(7 / 12 * 2 / 3, abs=1e-15)
    labeled = detection_metrics(*args, labeled_only=True)
    assert labeled["det_recall"] == 1.0 and labeled["count_gt"] == 1
    # det_thresh is inclusive: 0.6 kept at 0.6, d1 (0.9) too; at 0.61 d0 is dropped
    assert detection_metrics(*args, det_thresh=0.6)["count_tp"] == 1
    assert detection_metrics(*args, det_thresh=0.61)["count_tp"] == 1  # d1 now g0's best


def test_query_from_detection():
    # Query box [10,10,20,30] (+1 convention: 11 x 21). Frame 0 dets: [15,10,40,30] (+1 IoU
    # 6*21 / (231 + 546 - 126) = 126/651 ~ 0.19, still chosen: the only one overlapping) and a
    # far one. Frame 1: [10,10,20,29] (IoU 220/231) beats [10,10,30,30].
    frame_dets = GalleryDetections.from_per_image(
        [np.array([[100, 100, 120, 130], [15, 10, 40, 30]]),
         np.array([[10, 10, 30, 30], [10, 10, 20, 29]])],
        [np.ones(2), np.ones(2)], [np.array([[1.0, 0], [0, 1.0]]), np.array([[2.0, 0], [0, 2.0]])])
    boxes = np.array([[10, 10, 20, 30], [10, 10, 20, 30]], np.float32)
    feats, found = query_feats_from_detections(boxes, frame_dets)
    assert feats.tolist() == [[0, 1], [0, 2]] and found.tolist() == [True, True]
    rng = np.random.default_rng(1)
    for _ in range(20):
        counts = rng.integers(1, 6, 8)
        dets = [np.sort(rng.integers(0, 60, (c, 4)), axis=1)[:, [0, 1, 2, 3]] for c in counts]
        dets = [np.stack([d[:, 0], d[:, 1], d[:, 2] + 1, d[:, 3] + 1], 1).astype(np.float32)
                for d in dets]
        f = [rng.standard_normal((c, 3)).astype(np.float32) for c in counts]
        qboxes = np.sort(rng.integers(0, 60, (8, 4)), axis=1).astype(np.float32)
        ours, _ = query_feats_from_detections(qboxes, GalleryDetections.from_per_image(
            dets, [np.ones(c) for c in counts], f))
        assert np.array_equal(ours, reference_query_from_detection(qboxes, dets, f))
    # a frame without any detection: no feature (zero row), found False
    feats, found = query_feats_from_detections(boxes, GalleryDetections.from_per_image(
        [np.zeros((0, 4)), np.array([[10, 10, 20, 29]])], [np.zeros(0), np.ones(1)],
        [np.zeros((0, 2)), np.array([[0, 3.0]])], feat_dim=2))
    assert feats.tolist() == [[0, 0], [0, 3]] and found.tolist() == [False, True]


def test_prw_query_from_detection_query_frame_without_detection_scores_zero_and_counts():
    # Issue 13: this raised "the frames of queries [...] have no detection". q0's frame f1 has
    # no detection -> AP 0, no hit, still counted. q1 (frame f2, feature 0.875) searches f1
    # (no detection), f3 (pos, 0.5 x 0.875) and f4 (neg, 0.75 x 0.875); count_gt 2 (f1, f3):
    # AP = 1/2 x 1/2 = 1/4, top-1 miss, top-5 hit. mAP = (0 + 1/4) / 2, top-5 = 1/2.
    frames, _, _ = prw_scene()
    box = [10, 10, 60, 160]
    queries = [record("c1s1_000001.jpg", [box], [7], 1, 0), record("c1s1_000002.jpg", [box], [7], 1, 1)]
    dets = gallery([[], [(box, 0.9, 0.875)], [(box, 0.9, 0.5)], [(box, 0.9, 0.75)]])
    metrics = evaluate_search("prw", frames, queries, dets, None, query_from_detection=True)
    assert metrics["mAP"] == 0.125 and metrics["top1"] == 0.0 and metrics["top5"] == 0.5
    assert metrics["num_queries"] == 2 and metrics["queries_without_query_detection"] == 1


def test_prw_query_from_detection_end_to_end():
    # The query frame f1's only detection has feature 1 -> same numbers as the GT-box query.
    frames, queries, dets = prw_scene()
    metrics = evaluate_search("prw", frames, queries, dets, None, query_from_detection=True)
    assert metrics["mAP"] == pytest.approx(5 / 6, abs=1e-15)
    assert metrics["query_from_detection"] is True


def test_gallery_without_any_detection_keeps_the_feature_dimension():
    # Issue 13: a model that detects nobody gave "cannot reshape array of size 0" here.
    empty = GalleryDetections.from_per_image([np.zeros((0, 4), np.float32)] * 3,
                                             [np.zeros(0, np.float32)] * 3,
                                             [np.zeros((0, 32), np.float32)] * 3)
    assert empty.feats.shape == (0, 32) and empty.image_offsets.tolist() == [0, 0, 0, 0]
    frames, queries, _ = prw_scene()
    nobody = gallery([[], [], [], []])
    metrics = evaluate_search("prw", frames, queries, nobody, np.ones((1, 1), np.float32))
    assert metrics["mAP"] == 0.0 and metrics["top1"] == 0.0 and metrics["num_queries"] == 1
    assert metrics["det_recall"] == 0.0
