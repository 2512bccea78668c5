"""The demo's search results sheet: which queries it shows and how it ranks and marks hits."""

from types import SimpleNamespace

import numpy as np
from PIL import Image

from personsearch.evaluation.figures import (HIT_COLOUR, MISS_COLOUR, ranked_hits, sample_queries,
                                             search_results_sheet)
from personsearch.evaluation.search import GalleryDetections


def test_sample_queries_is_seeded_sorted_and_without_repeats():
    first = sample_queries(103, 6, seed=0)
    assert first == sample_queries(103, 6, seed=0)
    assert first != sample_queries(103, 6, seed=1)
    assert first == sorted(set(first)) and len(first) == 6 and all(0 <= i < 103 for i in first)
    assert sample_queries(4, 6, seed=0) == [0, 1, 2, 3]  # fewer queries than rows: all of them


def _frame(name, ids, boxes, path="unused.jpg"):
    return SimpleNamespace(image_name=name, person_ids=np.asarray(ids),
                           boxes=np.asarray(boxes, np.float32), image_path=path)


def _gallery_and_detections():
    """Three gallery frames; the query (person 7) is in frame a.jpg (its own frame, excluded).
    Detections (score, feature along x): a: 0.99 sim 1.0 (query frame), b: person 7 at IoU 1
    sim 0.6 and a distractor sim 0.9, c: person 7 shifted by half its width, sim 0.8, and a
    low-score detection sim 0.95 (below the 0.5 search threshold)."""
    gallery = [_frame("a.jpg", [7], [[0, 0, 20, 40]]),
               _frame("b.jpg", [7, 3], [[10, 10, 30, 50], [50, 10, 70, 50]]),
               _frame("c.jpg", [7], [[0, 0, 20, 40]])]
    query = _frame("a.jpg", [7], [[0, 0, 20, 40]])
    def feat(similarity):
        return [similarity, float(np.sqrt(1 - similarity ** 2))]
    detections = GalleryDetections(
        image_offsets=np.array([0, 1, 3, 5]),
        boxes=np.array([[0, 0, 20, 40], [10, 10, 30, 50], [50, 10, 70, 50], [10, 0, 30, 40],
                        [0, 0, 20, 40]], np.float32),
        scores=np.array([0.99, 0.9, 0.9, 0.8, 0.3], np.float32),
        feats=np.array([feat(1.0), feat(0.6), feat(0.9), feat(0.8), feat(0.95)], np.float32))
    return [query], gallery, detections, np.array([[1.0, 0.0]], np.float32)


def test_ranked_hits_follow_the_search_protocol():
    queries, gallery, detections, query_feats = _gallery_and_detections()
    hits = ranked_hits(0, queries, gallery, detections, query_feats, top=5)
    # query frame excluded, score 0.3 excluded, one hit per frame (b at its best: the distractor)
    assert [round(h.similarity, 3) for h in hits] == [0.9, 0.8]
    # b's best detection is person 3: wrong; c's is person 7 at IoU 200/600 = 1/3 < the PRW
    # threshold min(0.5, 20*40 / (30*50)) = 0.5: wrong too
    assert [h.correct for h in hits] == [False, False]
    detections.boxes[3] = [2, 0, 22, 40]  # IoU 18*40 / (2*800 - 720) = 0.818: right person
    assert [h.correct for h in ranked_hits(0, queries, gallery, detections, query_feats, 5)] == \
        [False, True]
    assert len(ranked_hits(0, queries, gallery, detections, query_feats, top=1)) == 1


def test_sheet_frames_hits_green_and_misses_red(tmp_path):
    queries, gallery, detections, query_feats = _gallery_and_detections()
    detections.boxes[3] = [2, 0, 22, 40]
    frame = tmp_path / "frame.jpg"
    Image.new("RGB", (80, 60), (128, 128, 128)).save(frame)
    for record in (*queries, *gallery):
        record.image_path = str(frame)
    out = search_results_sheet(queries, gallery, detections, query_feats, [0],
                               ["caption line"], tmp_path / "sheet.png", top=5, tile_height=60)
    image = np.asarray(Image.open(out).convert("RGB")).astype(int)
    def count(colour):
        return int((np.abs(image - np.array(colour)).sum(axis=-1) < 30).sum())
    assert count(HIT_COLOUR) > 100 and count(MISS_COLOUR) > 100
    assert image.shape[0] == 28 + 20 + 60 + 8 + 10  # caption, label strip, tile, border, gap
    long_caption = ["a caption line much wider than the row of tiles " * 6]
    wide = search_results_sheet(queries, gallery, detections, query_feats, [0], long_caption,
                                tmp_path / "wide.png", top=5, tile_height=60)
    assert Image.open(wide).width > image.shape[1] + 500  # the caption is never cut off
