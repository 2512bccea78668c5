"""Training data pipeline: a Dataset over train records, a deterministic (seeded, shardable,
resumable) epoch order, and the batch collate.

Determinism: the epoch order is a permutation drawn from a ``torch.Generator`` seeded with
``(seed, epoch)``; every per-image random choice (scale, flip) comes from a numpy generator
seeded with ``(seed, epoch, record index)``. Nothing depends on the global RNGs, on the number
of workers or on where a run was resumed, so ``EpochBatchSampler.set_epoch(epoch,
start_batch=k)`` reproduces the rest of an interrupted epoch exactly.

Batch (what ``Method.training_step`` receives)
-----------------------------------------------
images         float32 [B, 3, H, W] ImageNet-normalised, zero-padded to multiples of 32
image_sizes    list[(h, w)] unpadded sizes
targets        list of dicts per image: "boxes" float32 [N_i, 4] input pixels,
               "slots" int64 [N_i] global training-slot index, optional "masks" uint8 [h, w]
               label map (0 background, k+1 = box k) in input pixels
image_indices  int64 [B] record index in the train split
scales         float64 [B] resize factor per image (input pixels = original * scale)
flipped        bool [B]
padding        bool [B] True for an image the distributed sampler repeated only to give every
               rank the same number of batches (its features must not update memory banks)

Images travel as uint8 (``raw_images=True``, what ``build_train_loader`` uses): the dataset
returns the decoded image [H0, W0, 3] uint8 with the resize target and flip, the collate keeps
the list as ``raw_images`` (pinned by the DataLoader when the trainer runs on CUDA), and
:func:`finish_images` makes ``images`` on the training device: float, /255, bilinear resize,
ImageNet normalisation, flip, zero padding — the same operations in the same order as the
float path (``raw_images=False``), so the same numbers on the CPU, with a quarter of the
bytes to copy and the arithmetic on the GPU.
"""

from __future__ import annotations

import math
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from personsearch.comm import seeded_generator
from personsearch.data.records import SceneRecord
from personsearch.data.transforms import (
    batch_images,
    hflip_boxes,
    hflip_image,
    load_image,
    normalize,
    resize_mask,
    resize_scale,
    resize_tensor,
    resized_size,
    to_float_tensor,
)
from personsearch.errors import DatasetError

MaskLoader = Callable[[SceneRecord], "np.ndarray | None"]


def epoch_permutation(num_samples: int, seed: int, epoch: int) -> torch.Tensor:
    """The epoch's sample order: a permutation from a generator seeded with (seed, epoch)."""
    generator = seeded_generator(seed, epoch)
    return torch.randperm(num_samples, generator=generator)


