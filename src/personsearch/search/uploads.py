"""Uploaded query images: decoded within a pixel budget, downscaled on receipt, kept in a store
bounded in bytes.

Decoding. Only the formats in ``UPLOAD_FORMATS`` are opened. The image header is read first (``Image.open`` decodes no pixels); an image whose
declared width x height exceeds ``max_pixels`` is refused *before* any pixel is decoded, so a
160 KB PNG declaring 7000 x 7000 pixels costs nothing. An accepted image is reduced to the size
the model works at (the index's preprocessing: short side ``min_size``, long side at most
``max_size``; never enlarged): JPEGs are decoded directly at a reduced scale (``Image.draft``),
other formats decoded and resized. The EXIF orientation is applied, so the stored pixels are
what a browser shows. Query boxes on an upload are in the stored image's pixels (the upload's
answer gives that width and height and the ``scale`` from the original).

Store. Each entry costs its RGB array plus its encoded copy (served back to the page) plus a
fixed allowance for bookkeeping; adding an entry evicts the oldest ones until the total fits
``max_bytes``.
"""

from __future__ import annotations

import io
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from personsearch.data.transforms import resize_scale, resized_size
from personsearch.search.http_checks import RequestRefused

ENTRY_OVERHEAD_BYTES = 1024
# the formats PIL may open an upload as (no EPS, which PIL decodes with an external Ghostscript)
UPLOAD_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")  # "JPEG" also opens MPO (multi-picture JPEG)
# EXIF orientation -> the transpose that shows the image upright
_ORIENTATION = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
                6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}


@dataclass(frozen=True)
class Upload:
    rgb: np.ndarray  # uint8 [H, W, 3], already downscaled
    encoded: bytes  # what GET /api/uploads/{id} returns
    mime: str
    original_size: tuple[int, int]  # (width, height) as uploaded, after the EXIF orientation

    @property
    def nbytes(self) -> int:
        return int(self.rgb.nbytes) + len(self.encoded) + ENTRY_OVERHEAD_BYTES


def decode_upload(data: bytes, max_pixels: int, min_size: int, max_size: int) -> Upload:
    """Decode an uploaded image (see the module docstring). RequestRefused 413 when it declares
    more than ``max_pixels`` pixels, 415 when it is not a readable image."""
    try:
        with Image.open(io.BytesIO(data), formats=UPLOAD_FORMATS) as image:
            width, height = image.size
            if width < 1 or height < 1:
                raise RequestRefused(415, f"upload has an empty size {width}x{height}")
            if width * height > max_pixels:
                raise RequestRefused(413, f"upload is {width}x{height} = {width * height / 1e6:.1f} Mpixel, "
                                          f"limit {max_pixels / 1e6:.1f} Mpixel")
            orientation = image.getexif().get(0x0112, 1)
            scale = min(1.0, resize_scale(height, width, min_size, max_size))
            target_h, target_w = resized_size(height, width, scale)
            fmt = (image.format or "").upper()
            if fmt in ("JPEG", "MPO") and scale < 1.0:
                image.draft("RGB", (target_w, target_h))  # decode at 1/2, 1/4 or 1/8 scale
            image.load()
            rgb_image = image.convert("RGB")
    except RequestRefused:
        raise
    except Image.DecompressionBombError:
        raise RequestRefused(413, "upload declares too many pixels") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
        raise RequestRefused(415, "upload is not a readable image") from None
    if rgb_image.size != (target_w, target_h):
        rgb_image = rgb_image.resize((target_w, target_h), Image.Resampling.BILINEAR)
    if orientation in _ORIENTATION:
        rgb_image = rgb_image.transpose(_ORIENTATION[orientation])
        if orientation >= 5:
            width, height = height, width
    buffer = io.BytesIO()
    if fmt in ("JPEG", "MPO"):
        rgb_image.save(buffer, format="JPEG", quality=90)
        mime = "image/jpeg"
    else:
        rgb_image.save(buffer, format="PNG")
        mime = "image/png"
    rgb = np.asarray(rgb_image, dtype=np.uint8).copy()
    return Upload(rgb=rgb, encoded=buffer.getvalue(), mime=mime, original_size=(width, height))


class UploadStore:
    """Uploads by id, oldest evicted first so that the entries' bytes stay <= ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self._entries: OrderedDict[str, Upload] = OrderedDict()
        self._total = 0
        self._lock = threading.Lock()

    def add(self, upload: Upload) -> str:
        if upload.nbytes > self.max_bytes:
            raise RequestRefused(413, f"upload needs {upload.nbytes} bytes, the upload store holds {self.max_bytes}")
        upload_id = secrets.token_hex(8)
        with self._lock:
            self._entries[upload_id] = upload
            self._total += upload.nbytes
            while self._total > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._total -= evicted.nbytes
        return upload_id

    def get(self, upload_id: str) -> Upload:
        with self._lock:
            upload = self._entries.get(upload_id)
        if upload is None:
            raise RequestRefused(404, f"no upload {upload_id!r} (uploads are kept in memory, the newest "
                                      f"{self.max_bytes / 2**20:.0f} MB)")
        return upload

    @property
    def total_bytes(self) -> int:
        with self._lock:
            return self._total

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
