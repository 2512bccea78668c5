"""A results picture (like Fig. 5 of person search papers): the query crop on the left, the top-K
gallery images on the right (thumbnails, ``columns`` per row) with the matched box drawn and the
rank and similarity (and, for a video frame, the video's name and time code) written under each.

Shapes
------
query_image  np.ndarray uint8 [H, W, 3];  query box [4] x1y1x2y2 original pixels
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

from personsearch.atomic import atomic_open
from personsearch.errors import PersonSearchError
from personsearch.search.query import SearchResult

THUMB_HEIGHT = 220
CAPTION = 22
PAD = 8
QUERY_COLOUR = (30, 144, 255)
HIT_COLOUR = (255, 212, 0)  # drawn over a black outline: visible on any colour


def _fit_height(image: Image.Image, height: int) -> tuple[Image.Image, float]:
    scale = height / max(1, image.height)
    width = max(1, int(round(image.width * scale)))
    return image.resize((width, height), Image.BILINEAR), scale


def render_results(
    result: SearchResult,
    query_image: np.ndarray,
    images_root: str | Path,
    out_path: str | Path,
    columns: int = 5,
    gallery_image: Callable[[int], np.ndarray] | None = None,
) -> Path:
    """Draw the picture and write it atomically to ``out_path`` (PNG). ``gallery_image(image_id)``
    gives a hit's pixels (needed for video frames: search/gallery_images.py); without it hits
    are read as image files under ``images_root``."""
    font = ImageFont.load_default()
    x1, y1, x2, y2 = (int(round(v)) for v in result.query["box"])
    crop = Image.fromarray(query_image).crop((x1, y1, x2, y2))
    query_tile, _ = _fit_height(crop, THUMB_HEIGHT)

    tiles = []
    for hit in result.hits:
        try:
            if gallery_image is not None:
                gallery = Image.fromarray(np.asarray(gallery_image(hit.image_id)))
            else:
                with Image.open(Path(images_root) / hit.image) as opened:
                    # upright, as the index saw it (transforms.load_image applies EXIF orientation)
                    gallery = ImageOps.exif_transpose(opened).convert("RGB")
        except (OSError, PersonSearchError):
            gallery = Image.new("RGB", (THUMB_HEIGHT, THUMB_HEIGHT), (90, 90, 90))
        tile, scale = _fit_height(gallery, THUMB_HEIGHT)
        draw = ImageDraw.Draw(tile)
        box = [v * scale for v in hit.box]
        draw.rectangle(box, outline=(0, 0, 0), width=5)
        draw.rectangle(box, outline=HIT_COLOUR, width=2)
        caption = f"#{hit.rank}  {hit.similarity:.3f}"
        if hit.video is not None:
            caption += f"  {Path(hit.video).name} {hit.time_code}"
        tiles.append((tile, caption))

    columns = max(1, min(columns, len(tiles) or 1))
    rows = max(1, -(-len(tiles) // columns))
    cell_w = max([t.width for t, _ in tiles] + [THUMB_HEIGHT // 2])
    cell_h = THUMB_HEIGHT + CAPTION
    left_w = query_tile.width + 2 * PAD
    width = left_w + columns * (cell_w + PAD) + PAD
    height = max(rows * (cell_h + PAD) + PAD, cell_h + 2 * PAD)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    canvas.paste(query_tile, (PAD, PAD))
    draw.rectangle([PAD - 2, PAD - 2, PAD + query_tile.width + 1, PAD + query_tile.height + 1], outline=QUERY_COLOUR, width=2)
    draw.text((PAD, PAD + THUMB_HEIGHT + 4), "query", fill=(0, 0, 0), font=font)
    if not tiles:
        draw.text((left_w + PAD, PAD + 4), "no hits", fill=(0, 0, 0), font=font)
    for position, (tile, caption) in enumerate(tiles):
        row, column = divmod(position, columns)
        x = left_w + column * (cell_w + PAD) + PAD
        y = PAD + row * (cell_h + PAD)
        canvas.paste(tile, (x, y))
        draw.text((x, y + THUMB_HEIGHT + 4), caption, fill=(0, 0, 0), font=font)

    out_path = Path(out_path)
    with atomic_open(out_path) as handle:
        canvas.save(handle, format="PNG")
    return out_path
