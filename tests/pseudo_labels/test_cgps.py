"""CGPSPseudoLabeler end to end on a small synthetic set with a known answer."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from personsearch.errors import CheckpointError, PersonSearchError
from personsearch.pseudo_labels.cgps import CGPSPseudoLabeler
from personsearch.pseudo_labels.diagnostics import pseudo_label_precision_recall


def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    dim, clusters, per_cluster, isolated = 32, 6, 10, 5
    centres = rng.standard_normal((clusters + isolated, dim))
    true_ids = np.concatenate([np.repeat(np.arange(clusters), per_cluster), clusters + np.arange(isolated)])
    features = centres[true_ids] + 0.15 * rng.standard_normal((true_ids.size, dim))
    order = rng.permutation(true_ids.size)
    features, true_ids = features[order], true_ids[order]
    slot_images = np.arange(true_ids.size) + 1000  # one box per image ...
    # ... except two members of the first cluster, put into one image: scene context splits them
    pair = np.flatnonzero(true_ids == 0)[:2]
    slot_images[pair] = 7
    return features.astype(np.float32), true_ids, slot_images, pair


def test_recovers_clusters_and_applies_scene_context():
    features, true_ids, slot_images, pair = _data()
    labeler = CGPSPseudoLabeler(k1=20, k2=6, min_samples=4)
    result = labeler(torch.from_numpy(features), torch.from_numpy(slot_images))
    labels = result.labels
    assert labels.dtype == np.int64 and labels.shape == true_ids.shape
    # contiguous: clusters 0..C-1 (>= 2 members) then singletons
    sizes = np.bincount(labels)
    assert (sizes[: result.num_clusters] >= 2).all() and (sizes[result.num_clusters:] == 1).all()
    assert result.num_outliers == sizes.size - result.num_clusters
    # the pair of one image never shares a label
    assert labels[pair[0]] != labels[pair[1]]
    # the six clusters are recovered pure (isolated points may join a cluster as DBSCAN border
    # points: their query-expanded encoding averages their nearest cluster's rows)
    cluster_ids = np.where(true_ids < 6, true_ids, -1)
    quality = pseudo_label_precision_recall(labels, cluster_ids)
    assert quality["precision"] == 1.0
    # recall: only the scene-context split of `pair` is lost, 1 of the 10 members -> 9 pairs of 45
    # in cluster 0 missing at most: recall >= (6*45 - 9) / (6*45)
    assert quality["recall"] >= (6 * 45 - 9) / (6 * 45)
    assert result.num_clusters == 6
    assert result.stats["normal_scene_splits"] >= 1
    assert labeler.indep_thres is not None and 0.0 <= labeler.indep_thres <= 1.0


def test_threshold_state_round_trip():
    features, _, slot_images, _ = _data(1)
    labeler = CGPSPseudoLabeler(k1=20)
    assert labeler.state_dict()["indep_thres"].numel() == 0
    labeler(features, slot_images)
    buffer = io.BytesIO()
    torch.save(labeler.state_dict(), buffer)
    buffer.seek(0)
    restored = CGPSPseudoLabeler(k1=20)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert restored.indep_thres == labeler.indep_thres
    # the stored threshold is reused, not recomputed, on a later clustering
    restored.indep_thres = -1.0  # every multi-member cluster is now "not independent"
    again = restored(features, slot_images)
    assert restored.indep_thres == -1.0
    assert again.num_clusters == 0  # ejection leaves one member per cluster -> all singletons
    with pytest.raises(CheckpointError):
        restored.load_state_dict({})


def test_bad_arguments():
    with pytest.raises(PersonSearchError):
        CGPSPseudoLabeler(eps=(0.72, 0.70, 0.68))
    with pytest.raises(PersonSearchError):
        CGPSPseudoLabeler()(np.ones((4, 3), dtype=np.float32), np.zeros(5))
