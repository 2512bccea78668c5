"""Pairwise precision / recall of pseudo labels against true ids."""

from __future__ import annotations

import math

import numpy as np

from personsearch.pseudo_labels.diagnostics import pseudo_label_precision_recall


def test_tiny_labeling():
    # known boxes 0..4 (box 5 has no true id). Pseudo classes {0,1,2} {3,4}; ids {0,1} {2,3,4}
    # predicted pairs C(3,2) + C(2,2) = 4; actual pairs C(2,2) + C(3,2) = 4;
    # true positives: (0,1) and (3,4) -> 2. precision = recall = f1 = 0.5
    out = pseudo_label_precision_recall(np.array([0, 0, 0, 1, 1, 2]), np.array([5, 5, 7, 7, 7, -1]))
    assert out["precision"] == 0.5 and out["recall"] == 0.5 and out["f1"] == 0.5
    assert out["true_positive_pairs"] == 2 and out["predicted_pairs"] == 4 and out["num_known"] == 5


def test_perfect_and_degenerate():
    out = pseudo_label_precision_recall(np.array([3, 3, 1]), np.array([0, 0, 1]))
    assert out["precision"] == 1.0 and out["recall"] == 1.0
    out = pseudo_label_precision_recall(np.array([0, 1, 2]), np.array([0, 0, 1]))  # all singletons
    assert math.isnan(out["precision"]) and out["recall"] == 0.0 and math.isnan(out["f1"])
