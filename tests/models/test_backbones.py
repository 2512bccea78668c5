import pytest
import torch
from torch import nn

from personsearch.errors import CheckpointError
from personsearch.models import backbones
from personsearch.models.backbones import (
    FrozenBatchNorm2d,
    build_backbone,
    resnet_state_dict_keys,
)


def expected_torchvision_keys(blocks, bottleneck):
    """torchvision ResNet state dict keys written from the architecture description."""
    def bn(prefix):
        return [f"{prefix}.{s}" for s in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")]

    keys = ["conv1.weight", *bn("bn1")]
    convs = 3 if bottleneck else 2
    for stage, count in enumerate(blocks, start=1):
        for block in range(count):
            p = f"layer{stage}.{block}"
            for c in range(1, convs + 1):
                keys += [f"{p}.conv{c}.weight", *bn(f"{p}.bn{c}")]
            if block == 0 and (stage > 1 or bottleneck):
                keys += [f"{p}.downsample.0.weight", *bn(f"{p}.downsample.1")]
    return keys + ["fc.weight", "fc.bias"]


def test_resnet50_keys_equal_torchvision():
    keys = resnet_state_dict_keys("resnet50")
    assert len(keys) == 320
    assert keys == expected_torchvision_keys((3, 4, 6, 3), bottleneck=True)
    for name in ("layer3.5.bn3.running_var", "layer1.0.downsample.0.weight", "layer4.2.conv3.weight", "fc.bias"):
        assert name in keys


def test_resnet18_keys_equal_torchvision():
    keys = resnet_state_dict_keys("resnet18")
    assert len(keys) == 122
    assert keys == expected_torchvision_keys((2, 2, 2, 2), bottleneck=False)
    assert "layer1.0.downsample.0.weight" not in keys and "layer2.0.downsample.1.running_mean" in keys


@pytest.mark.parametrize("name,c4,c5", [("resnet18", 256, 512), ("small", 64, 128)])
def test_shapes_and_strides(name, c4, c5):
    parts = build_backbone(name)
    assert parts.out_channels == parts.c4_channels == c4 and parts.head_out_channels == c5
    feats = parts.body.eval()(torch.randn(1, 3, 96, 160))
    assert feats.shape == (1, c4, 6, 10)
    head = parts.make_head().eval()
    assert head(torch.randn(2, c4, 14, 14)).shape == (2, c5, 7, 7)


def test_resnet50_channels_without_running_it():
    parts = build_backbone("resnet50")
    assert (parts.out_channels, parts.head_out_channels) == (1024, 2048)
    assert parts.body.layer3[-1].conv3.out_channels == 1024


def _save_random_weights(tmp_path, name):
    # a torchvision-named state dict (all keys incl. layer4 and fc) with random values
    torch.manual_seed(0)
    state = {}
    for key in resnet_state_dict_keys(name):
        state[key] = torch.tensor(7) if key.endswith("num_batches_tracked") else None
    shapes = {k: v.shape for k, v in backbones._build_arch(name).state_dict().items()}
    for key, value in state.items():
        if value is None:
            state[key] = torch.rand(shapes[key]) + 0.5
    path = tmp_path / f"{name}.pth"
    torch.save(state, path)
    return path, state


def test_loading_state_dict_roundtrips_and_head_copies(tmp_path):
    path, state = _save_random_weights(tmp_path, "resnet18")
    parts = build_backbone("resnet18", weights=str(path))
    body_state = parts.body.state_dict()
    assert torch.equal(body_state["layer3.1.conv2.weight"], state["layer3.1.conv2.weight"])
    assert torch.equal(body_state["bn1.running_var"], state["bn1.running_var"])
    head_a, head_b = parts.make_head(), parts.make_head()
    assert torch.equal(head_a.state_dict()["0.conv1.weight"], state["layer4.0.conv1.weight"])
    with torch.no_grad():
        head_a[0].conv1.weight.add_(1.0)
    assert torch.equal(head_b.state_dict()["0.conv1.weight"], state["layer4.0.conv1.weight"])  # independent copies


def test_bad_weight_files_give_clear_errors(tmp_path):
    path, state = _save_random_weights(tmp_path, "resnet18")
    with pytest.raises(CheckpointError, match="missing keys: \\[layer1.0.conv3.weight"):
        build_backbone("resnet50", weights=str(path))
    state.pop("layer4.1.bn2.bias")
    state["extra.weight"] = torch.zeros(1)
    broken = tmp_path / "broken.pth"
    torch.save(state, broken)
    with pytest.raises(CheckpointError) as info:
        build_backbone("resnet18", weights=str(broken))
    message = str(info.value)
    assert "broken.pth" in message and "layer4.1.bn2.bias" in message and "extra.weight" in message
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="garbage.pth"):
        build_backbone("resnet18", weights=str(garbage))
    with pytest.raises(CheckpointError, match="not found"):
        build_backbone("resnet18", weights=str(tmp_path / "nope.pth"))


