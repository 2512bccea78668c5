"""A slow, loop-based reference of docs/evaluation.md, written from the text (not from our
vectorised code), plus random CUHK-style / PRW-style inputs with ties.

Inputs are SeqNet-shaped: gallery annotations ``{"name", "boxes" int32 [N,4] x1y1x2y2,
"pids" [N] (-1 unlabeled), "cam"}``, per-image detections [n,5] and features [n,D].
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score

TOPK = (1, 5, 10)


def iou(a, b) -> float:
    """docs/evaluation.md §0, on Python floats."""
    a = [float(v) for v in a]
    b = [float(v) for v in b]
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def threshold(w: int, h: int) -> float:
    return min(0.5, (w * h * 1.0) / ((w + 10) * (h + 10)))


def kept_detections(names, dets, feats, det_thresh):
    table = {}
    for name, det, feat in zip(names, dets, feats):
        keep = np.where(det[:, 4] >= det_thresh)[0]
        if len(keep) > 0:
            table[name] = (det[keep], feat[keep])
    return table


def label_image(sim, det, gt, thr):
    """Sort by similarity (argsort reversed), first det with IoU >= thr is the positive."""
    order = np.argsort(sim)[::-1]
    sim = sim[order]
    det = det[order]
    label = np.zeros(len(sim), dtype=np.int32)
    for j, roi in enumerate(det[:, :4]):
        if iou(roi, gt) >= thr:
            label[j] = 1
            break
    return sim, label


def finish_query(y_true, y_score, count_tp, count_gt):
    y_score = np.asarray(y_score, dtype=np.float32)
    y_true = np.asarray(y_true)
    ap = 0.0 if count_tp == 0 else average_precision_score(y_true, y_score) * (count_tp * 1.0 / count_gt)
    ranked = y_true[np.argsort(y_score)[::-1]]
    return ap, [min(1, int(sum(ranked[:k]))) for k in TOPK]


def reference_cuhk(pool_names, dets, feats, query_feats, protocol, det_thresh=0.5, full_set=False):
    """protocol: list of (query_name, [(gallery name, xywh or None), ...])."""
    table = kept_detections(pool_names, dets, feats, det_thresh)
    aps, hits = [], []
    for i, (query_name, gallery) in enumerate(protocol):
        q = query_feats[i]
        y_true, y_score = [], []
        count_gt = count_tp = 0
        processed = set()
        for name, box in gallery:
            gt = None if box is None else np.asarray(box).astype(np.int32)
            count_gt += gt is not None
            if name not in table or name in processed:
                continue
            processed.add(name)
            det, feat = table[name]
            sim = feat @ q
            label = np.zeros(len(sim), dtype=np.int32)
            if gt is not None:
                w, h = int(gt[2]), int(gt[3])
                xyxy = [gt[0], gt[1], gt[0] + gt[2], gt[1] + gt[3]]
                sim, label = label_image(sim, det, xyxy, threshold(w, h))
                count_tp += int(label.sum())
            y_true.extend(label)
            y_score.extend(sim)
        if full_set:
            for name in pool_names:
                if name == query_name or name in processed or name not in table:
                    continue
                det, feat = table[name]
                sim = feat @ q
                y_true.extend([0] * len(sim))
                y_score.extend(sim)
        ap, hit = finish_query(y_true, y_score, count_tp, count_gt)
        aps.append(ap)
        hits.append(hit)
    return summarise(aps, hits)


def reference_prw(gallery_annos, dets, feats, query_annos, query_feats, det_thresh=0.5,
                  ignore_cam_id=True):
    table = kept_detections([a["name"] for a in gallery_annos], dets, feats, det_thresh)
    aps, hits = [], []
    for i, query in enumerate(query_annos):
        q = query_feats[i]
        pid, qname, qcam = query["pids"][0], query["name"], query["cam"]
        gts = {}
        for anno in gallery_annos:
            if anno["name"] != qname and pid in anno["pids"]:
                gts[anno["name"]] = anno["boxes"][anno["pids"] == pid][0].astype(np.int32)
        if ignore_cam_id:
            walk = [a for a in gallery_annos if a["name"] != qname]
        else:
            walk = [a for a in gallery_annos if a["name"] != qname and a["cam"] != qcam]
        y_true, y_score = [], []
        count_gt = count_tp = 0
        for anno in walk:
            name = anno["name"]
            count_gt += name in gts
            if name not in table:
                continue
            det, feat = table[name]
            sim = feat @ q
            label = np.zeros(len(sim), dtype=np.int32)
            if name in gts:
                gt = gts[name]
                w, h = int(gt[2] - gt[0]), int(gt[3] - gt[1])
                sim, label = label_image(sim, det, gt, threshold(w, h))
                count_tp += int(label.sum())
            y_true.extend(label)
            y_score.extend(sim)
        if count_gt == 0:
            continue  # SeqNet divides by zero; the core leaves these queries out
        ap, hit = finish_query(y_true, y_score, count_tp, count_gt)
        aps.append(ap)
        hits.append(hit)
    return summarise(aps, hits)


def summarise(aps, hits):
    hits = np.asarray(hits, dtype=np.float64).reshape(-1, len(TOPK))
    out = {"mAP": float(np.mean(aps)) if aps else 0.0}
    for column, k in enumerate(TOPK):
        out[f"top{k}"] = float(np.mean(hits[:, column])) if len(aps) else 0.0
    return out


def reference_detection(gallery_annos, dets, det_thresh=0.5, iou_thresh=0.5, labeled_only=False):
    y_true, y_score = [], []
    count_gt = count_tp = 0
    for anno, det in zip(gallery_annos, dets):
        gt_boxes = anno["boxes"]
        if labeled_only:
            keep = np.where(anno["pids"] >= 0)[0]
            if len(keep) == 0:
                continue
            gt_boxes = gt_boxes[keep]
        num_gt = len(gt_boxes)
        det = det[det[:, 4] >= det_thresh]
        num_det = len(det)
        if num_det == 0:
            count_gt += num_gt
            continue
        if num_gt == 0:  # our extension: all detections are false positives
            y_score.extend(det[:, 4])
            y_true.extend([False] * num_det)
            continue
        ious = np.zeros((num_gt, num_det), dtype=np.float32)
        for i in range(num_gt):
            for j in range(num_det):
                ious[i, j] = iou(gt_boxes[i], det[j, :4])
        tp = ious >= iou_thresh
        for j in range(num_det):
            best = np.argmax(ious[:, j])
            for i in range(num_gt):
                if i != best:
                    tp[i, j] = False
        for i in range(num_gt):
            best = np.argmax(ious[i, :])
            for j in range(num_det):
                if j != best:
                    tp[i, j] = False
        for j in range(num_det):
            y_score.append(det[j, 4])
            y_true.append(tp[:, j].any())
        count_tp += int(tp.sum())
        count_gt += num_gt
    recall = count_tp / count_gt if count_gt else 0.0
    if count_tp == 0:
        return {"det_recall": recall, "det_ap": 0.0}
    ap = average_precision_score(y_true, np.asarray(y_score, dtype=np.float32)) * recall
    return {"det_recall": recall, "det_ap": ap}


def reference_query_from_detection(query_boxes, frame_dets, frame_feats):
    """Per query: feature of the detection with max IoU (+1 convention) to the query box."""
    feats = []
    for box, det, feat in zip(query_boxes, frame_dets, frame_feats):
        best, best_iou = 0, -1.0
        for j, roi in enumerate(det[:, :4]):
            iw = max(0.0, min(box[2], roi[2]) - max(box[0], roi[0]) + 1)
            ih = max(0.0, min(box[3], roi[3]) - max(box[1], roi[1]) + 1)
            inter = iw * ih
            union = ((box[2] - box[0] + 1) * (box[3] - box[1] + 1)
                     + (roi[2] - roi[0] + 1) * (roi[3] - roi[1] + 1) - inter)
            if inter / union > best_iou:
                best, best_iou = j, inter / union
        feats.append(feat[best])
    return np.asarray(feats, dtype=np.float32)


# ----------------------------------------------------------------------------- random inputs

def random_features(rng, count, dim, tied):
    """tied: entries in {-1,-.5,0,.5,1}/2 (exact float32 dot products, many equal scores)."""
    if tied:
        return (rng.integers(-2, 3, size=(count, dim)) / 4.0).astype(np.float32)
    feats = rng.standard_normal((count, dim)).astype(np.float32)
    return feats / np.linalg.norm(feats, axis=1, keepdims=True)


def random_scene(rng, num_images, num_ids, max_persons, width=200, height=160, cams=3):
    """Gallery annotations with int boxes, some unlabeled, some images empty."""
    annos = []
    for g in range(num_images):
        n = int(rng.integers(0, max_persons + 1))
        x1 = rng.integers(0, width - 40, n)
        y1 = rng.integers(0, height - 60, n)
        w = rng.integers(5, 40, n)
        h = rng.integers(12, 60, n)
        boxes = np.stack([x1, y1, x1 + w, y1 + h], 1).astype(np.int32).reshape(-1, 4)
        pids = rng.integers(0, num_ids, n)
        pids[rng.random(n) < 0.25] = -1
        annos.append({"name": f"c{g % cams + 1}s1_{g:06d}.jpg", "boxes": boxes,
                      "pids": pids.astype(np.int64), "cam": g % cams + 1})
    return annos


def random_detections(rng, annos, dim, tied_feats, tied_scores):
    """Per image: jittered copies of GT boxes (some twice) + random false boxes."""
    dets, feats = [], []
    for anno in annos:
        rows = []
        for box in anno["boxes"]:
            for _ in range(int(rng.integers(0, 3))):
                jitter = rng.normal(0, 3, 4)
                rows.append(box + jitter)
        for _ in range(int(rng.integers(0, 4))):
            x, y = rng.uniform(0, 160), rng.uniform(0, 100)
            rows.append([x, y, x + rng.uniform(4, 40), y + rng.uniform(10, 60)])
        rows = np.asarray(rows, dtype=np.float64).reshape(-1, 4)
        rows[:, 2] = np.maximum(rows[:, 2], rows[:, 0])
        rows[:, 3] = np.maximum(rows[:, 3], rows[:, 1])
        if tied_scores:
            scores = rng.choice([0.005, 0.01, 0.3, 0.5, 0.5, 0.7, 0.9, 0.9], len(rows))
        else:
            scores = rng.uniform(0, 1, len(rows))
        det = np.concatenate([rows, scores[:, None]], 1).astype(np.float32)
        dets.append(det)
        feats.append(random_features(rng, len(det), dim, tied_feats))
    return dets, feats
