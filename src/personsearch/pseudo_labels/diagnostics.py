"""Pseudo-label quality against true identities (diagnostics only, never used for training).

Shape glossary
--------------
N  number of samples (memory slots)
``labels``    int [N] pseudo labels (any non-negative values)
``true_ids``  int [N] true person ids, < 0 = unknown (unlabeled box), excluded

Definition (pairwise, over unordered pairs {i, j}, i != j, of boxes whose true id is known):
    TP        = #pairs with the same pseudo label and the same true id
    predicted = #pairs with the same pseudo label
    actual    = #pairs with the same true id
    precision = TP / predicted,  recall = TP / actual,  f1 = 2PR / (P + R)
Counted from the (label, id) contingency table: TP = Σ_cells C(n, 2), predicted = Σ_labels
C(a, 2), actual = Σ_ids C(b, 2), so no N² loop. A ratio with a zero denominator is NaN
(nothing to measure), and f1 is NaN when precision or recall is NaN, 0 when both are 0.
"""

from __future__ import annotations

import numpy as np

from personsearch.errors import PersonSearchError

__all__ = ["pseudo_label_precision_recall"]


def _pairs(counts: np.ndarray) -> int:
    counts = counts.astype(np.int64)
    return int((counts * (counts - 1) // 2).sum())


def pseudo_label_precision_recall(labels: np.ndarray, true_ids: np.ndarray) -> dict[str, float]:
    """Pairwise precision / recall / F1 of a labeling (see module docstring).

    Returns dict(precision, recall, f1, true_positive_pairs, predicted_pairs, actual_pairs,
    num_known, num_pseudo_classes) — the last counted over known boxes.
    """
    labels = np.asarray(labels).reshape(-1)
    true_ids = np.asarray(true_ids).reshape(-1)
    if labels.shape != true_ids.shape:
        raise PersonSearchError(
            f"pseudo-label diagnostics: {labels.size} labels but {true_ids.size} true ids"
        )
    known = true_ids >= 0
    labels = labels[known].astype(np.int64)
    ids = true_ids[known].astype(np.int64)
    _, label_codes, label_counts = np.unique(labels, return_inverse=True, return_counts=True)
    _, id_codes, id_counts = np.unique(ids, return_inverse=True, return_counts=True)
    _, cell_counts = np.unique(label_codes.reshape(-1) * (id_counts.size + 1) + id_codes.reshape(-1),
                               return_counts=True)
    true_positive = _pairs(cell_counts)
    predicted = _pairs(label_counts)
    actual = _pairs(id_counts)
    precision = true_positive / predicted if predicted else float("nan")
    recall = true_positive / actual if actual else float("nan")
    if np.isnan(precision) or np.isnan(recall):
        f1 = float("nan")
    elif precision + recall == 0:
        f1 = 0.0
    else:
        f1 = 2 * precision * recall / (precision + recall)
    return {
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "true_positive_pairs": float(true_positive),
        "predicted_pairs": float(predicted),
        "actual_pairs": float(actual),
        "num_known": float(int(known.sum())),
        "num_pseudo_classes": float(label_counts.size),
    }
