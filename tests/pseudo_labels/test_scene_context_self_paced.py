"""Scene-context splitting and the self-paced reliability criterion on constructed cases."""

from __future__ import annotations

import numpy as np
import pytest

from personsearch.errors import PersonSearchError
from personsearch.pseudo_labels.scene_context import split_same_image
from personsearch.pseudo_labels.self_paced import contiguous_labels, reliability, self_paced_labels


def test_scene_context_keeps_member_closest_to_centroid():
    # label 0 = samples 0, 1, 2; samples 0 and 1 are both in image 7.
    # centroid of label 0 = mean((1,0), (0.6,0.8), (0.8,0.6)) = (0.8, 0.4667)
    # dots: sample 0 -> 0.8, sample 1 -> 0.48 + 0.3733 = 0.8533 -> sample 1 keeps the label,
    # sample 0 becomes the new singleton label max + 1 = 2.
    features = np.array([[1.0, 0.0], [0.6, 0.8], [0.8, 0.6], [0.0, 1.0], [0.0, 1.0]])
    labels = np.array([0, 0, 0, 1, 1])
    images = np.array([7, 7, 8, 9, 9])  # label 1: samples 3, 4 share image 9 (tie -> lower index)
    result = split_same_image(labels, features, images)
    np.testing.assert_array_equal(result, [2, 0, 0, 1, 3])


def test_scene_context_three_in_one_image_and_no_change():
    features = np.array([[1.0, 0.0], [0.0, 1.0], [0.7071, 0.7071], [1.0, 0.0]])
    labels = np.array([0, 0, 0, 1])
    # all of label 0 in image 0; centroid (0.569, 0.569): sample 2 is closest
    np.testing.assert_array_equal(split_same_image(labels, features, np.array([0, 0, 0, 0])), [2, 3, 0, 1])
    np.testing.assert_array_equal(split_same_image(labels, features, np.array([0, 1, 2, 0])), labels)
    with pytest.raises(PersonSearchError):
        split_same_image(labels, features, np.array([0, 1]))


def test_reliability_hand_case():
    # normal {0,1,2,3}{4,5}{6}; tight {0,1,2}{3}{4,5}{6}
    normal = np.array([0, 0, 0, 0, 1, 1, 2])
    tight = np.array([0, 0, 0, 1, 2, 2, 3])
    # i in {0,1,2}: |∩| = 3, |∪| = 4 -> 0.25; i = 3: 1/4 -> 0.75; others identical sets -> 0
    np.testing.assert_allclose(reliability(normal, tight), [0.25, 0.25, 0.25, 0.75, 0, 0, 0])


def test_self_paced_ejection_and_threshold():
    normal = np.array([0, 0, 0, 0, 1, 1, 2])
    tight = np.array([0, 0, 0, 1, 2, 2, 3])
    loose = np.array([0, 0, 0, 0, 0, 0, 1])
    # R_comp = [.25 .25 .25 .75 0 0 0] -> cluster_R_comp = [.25, 0, 0]
    # R_indep: i<4: 1 - 4/6 = 1/3; i in {4,5}: 1 - 2/6 = 2/3; i = 6: 0 -> cluster min [1/3, 2/3, 0]
    # indep_thres: clusters with > 1 member -> sorted [1/3, 2/3], n = 2, index min(1, round(1.8)) = 1
    #   -> 2/3. Candidates: sample 3 (0.75 > 0.25); no cluster has R_indep > 2/3.
    # result: cluster {0,1,2} -> 0, cluster {4,5} -> 1, singletons 3 -> 2, 6 -> 3
    result = self_paced_labels(normal, tight, loose)
    np.testing.assert_allclose(result.indep_thres, 2 / 3)
    np.testing.assert_array_equal(result.labels, [0, 0, 0, 2, 1, 1, 3])
    assert (result.num_clusters, result.num_singletons, result.num_ejected) == (2, 2, 1)

    # a stored threshold 0.5 from an earlier epoch: cluster 1 (2/3 > 0.5) -> both 4 and 5 are
    # candidates, but ejection stops while the cluster still has > 1 member: 4 goes, 5 stays.
    result = self_paced_labels(normal, tight, loose, indep_thres=0.5)
    assert result.indep_thres == 0.5
    np.testing.assert_array_equal(result.labels, [0, 0, 0, 1, 2, 3, 4])
    assert (result.num_clusters, result.num_singletons, result.num_ejected) == (1, 4, 2)


def test_self_paced_without_clusters_keeps_threshold_unset():
    labels = np.arange(4)
    result = self_paced_labels(labels, labels, labels)
    assert result.indep_thres is None and result.num_ejected == 0
    np.testing.assert_array_equal(result.labels, labels)


def test_contiguous_labels_orders_clusters_then_singletons():
    labels, clusters, singletons = contiguous_labels(np.array([5, 3, 5, 9, 3, 0]))
    np.testing.assert_array_equal(labels, [1, 0, 1, 2, 0, 3])
    assert (clusters, singletons) == (2, 2)
