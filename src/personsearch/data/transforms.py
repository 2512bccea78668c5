"""Image preprocessing shared by training, evaluation and search (docs/architecture.md,
"Preprocessing contract"; docs/methods.md §1.2).

Shapes
------
image_uint8   np.ndarray uint8 [H, W, 3] RGB, as read from disk
tensor        float32 [3, h, w], ImageNet-normalised, h = floor(H * scale), w = floor(W * scale)
boxes         float32 [N, 4] x1, y1, x2, y2 in pixels of the image they belong to
masks         uint8 [h, w] label map (0 background, k+1 = foreground of box k)
images        float32 [B, 3, Hp, Wp] zero-padded batch, Hp and Wp multiples of 32

Resize choice: bilinear ``torch.nn.functional.interpolate(align_corners=False,
antialias=False)`` to the size ``floor(side * scale)``, which is what torchvision's
``GeneralizedRCNNTransform`` (SeqNet) does; the pixel values are scaled to [0, 1] before the
resize and normalised after it (normalisation is affine per channel and bilinear weights sum to
one, so the order does not change the result beyond float rounding). Masks are resized with
nearest neighbour so their labels survive. Boxes are multiplied by the single ``scale``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from personsearch.errors import DatasetError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# EXIF orientation tag values that swap width and height (rotations by 90 / 270 degrees)
EXIF_ORIENTATION_TAG = 0x0112
TRANSPOSING_ORIENTATIONS = frozenset({5, 6, 7, 8})
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})


def oriented_size(image) -> tuple[int, int]:
    """(width, height) of an opened PIL image as viewers show it: after its EXIF orientation
    (read from the header, nothing decoded)."""
    width, height = image.size
    try:
        orientation = int(image.getexif().get(EXIF_ORIENTATION_TAG, 1))
    except Exception:  # noqa: BLE001 - a damaged EXIF block means "no orientation"
        orientation = 1
    return (height, width) if orientation in TRANSPOSING_ORIENTATIONS else (width, height)


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file as uint8 RGB [H, W, 3], the way viewers show it; DatasetError naming
    the file otherwise.

    - EXIF orientation is applied (a phone photo stored sideways comes out upright, as browsers,
      ``cv2.imread`` and the search page's uploads show it), so boxes are in the coordinates of
      the upright image;
    - grayscale, palette, CMYK and RGBA images are converted to RGB (alpha dropped: the colour
      under it is kept); 16-bit grayscale keeps its 8 most significant bits;
    - 32-bit integer and floating-point images are refused (their value range is unknown);
    - an image declaring more pixels than PIL's decompression-bomb limit is refused before
      decoding.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            upright = ImageOps.exif_transpose(image)
            if upright.mode in SIXTEEN_BIT_MODES:
                gray = (np.asarray(upright, dtype=np.uint16) >> 8).astype(np.uint8)
                return np.repeat(gray[:, :, None], 3, axis=2)
            if upright.mode in ("I", "F"):
                raise DatasetError(path, f"{'32-bit integer' if upright.mode == 'I' else 'floating-point'} "
                                         f"pixels (PIL mode {upright.mode}) are not supported: "
                                         f"save it as an 8-bit image")
            rgb = upright.convert("RGB")
    except FileNotFoundError:
        raise DatasetError(path, "image file not found") from None
    except Image.DecompressionBombError as error:
        raise DatasetError(path, f"too many pixels to decode safely ({error})") from None
    except UnidentifiedImageError:
        raise DatasetError(path, "not a readable image (unknown or corrupt format)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise DatasetError(path, f"cannot read image ({type(error).__name__}: {error})") from None
    return np.asarray(rgb, dtype=np.uint8).copy()


def resize_scale(height: int, width: int, min_size: int, max_size: int) -> float:
    """scale = min(min_size / short side, max_size / long side)."""
    short, long = min(height, width), max(height, width)
    if short <= 0:
        raise ValueError(f"empty image of size {height}x{width}")
    return min(min_size / short, max_size / long)


def resized_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """Output size floor(side * scale) (a tiny epsilon absorbs float error such as
    900 / 600 * 600 = 899.9999...)."""
    return (
        max(1, int(math.floor(height * scale + 1e-6))),
        max(1, int(math.floor(width * scale + 1e-6))),
    )


def normalize(tensor: torch.Tensor) -> torch.Tensor:
    """[3, h, w] float in [0, 1] -> ImageNet-normalised."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=tensor.dtype, device=tensor.device)[:, None, None]
    std = torch.tensor(IMAGENET_STD, dtype=tensor.dtype, device=tensor.device)[:, None, None]
    return (tensor - mean) / std


