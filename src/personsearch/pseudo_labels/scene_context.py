"""Scene context: persons of one image cannot share a pseudo label (CGPS §2.4 step 4).

Shape glossary
--------------
N  number of samples (memory slots)
D  feature dimension
``labels``       int64 [N]   any labeling (outliers already unique labels)
``features``     float [N, D] unit rows
``slot_images``  int64 [N]   image index of every sample

For every image and every label holding >= 2 of that image's persons, the member with the
largest dot product with the label's centroid (mean of all member features over the whole
labeling, not normalised) keeps the label; ties go to the lowest sample index. Every other
such member gets a new singleton label, numbered after the existing labels in sample order.
"""

from __future__ import annotations

import numpy as np
import torch

from personsearch.errors import PersonSearchError

__all__ = ["split_same_image", "label_centroids"]


def label_centroids(labels: np.ndarray, features: np.ndarray) -> np.ndarray:
    """float64 [L, D] mean feature of every label value 0..L-1 (L = labels.max() + 1)."""
    num_labels = int(labels.max()) + 1
    sums = torch.zeros(num_labels, features.shape[1], dtype=torch.float64)
    sums.index_add_(0, torch.from_numpy(labels), torch.from_numpy(np.asarray(features, dtype=np.float64)))
    counts = np.bincount(labels, minlength=num_labels).astype(np.float64)
    counts[counts == 0] = 1.0
    return sums.numpy() / counts[:, None]


def split_same_image(labels: np.ndarray, features: np.ndarray, slot_images: np.ndarray) -> np.ndarray:
    """Return a new int64 labeling where no two samples of one image share a label."""
    labels = np.asarray(labels, dtype=np.int64)
    images = np.asarray(slot_images, dtype=np.int64).reshape(-1)
    if labels.ndim != 1 or images.shape != labels.shape or features.shape[0] != labels.size:
        raise PersonSearchError(
            f"scene context: labels {labels.shape}, slot_images {images.shape} and features "
            f"{features.shape} must describe the same N samples"
        )
    if labels.size == 0:
        return labels.copy()
    if labels.min() < 0:
        raise PersonSearchError("scene context: labels must be non-negative (outliers already unique)")
    centroids = label_centroids(labels, features)
    affinity = np.einsum("nd,nd->n", np.asarray(features, dtype=np.float64), centroids[labels])
    index = np.arange(labels.size)
    # group by (label, image); inside a group the best affinity first, then lowest index
    order = np.lexsort((index, -affinity, images, labels))
    sorted_labels, sorted_images = labels[order], images[order]
    starts_group = np.ones(labels.size, dtype=bool)
    starts_group[1:] = (sorted_labels[1:] != sorted_labels[:-1]) | (sorted_images[1:] != sorted_images[:-1])
    losers = np.sort(order[~starts_group])
    result = labels.copy()
    result[losers] = int(labels.max()) + 1 + np.arange(losers.size)
    return result
