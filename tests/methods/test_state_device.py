"""Every method keeps its state tensors (banks, queues, labels, slot tables) on the device it
is set up for — the model's — after ``setup`` and after ``restore``, and the trainer hands its
own device to ``setup``. The "meta" device stands in for CUDA: a tensor left on the CPU by
mistake shows up as device "cpu". Feature extraction is replaced by fixed CPU features (as
the real extraction returns them), so no model runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from personsearch.data.records import SceneRecord
from personsearch.methods.base import build_method
from personsearch.methods.context import MethodContext

META = torch.device("meta")
DIM = 4


class _Model(nn.Module):
    embedding_dim = DIM

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1))


def _records() -> list[SceneRecord]:
    out = []
    for index, count in enumerate((2, 0, 3)):
        boxes = np.tile(np.array([[1.0, 2.0, 10.0, 20.0]], np.float32), (count, 1))
        out.append(SceneRecord(f"/nowhere/{index}.jpg", f"{index}.jpg", 32, 32, boxes,
                               -np.ones(count, np.int64), 0, index))
    return out


def _fake_extraction(monkeypatch):
    def fixed(records, extract, dist):
        count = sum(r.num_boxes for r in records)
        return torch.nn.functional.normalize(torch.arange(count * DIM, dtype=torch.float32)
                                             .view(count, DIM) + 1.0, dim=1)

    for module in ("personsearch.methods.cgps", "personsearch.methods.ssl"):
        monkeypatch.setattr(f"{module}.extract_across_ranks", fixed)


def _tensors(value, path="state"):
    if isinstance(value, torch.Tensor):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _tensors(item, f"{path}.{key}")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _tensors(item, f"{path}[{index}]")


def _method(name: str):
    params = {"ssl": {"use_masks": False}}.get(name, {})
    return build_method(name, **params)


def _context(records: list[SceneRecord], device: torch.device) -> MethodContext:
    # the true ids only matter to the supervised seqnet; the others ignore them
    return MethodContext(records, device, slot_true_ids=np.array([0, 1, 0, -1, 1]))


def _state_tensors(method) -> list[tuple[str, torch.Tensor]]:
    memory = method.memory
    found = [(f"memory.{k}", v) for k, v in vars(memory).items() if isinstance(v, torch.Tensor)]
    found += [(f"method.{k}", v) for k, v in vars(method).items() if isinstance(v, torch.Tensor)]
    assert found
    return found


@pytest.mark.parametrize("name", ["seqnet", "cgps", "ssl", "dicl"])
def test_setup_and_restore_put_every_state_tensor_on_the_device(name, monkeypatch):
    _fake_extraction(monkeypatch)
    records = _records()
    cpu_method = _method(name)
    cpu_method.setup(_Model(), _context(records, torch.device("cpu")))
    state = cpu_method.state_dict()

    method = _method(name)
    method.setup(_Model(), _context(records, META))
    wrong = [path for path, tensor in _state_tensors(method) if tensor.device != META]
    assert not wrong, f"{name}.setup left {wrong} off the model's device"

    restored = _method(name)
    restored.restore(_Model(), _context(records, META), state)
    wrong = [path for path, tensor in _state_tensors(restored) if tensor.device != META]
    assert not wrong, f"{name}.restore left {wrong} off the model's device"
    # the checkpoint state itself is unchanged (still loadable on a CPU machine)
    assert all(t.device.type == "cpu" for _, t in _tensors(state))


def test_trainer_sets_the_method_up_on_its_device(monkeypatch, tmp_path):
    from personsearch.config import SolverConfig, TrainConfig
    from personsearch.data.loader import build_train_loader
    from personsearch.data.splits import slot_offsets
    from personsearch.engine.hooks import MethodHook
    from personsearch.engine.trainer import Trainer

    _fake_extraction(monkeypatch)
    records = _records()
    loader = build_train_loader(records, slot_offsets(records), sizes=[(32, 32)], flip=False,
                                batch_size=1, seed=0)
    method = _method("cgps")
    trainer = Trainer(_Model(), method, loader, solver=SolverConfig(epochs=1),
                      train=TrainConfig(out_dir=str(tmp_path / "out")),
                      context=MethodContext(records, META))
    MethodHook().before_train(trainer)
    assert trainer.module.weight.device == META
    wrong = [path for path, tensor in _state_tensors(method) if tensor.device != META]
    assert not wrong