def test_unreachable_url_says_download_it(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(CheckpointError, match="pass its local path"):
        build_backbone("resnet18", weights="https://example.invalid/resnet18.pth")


def test_frozen_stem_and_frozen_bn():
    parts = build_backbone("small", frozen_stem=True)
    body = parts.body
    assert not body.conv1.weight.requires_grad and not body.bn1.weight.requires_grad
    assert body.layer1[0].conv1.weight.requires_grad and body.layer1[0].bn1.weight.requires_grad
    assert isinstance(body.layer2[0].bn1, nn.BatchNorm2d)

    unfrozen = build_backbone("small", frozen_stem=False)
    assert unfrozen.body.conv1.weight.requires_grad

    frozen = build_backbone("small", frozen_bn=True)
    bns = [m for m in frozen.body.modules() if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d))]
    assert bns and all(isinstance(m, FrozenBatchNorm2d) for m in bns)
    assert all(isinstance(m, FrozenBatchNorm2d) for m in frozen.make_head().modules() if "BatchNorm" in type(m).__name__)
    assert "layer1.0.bn1.running_var" in frozen.body.state_dict()
    # training mode does not change the statistics: output equals eval mode
    x = torch.randn(2, 3, 64, 64)
    frozen.body.train()
    out_train = frozen.body(x)
    frozen.body.eval()
    assert torch.allclose(out_train, frozen.body(x), atol=1e-6)


def test_frozen_batchnorm_matches_eval_batchnorm():
    bn = nn.BatchNorm2d(4)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2)
        bn.bias.normal_()
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2)
    bn.eval()
    frozen = FrozenBatchNorm2d.from_batchnorm(bn)
    x = torch.randn(3, 4, 5, 5)
    assert torch.allclose(frozen(x), bn(x), atol=1e-5)
    # loads a BatchNorm state dict (num_batches_tracked dropped)
    other = FrozenBatchNorm2d(4)
    other.load_state_dict(bn.state_dict())
    assert torch.allclose(other(x), bn(x), atol=1e-5)


def test_bf16_autocast_and_channels_last():
    torch.manual_seed(0)
    parts = build_backbone("small")
    body = parts.body.eval()
    head = parts.make_head().eval()
    x = torch.randn(1, 3, 128, 192)
    with torch.no_grad():
        ref = body(x)
        out_cl = body(x.contiguous(memory_format=torch.channels_last))
        assert torch.allclose(out_cl, ref, atol=1e-4, rtol=1e-4)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out_bf = body(x)
            head_bf = head(out_bf[:, :, :14, :14])
        assert out_bf.dtype == torch.bfloat16 and head_bf.shape[1] == parts.head_out_channels
        rel = (out_bf.float() - ref).norm() / ref.norm()
        assert rel < 0.05


def _picking_bottleneck(style):
    """One stride-2 bottleneck, 1 -> 4 channels, BN removed, weights chosen by hand: conv1 and
    conv3 copy channel 0, conv2 takes the right-hand neighbour, the shortcut adds 0."""
    block = backbones.Bottleneck(1, 1, stride=2, downsample=nn.Conv2d(1, 4, 1, stride=2, bias=False), style=style)
    block.bn1, block.bn2, block.bn3 = nn.Identity(), nn.Identity(), nn.Identity()
    with torch.no_grad():
        block.conv1.weight.fill_(1.0)
        block.conv2.weight.zero_()
        block.conv2.weight[0, 0, 1, 2] = 1.0
        block.conv3.weight.zero_()
        block.conv3.weight[0, 0] = 1.0
        block.downsample.weight.zero_()
    return block


