"""Person foreground masks for SSL's background filtering (docs/architecture.md, data contracts).

``<root>/masks/<image stem>.png``: one 8-bit single-channel PNG (mode "L", or "P" read as its
palette indices) the size of the image; a label map with 0 = background and k + 1 = foreground
of box k of the record (box order of the reader).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from personsearch.data.records import SceneRecord
from personsearch.errors import DatasetError


def mask_path(root: str | Path, record: SceneRecord) -> Path:
    return Path(root) / "masks" / (Path(record.image_name).stem + ".png")


def load_person_masks(root: str | Path, record: SceneRecord) -> np.ndarray | None:
    """uint8 [H, W] label map of ``record``'s image, or None when the mask file does not exist.
    DatasetError when it is unreadable, not 8-bit single-channel, not the image's size, or holds
    a label above the record's box count."""
    from PIL import Image

    path = mask_path(root, record)
    if not path.is_file():
        return None
    try:
        with Image.open(path) as image:
            if image.mode not in ("L", "P"):
                raise DatasetError(path, f"expected an 8-bit single-channel PNG, got mode "
                                         f"{image.mode!r}")
            labels = np.array(image, dtype=np.uint8)
    except DatasetError:
        raise
    except Exception as error:
        raise DatasetError(path, f"unreadable mask ({type(error).__name__}: {error})") from None
    if labels.shape != (record.height, record.width):
        raise DatasetError(path, f"mask is {labels.shape[1]}x{labels.shape[0]} but the image "
                                 f"{record.image_name} is {record.width}x{record.height}")
    if labels.size and int(labels.max()) > record.num_boxes:
        raise DatasetError(path, f"label {int(labels.max())} but the image has only "
                                 f"{record.num_boxes} boxes")
    return labels
