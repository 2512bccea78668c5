"""Training data pipeline: targets, slots, scales, flips, deterministic/sharded/resumable order."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from personsearch.data.loader import (
    EpochBatchSampler,
    TrainDataset,
    TrainLoader,
    collate_batch,
    epoch_permutation,
)
from personsearch.data.records import SceneRecord
from personsearch.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from personsearch.errors import DatasetError


def write_records(root, sizes):
    records = []
    for i, (h, w) in enumerate(sizes):
        pixels = np.zeros((h, w, 3), np.uint8)
        pixels[:, : w // 2] = 255  # left half white: a flip is visible
        path = root / f"im{i}.png"
        Image.fromarray(pixels).save(path)
        boxes = np.array([[1, 2, 5, 9], [4, 1, 8, 6]][: 1 + i % 2], np.float32)
        records.append(SceneRecord(str(path), path.name, w, h, boxes, -np.ones(len(boxes)), 0, i))
    return records


def offsets(records):
    return np.concatenate([[0], np.cumsum([r.num_boxes for r in records])])


def test_target_boxes_slots_and_scale(tmp_path):
    records = write_records(tmp_path, [(10, 20), (20, 10), (10, 10)])
    dataset = TrainDataset(records, offsets(records), sizes=[(40, 20)], flip_prob=0.0)
    tensor, target, info = dataset[(1, 0)]
    # 20x10 image, min 20 / short 10 = 2, max 40 / long 20 = 2 -> 40x20
    assert tensor.shape == (3, 40, 20) and info["scale"] == 2.0 and not info["flipped"]
    assert torch.equal(target["boxes"], torch.tensor(records[1].boxes) * 2)
    # slots: record 0 has 1 box (slot 0), record 1 has 2 boxes (slots 1, 2)
    assert target["slots"].tolist() == [1, 2] and target["slots"].dtype == torch.int64
    assert dataset[(2, 0)][1]["slots"].tolist() == [3]


def test_flip_moves_boxes_and_pixels(tmp_path):
    records = write_records(tmp_path, [(10, 20)])
    dataset = TrainDataset(records, offsets(records), sizes=[(20, 10)], flip_prob=1.0)
    tensor, target, info = dataset[(0, 3)]
    assert info["flipped"]
    assert torch.equal(target["boxes"], torch.tensor([[15.0, 2.0, 19.0, 9.0]]))
    white = (1 - IMAGENET_MEAN[0]) / IMAGENET_STD[0]
    assert torch.allclose(tensor[0, :, 10:], torch.full((10, 10), white))  # now on the right


def test_multi_scale_choice_is_seeded_per_image_and_epoch(tmp_path):
    records = write_records(tmp_path, [(10, 20)] * 4)
    sizes = [(40, 20), (60, 30), (80, 40)]
    a = TrainDataset(records, offsets(records), sizes=sizes, seed=3)
    b = TrainDataset(records, offsets(records), sizes=sizes, seed=3)
    choices = [a.choices(i, e) for i in range(4) for e in range(5)]
    assert choices == [b.choices(i, e) for i in range(4) for e in range(5)]
    assert {c[0] for c in choices} == set(sizes)  # every scale gets used
    assert {c[1] for c in choices} == {True, False}
    for i, e in [(0, 0), (1, 2)]:
        (max_size, min_size), _ = a.choices(i, e)
        tensor, _, info = a[(i, e)]
        assert info["scale"] == pytest.approx(min(min_size / 10, max_size / 20))
        assert tensor.shape[1:] == (round(10 * info["scale"]), round(20 * info["scale"]))


def test_masks_follow_resize_and_flip(tmp_path):
    records = write_records(tmp_path, [(10, 20)])
    mask = np.zeros((10, 20), np.uint8)
    mask[2:9, 1:5] = 1
    dataset = TrainDataset(records, offsets(records), sizes=[(40, 20)], flip_prob=1.0,
                           mask_loader=lambda record: mask)
    _, target, _ = dataset[(0, 0)]
    expected = torch.zeros(20, 40, dtype=torch.uint8)
    expected[4:18, 2:10] = 1
    assert torch.equal(target["masks"], expected.flip(-1))
    missing = TrainDataset(records, offsets(records), mask_loader=lambda record: None)
    with pytest.raises(DatasetError, match="im0.png.*no person mask"):
        missing[(0, 0)]


def test_size_mismatch_names_the_file(tmp_path):
    records = write_records(tmp_path, [(10, 20)])
    wrong = SceneRecord(records[0].image_path, "im0.png", 30, 10, records[0].boxes,
                        records[0].person_ids)
    with pytest.raises(DatasetError, match="im0.png.*20x10.*30x10"):
        TrainDataset([wrong], [0])[(0, 0)]


def test_epoch_order_is_seeded_and_changes_per_epoch():
    assert torch.equal(epoch_permutation(10, 0, 1), epoch_permutation(10, 0, 1))
    assert not torch.equal(epoch_permutation(10, 0, 1), epoch_permutation(10, 0, 2))
    assert not torch.equal(epoch_permutation(10, 0, 1), epoch_permutation(10, 1, 1))
    assert sorted(epoch_permutation(10, 0, 1).tolist()) == list(range(10))


def test_sharding_covers_every_sample_with_equal_batches():
    full = EpochBatchSampler(7, batch_size=2, seed=5)
    shards = [EpochBatchSampler(7, batch_size=2, seed=5, rank=r, world_size=2) for r in range(2)]
    for sampler in [full, *shards]:
        sampler.set_epoch(4)
    seen = [i for s in shards for batch in s for i, *_ in batch]
    assert len(list(shards[0])) == len(list(shards[1])) == 2  # 4 samples each, batch 2
    assert set(seen) == set(range(7)) and len(seen) == 8  # one wrapped-around duplicate
    order = [i for batch in full for i, *_ in batch]
    assert order == epoch_permutation(7, 5, 4).tolist()
    assert [i for batch in shards[0] for i, *_ in batch] == order[0::2]
    # the wrapped-around duplicate (position 7 of the padded order = order[0]) is marked
    flags = [(i, pad) for s in shards for batch in s for i, _, pad in batch]
    assert [entry for entry in flags if entry[1]] == [(order[0], True)]
    assert not any(pad for batch in full for _, _, pad in batch)


def test_start_batch_skips_consumed_batches():
    sampler = EpochBatchSampler(9, batch_size=2, seed=1)
    sampler.set_epoch(2)
    all_batches = list(sampler)
    sampler.set_epoch(2, start_batch=3)
    assert list(sampler) == all_batches[3:] and len(sampler) == 2


def test_loader_batches_are_collated_and_padded(tmp_path):
    records = write_records(tmp_path, [(10, 20), (20, 10), (10, 10)])
    dataset = TrainDataset(records, offsets(records), sizes=[(40, 20)], seed=0)
    loader = TrainLoader(dataset, batch_size=2, seed=0)
    batches = list(loader.batches(epoch=0))
    assert len(batches) == len(loader) == 2
    batch = batches[0]
    assert batch["images"].shape[0] == 2 and batch["images"].shape[2] % 32 == 0
    assert batch["images"].shape[3] % 32 == 0
    assert len(batch["targets"]) == 2 and batch["image_indices"].dtype == torch.int64
    order = epoch_permutation(3, 0, 0).tolist()
    assert batch["image_indices"].tolist() == order[:2]
    for (h, w), index in zip(batch["image_sizes"], batch["image_indices"].tolist()):
        assert (h, w) == dataset[(index, 0)][0].shape[1:]
    # resuming at batch 1 gives the same last batch
    again = list(loader.batches(epoch=0, start_batch=1))
    assert len(again) == 1 and torch.equal(again[0]["images"], batches[1]["images"])
    single = collate_batch([dataset[(0, 0)]])
    assert single["scales"].tolist() == [2.0]


def test_worker_processes_give_the_same_batches(tmp_path):
    records = write_records(tmp_path, [(10, 20), (20, 10), (10, 10), (12, 12)])
    dataset = TrainDataset(records, offsets(records), sizes=[(40, 20), (30, 15)], seed=2)
    serial = list(TrainLoader(dataset, batch_size=2, seed=2).batches(epoch=1))
    parallel = list(TrainLoader(dataset, batch_size=2, seed=2, num_workers=2).batches(epoch=1))
    assert len(serial) == len(parallel) == 2
    for a, b in zip(serial, parallel):
        assert torch.equal(a["images"], b["images"]) and torch.equal(a["flipped"], b["flipped"])
        for ta, tb in zip(a["targets"], b["targets"]):
            assert torch.equal(ta["boxes"], tb["boxes"]) and torch.equal(ta["slots"], tb["slots"])


def test_raw_uint8_images_finish_on_the_device_exactly_like_the_float_path(tmp_path):
    from personsearch.data.loader import finish_images

    records = write_records(tmp_path, [(10, 20), (20, 10), (13, 7)])
    kwargs = dict(sizes=[(40, 20), (30, 15)], flip_prob=0.5, seed=4)
    float_set = TrainDataset(records, offsets(records), **kwargs)
    raw_set = TrainDataset(records, offsets(records), raw_images=True, **kwargs)
    for epoch in range(3):
        keys = [(0, epoch), (1, epoch, True), (2, epoch)]
        raw_batch = collate_batch([raw_set[k] for k in keys])
        assert all(image.dtype == torch.uint8 and image.shape[2] == 3 for image in raw_batch["raw_images"])
        assert raw_batch["padding"].tolist() == [False, True, False]
        finished = finish_images(raw_batch)
        expected = collate_batch([float_set[k] for k in keys])
        assert "raw_images" not in finished
        assert finished["image_sizes"] == expected["image_sizes"]
        assert torch.equal(finished["images"], expected["images"])  # bit for bit


def test_loader_pins_memory_for_cuda_and_keeps_workers(tmp_path):
    import warnings

    records = write_records(tmp_path, [(10, 20), (20, 10), (10, 10)])
    dataset = TrainDataset(records, offsets(records), sizes=[(40, 20)], seed=0, raw_images=True)
    loader = TrainLoader(dataset, batch_size=2, seed=0, num_workers=1)
    loader.use_device(torch.device("cpu"))
    assert loader.pin_memory is False
    loader.use_device(torch.device("cuda", 0))
    assert loader.pin_memory is True and loader.batch_size == 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no CUDA here: DataLoader warns that it cannot pin
        first = list(loader.batches(epoch=0))
        data_loader = loader._loader
        second = list(loader.batches(epoch=1))
    assert data_loader is loader._loader  # one DataLoader for every epoch
    assert data_loader.pin_memory is True and data_loader.persistent_workers is True
    assert len(first) == len(second) == 2
    assert first[0]["raw_images"][0].dtype == torch.uint8
    expected = epoch_permutation(3, 0, 1).tolist()[:2]
    assert second[0]["image_indices"].tolist() == expected  # epoch 1 order, not epoch 0's
