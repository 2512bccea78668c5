"""The pixels of an indexed gallery image: an image file, or a video frame decoded again from
its video at the stored timestamp (search/video.py ``decode_frame_at``).

Frames are decoded on demand rather than stored as thumbnails: the index stays metadata and
embeddings only (a thumbnail per frame would add ~10-30 KB per indexed second of video), the
page shows exactly the frame the model saw at full resolution, and a seek + decode of at most
one group of pictures costs milliseconds to tens of milliseconds per hit. The last few decoded
frames are kept in memory (``FRAME_CACHE_SIZE``), keyed by the video file's path, size and
modification time, so a page showing the same hits again does not decode them again.

Shapes
------
rgb  np.ndarray uint8 [H, W, 3]
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from personsearch.errors import DatasetError
from personsearch.search.store import GalleryStore
from personsearch.search.video import decode_frame_at

FRAME_CACHE_SIZE = 32
_frame_cache: OrderedDict[tuple, np.ndarray] = OrderedDict()
_frame_cache_lock = threading.Lock()


def gallery_file(store: GalleryStore, images_root: str | Path, image_id: int) -> tuple[Path, int | None]:
    """(file, frame pts or None) behind an indexed image id: the image file, or the video."""
    row = store.image(image_id)
    if row is None:
        raise DatasetError(None, f"{store.root}: no image with id {image_id} in the index")
    frame = store.frame(image_id)
    if frame is None:
        return Path(images_root) / row.rel_path, None
    return Path(images_root) / frame.video, frame.pts


def load_frame(video_path: Path, pts: int) -> np.ndarray:
    """The decoded frame (cached; the cache entry is read-only)."""
    try:
        stat = video_path.stat()
    except OSError as error:
        raise DatasetError(video_path, f"cannot read ({error.strerror or error})") from None
    key = (str(video_path), stat.st_size, stat.st_mtime_ns, int(pts))
    with _frame_cache_lock:
        if key in _frame_cache:
            _frame_cache.move_to_end(key)
            return _frame_cache[key]
    rgb = decode_frame_at(video_path, pts)
    rgb.setflags(write=False)
    with _frame_cache_lock:
        _frame_cache[key] = rgb
        while len(_frame_cache) > FRAME_CACHE_SIZE:
            _frame_cache.popitem(last=False)
    return rgb


def load_gallery_image(store: GalleryStore, images_root: str | Path, image_id: int) -> np.ndarray:
    """RGB pixels of an indexed image or video frame (DatasetError naming the file)."""
    from personsearch.data.transforms import load_image

    path, pts = gallery_file(store, images_root, image_id)
    return load_image(path) if pts is None else load_frame(path, pts)
