"""Query by photo: one or more photos of the person (not a box in an indexed frame).

The box of a photo (``box_mode``):

- ``"whole"``: the whole image is the person (a cut-out or cropped photo);
- ``"largest"``: the largest detection with score >= the index's ``min_score`` (a photo with
  background); an error when nothing is detected;
- ``"auto"`` (default): the largest detection, unless nothing is detected, or it covers at least
  ``WHOLE_IMAGE_COVER`` of the image (a detector often puts a box a little inside a tightly
  cropped person; the whole crop is then the better box), or less than ``MIN_DETECTION_COVER``
  (a speck in a photo that is meant to show the person is a false detection, or the person is
  too large for the detector to find), then the whole image.

Each photo's result says which box was used and why (``box_source``). Several photos (the same
person seen more than once) are combined as re-id systems combine a track: the mean of their
unit embeddings, normalised to unit length again.

Shapes
------
image       np.ndarray uint8 [H, W, 3] RGB;  box float32 [4] x1y1x2y2 image pixels
embeddings  float32 [P, D] unit norm, one per photo;  query embedding float32 [D] unit norm
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from personsearch.errors import PersonSearchError
from personsearch.search.query import SearchResult, rank
from personsearch.search.store import GalleryStore

BOX_MODES = ("auto", "whole", "largest")
WHOLE_IMAGE_COVER = 0.5
MIN_DETECTION_COVER = 0.02


@dataclass(frozen=True)
class Photo:
    image: np.ndarray  # uint8 [H, W, 3]
    where: str  # file name (or "upload") for messages and the result
    sha256: str | None = None  # of the file: an indexed copy of it is left out of the results


@dataclass(frozen=True)
class PhotoBox:
    box: np.ndarray  # float32 [4]
    source: str  # which box and why, for the user


def photo_box(embedder, image: np.ndarray, min_score: float, box_mode: str = "auto", where: str = "photo") -> PhotoBox:
    """The box of the person in a photo (see the module docstring)."""
    if box_mode not in BOX_MODES:
        raise PersonSearchError(f"unknown photo box mode {box_mode!r} (choose from {', '.join(BOX_MODES)})")
    height, width = image.shape[:2]
    whole = np.asarray([0, 0, width, height], dtype=np.float32)
    if box_mode == "whole":
        return PhotoBox(whole, "whole image (asked for)")
    boxes, scores, _ = embedder.detect([image])[0]
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    keep = np.asarray(scores, np.float32) >= min_score
    boxes, scores = boxes[keep], np.asarray(scores, np.float32)[keep]
    if len(boxes) == 0:
        if box_mode == "largest":
            raise PersonSearchError(f"{where}: no person detected with score >= {min_score:g} "
                                    "(use the whole image: --photo-box whole)")
        return PhotoBox(whole, f"whole image (no person detected with score >= {min_score:g})")
    clipped = np.clip(boxes, 0, [width, height, width, height]).astype(np.float32)
    areas = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    largest = int(np.argmax(areas))
    cover = float(areas[largest]) / float(width * height)
    if box_mode == "auto" and cover >= WHOLE_IMAGE_COVER:
        return PhotoBox(whole, f"whole image (the largest detection covers {cover:.0%} of it: a photo of the "
                               "person alone)")
    if box_mode == "auto" and cover < MIN_DETECTION_COVER:
        return PhotoBox(whole, f"whole image (the largest detection covers only {cover:.1%} of it: not the "
                               "person)")
    if areas[largest] <= 0:
        raise PersonSearchError(f"{where}: the largest detection is empty after clipping to the image")
    return PhotoBox(clipped[largest], f"largest detection (score {float(scores[largest]):.2f}, "
                                      f"{cover:.0%} of the image)")


def mean_embedding(embeddings: np.ndarray) -> np.ndarray:
    """Mean of the L2-normalised rows [P, D], normalised again: float32 [D]."""
    embeddings = np.asarray(embeddings, dtype=np.float64).reshape(len(embeddings), -1)
    if len(embeddings) == 0:
        raise PersonSearchError("no photo given")
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    if np.any(norms <= 1e-12):
        raise PersonSearchError("a photo has a zero embedding")
    mean = (embeddings / norms).mean(axis=0)
    norm = float(np.linalg.norm(mean))
    if norm <= 1e-6:
        raise PersonSearchError("the photos' embeddings cancel out (they point in opposite directions)")
    return (mean / norm).astype(np.float32)


def search_with_photos(
    store: GalleryStore,
    embedder,
    photos: list[Photo],
    *,
    box_mode: str = "auto",
    top_k: int = 10,
    weighting: str = "score",
    min_score: float = 0.0,
    exclude_query_image: bool = True,
) -> SearchResult:
    """Rank the gallery against the person in ``photos`` (one or more)."""
    if not photos:
        raise PersonSearchError("give at least one photo")
    described, embeddings, excluded = [], [], set()
    for photo in photos:
        chosen = photo_box(embedder, photo.image, store.settings.min_score, box_mode, photo.where)
        embeddings.append(embedder.embed(photo.image, chosen.box[None])[0])
        height, width = photo.image.shape[:2]
        described.append({"photo": photo.where, "box": [round(float(v), 2) for v in chosen.box],
                          "box_source": chosen.source, "width": width, "height": height})
        if photo.sha256 and exclude_query_image:
            excluded.update(store.image_ids_with_sha(photo.sha256))
    query_embedding = mean_embedding(np.stack(embeddings))
    hits = rank(store, query_embedding, top_k, weighting, min_score, excluded)
    query = {"photos": described, "combined": f"mean of {len(photos)} unit embeddings, renormalised"
             if len(photos) > 1 else "one photo", "excluded_image_ids": sorted(excluded), "weighting": weighting}
    return SearchResult(query, hits)


def load_photo(path: str | Path) -> Photo:
    """A photo file (DatasetError naming it when it is not a readable image)."""
    from personsearch.data.transforms import load_image

    path = Path(path)
    image = load_image(path)
    return Photo(image, str(path), hashlib.sha256(path.read_bytes()).hexdigest())
