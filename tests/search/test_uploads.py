"""Uploaded query images (search/uploads.py): pixel limit before decoding, downscaling on
receipt, EXIF orientation, image modes, and the byte-bounded store."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from personsearch.search.http_checks import RequestRefused
from personsearch.search.uploads import ENTRY_OVERHEAD_BYTES, Upload, UploadStore, decode_upload


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def test_small_image_is_kept_at_its_size():
    image = Image.new("RGB", (40, 30), (200, 10, 10))
    upload = decode_upload(encode(image, "PNG"), max_pixels=10_000, min_size=64, max_size=96)
    assert upload.rgb.shape == (30, 40, 3) and upload.original_size == (40, 30)  # never enlarged
    assert upload.mime == "image/png" and (upload.rgb == [200, 10, 10]).all()
    assert Image.open(io.BytesIO(upload.encoded)).size == (40, 30)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_large_image_is_reduced_to_the_model_size(fmt):
    # 1000x600: scale = min(64 / 600, 96 / 1000) = 0.096 -> 96 x 57 (floor of 57.6)
    image = Image.new("RGB", (1000, 600), (128, 128, 128))
    image.paste((20, 20, 220), (500, 0, 1000, 600))  # right half blue
    upload = decode_upload(encode(image, fmt), max_pixels=10**6, min_size=64, max_size=96)
    assert upload.rgb.shape == (57, 96, 3) and upload.original_size == (1000, 600)
    assert upload.mime == ("image/jpeg" if fmt == "JPEG" else "image/png")
    assert np.abs(upload.rgb[28, 10].astype(int) - 128).max() <= 6  # left: grey
    assert np.abs(upload.rgb[28, 85].astype(int) - [20, 20, 220]).max() <= 12  # right: blue


def test_pixel_limit_is_checked_on_the_declared_size():
    image = Image.new("1", (200, 100), 0)
    data = encode(image, "PNG")
    assert decode_upload(data, max_pixels=20_000, min_size=64, max_size=96).original_size == (200, 100)
    with pytest.raises(RequestRefused) as refused:
        decode_upload(data, max_pixels=19_999, min_size=64, max_size=96)
    assert refused.value.status == 413 and "200x100" in refused.value.message


@pytest.mark.parametrize("data", [b"", b"GIF89a", b"<html></html>", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64])
def test_unreadable_upload_is_a_415(data):
    with pytest.raises(RequestRefused) as refused:
        decode_upload(data, max_pixels=10**6, min_size=64, max_size=96)
    assert refused.value.status == 415


def test_only_web_image_formats_are_opened():
    image = Image.new("RGB", (20, 10), (1, 2, 3))
    for fmt in ("PPM", "TGA", "PCX"):  # formats PIL reads, but no browser sends
        with pytest.raises(RequestRefused) as refused:
            decode_upload(encode(image, fmt), max_pixels=10**6, min_size=64, max_size=96)
        assert refused.value.status == 415, fmt
    for fmt in ("GIF", "WEBP", "BMP", "TIFF"):
        assert decode_upload(encode(image, fmt), max_pixels=10**6, min_size=64, max_size=96).rgb.shape == (10, 20, 3)


def test_truncated_jpeg_is_a_415():
    data = encode(Image.new("RGB", (64, 64), (1, 2, 3)), "JPEG")
    with pytest.raises(RequestRefused) as refused:
        decode_upload(data[: len(data) // 2], max_pixels=10**6, min_size=64, max_size=96)
    assert refused.value.status == 415


def test_exif_orientation_is_applied():
    # stored 60 wide x 40 high with a red top-left corner; orientation 6 = shown rotated 90 degrees clockwise
    image = Image.new("RGB", (60, 40), (0, 0, 0))
    image.paste((255, 0, 0), (0, 0, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6
    upload = decode_upload(encode(image, "JPEG", exif=exif, quality=95), max_pixels=10**6, min_size=64, max_size=96)
    assert upload.rgb.shape == (60, 40, 3) and upload.original_size == (40, 60)
    assert upload.rgb[3, 36, 0] > 200 and upload.rgb[3, 3, 0] < 50  # the corner is now top-right


@pytest.mark.parametrize("mode, fmt", [("L", "PNG"), ("P", "PNG"), ("RGBA", "PNG"), ("CMYK", "JPEG"), ("I;16", "PNG")])
def test_image_modes_become_rgb(mode, fmt):
    image = Image.new("RGB", (20, 10), (200, 200, 200)).convert(mode)
    upload = decode_upload(encode(image, fmt), max_pixels=10**6, min_size=64, max_size=96)
    assert upload.rgb.shape == (10, 20, 3) and upload.rgb.dtype == np.uint8


def make_upload(side: int, encoded_bytes: int) -> Upload:
    return Upload(np.zeros((side, side, 3), np.uint8), b"x" * encoded_bytes, "image/png", (side, side))


def test_store_evicts_the_oldest_to_stay_within_its_bytes():
    entry = 10 * 10 * 3 + 100 + ENTRY_OVERHEAD_BYTES  # 1424 bytes
    store = UploadStore(max_bytes=3 * entry)
    ids = [store.add(make_upload(10, 100)) for _ in range(3)]
    assert store.total_bytes == 3 * entry and len(store) == 3
    fourth = store.add(make_upload(10, 100))
    assert len(store) == 3 and store.total_bytes == 3 * entry
    with pytest.raises(RequestRefused, match="no upload"):
        store.get(ids[0])
    assert store.get(ids[1]).original_size == (10, 10) and store.get(fourth)
    big = store.add(make_upload(20, 100 + 2 * entry - (20 * 20 * 3 + 100 + ENTRY_OVERHEAD_BYTES)))  # 2 entries' worth
    assert len(store) == 2 and store.total_bytes == 3 * entry  # evicted ids[1] and ids[2]
    assert {store.get(fourth).rgb.shape, store.get(big).rgb.shape} == {(10, 10, 3), (20, 20, 3)}
    with pytest.raises(RequestRefused) as refused:
        store.add(make_upload(40, 0))  # 4800 + 1024 > 3 entries
    assert refused.value.status == 413