def to_float_tensor(image_uint8: np.ndarray) -> torch.Tensor:
    """uint8 [H, W, 3] -> float32 [3, H, W] in [0, 1]."""
    if image_uint8.ndim != 3 or image_uint8.shape[2] != 3:
        raise ValueError(f"expected an RGB image [H, W, 3], got shape {image_uint8.shape}")
    return torch.from_numpy(np.ascontiguousarray(image_uint8)).permute(2, 0, 1).float() / 255.0


def resize_tensor(tensor: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of [3, H, W] to [3, *size] (align_corners=False, no antialias)."""
    if tuple(tensor.shape[-2:]) == tuple(size):
        return tensor
    return F.interpolate(
        tensor[None], size=size, mode="bilinear", align_corners=False, antialias=False
    )[0]


def preprocess(
    image_uint8: np.ndarray, min_size: int = 900, max_size: int = 1500
) -> tuple[torch.Tensor, float]:
    """Resize (keep ratio, scale = min(min/short, max/long)) and normalise.

    Returns (tensor [3, h, w] float32, scale). Boxes go into the model multiplied by ``scale``.
    """
    height, width = image_uint8.shape[:2]
    scale = resize_scale(height, width, min_size, max_size)
    tensor = resize_tensor(to_float_tensor(image_uint8), resized_size(height, width, scale))
    return normalize(tensor), scale


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """Label map uint8 [H, W] -> uint8 [*size], nearest neighbour."""
    tensor = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.uint8))
    if tuple(tensor.shape) == tuple(size):
        return tensor.clone()
    resized = F.interpolate(tensor[None, None].float(), size=size, mode="nearest")
    return resized[0, 0].to(torch.uint8)


def hflip_image(tensor: torch.Tensor) -> torch.Tensor:
    """Flip [..., h, w] left-right."""
    return tensor.flip(-1)


def hflip_boxes(boxes: torch.Tensor, width: float) -> torch.Tensor:
    """Mirror x1y1x2y2 boxes in an image of the given width: x1' = w - x2, x2' = w - x1."""
    flipped = boxes.clone()
    flipped[:, 0] = width - boxes[:, 2]
    flipped[:, 2] = width - boxes[:, 0]
    return flipped


def batch_images(
    tensors: Sequence[torch.Tensor], size_divisible: int = 32
) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """Zero-pad [3, h_i, w_i] tensors (bottom/right) into one [B, 3, H, W] batch, H and W the
    maxima rounded up to a multiple of ``size_divisible``. Returns (images, [(h_i, w_i)])."""
    if len(tensors) == 0:
        raise ValueError("batch_images needs at least one image")
    image_sizes = [(int(t.shape[-2]), int(t.shape[-1])) for t in tensors]
    max_h = max(h for h, _ in image_sizes)
    max_w = max(w for _, w in image_sizes)
    stride = max(1, int(size_divisible))
    padded_h = int(math.ceil(max_h / stride) * stride)
    padded_w = int(math.ceil(max_w / stride) * stride)
    first = tensors[0]
    images = first.new_zeros((len(tensors), first.shape[0], padded_h, padded_w))
    for i, tensor in enumerate(tensors):
        images[i, :, : tensor.shape[-2], : tensor.shape[-1]].copy_(tensor)
    return images, image_sizes