class EpochBatchSampler(Sampler):
    """Yields batches of ``(record index, epoch, is_padding)`` for one rank.

    The epoch order (:func:`epoch_permutation`, or ``arange`` with ``shuffle=False``) is padded
    by wrapping around to a multiple of ``world_size`` and dealt round-robin: rank r gets
    positions r, r + world_size, ... — every rank has the same number of batches.
    ``set_epoch(epoch, start_batch)`` selects the epoch and skips its first ``start_batch``
    batches (resume mid-epoch).
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
    ) -> None:
        if num_samples <= 0:
            raise ValueError("the training split has no images")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch = epoch
        self.start_batch = start_batch

    @property
    def samples_per_rank(self) -> int:
        return math.ceil(self.num_samples / self.world_size)

    def batches_per_epoch(self) -> int:
        return math.ceil(self.samples_per_rank / self.batch_size)

    def rank_order_with_padding(self, epoch: int) -> list[tuple[int, bool]]:
        """This rank's (record index, is_padding) in epoch order; is_padding marks the
        wrapped-around repeats that fill the order up to a multiple of world_size."""
        if self.shuffle:
            order = epoch_permutation(self.num_samples, self.seed, epoch).tolist()
        else:
            order = list(range(self.num_samples))
        total = self.samples_per_rank * self.world_size
        padded = [(order[p % len(order)], p >= len(order)) for p in range(total)]
        return padded[self.rank :: self.world_size]

    def rank_order(self, epoch: int) -> list[int]:
        return [index for index, _ in self.rank_order_with_padding(epoch)]

    def __iter__(self) -> Iterator[list[tuple[int, int, bool]]]:
        order = self.rank_order_with_padding(self.epoch)
        for b in range(self.start_batch, self.batches_per_epoch()):
            chunk = order[b * self.batch_size : (b + 1) * self.batch_size]
            yield [(index, self.epoch, is_padding) for index, is_padding in chunk]

    def __len__(self) -> int:
        return max(0, self.batches_per_epoch() - self.start_batch)


class TrainDataset(Dataset):
    """Train records -> (image tensor, target, info). Index with ``(record index, epoch)``.

    Args:
        records: train-split records (person ids are not used).
        slot_offsets: global slot index of each record's first box (from
            ``personsearch.data.splits.slot_offsets(records)``; a trailing total is allowed).
        sizes: resize choices as (max_size, min_size); one is drawn per image when several.
        flip_prob: probability of a horizontal flip.
        seed: seeds the per-image random choices together with the epoch and record index.
        mask_loader: optional ``record -> uint8 label map [H, W] | None``; when given every
            target carries "masks", and a missing mask (None) is a DatasetError.
    """

    def __init__(
        self,
        records: Sequence[SceneRecord],
        slot_offsets: Sequence[int],
        sizes: Sequence[tuple[int, int]] = ((1500, 900),),
        flip_prob: float = 0.5,
        seed: int = 0,
        mask_loader: MaskLoader | None = None,
        raw_images: bool = False,
    ) -> None:
        if len(slot_offsets) < len(records):
            raise ValueError(
                f"{len(slot_offsets)} slot offsets for {len(records)} records"
            )
        if not sizes:
            raise ValueError("at least one (max_size, min_size) is needed")
        self.records = list(records)
        self.slot_offsets = [int(o) for o in slot_offsets[: len(records)]]
        self.sizes = [(int(a), int(b)) for a, b in sizes]
        self.flip_prob = float(flip_prob)
        self.seed = int(seed)
        self.mask_loader = mask_loader
        self.raw_images = bool(raw_images)

    def __len__(self) -> int:
        return len(self.records)

    def choices(self, index: int, epoch: int) -> tuple[tuple[int, int], bool]:
        """(max_size, min_size) and flip for this record in this epoch."""
        rng = np.random.default_rng([self.seed, epoch, index])
        size = self.sizes[int(rng.integers(len(self.sizes)))] if len(self.sizes) > 1 else self.sizes[0]
        flip = bool(rng.random() < self.flip_prob)
        return size, flip

    def __getitem__(self, key: tuple[int, ...]) -> tuple[torch.Tensor, dict, dict]:
        """``(record index, epoch)`` or ``(record index, epoch, is_padding)``. Returns (image,
        target, info): the image is float [3, h, w] normalised, or with ``raw_images`` the
        decoded uint8 [H0, W0, 3] with ``info["size"] = (h, w)`` (see module docstring)."""
        index, epoch = key[0], key[1]
        is_padding = bool(key[2]) if len(key) > 2 else False
        record = self.records[index]
        image = load_image(record.image_path)
        height, width = image.shape[:2]
        if (width, height) != (record.width, record.height):
            raise DatasetError(
                record.image_path,
                f"image is {width}x{height} but the annotation says {record.width}x{record.height}",
            )
        (max_size, min_size), flip = self.choices(index, epoch)
        scale = resize_scale(height, width, min_size, max_size)
        size = resized_size(height, width, scale)
        tensor = None if self.raw_images else normalize(resize_tensor(to_float_tensor(image), size))
        boxes = torch.from_numpy(np.array(record.boxes, dtype=np.float32)) * scale
        slots = self.slot_offsets[index] + torch.arange(record.num_boxes, dtype=torch.int64)
        target: dict[str, torch.Tensor] = {"boxes": boxes, "slots": slots}
        if self.mask_loader is not None:
            mask = self.mask_loader(record)
            if mask is None:
                raise DatasetError(
                    record.image_path,
                    "no person mask for this image (data.masks is on: every training image "
                    "needs <root>/masks/<image stem>.png; `personsearch data masks` writes "
                    "them, or train with method.params.use_masks=false)",
                )
            if mask.shape != (height, width):
                raise DatasetError(
                    record.image_path,
                    f"person mask is {mask.shape[1]}x{mask.shape[0]}, image is {width}x{height}",
                )
            target["masks"] = resize_mask(mask, size)
        if flip:
            if tensor is not None:
                tensor = hflip_image(tensor)
            target["boxes"] = hflip_boxes(target["boxes"], float(size[1]))
            if "masks" in target:
                target["masks"] = hflip_image(target["masks"])
        info = {"image_index": index, "scale": scale, "flipped": flip, "padding": is_padding,
                "size": size}
        if tensor is None:
            return torch.from_numpy(np.ascontiguousarray(image)), target, info
        return tensor, target, info


def collate_batch(samples: Sequence[tuple[torch.Tensor, dict, dict]]) -> dict:
    """List of dataset items -> batch dict (see the module docstring). uint8 items (raw
    images) stay a list under ``raw_images`` for :func:`finish_images`."""
    batch: dict = {
        "targets": [s[1] for s in samples],
        "image_indices": torch.tensor([s[2]["image_index"] for s in samples], dtype=torch.int64),
        "scales": torch.tensor([s[2]["scale"] for s in samples], dtype=torch.float64),
        "flipped": torch.tensor([s[2]["flipped"] for s in samples], dtype=torch.bool),
        "padding": torch.tensor([s[2].get("padding", False) for s in samples], dtype=torch.bool),
    }
    if samples and samples[0][0].dtype == torch.uint8:
        batch["raw_images"] = [s[0] for s in samples]
        batch["image_sizes"] = [tuple(int(v) for v in s[2]["size"]) for s in samples]
    else:
        batch["images"], batch["image_sizes"] = batch_images([s[0] for s in samples], size_divisible=32)
    return batch


def finish_images(batch: dict) -> dict:
    """Raw uint8 images (already on the training device) -> ``images`` float [B, 3, H, W]
    normalised and padded, where they are: float, /255, resize to ``image_sizes``, normalise,
    flip, pad (the float path's operations in its order). A batch with ``images`` is returned
    as it is."""
    if "raw_images" not in batch:
        return batch
    batch = dict(batch)
    raw_images = batch.pop("raw_images")
    flips = batch["flipped"].tolist()  # one host read per batch (B flags)
    tensors = []
    for raw, size, flip in zip(raw_images, batch["image_sizes"], flips):
        tensor = normalize(resize_tensor(raw.permute(2, 0, 1).float() / 255.0, tuple(size)))
        tensors.append(hflip_image(tensor) if flip else tensor)
    batch["images"], batch["image_sizes"] = batch_images(tensors, size_divisible=32)
    return batch


class TrainLoader:
    """The epoch-by-epoch batch source the trainer consumes.

    ``batches(epoch, start_batch)`` iterates over one epoch's batches for this rank, skipping
    the first ``start_batch`` (they were consumed before a resume); ``len(loader)`` is the
    number of batches per epoch.
    """

    def __init__(
        self,
        dataset: TrainDataset,
        batch_size: int,
        seed: int,
        num_workers: int = 0,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
        pin_memory: bool = False,
    ) -> None:
        self.dataset = dataset
        self.sampler = EpochBatchSampler(
            len(dataset), batch_size, seed, rank=rank, world_size=world_size, shuffle=shuffle
        )
        self.num_workers = num_workers
        self.pin_memory = bool(pin_memory)
        self._loader: DataLoader | None = None

    @property
    def batch_size(self) -> int:
        """Images per batch on this process (the global batch is this times world size)."""
        return self.sampler.batch_size

    def __len__(self) -> int:
        return self.sampler.batches_per_epoch()

    def use_device(self, device: torch.device) -> None:
        """Pin host batches when training on CUDA (so ``non_blocking`` copies are
        asynchronous); called by the trainer."""
        pin = device.type == "cuda"
        if pin != self.pin_memory:
            self.pin_memory = pin
            self._loader = None

    def batches(self, epoch: int, start_batch: int = 0) -> Iterator[dict]:
        self.sampler.set_epoch(epoch, start_batch)
        if self._loader is None:
            # Built once: with workers > 0 they persist across epochs (no re-spawn and
            # re-import per epoch). The sampler is read when each epoch's iterator starts.
            # A private generator: creating the iterator must not draw from the global torch
            # RNG (it would shift the model's random stream and break exact resume); the
            # batch order does not depend on it.
            generator = torch.Generator()
            generator.manual_seed(0)
            self._loader = DataLoader(
                self.dataset,
                batch_sampler=self.sampler,
                collate_fn=collate_batch,
                num_workers=self.num_workers,
                generator=generator,
                persistent_workers=self.num_workers > 0,
                pin_memory=self.pin_memory,
            )
        yield from self._loader


def build_train_loader(
    records: Sequence[SceneRecord],
    slot_offsets: Sequence[int],
    *,
    sizes: Sequence[tuple[int, int]],
    flip: bool,
    batch_size: int,
    seed: int,
    num_workers: int = 0,
    rank: int = 0,
    world_size: int = 1,
    mask_loader: MaskLoader | None = None,
) -> TrainLoader:
    dataset = TrainDataset(
        records,
        slot_offsets,
        sizes=sizes,
        flip_prob=0.5 if flip else 0.0,
        seed=seed,
        mask_loader=mask_loader,
        raw_images=True,
    )
    return TrainLoader(
        dataset, batch_size, seed, num_workers=num_workers, rank=rank, world_size=world_size
    )
