"""No per-person host synchronisation in a training step: a TorchFunctionMode counts every call
that would make a CUDA device wait for the host (``.item()``, ``.tolist()``, ``int()``/``bool()``
/``float()`` of a tensor, ``.cpu()``, ``.numpy()``, ``nonzero``, boolean-mask indexing,
``unique``, ...) during ``Trainer._step`` of each method on the small model, once with 2
persons per image and once with 6 on the same images, by the module that makes the call.

Outside the pure detection ops the counts must be identical (nothing per person); the pure
ops' counts (``ops/``: NMS greedy blocks, RoIAlign chunking) depend on the proposals, which
the persons change through DICL's occlusion patches, not on the number of persons — with
torchvision's compiled ops on CUDA they make none. The whole step stays under a fixed bound.
DICL's occlusion draws (``data.occlusion.draw_patch_cells``) read CPU-generator tensors on
the host and are not counted: they never touch the device."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from personsearch.config import SolverConfig, TrainConfig
from personsearch.data.records import SceneRecord
from personsearch.engine.hooks import MethodHook
from personsearch.engine.trainer import Trainer
from personsearch.methods.base import build_method
from personsearch.methods.context import MethodContext
from personsearch.models import build_model

SYNC_FUNCTIONS = {"item", "tolist", "__int__", "__bool__", "__float__", "__index__", "cpu",
                  "numpy", "nonzero", "argwhere", "unique", "masked_select", "bincount",
                  "repeat_interleave", "unique_consecutive"}
MAX_SYNCS_PER_STEP = 400  # measured ~2-3x below this on the small presets; see the test output

TINY_MODEL = dict(backbone="small", frozen_stem=False, rpn_pre_nms_top_n_train=200,
                  rpn_post_nms_top_n_train=64, rpn_pre_nms_top_n_test=100,
                  rpn_post_nms_top_n_test=32, roi_batch_size_per_image=16,
                  roi_bg_iou_thresh=0.1, box_score_thresh=0.0, detections_per_image=20)


class SyncCounter(TorchFunctionMode):
    """Counts calls that synchronise a CUDA stream with the host."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[str, int] = {}

    def _hit(self, name: str) -> None:
        frame = sys._getframe(2)
        while frame is not None and "/personsearch/" not in frame.f_code.co_filename.replace("\\", "/"):
            frame = frame.f_back
        if frame is not None and frame.f_code.co_name == "draw_patch_cells":
            return  # host-only draws from a CPU generator
        where = "?" if frame is None else frame.f_code.co_filename.replace("\\", "/").split("/personsearch/")[-1]
        key = f"{where}:{name}"
        self.counts[key] = self.counts.get(key, 0) + 1

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in SYNC_FUNCTIONS:
            self._hit(name)
        elif name in ("__getitem__", "__setitem__", "index_put_", "index_put") and len(args) > 1:
            index = args[1] if not isinstance(args[1], tuple) else args[1]
            indices = index if isinstance(index, (tuple, list)) else (index,)
            if any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices):
                self._hit("bool_index")
        return func(*args, **(kwargs or {}))

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def outside_ops(self) -> dict[str, int]:
        return {k: v for k, v in self.counts.items() if not k.startswith("ops/")}


BOXES = np.array([[10, 20, 40, 110], [60, 30, 95, 150], [120, 10, 150, 100], [170, 40, 205, 160],
                  [220, 20, 250, 120], [270, 30, 305, 170]], np.float32)


def _records(persons: int) -> list[SceneRecord]:
    return [SceneRecord(f"/nowhere/{i}.jpg", f"{i}.jpg", 320, 180, BOXES[:persons].copy(),
                        -np.ones(persons, np.int64), 0, i) for i in range(2)]


def _batch(persons: int) -> dict:
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(2, 3, 192, 320, generator=generator)
    targets = [{"boxes": torch.from_numpy(BOXES[:persons].copy()),
                "slots": torch.arange(persons) + i * persons} for i in range(2)]
    return {"images": images, "image_sizes": [(180, 320), (180, 320)], "targets": targets,
            "image_indices": torch.tensor([0, 1]), "scales": torch.ones(2, dtype=torch.float64),
            "flipped": torch.zeros(2, dtype=torch.bool), "padding": torch.zeros(2, dtype=torch.bool)}


class _Loader:
    batch_size = 2

    def __len__(self) -> int:
        return 1


def _fake_extraction(monkeypatch, dim: int = 256) -> None:
    def features(records, extract, dist):
        count = sum(r.num_boxes for r in records)
        return torch.nn.functional.normalize(torch.randn(count, dim, generator=torch.Generator().manual_seed(1)), dim=1)

    for module in ("personsearch.methods.cgps", "personsearch.methods.ssl"):
        monkeypatch.setattr(f"{module}.extract_across_ranks", features)


def _count_step(name: str, persons: int, monkeypatch, tmp_path) -> SyncCounter:
    _fake_extraction(monkeypatch)
    torch.manual_seed(0)
    params = {"ssl": {"use_masks": False, "scales": [[64, 32]]}, "dicl": {"crop_size": [64, 32]}}.get(name, {})
    method = build_method(name, **params)
    trainer = Trainer(build_model(**TINY_MODEL), method, _Loader(), solver=SolverConfig(epochs=1),
                      train=TrainConfig(out_dir=str(tmp_path / f"{name}{persons}"), progress=False),
                      context=MethodContext(_records(persons),
                                            slot_true_ids=np.arange(2 * persons) % 3))
    MethodHook().before_train(trainer)
    trainer.module.train()
    counter = SyncCounter()
    with counter:
        trainer._step(_batch(persons))
    assert trainer.last_step["finite"]
    return counter


@pytest.mark.parametrize("name", ["seqnet", "cgps", "ssl", "dicl"])
def test_step_syncs_do_not_grow_with_persons(name, monkeypatch, tmp_path):
    few = _count_step(name, 2, monkeypatch, tmp_path)
    many = _count_step(name, 6, monkeypatch, tmp_path)
    print(name, "syncs per step, 2 persons/image:", few.total, few.counts)
    print(name, "syncs per step, 6 persons/image:", many.total, many.counts)
    assert many.outside_ops() == few.outside_ops()
    assert few.total <= MAX_SYNCS_PER_STEP and many.total <= MAX_SYNCS_PER_STEP
