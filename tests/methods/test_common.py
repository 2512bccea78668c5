"""methods/common.py: slot layout, true-id concatenation, the DML pseudo-label precision/recall
diagnostic (hand-computed on 5 slots in 3 images) and GT-embedding extraction order."""

import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from personsearch.data.records import SceneRecord
from personsearch.methods.common import (concat_true_ids, extract_gt_embeddings,
                                         multilabel_precision_recall, num_slots,
                                         refresh_cluster_labels, roi_labels, slot_images)
from personsearch.methods.context import ExtractionSizes


def _record(name, boxes, path="unused.png", width=30, height=20):
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    return SceneRecord(image_path=str(path), image_name=name, width=width, height=height,
                       boxes=boxes, person_ids=np.full(len(boxes), -1))


def test_slot_images_repeats_record_index_per_box_and_skips_empty_records():
    records = [_record("a", [[0, 0, 1, 1], [1, 1, 2, 2]]), _record("b", []),
               _record("c", [[0, 0, 3, 3]]), _record("d", [[0, 0, 1, 1]] * 3)]
    assert slot_images(records).tolist() == [0, 0, 2, 3, 3, 3]
    assert slot_images(records).dtype == torch.int64
    assert num_slots(records) == 6


def test_slot_images_of_no_record_is_empty():
    assert slot_images([]).tolist() == []


def test_concat_true_ids_in_slot_order():
    ids = [np.array([3, -1]), np.array([], dtype=np.int64), np.array([[7]]), np.array([3, 5])]
    out = concat_true_ids(ids)
    assert out.dtype == np.int64
    assert out.tolist() == [3, -1, 7, 3, 5]
    assert concat_true_ids([]).shape == (0,)


def _unit(degrees):
    angle = math.radians(degrees)
    return [math.cos(angle), math.sin(angle)]


# 5 slots in 3 images; 2-D unit memory so every similarity is cos(angle difference).
#   slot  image  true id  angle
#    0      0      A(0)     0°
#    1      0      B(1)    12°
#    2      1      A(0)     5°
#    3      1      B(1)    90°
#    4      2     -1        3°   (unlabeled: never a row, never counted as a prediction)
MEMORY = torch.tensor([_unit(a) for a in (0, 12, 5, 90, 3)], dtype=torch.float32)
SLOT_IMAGES = torch.tensor([0, 0, 1, 1, 2])
TRUE_IDS = np.array([0, 1, 0, 1, -1])


def test_multilabel_precision_recall_hand_computed():
    # threshold 0.9 (~25.8°). Row 0: image 0 -> own slot (slot 1 excluded, same image), image 1
    # -> slot 2 (A, correct), image 2 -> slot 4 (unlabeled, dropped). Row 1: slot 0 same image,
    # slot 2 (A vs B: wrong), slot 4 dropped. Row 2: image 0 candidates 0 (cos 5°) and 1
    # (cos 7°) -> max = slot 0 (correct). Row 3: nothing within 25.8°.
    # predicted 3, correct 2; same-id ordered pairs: (0,2),(2,0),(1,3),(3,1) = 4.
    out = multilabel_precision_recall(MEMORY, SLOT_IMAGES, 0.9, TRUE_IDS)
    assert out["precision"] == pytest.approx(2 / 3)
    assert out["recall"] == pytest.approx(2 / 4)
    assert out["f1"] == pytest.approx(4 / 7)


def test_multilabel_precision_recall_chunking_does_not_change_the_result():
    whole = multilabel_precision_recall(MEMORY, SLOT_IMAGES, 0.9, TRUE_IDS)
    assert multilabel_precision_recall(MEMORY, SLOT_IMAGES, 0.9, TRUE_IDS, chunk=1) == whole
    assert multilabel_precision_recall(MEMORY, SLOT_IMAGES, 0.9, TRUE_IDS, chunk=3) == whole


def test_multilabel_precision_recall_default_chunk_bounds_the_block(monkeypatch):
    import personsearch.methods.common as common
    from personsearch import pseudo_labels

    whole = multilabel_precision_recall(MEMORY, SLOT_IMAGES, 0.9, TRUE_IDS)
    rows_seen = []
    real = pseudo_labels.multilabel_targets

    def spy(sim, *args, **kwargs):
        rows_seen.append(sim.shape[0])
        return real(sim, *args, **kwargs)

    monkeypatch.setattr(pseudo_labels, "multilabel_targets", spy)
    monkeypatch.setattr(common, "DIAGNOSTIC_BLOCK_ELEMENTS", 10)  # N = 5 -> 2 rows per block
    assert multilabel_precision_recall(MEMORY, SLOT_IMAGES, 0.9, TRUE_IDS) == whole
    assert rows_seen and max(rows_seen) == 2


