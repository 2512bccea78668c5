"""methods/seqnet.py: true ids (from the method's context) -> contiguous identity indices,
RoI slots -> OIM ids."""

import numpy as np
import pytest
import torch

from personsearch.data.records import SceneRecord
from personsearch.errors import ConfigError
from personsearch.methods.context import MethodContext
from personsearch.methods.seqnet import SeqNetMethod, identity_indices


def _model() -> torch.nn.Module:
    model = torch.nn.Module()
    model.embedding_dim = 4
    return model


def _records(*box_counts: int) -> list[SceneRecord]:
    return [SceneRecord(f"{i}.png", f"{i}.png", 10, 10, np.zeros((n, 4), np.float32),
                        np.full(n, -1)) for i, n in enumerate(box_counts)]


def test_identity_indices_maps_true_ids_to_contiguous_indices_keeping_unlabeled():
    slot_ids, count = identity_indices(np.array([40, -1, 7, 40, 1000, -1, 7]))
    # sorted distinct ids 7, 40, 1000 -> 0, 1, 2
    assert slot_ids.tolist() == [1, -1, 0, 1, 2, -1, 0]
    assert slot_ids.dtype == torch.int64
    assert count == 3


def test_identity_indices_all_unlabeled_gives_no_identity():
    slot_ids, count = identity_indices(np.array([-1, -1]))
    assert slot_ids.tolist() == [-1, -1]
    assert count == 0


def test_roi_ids_background_is_minus_two_and_slots_map_through_identities():
    method = SeqNetMethod(queue_size=3)
    method.setup(_model(), MethodContext(_records(3, 1), slot_true_ids=np.array([5, -1, 3, 5])))
    assert method.slot_ids.tolist() == [1, -1, 0, 1] and method.num_ids == 2
    roi_slots = torch.tensor([3, -1, 0, 2, 1, -1, 2])
    assert method._roi_ids(roi_slots).tolist() == [1, -2, 1, 0, -1, -2, 0]
    assert method._roi_ids(torch.zeros(0, dtype=torch.int64)).tolist() == []


def test_setup_refuses_missing_mismatched_or_absent_identities():
    records = _records(2)
    with pytest.raises(ConfigError, match="not given"):
        SeqNetMethod().setup(_model(), MethodContext(records))
    with pytest.raises(ConfigError, match="3 identities for 2 training boxes"):
        SeqNetMethod().setup(_model(), MethodContext(records, slot_true_ids=np.array([1, 2, 3])))
    with pytest.raises(ConfigError, match="no labelled person"):
        SeqNetMethod().setup(_model(), MethodContext(records, slot_true_ids=np.array([-1, -1])))


def test_loss_weights_from_params_default_to_seqnet():
    from personsearch.methods.base import build_method

    assert build_method("seqnet").loss_weights == {"loss_det_box": 10.0, "loss_oim": 1.0}
    weighted = build_method("seqnet", oim_weight=0.25, det_box_weight=1.0)
    assert weighted.loss_weights == {"loss_det_box": 1.0, "loss_oim": 0.25}
