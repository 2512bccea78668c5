"""Mask methods: box windows, the overlap rules, whole-box and GrabCut label maps."""

from __future__ import annotations

import numpy as np
import pytest

from personsearch.data.masks_methods import (MaskStats, box_label_map, box_window, box_windows,
                                             grabcut_label_map, paint_highest_score,
                                             paint_smallest_wins)
from personsearch.errors import DatasetError


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum()) / float((a | b).sum())


def test_box_window_covers_touched_pixels_and_clips():
    assert box_window(np.array([1.5, 2.0, 4.2, 5.0]), 10, 8) == (1, 2, 5, 5)
    assert box_window(np.array([-3.0, -1.0, 12.5, 9.0]), 10, 8) == (0, 0, 10, 8)


def test_box_outside_the_image_or_not_finite_is_an_error():
    with pytest.raises(DatasetError, match=r"img.jpg: box 1 \[12.0, 1.0, 15.0, 4.0\] has no pixel "
                                           r"inside the 10x8 image"):
        box_windows(np.array([[0, 0, 2, 2], [12, 1, 15, 4]], np.float32), 10, 8, "img.jpg")
    with pytest.raises(DatasetError, match="img.jpg: box 0 .* is not finite"):
        box_windows(np.array([[0, 0, np.nan, 2]]), 10, 8, "img.jpg")
    with pytest.raises(DatasetError, match="256 boxes: a mask label map holds at most 255"):
        box_windows(np.zeros((256, 4)), 10, 8, "img.jpg")


def test_smallest_box_wins_where_boxes_overlap():
    windows = [(0, 0, 4, 3), (2, 1, 5, 3)]  # areas 12 and 6
    foregrounds = [np.ones((3, 4), bool), np.array([[1, 1, 0], [0, 1, 1]], bool)]
    labels = paint_smallest_wins((3, 5), windows, foregrounds)
    np.testing.assert_array_equal(labels, [[1, 1, 1, 1, 0],
                                           [1, 1, 2, 2, 0],
                                           [1, 1, 1, 2, 2]])
    # equal areas: the lower box index wins
    same = paint_smallest_wins((1, 3), [(0, 0, 2, 1), (1, 0, 3, 1)],
                               [np.ones((1, 2), bool), np.ones((1, 2), bool)])
    np.testing.assert_array_equal(same, [[1, 1, 2]])


def test_highest_score_wins_where_boxes_overlap():
    windows = [(0, 0, 3, 1), (1, 0, 4, 1)]
    foregrounds = [np.array([[1, 1, 1]], bool), np.array([[1, 1, 0]], bool)]
    scores = [np.array([[0.9, 0.6, 0.7]], np.float32), np.array([[0.8, 0.6, 0.99]], np.float32)]
    labels = paint_highest_score((1, 4), windows, foregrounds, scores)
    # pixel 1: 0.6 vs 0.8 -> box 2; pixel 2: 0.7 vs 0.6 -> box 1; pixel 3:
    # box 2 does not claim it
    np.testing.assert_array_equal(labels, [[1, 2, 1, 0]])
    tie = paint_highest_score((1, 1), [(0, 0, 1, 1)] * 2, [np.ones((1, 1), bool)] * 2,
                              [np.full((1, 1), 0.5, np.float32)] * 2)
    assert tie[0, 0] == 1


def test_box_label_map_fills_each_box():
    image = np.zeros((8, 10, 3), np.uint8)
    labels = box_label_map(image, np.array([[1, 1, 4, 4], [3.5, 2, 9, 7]], np.float32), "x.jpg")
    expected = np.zeros((8, 10), np.uint8)
    expected[1:4, 1:4] = 1
    expected[2:7, 3:9] = 2  # 6x5 = 30 px > 9 px: box 1 keeps the overlap
    expected[2:4, 3:4] = 1
    np.testing.assert_array_equal(labels, expected)


def ellipse_scene(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A red-ish 'person' ellipse on blue-green noise: (image [140, 160, 3], box, true mask)."""
    rng = np.random.default_rng(seed)
    height, width = 140, 160
    image = np.empty((height, width, 3), np.uint8)
    image[..., 0] = rng.integers(0, 80, (height, width))
    image[..., 1] = rng.integers(80, 200, (height, width))
    image[..., 2] = rng.integers(120, 255, (height, width))
    ys, xs = np.mgrid[0:height, 0:width]
    person = ((xs - 50) / 20.0) ** 2 + ((ys - 70) / 50.0) ** 2 <= 1.0
    image[person] = np.stack([rng.integers(180, 255, person.sum()),
                              rng.integers(20, 90, person.sum()),
                              rng.integers(0, 60, person.sum())], axis=1)
    return image, np.array([[29, 19, 72, 122]], np.float32), person


def test_grabcut_beats_the_box_on_a_synthetic_person():
    image, boxes, truth = ellipse_scene()
    stats = MaskStats()
    grabcut = grabcut_label_map(image, boxes, "scene.jpg", stats) == 1
    box = box_label_map(image, boxes, "scene.jpg") == 1
    assert stats.persons == 1 and stats.box_fallbacks == 0
    assert iou(box, truth) < 0.8  # ellipse / box = pi / 4 at best
    assert iou(grabcut, truth) > 0.9
    assert not grabcut[:, 73:].any() and not grabcut[:19].any()  # never outside its box
    # seeded: the same mask again
    np.testing.assert_array_equal(grabcut_label_map(image, boxes, "scene.jpg") == 1, grabcut)


def test_grabcut_keeps_tiny_and_whole_image_boxes_whole_and_counts_them():
    image, _, _ = ellipse_scene()
    stats = MaskStats()
    labels = grabcut_label_map(image, np.array([[10, 10, 13, 30], [0, 0, 160, 140]], np.float32),
                               "scene.jpg", stats)
    assert stats.persons == 2 and stats.box_fallbacks == 2
    assert set(stats.reasons) == {"box smaller than 4 px",
                                  "box covers the whole image (no background to model)"}
    assert (labels[10:30, 10:13] == 1).all()  # the smaller box wins over the whole image
    assert (labels[50:, 50:] == 2).all()