def test_multilabel_same_image_exclusion_keeps_only_the_best_slot_per_image():
    # Slots 1 and 2 (both id A) in one image; row 0 sees both above the threshold but keeps
    # only the more similar one (slot 1, cos 2°). Rows 1 and 2 exclude each other (same image)
    # and keep slot 0. Rows: 0 -> {1}; 1 -> {0}; 2 -> {0}: all correct, precision 1. Same-id
    # ordered pairs: 6 (including (1,2),(2,1) in one image, which the exclusion can never
    # predict) -> recall 3/6.
    memory = torch.tensor([_unit(a) for a in (0, 2, 3)], dtype=torch.float32)
    out = multilabel_precision_recall(memory, torch.tensor([0, 1, 1]), 0.9, np.array([0, 0, 0]))
    assert out["precision"] == pytest.approx(1.0)
    assert out["recall"] == pytest.approx(0.5)


def test_multilabel_unlabeled_slots_are_neither_rows_nor_predictions():
    # The same memory with every id unknown except slots 0 and 2 (the only same-id pair).
    true = np.array([0, -1, 0, -1, -1])
    out = multilabel_precision_recall(MEMORY, SLOT_IMAGES, 0.9, true)
    # rows 0 and 2 predict each other only (slots 1 and 4 unlabeled): 2 predicted, 2 correct
    assert out == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    none = multilabel_precision_recall(MEMORY, SLOT_IMAGES, 0.9, np.full(5, -1))
    assert none == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_multilabel_threshold_above_every_similarity_predicts_nothing():
    out = multilabel_precision_recall(MEMORY, SLOT_IMAGES, 1.5, TRUE_IDS)
    assert out == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


class _BoxEchoModel(nn.Module):
    """embed_boxes returns, per box, (x1, y1, x2, y2, image height, image width): the rows
    identify the box and the resize the model saw."""

    embedding_dim = 6

    def __init__(self):
        super().__init__()
        self.calls = 0

    def embed_boxes(self, images, image_sizes, boxes_list):
        self.calls += 1
        (height, width), = image_sizes
        (boxes,) = boxes_list
        size = torch.tensor([float(height), float(width)]).expand(len(boxes), 2)
        return [torch.cat([boxes, size], dim=1).double()]


def test_extract_gt_embeddings_in_slot_order_with_scaled_boxes(tmp_path):
    paths = []
    for index in range(3):
        path = tmp_path / f"im{index}.png"
        Image.fromarray(np.full((20, 30, 3), 40 * index, np.uint8)).save(path)
        paths.append(path)
    records = [_record("0", [[1, 2, 3, 4], [5, 6, 7, 8]], paths[0]),
               _record("1", [], paths[1]),
               _record("2", [[9, 10, 11, 12]], paths[2])]
    model = _BoxEchoModel().train()
    # 20x30 image, min 40 / max 60 -> scale 2 -> 40x60
    out = extract_gt_embeddings(model, records, ExtractionSizes(40, 60), torch.device("cpu"),
                                progress=False)
    assert out.dtype == torch.float32
    expected = torch.tensor([[2, 4, 6, 8, 40, 60], [10, 12, 14, 16, 40, 60],
                             [18, 20, 22, 24, 40, 60]], dtype=torch.float32)
    assert torch.equal(out, expected)
    assert model.calls == 2  # the record without boxes is not run
    assert not model.training  # extraction runs in eval mode


def test_extract_gt_embeddings_without_boxes_is_empty_with_the_model_dimension(tmp_path):
    out = extract_gt_embeddings(_BoxEchoModel(), [_record("0", [])], ExtractionSizes(),
                                torch.device("cpu"), progress=False)
    assert out.shape == (0, 6)


def test_roi_labels_map_slots_through_labels_and_mark_background():
    slots = torch.tensor([2, -1, 0, 1, -1])
    slot_labels = torch.tensor([7, 7, 3])
    assert roi_labels(slots, slot_labels).tolist() == [3, -2, 7, 7, -2]
    # no clustering: every box is its own class
    assert roi_labels(slots, None).tolist() == [2, -2, 0, 1, -2]


class _FakeLabeler:
    """Labels slot i with (number of the slot's image) and counts its calls."""

    def __init__(self) -> None:
        self.indep_thres = 0.5
        self.calls = []

    def __call__(self, features, slot_image_index):
        from types import SimpleNamespace

        self.calls.append((features.clone(), slot_image_index.clone()))
        self.indep_thres = 0.25
        return SimpleNamespace(labels=slot_image_index.numpy() * 10,
                               stats={"clusters": 2, "outliers": 0})


class _FakeMemory:
    def __init__(self) -> None:
        self.num_slots = 3
        self.slot_images = torch.tensor([0, 0, 1])
        self.labels = None

    def set_labels(self, labels):
        self.labels = labels


def test_refresh_cluster_labels_clusters_the_given_features_once():
    from personsearch.comm import LOCAL

    labeler, memory = _FakeLabeler(), _FakeMemory()
    features = torch.arange(6, dtype=torch.float32).view(3, 2)
    stats = refresh_cluster_labels(labeler, memory, lambda: features, LOCAL)
    assert stats == {"pseudo/clusters": 2.0, "pseudo/outliers": 0.0}
    assert memory.labels.tolist() == [0, 0, 10] and memory.labels.dtype == torch.int64
    assert labeler.indep_thres == 0.25
    ((seen, images),) = labeler.calls
    assert torch.equal(seen, features) and images.tolist() == [0, 0, 1]
