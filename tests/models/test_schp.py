"""SCHP parser: the released checkpoints' parameter names and shapes load, outputs per parsing
dataset, the test-time affine transform, and clear errors for wrong weights files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from personsearch.errors import CheckpointError
from personsearch.models.schp import (SCHP_DATASETS, SCHPNet, crop_affine, load_schp,
                                      parse_crops)


def _bn(prefix: str, channels: int) -> list[tuple[str, tuple[int, ...]]]:
    return [(f"{prefix}.{p}", (channels,)) for p in ("weight", "bias", "running_mean", "running_var")]


def released_names_and_shapes(num_classes: int) -> dict[str, tuple[int, ...]]:
    """What a released SCHP checkpoint holds (after removing the ``module.`` prefix), written
    from the official module names of networks/AugmentCE2P.py: ResNet-101 with a deep stem
    (conv1-3 / bn1-3), layer1-4 of bottlenecks (conv1-3, bn1-3, downsample.0/.1), the PSP
    context module, the edge branch, the decoder and the fusion head ("fushion"). InPlaceABNSync
    has no num_batches_tracked, so the checkpoints have none."""
    entries: list[tuple[str, tuple[int, ...]]] = [
        ("conv1.weight", (64, 3, 3, 3)), *_bn("bn1", 64),
        ("conv2.weight", (64, 64, 3, 3)), *_bn("bn2", 64),
        ("conv3.weight", (128, 64, 3, 3)), *_bn("bn3", 128),
    ]
    in_channels = 128
    for stage, (width, blocks) in enumerate(zip((64, 128, 256, 512), (3, 4, 23, 3)), start=1):
        for block in range(blocks):
            p = f"layer{stage}.{block}"
            entries += [(f"{p}.conv1.weight", (width, in_channels, 1, 1)), *_bn(f"{p}.bn1", width),
                        (f"{p}.conv2.weight", (width, width, 3, 3)), *_bn(f"{p}.bn2", width),
                        (f"{p}.conv3.weight", (4 * width, width, 1, 1)), *_bn(f"{p}.bn3", 4 * width)]
            if block == 0:
                entries += [(f"{p}.downsample.0.weight", (4 * width, in_channels, 1, 1)),
                            *_bn(f"{p}.downsample.1", 4 * width)]
            in_channels = 4 * width
    for stage in range(4):
        entries += [(f"context_encoding.stages.{stage}.1.weight", (512, 2048, 1, 1)),
                    *_bn(f"context_encoding.stages.{stage}.2", 512)]
    entries += [("context_encoding.bottleneck.0.weight", (512, 4096, 3, 3)),
                *_bn("context_encoding.bottleneck.1", 512)]
    for index, channels in ((1, 256), (2, 512), (3, 1024)):
        entries += [(f"edge.conv{index}.0.weight", (256, channels, 1, 1)),
                    *_bn(f"edge.conv{index}.1", 256)]
    entries += [("edge.conv4.weight", (2, 256, 3, 3)), ("edge.conv4.bias", (2,)),
                ("edge.conv5.weight", (2, 6, 1, 1)), ("edge.conv5.bias", (2,))]
    entries += [("decoder.conv1.0.weight", (256, 512, 1, 1)), *_bn("decoder.conv1.1", 256),
                ("decoder.conv2.0.weight", (48, 256, 1, 1)), *_bn("decoder.conv2.1", 48),
                ("decoder.conv3.0.weight", (256, 304, 1, 1)), *_bn("decoder.conv3.1", 256),
                ("decoder.conv3.2.weight", (256, 256, 1, 1)), *_bn("decoder.conv3.3", 256),
                ("decoder.conv4.weight", (num_classes, 256, 1, 1)),
                ("decoder.conv4.bias", (num_classes,))]
    entries += [("fushion.0.weight", (256, 1024, 1, 1)), *_bn("fushion.1", 256),
                ("fushion.3.weight", (num_classes, 256, 1, 1)), ("fushion.3.bias", (num_classes,))]
    return dict(entries)


def fake_checkpoint(path: Path, num_classes: int, edit=None) -> dict[str, torch.Tensor]:
    """A file laid out as SCHP saves them: {'state_dict': {'module.<name>': tensor}} with random
    values: small tensors (BN parameters and statistics, biases) fully random, large ones one
    random number broadcast to the shape (keeps the file tiny; still a different value per
    name, so a tensor loaded under the wrong name is caught)."""
    generator = torch.Generator().manual_seed(num_classes)
    state = {}
    for name, shape in released_names_and_shapes(num_classes).items():
        if int(np.prod(shape)) <= 4096:
            value = torch.randn(shape, generator=generator)
        else:
            value = torch.randn(1, generator=generator).expand(shape)
        # positive variances, as trained BN statistics are
        state[name] = value.abs() + 0.5 if name.endswith("running_var") else value
    if edit is not None:
        edit(state)
    torch.save({"epoch": 150, "state_dict": {"module." + k: v for k, v in state.items()}}, path)
    return state


def test_module_names_and_shapes_match_the_released_checkpoints():
    expected = released_names_and_shapes(20)
    ours = {k: tuple(v.shape) for k, v in SCHPNet(20).state_dict().items()
            if not k.endswith("num_batches_tracked")}
    assert sorted(set(expected) - set(ours)) == []
    assert sorted(set(ours) - set(expected)) == []
    assert {k: v for k, v in ours.items() if expected[k] != v} == {}
    assert sum(int(np.prod(s)) for s in expected.values()) > 66_000_000  # ResNet-101 + heads


def test_random_checkpoint_loads_with_its_values(tmp_path):
    path = tmp_path / "exp-schp-lip.pth"
    state = fake_checkpoint(path, 20)
    model, info = load_schp(path)
    assert info.name == "lip" and info.input_size == (473, 473) and not model.training
    loaded = model.state_dict()
    for name, value in state.items():
        assert torch.equal(loaded[name], value.expand(loaded[name].shape)), name
    assert all(int(v) == 0 for k, v in loaded.items() if k.endswith("num_batches_tracked"))


@pytest.mark.parametrize("dataset", ["lip", "atr", "pascal"])
def test_class_count_selects_the_dataset_and_output_shapes(tmp_path, dataset):
    classes = SCHP_DATASETS[dataset].num_classes
    assert classes == {"lip": 20, "atr": 18, "pascal": 7}[dataset]
    path = tmp_path / f"{dataset}.pth"
    fake_checkpoint(path, classes)
    model, info = load_schp(path)
    assert info.name == dataset
    assert info.input_size == {"lip": (473, 473), "atr": (512, 512), "pascal": (512, 512)}[dataset]
    assert len(info.labels) == classes and info.labels[0] == "Background"
    with torch.no_grad():
        output = model(torch.randn(1, 3, 65, 49))
    # stride 4 with ceil rounding: 65 -> 33 -> 17, 49 -> 25 -> 13
    assert output.parsing.shape == (1, classes, 17, 13)
    assert output.fusion.shape == (1, classes, 17, 13)
    assert output.edge.shape == (1, 2, 17, 13)


def test_crop_affine_hand_computed():
    # 5x9 crop into 8x8: pixel span 4x8 widened to 8x8, scale 1, centre (2, 4) -> (4, 4)
    np.testing.assert_allclose(crop_affine(5, 9, (8, 8)), [[1, 0, 2], [0, 1, 0]])
    # 9x5 crop into 4x8 (h, w): aspect 2, span 8x4 already 2:1, scale 8/8 = 1, centre (4, 2)
    np.testing.assert_allclose(crop_affine(9, 5, (4, 8)), [[1, 0, 0], [0, 1, 0]])
    # 101x201 crop into 473x473: span 200x200, scale 473/200, centre (50, 100) -> 236.5
    affine = crop_affine(101, 201, (473, 473))
    scale = 473 / 200
    np.testing.assert_allclose(affine, [[scale, 0, 236.5 - scale * 50], [0, scale, 236.5 - scale * 100]])


def test_parse_crops_maps_back_to_each_crop():
    torch.manual_seed(0)
    model = SCHPNet(7).eval()  # PyTorch's default initialisation keeps the activations finite
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 255, (30, 12, 3), dtype=np.uint8),
             rng.integers(0, 255, (17, 25, 3), dtype=np.uint8)]
    parsed = parse_crops(model, crops, input_size=(65, 65), batch_size=2)
    assert [p[0].shape for p in parsed] == [(30, 12), (17, 25)]
    for foreground, score in parsed:
        assert foreground.dtype == bool and score.dtype == np.float32
        assert (score >= 0).all() and (score <= 1).all()


def test_wrong_weights_files_are_named_with_what_they_lack(tmp_path):
    with pytest.raises(CheckpointError, match="missing.pth: SCHP weights file not found"):
        load_schp(tmp_path / "missing.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pth: not a readable PyTorch weights file"):
        load_schp(junk)
    resnet = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(10, 2048)}, resnet)
    with pytest.raises(CheckpointError, match="no 'decoder.conv4.weight'.*not an SCHP checkpoint"):
        load_schp(resnet)

    def drop_edge(state):
        del state["edge.conv5.weight"], state["edge.conv5.bias"]
        state["extra.weight"] = torch.zeros(1)

    missing = tmp_path / "missing_keys.pth"
    fake_checkpoint(missing, 20, edit=drop_edge)
    with pytest.raises(CheckpointError, match=r"missing edge.conv5.bias, edge.conv5.weight; "
                                              r"unexpected extra.weight"):
        load_schp(missing)

    def bad_shape(state):
        state["layer1.0.conv1.weight"] = torch.zeros(64, 64, 3, 3)

    shape = tmp_path / "shape.pth"
    fake_checkpoint(shape, 18, edit=bad_shape)
    with pytest.raises(CheckpointError, match=r"18 classes: shape mismatch layer1.0.conv1.weight "
                                              r"\(64, 64, 3, 3\) \(expected \(64, 128, 1, 1\)\)"):
        load_schp(shape)
    classes = tmp_path / "classes.pth"
    fake_checkpoint(classes, 5)
    with pytest.raises(CheckpointError, match="5 parsing classes; the released SCHP parsers have "
                                              "20 \\(lip\\), 18 \\(atr\\), 7 \\(pascal\\)"):
        load_schp(classes)
    atr = tmp_path / "atr.pth"
    fake_checkpoint(atr, 18)
    with pytest.raises(CheckpointError, match="18 parsing classes, but the lip parser has 20"):
        load_schp(atr, dataset="lip")


class BlueIsPerson(torch.nn.Module):
    """Stand-in parser: class 1 where the (normalised) blue input channel is above SCHP's mean,
    at full input resolution; lets the test see where parse_crops maps each pixel."""

    def forward(self, images):
        from personsearch.models.schp import SCHPOutput

        blue = images[:, :1]  # BGR input: channel 0 is blue
        logits = torch.cat([-blue, blue], dim=1)
        return SCHPOutput(logits, logits, logits)


@pytest.mark.parametrize("input_size", [(65, 65), (473, 473), (40, 80)])
def test_parse_crops_round_trip_puts_each_pixel_back(input_size):
    crop = np.zeros((30, 12, 3), np.uint8)
    crop[:10, :, 2] = 255  # RGB: the top 10 rows are blue
    crop[20:, 8:, 2] = 255  # and a bottom-right patch
    (foreground, score), = parse_crops(BlueIsPerson(), [crop], input_size)
    expected = crop[:, :, 2] > 0
    # bilinear resampling blurs at most the row / column next to an edge; the crop's last row
    # and column (mapped just past the input's edge) keep the edge's class
    interior = np.ones_like(expected)
    interior[[9, 10, 19, 20], :] = False
    interior[:, [7, 8]] = False
    np.testing.assert_array_equal(foreground[interior], expected[interior])
    assert (score[expected & interior] > 0.5).all() and (score[~expected & interior] < 0.5).all()
