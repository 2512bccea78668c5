"""Cell anchors rounded (torchvision, SeqNet) or exact (mmdetection 2.x, CGPS)."""

import math

import torch

from personsearch.models.anchors import AnchorGenerator, make_cell_anchors


def test_cell_anchors_exact_or_rounded():
    half_w, half_h = 32 / math.sqrt(2) / 2, 32 * math.sqrt(2) / 2  # ratio h/w = 2, area 32**2
    exact = make_cell_anchors((32,), (2.0,), round_cells=False)
    torch.testing.assert_close(exact, torch.tensor([[-half_w, -half_h, half_w, half_h]]))
    assert make_cell_anchors((32,), (2.0,)).tolist() == [[-11.0, -23.0, 11.0, 23.0]]


def test_generator_passes_the_choice_to_its_grid():
    exact = AnchorGenerator((32,), (3.0,), stride=16, round_cells=False)
    anchors = exact.grid_anchors((1, 2))
    width = 32 / math.sqrt(3)
    torch.testing.assert_close(anchors[1, 2] - anchors[1, 0], torch.tensor(width))
    torch.testing.assert_close(anchors[1, 0], torch.tensor(16 - width / 2))
