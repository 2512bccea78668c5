"""load_checkpoint's errors say what is wrong in our words (issue 13): never torch's advice to
load with weights_only=False, and a damaged file names the newest intact checkpoint beside it."""

from __future__ import annotations

import collections
import os
import time

import pytest
import torch

from personsearch.engine.checkpoint import (CorruptCheckpointError, load_checkpoint,
                                            newest_intact_checkpoint, save_checkpoint)
from personsearch.errors import CheckpointError


class NotAllowed:  # a Python object a weights-only load refuses
    pass


def _save_raw(path, value):
    torch.save(value, path)


def _write(path, data: bytes):
    path.write_bytes(data)


def _good_bytes(tmp_path):
    save_checkpoint(tmp_path / "source.pt", {"model": {"w": torch.arange(2000.0)}, "epoch": 1})
    data = (tmp_path / "source.pt").read_bytes()
    (tmp_path / "source.pt").unlink()
    return data


@pytest.mark.parametrize("damage, message", [
    (lambda good: b"", "the file is empty (0 bytes)"),
    (lambda good: bytes(range(256)) * 8, "not a checkpoint written by personsearch (2048 bytes"),
    (lambda good: good[: len(good) // 2], "the file is truncated or corrupt"),
])
def test_damaged_files(tmp_path, damage, message):
    path = tmp_path / "last.pt"
    _write(path, damage(_good_bytes(tmp_path)))
    with pytest.raises(CorruptCheckpointError) as caught:
        load_checkpoint(path)
    text = str(caught.value)
    assert text.startswith(f"{path}: cannot load checkpoint: ") and message in text
    assert "weights_only" not in text and "likely succeed" not in text and "\n" not in text
    assert text.endswith("no intact checkpoint lies beside it") and caught.value.intact is None


def test_python_objects_are_named_not_loaded(tmp_path):
    path = tmp_path / "objects.pt"
    _save_raw(path, {"model": collections.OrderedDict(), "extra": NotAllowed()})
    with pytest.raises(CheckpointError, match="holds Python objects .*NotAllowed.* never unpickled") as caught:
        load_checkpoint(path)
    assert "weights_only" not in str(caught.value)


def test_the_newest_intact_neighbour_is_named(tmp_path):
    good = _good_bytes(tmp_path)
    for age, name in ((30, "epoch_001.pt"), (20, "epoch_002.pt"), (10, "epoch_003.pt")):
        _write(tmp_path / name, good)
        stamp = time.time() - age
        os.utime(tmp_path / name, (stamp, stamp))
    _write(tmp_path / "epoch_003.pt", good[:100])  # newest, but damaged too
    _write(tmp_path / "last.pt", good[:-10])
    assert newest_intact_checkpoint(tmp_path / "last.pt") == tmp_path / "epoch_002.pt"
    with pytest.raises(CorruptCheckpointError, match="newest intact checkpoint beside it is "
                                                      ".*epoch_002.pt$") as caught:
        load_checkpoint(tmp_path / "last.pt")
    assert caught.value.intact == tmp_path / "epoch_002.pt"
    assert load_checkpoint(caught.value.intact)["epoch"] == 1
