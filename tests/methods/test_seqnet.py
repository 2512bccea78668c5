"""methods/seqnet.py: true ids -> contiguous identity indices, RoI slots -> OIM ids."""

import numpy as np
import pytest
import torch

from personsearch.errors import ConfigError
from personsearch.methods.seqnet import SeqNetMethod


def test_set_identities_maps_true_ids_to_contiguous_indices_keeping_unlabeled():
    method = SeqNetMethod()
    method.set_identities(np.array([40, -1, 7, 40, 1000, -1, 7]))
    # sorted distinct ids 7, 40, 1000 -> 0, 1, 2
    assert method.slot_ids.tolist() == [1, -1, 0, 1, 2, -1, 0]
    assert method.slot_ids.dtype == torch.int64
    assert method.num_ids == 3


def test_set_identities_all_unlabeled_gives_no_identity():
    method = SeqNetMethod()
    method.set_identities(np.array([-1, -1]))
    assert method.slot_ids.tolist() == [-1, -1]
    assert method.num_ids == 0


def test_roi_ids_background_is_minus_two_and_slots_map_through_identities():
    method = SeqNetMethod()
    method.set_identities(np.array([5, -1, 3, 5]))  # -> [1, -1, 0, 1]
    roi_slots = torch.tensor([3, -1, 0, 2, 1, -1, 2])
    assert method._roi_ids(roi_slots).tolist() == [1, -2, 1, 0, -1, -2, 0]
    assert method._roi_ids(torch.zeros(0, dtype=torch.int64)).tolist() == []


def test_setup_refuses_missing_or_mismatched_identities():
    from personsearch.data.records import SceneRecord

    record = SceneRecord("x.png", "x.png", 10, 10, np.zeros((2, 4), np.float32), np.full(2, -1))
    model = torch.nn.Module()
    model.embedding_dim = 4
    with pytest.raises(ConfigError, match="not given"):
        SeqNetMethod().setup(model, [record], torch.device("cpu"))
    method = SeqNetMethod()
    method.set_identities(np.array([1, 2, 3]))
    with pytest.raises(ConfigError, match="3 identities for 2 training boxes"):
        method.setup(model, [record], torch.device("cpu"))


def test_loss_weights_from_params_default_to_seqnet():
    from personsearch.methods.base import build_method

    assert build_method("seqnet").loss_weights == {"loss_det_box": 10.0, "loss_oim": 1.0}
    weighted = build_method("seqnet", oim_weight=0.25, det_box_weight=1.0)
    assert weighted.loss_weights == {"loss_det_box": 1.0, "loss_oim": 0.25}
