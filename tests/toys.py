"""A tiny model, a tiny method and a tiny on-disk train split for the engine and train-CLI tests
(a helper module: the suite's root folder, where it lives, is on ``sys.path`` under pytest).

The real detector and methods are written elsewhere; these stand-ins exercise every part of the
trainer contract: detection-like losses from the model, a memory bank with one row per
training slot updated in ``after_step``, pseudo labels drawn from the torch RNG on rank 0 and
broadcast, random numbers inside the model (dropout) and BatchNorm buffers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from personsearch.comm import unwrap_model
from personsearch.config import SolverConfig, TrainConfig
from personsearch.data.loader import build_train_loader
from personsearch.data.records import SceneRecord
from personsearch.methods.base import Method, StepOutput

EMBED_DIM = 8


def write_split(root: Path, num_images: int = 7, seed: int = 0) -> list[SceneRecord]:
    """Random-pixel PNGs of varying sizes with 1-3 boxes each."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(num_images):
        height, width = (40, 56) if i % 2 == 0 else (48, 36)
        pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        path = root / f"img_{i:02d}.png"
        Image.fromarray(pixels).save(path)
        boxes = []
        for _ in range(1 + i % 3):
            x1, y1 = rng.uniform(0, width / 2), rng.uniform(0, height / 2)
            boxes.append([x1, y1, x1 + rng.uniform(6, width / 2), y1 + rng.uniform(8, height / 2)])
        records.append(
            SceneRecord(str(path), path.name, width, height, np.array(boxes, np.float32),
                        -np.ones(len(boxes), np.int64), 0, i)
        )
    return records


def offsets_of(records: list[SceneRecord]) -> list[int]:
    return [int(x) for x in np.cumsum([0] + [r.num_boxes for r in records])[:-1]]


def make_loader(records, batch_size=2, seed=0, rank=0, world_size=1):
    return build_train_loader(
        records, offsets_of(records), sizes=[(64, 48), (80, 60)], flip=True,
        batch_size=batch_size, seed=seed, rank=rank, world_size=world_size,
    )


class ToyModel(nn.Module):
    """conv -> BN -> dropout; a GT box's embedding = linear(mean feature inside the box)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.drop = nn.Dropout(0.2)
        self.embed = nn.Linear(6, EMBED_DIM)
        self.objectness = nn.Conv2d(6, 1, 1)

    def forward(self, images, image_sizes, targets):
        features = self.drop(F.relu(self.bn(self.conv(images))))
        embeddings, slots = [], []
        for i, target in enumerate(targets):
            for box, slot in zip(target["boxes"], target["slots"]):
                x1, y1 = int(box[0].clamp(min=0)), int(box[1].clamp(min=0))
                x2 = max(x1 + 1, int(box[2].ceil()))
                y2 = max(y1 + 1, int(box[3].ceil()))
                embeddings.append(features[i, :, y1:y2, x1:x2].mean(dim=(1, 2)))
                slots.append(slot)
        gt_embeddings = F.normalize(self.embed(torch.stack(embeddings)), dim=1)
        loss_obj = self.objectness(features).sigmoid().mean()
        return {"loss_obj": loss_obj}, gt_embeddings, torch.stack(slots)


class ToyMethod(Method):
    """Memory bank [num_slots, EMBED_DIM]; loss pulls each GT embedding to its memory row and
    to the rows with the same pseudo label."""

    name = "toy"

    @dataclass(frozen=True)
    class Params:
        momentum: float = 0.5
        nan_at: tuple[int, ...] = ()  # training_step calls (0-based) that return NaN

    def __init__(self, **params) -> None:
        super().__init__(**params)
        self.momentum = self.params.momentum
        self.loss_weights = {"loss_mem": 2.0, "loss_obj": 0.5}
        self.nan_at = set(self.params.nan_at)
        self.calls = 0
        self.memory = torch.zeros(0, EMBED_DIM)
        self.labels = torch.zeros(0, dtype=torch.int64)

    def setup(self, model, context):
        super().setup(model, context)
        num_slots = sum(r.num_boxes for r in context.train_records)
        generator = torch.Generator().manual_seed(123)
        self.memory = F.normalize(torch.randn(num_slots, EMBED_DIM, generator=generator), dim=1)
        self.labels = torch.arange(num_slots)

    def on_epoch_start(self, model, epoch):
        labels = torch.empty(len(self.memory), dtype=torch.int64)
        if self.dist.is_main:
            # deliberately random on the global RNG: only rank 0's draw may count
            labels = torch.randint(0, max(1, len(self.memory) // 2), (len(self.memory),))
        self.labels = self.dist.broadcast_tensor(labels)
        return {"num_clusters": float(len(torch.unique(self.labels)))}

    def training_step(self, model, batch, epoch):
        losses, embeddings, slots = model(batch["images"], batch["image_sizes"], batch["targets"])
        centroids = self.memory[slots]
        same = (self.labels[slots][:, None] == self.labels[None, :]).float()
        label_mean = same @ self.memory / same.sum(1, keepdim=True)
        loss_mem = (2 - (embeddings * centroids).sum(1) - (embeddings * label_mean).sum(1)).mean()
        if self.calls in self.nan_at:
            loss_mem = loss_mem * float("nan")
        self.calls += 1
        return StepOutput(
            losses={"loss_mem": loss_mem, **losses},
            pending={"feats": embeddings.detach(), "slots": slots},
            metrics={"batch_boxes": float(len(slots))},
        )

    def after_step(self, pending):
        for feat, slot in zip(pending["feats"], pending["slots"]):
            row = self.momentum * self.memory[slot] + (1 - self.momentum) * feat
            self.memory[slot] = row / row.norm()

    def state_dict(self):
        return {"memory": self.memory.clone(), "labels": self.labels.clone(), "calls": self.calls}

    def load_state_dict(self, state):
        self.memory = state["memory"].clone()
        self.labels = state["labels"].clone()
        self.calls = int(state["calls"])


def build_toy(**kwargs) -> ToyModel:
    """Stands in for ``personsearch.models.build_model`` (same seeded weights every call)."""
    torch.manual_seed(0)
    return ToyModel()


def install_toys(setattr) -> None:
    """Make ``personsearch train`` build the toy model and know the "toy" method. ``setattr``:
    pytest's ``monkeypatch.setattr`` (undone after the test) or the builtin (a worker process)."""
    import personsearch.models
    from personsearch.methods import base

    setattr(personsearch.models, "build_model", build_toy)
    setattr(base, "_REGISTRY", dict(base._REGISTRY))
    base.register_method("toy", ToyMethod)


def solver(**overrides) -> SolverConfig:
    base = dict(lr=0.05, warmup_iters=3, warmup_factor=0.1, lr_steps=(1,), epochs=3,
                clip_grad_norm=5.0)
    base.update(overrides)
    return SolverConfig(**base)


def train_cfg(out_dir: Path, **overrides) -> TrainConfig:
    base = dict(seed=7, out_dir=str(out_dir), device="cpu", checkpoint_every_iters=3,
                log_every=1, progress=False)
    base.update(overrides)
    return TrainConfig(**base)


def trained_state(trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in unwrap_model(trainer.model).state_dict().items()}
