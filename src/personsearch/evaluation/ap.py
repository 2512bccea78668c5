"""Average precision exactly as scikit-learn's ``average_precision_score`` computes it
(docs/evaluation.md §0), vectorised.

Step AP with tie groups: the distinct score values are the thresholds; at each threshold
``TP`` = positives with score >= threshold and ``n`` = items with score >= threshold, precision
``TP / n``, recall ``TP / P`` (P = positives in the list). AP = sum over thresholds of
(recall increase) x precision.

To agree with scikit-learn to the last bit, the terms are laid out as scikit-learn lays them out
(one slot per distinct score, lowest score first, zero where the recall does not change) and
summed with ``np.sum`` over that array, and the result is clamped at 0 like scikit-learn does.
"""

from __future__ import annotations

import numpy as np


def average_precision_of_positives(sorted_scores: np.ndarray,
                                   positive_scores: np.ndarray) -> float:
    """AP of a ranked list given only what AP depends on.

    Args:
        sorted_scores: [L] the scores of every item of the list, sorted ascending.
        positive_scores: [P] the scores of the positive items (a sub-multiset of the list).

    Returns:
        The step AP (0.0 when there is no positive, as scikit-learn returns with a warning).
    """
    num_positive = int(positive_scores.size)
    num_items = int(sorted_scores.size)
    if num_positive == 0 or num_items == 0:
        return 0.0
    # Distinct-value rank (ascending) of every position of the sorted list.
    is_new_value = np.empty(num_items, dtype=bool)
    is_new_value[0] = True
    np.not_equal(sorted_scores[1:], sorted_scores[:-1], out=is_new_value[1:])
    distinct_rank = np.cumsum(is_new_value) - 1
    num_distinct = int(distinct_rank[-1]) + 1

    # One group per distinct positive score, highest first.
    group_values, group_sizes = np.unique(positive_scores, return_counts=True)
    first_position = np.searchsorted(sorted_scores, group_values, side="left")
    ranks = distinct_rank[first_position]
    items_at_or_above = (num_items - first_position).astype(np.float64)
    # positives at or above each group's score (groups ascending -> reverse cumulative sum)
    positives_at_or_above = np.cumsum(group_sizes[::-1])[::-1].astype(np.float64)
    positives_above = np.append(positives_at_or_above[1:], 0.0)

    precision = positives_at_or_above / items_at_or_above
    recall = positives_at_or_above / float(num_positive)
    recall_above = positives_above / float(num_positive)
    terms = np.zeros(num_distinct, dtype=np.float64)
    terms[ranks] = (recall_above - recall) * precision
    return float(max(0.0, -np.sum(terms)))


def average_precision(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """``sklearn.metrics.average_precision_score(y_true, y_score)`` for binary labels.

    Args:
        y_true: [N] truthy = positive.
        y_score: [N] real scores (any float dtype; compared in that dtype).
    """
    labels = np.asarray(y_true).reshape(-1).astype(bool)
    scores = np.asarray(y_score).reshape(-1)
    if labels.shape != scores.shape:
        raise ValueError(f"y_true has {labels.size} items but y_score has {scores.size}")
    return average_precision_of_positives(np.sort(scores), scores[labels])
