"""The accuracy comparison of precision.check on hand-made runs."""

from __future__ import annotations

import math

import pytest
import torch

from personsearch.precision.check import PathRun, Tolerances, compare_runs, failed_tolerances, fixed_boxes


def _unit(rows: list[list[float]]) -> torch.Tensor:
    tensor = torch.tensor(rows, dtype=torch.float32)
    return tensor / tensor.norm(dim=1, keepdim=True)


def test_compare_runs_cosine_and_agreement():
    reference = PathRun(1.0, [(torch.tensor([[0.0, 0, 10, 20], [50, 0, 60, 20]]), torch.tensor([0.9, 0.8])),
                              (torch.zeros(0, 4), torch.zeros(0))],
                        _unit([[1, 0], [0, 1]]))
    # image 0: one box matched (IoU 1), the other missed, one extra low-score box ignored;
    # image 1: one spurious detection
    candidate = PathRun(0.5, [(torch.tensor([[0.0, 0, 10, 20], [100, 0, 110, 20]]), torch.tensor([0.7, 0.3])),
                              (torch.tensor([[5.0, 5, 15, 25]]), torch.tensor([0.6]))],
                        _unit([[1, 1], [0, 1]]))
    result = compare_runs(reference, candidate, score_thresh=0.5)
    assert result["cosine_mean"] == pytest.approx((1 / math.sqrt(2) + 1) / 2)
    assert result["cosine_min"] == pytest.approx(1 / math.sqrt(2))
    # matched 1; detections: reference 2 + candidate 1 (image 0) + 0 + 1 (image 1) = 4
    assert result["detection_agreement"] == pytest.approx(2 * 1 / 4)
    assert result["detections_compared"] == 4


def test_no_detections_on_either_side_agree():
    empty = (torch.zeros(0, 4), torch.zeros(0))
    run = PathRun(1.0, [empty], _unit([[1, 0]]))
    assert compare_runs(run, run, 0.5)["detection_agreement"] == 1.0


def test_failed_tolerances_lists_each_miss_and_nan():
    tolerances = Tolerances(cosine_mean=0.98, cosine_min=0.9, detection_agreement=0.8)
    assert failed_tolerances({"cosine_mean": 0.99, "cosine_min": 0.95, "detection_agreement": 0.8}, tolerances) == []
    failures = failed_tolerances({"cosine_mean": 0.97, "cosine_min": float("nan"), "detection_agreement": 0.9},
                                 tolerances)
    assert [f.split()[0] for f in failures] == ["cosine_mean", "cosine_min"]


def test_fixed_boxes_scale_with_the_image():
    boxes = fixed_boxes((100, 200))
    assert boxes[0].tolist() == pytest.approx([20.0, 20.0, 44.0, 80.0])
    assert bool((boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all())