@pytest.mark.parametrize("style, expected", [
    # caffe: the 1x1 conv subsamples first (pixels of even rows/columns), then the right-hand
    # neighbour on that grid (two pixels further), zero past the edge
    ("caffe", [[3, 5, 0], [15, 17, 0], [27, 29, 0]]),
    # pytorch: the 3x3 conv strides: the right-hand neighbour of each even pixel
    ("pytorch", [[2, 4, 6], [14, 16, 18], [26, 28, 30]]),
])
def test_bottleneck_style_places_the_stride(style, expected):
    image = (torch.arange(36, dtype=torch.float32) + 1).reshape(1, 1, 6, 6)  # pixel (r, c) = 6r + c + 1
    out = _picking_bottleneck(style)(image)
    assert out.shape == (1, 4, 3, 3)
    assert out[0, 0].tolist() == expected and not out[0, 1:].any()


@pytest.mark.parametrize("style", ["pytorch", "caffe"])
def test_resnet50_style_strides_every_downsampling_block(style):
    with torch.device("meta"):
        resnet = backbones.ResNet(backbones.Bottleneck, (3, 4, 6, 3), style=style)
    for stage in (resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4):
        for index, block in enumerate(stage):
            stride = 2 if index == 0 and stage is not resnet.layer1 else 1
            one_by_one, three_by_three = (stride, 1) if style == "caffe" else (1, stride)
            assert block.conv1.stride == (one_by_one, one_by_one)
            assert block.conv2.stride == (three_by_three, three_by_three)
            assert block.conv3.stride == (1, 1)
            if index == 0:
                assert block.downsample[0].stride == (stride, stride)
    assert resnet_state_dict_keys("resnet50") == list(resnet.state_dict())  # same names and count


def test_caffe_style_c4_map_has_stride_16():
    torch.manual_seed(0)
    parts = build_backbone("resnet50", frozen_bn=True, style="caffe")
    with torch.no_grad():
        features = parts.body(torch.randn(1, 3, 64, 96))
        res5 = parts.make_head()(torch.randn(2, 1024, 14, 14))
    assert features.shape == (1, 1024, 4, 6) and res5.shape == (2, 2048, 7, 7)


def test_caffe_style_needs_bottleneck_blocks():
    with pytest.raises(ValueError, match="'caffe' places the stride inside bottleneck blocks; this ResNet has BasicBlocks"):
        build_backbone("small", style="caffe")
    with pytest.raises(ValueError, match="resnet style must be one of"):
        build_backbone("resnet50", style="tf")


def test_pixel_renormalization_gives_caffe_input():
    """RGB pixel (10, 20, 30) normalised like our pipelines -> BGR minus the caffe means."""
    from personsearch.data.transforms import IMAGENET_MEAN, IMAGENET_STD

    rgb = torch.tensor([10.0, 20.0, 30.0])
    ours = ((rgb / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)).reshape(1, 3, 1, 1)
    renorm = backbones.PixelRenormalization((103.53, 116.28, 123.675), (1.0, 1.0, 1.0), "bgr")
    torch.testing.assert_close(renorm(ours).flatten(), torch.tensor([30 - 103.53, 20 - 116.28, 10 - 123.675]),
                               atol=1e-4, rtol=0)
    same_order = backbones.PixelRenormalization((0.0, 0.0, 0.0), (255.0, 255.0, 255.0), "rgb")
    torch.testing.assert_close(same_order(ours).flatten(), rgb / 255, atol=1e-6, rtol=0)


def test_renormalization_only_for_other_input_and_never_in_the_state_dict():
    plain = build_backbone("small")
    caffe = build_backbone("small", pixel_mean=(103.53, 116.28, 123.675), pixel_std=(1.0, 1.0, 1.0), channel_order="bgr")
    assert "renormalize" not in dict(plain.body.named_children())
    assert isinstance(caffe.body.renormalize, backbones.PixelRenormalization)
    assert list(caffe.body.state_dict()) == list(plain.body.state_dict())
    with pytest.raises(ValueError, match="channel_order must be one of"):
        backbones.PixelRenormalization((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "gbr")
