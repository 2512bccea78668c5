"""Preprocessing contract: scale rule, resize, normalisation, flips, padding, bad files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from personsearch.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    batch_images,
    hflip_boxes,
    hflip_image,
    load_image,
    preprocess,
    resize_mask,
    resize_scale,
)
from personsearch.errors import DatasetError


def test_scale_rule_short_side_or_long_side_limit():
    # 600x800 (h x w): short side 600 -> 900 gives long 1200 <= 1500: scale 1.5
    assert resize_scale(600, 800, 900, 1500) == pytest.approx(1.5)
    # 480x1920: 900/480 = 1.875 would make the long side 3600 > 1500: scale 1500/1920
    assert resize_scale(480, 1920, 900, 1500) == pytest.approx(1500 / 1920)
    # portrait is treated by short/long side, not by h/w
    assert resize_scale(800, 600, 900, 1500) == pytest.approx(1.5)


def test_preprocess_size_scale_and_normalisation():
    image = np.full((6, 8, 3), 255, dtype=np.uint8)
    image[..., 1] = 0
    tensor, scale = preprocess(image, min_size=9, max_size=100)
    assert scale == pytest.approx(1.5)
    assert tensor.shape == (3, 9, 12) and tensor.dtype == torch.float32
    expected = [(1 - IMAGENET_MEAN[0]) / IMAGENET_STD[0], (0 - IMAGENET_MEAN[1]) / IMAGENET_STD[1],
                (1 - IMAGENET_MEAN[2]) / IMAGENET_STD[2]]
    for c in range(3):
        assert torch.allclose(tensor[c], torch.full((9, 12), expected[c]), atol=1e-5)


def test_preprocess_bilinear_values():
    # a 1x2 ramp upsampled x2 with align_corners=False: [0, 0.25, 0.75, 1] * 255 / 255
    image = np.zeros((1, 2, 3), dtype=np.uint8)
    image[0, 1] = 255
    tensor, scale = preprocess(image, min_size=2, max_size=4)
    assert scale == 2.0 and tensor.shape == (3, 2, 4)
    raw = tensor[0, 0] * IMAGENET_STD[0] + IMAGENET_MEAN[0]
    assert torch.allclose(raw, torch.tensor([0.0, 0.25, 0.75, 1.0]), atol=1e-6)


def test_float_error_does_not_lose_a_pixel():
    tensor, scale = preprocess(np.zeros((7, 10, 3), np.uint8), min_size=900, max_size=5000)
    assert tensor.shape[1] == 900


def test_hflip_boxes_and_image():
    boxes = torch.tensor([[1.0, 2.0, 4.0, 6.0], [0.0, 0.0, 10.0, 5.0]])
    flipped = hflip_boxes(boxes, width=10.0)
    assert torch.equal(flipped, torch.tensor([[6.0, 2.0, 9.0, 6.0], [0.0, 0.0, 10.0, 5.0]]))
    assert torch.equal(hflip_boxes(flipped, 10.0), boxes)
    image = torch.arange(6.0).reshape(1, 2, 3)
    assert torch.equal(hflip_image(image), torch.tensor([[[2.0, 1.0, 0.0], [5.0, 4.0, 3.0]]]))


def test_mask_resize_keeps_labels():
    mask = np.array([[0, 1], [2, 0]], dtype=np.uint8)
    resized = resize_mask(mask, (4, 4))
    assert resized.dtype == torch.uint8
    assert torch.equal(resized[:2, :2], torch.ones(2, 2, dtype=torch.uint8) * 0)
    assert set(resized.unique().tolist()) == {0, 1, 2}


def test_batch_images_pads_to_32():
    a, b = torch.ones(3, 33, 40), torch.full((3, 20, 70), 2.0)
    images, sizes = batch_images([a, b])
    assert images.shape == (2, 3, 64, 96)
    assert sizes == [(33, 40), (20, 70)]
    assert torch.equal(images[0, :, :33, :40], a) and images[0, :, 33:].abs().sum() == 0
    assert images[0, :, :, 40:].abs().sum() == 0
    assert torch.equal(images[1, :, :20, :70], b) and images[1, :, 20:].abs().sum() == 0
    exact, _ = batch_images([torch.ones(3, 32, 64)])
    assert exact.shape == (1, 3, 32, 64)


def test_load_image_rgb_and_errors(tmp_path):
    path = tmp_path / "gray.png"
    Image.fromarray(np.full((4, 5), 7, np.uint8)).save(path)
    image = load_image(path)
    assert image.shape == (4, 5, 3) and image.dtype == np.uint8 and (image == 7).all()
    with pytest.raises(DatasetError, match="missing.jpg.*not found"):
        load_image(tmp_path / "missing.jpg")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    with pytest.raises(DatasetError, match="broken.jpg"):
        load_image(broken)


def _scene(height=6, width=10):
    """uint8 [h, w, 3] with a distinct colour per pixel row/column, so orientation shows."""
    rows = np.arange(height, dtype=np.uint8)[:, None] * 20
    cols = np.arange(width, dtype=np.uint8)[None, :] * 10
    return np.stack([np.broadcast_to(rows, (height, width)), np.broadcast_to(cols, (height, width)),
                     np.full((height, width), 99, np.uint8)], axis=2).copy()


def test_load_image_modes_give_rgb(tmp_path):
    """Issue 13: grayscale / palette / RGBA / CMYK / 16-bit inputs all come out uint8 RGB."""
    scene = _scene()
    Image.fromarray(scene).convert("P", palette=Image.Palette.ADAPTIVE, colors=256).save(tmp_path / "p.png")
    rgba = np.concatenate([scene, np.full((6, 10, 1), 10, np.uint8)], axis=2)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(scene).convert("CMYK").save(tmp_path / "cmyk.tif")  # lossless CMYK
    gray16 = (np.arange(60, dtype=np.uint16).reshape(6, 10) * 1000)
    Image.fromarray(gray16).save(tmp_path / "g16.png")
    for name in ("p.png", "rgba.png", "cmyk.tif", "g16.png"):
        image = load_image(tmp_path / name)
        assert image.shape == (6, 10, 3) and image.dtype == np.uint8, name
    assert (load_image(tmp_path / "rgba.png") == scene).all()  # alpha dropped, colour kept
    assert (load_image(tmp_path / "p.png") == scene).all()  # 60 colours fit the palette
    assert (np.abs(load_image(tmp_path / "cmyk.tif").astype(int) - scene).max()) <= 1
    expected16 = (gray16 >> 8).astype(np.uint8)  # the 8 most significant bits, not clipped
    assert (load_image(tmp_path / "g16.png") == expected16[:, :, None]).all()


def test_load_image_applies_exif_orientation(tmp_path):
    """Orientation 6 (stored sideways, shown rotated 90 degrees clockwise): load_image and the
    header size used by data check agree with what a viewer shows."""
    from PIL import Image as PILImage

    from personsearch.data.check import ProblemLog, image_size

    stored = _scene(6, 10)
    image = PILImage.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = 6
    image.save(tmp_path / "rotated.png", exif=exif)
    upright = load_image(tmp_path / "rotated.png")
    assert upright.shape == (10, 6, 3)
    assert (upright == np.rot90(stored, k=-1)).all()  # 90 degrees clockwise
    assert image_size(tmp_path / "rotated.png", ProblemLog()) == (6, 10)


def test_load_image_refuses_what_it_cannot_show(tmp_path, monkeypatch):
    from PIL import Image as PILImage

    Image.fromarray(np.zeros((4, 5), np.float32)).save(tmp_path / "float.tif")
    with pytest.raises(DatasetError, match=r"float.tif: floating-point pixels .* save it as an 8-bit image"):
        load_image(tmp_path / "float.tif")
    truncated = tmp_path / "truncated.png"
    noise = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    Image.fromarray(noise).save(truncated)  # incompressible: ~14 kB
    truncated.write_bytes(truncated.read_bytes()[:2000])
    with pytest.raises(DatasetError, match=r"truncated.png: (cannot read image|not a readable)"):
        load_image(truncated)
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(tmp_path / "bomb.png")
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 100)  # 2000 pixels > 2 x 100: a "bomb"
    with pytest.raises(DatasetError, match=r"bomb.png: too many pixels to decode safely"):
        load_image(tmp_path / "bomb.png")
