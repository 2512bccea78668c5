"""Helpers for the search tests: tiny scene images (PIL-drawn coloured rectangles on grey) and a
colour "embedder" with hand-checkable behaviour. (A uniquely named module: several test folders
have a conftest.py, so tests import helpers from here, not from conftest.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

BACKGROUND = (128, 128, 128)
# colour name -> RGB; a "person" is a filled rectangle of one colour
COLOURS = {
    "red": (220, 20, 20), "green": (20, 200, 20), "blue": (20, 20, 220),
    "yellow": (230, 230, 30), "cyan": (20, 220, 220), "magenta": (220, 20, 220),
}
DIM = 8


def draw_scene(path: Path, persons: list[tuple[str, tuple[int, int, int, int]]], size=(96, 64)) -> None:
    image = Image.new("RGB", size, BACKGROUND)
    draw = ImageDraw.Draw(image)
    for colour, (x1, y1, x2, y2) in persons:
        draw.rectangle([x1, y1, x2 - 1, y2 - 1], fill=COLOURS[colour])
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def colour_embedding(rgb: np.ndarray) -> np.ndarray:
    """A fixed unit vector per colour: RGB/255 in dims 0..2, 1 - RGB/255 in dims 3..5, 0.5, 0."""
    rgb = np.asarray(rgb, dtype=np.float32) / 255.0
    vector = np.concatenate([rgb, 1.0 - rgb, [0.5, 0.0]]).astype(np.float32)
    return vector / np.linalg.norm(vector)


class ColourEmbedder:
    """Detects every non-background colour region (its bounding box, score 0.9, or the score of
    ``scores_by_colour``) and embeds a box by the most frequent non-grey colour inside it.
    Records which images it processed (``calls``) so incremental behaviour can be checked."""

    def __init__(self, fingerprint: str = "colour-model-1", scores_by_colour: dict | None = None) -> None:
        self.fingerprint = fingerprint
        self.embedding_dim = DIM
        self.min_size, self.max_size = 64, 96
        self.method = "colour"
        self.scores_by_colour = scores_by_colour or {}
        self.calls: list[tuple[int, int, int]] = []  # (h, w, first non-grey pixel sum) per image

    def detect(self, images):
        out = []
        for image in images:
            self.calls.append(image.shape)
            flat = image.reshape(-1, 3)
            colours = {tuple(c) for c in np.unique(flat, axis=0).tolist()} - {BACKGROUND}
            boxes, scores, embeddings = [], [], []
            for colour in sorted(colours):
                ys, xs = np.nonzero(np.all(image == np.asarray(colour, np.uint8), axis=2))
                boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
                name = next((n for n, c in COLOURS.items() if c == colour), None)
                scores.append(self.scores_by_colour.get(name, 0.9))
                embeddings.append(colour_embedding(colour))
            out.append((np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32),
                        np.asarray(embeddings, np.float32).reshape(-1, DIM)))
        return out

    def embed(self, image, boxes):
        result = []
        for x1, y1, x2, y2 in np.asarray(boxes).astype(int).tolist():
            crop = image[y1:y2, x1:x2].reshape(-1, 3)
            crop = crop[~np.all(crop == np.asarray(BACKGROUND, np.uint8), axis=1)]
            if len(crop) == 0:
                result.append(colour_embedding(BACKGROUND))
                continue
            values, counts = np.unique(crop, axis=0, return_counts=True)
            result.append(colour_embedding(values[np.argmax(counts)]))
        return np.asarray(result, np.float32)


SCENES = {
    "a.png": [("red", (5, 5, 20, 50)), ("green", (40, 10, 55, 60))],
    "b.png": [("red", (60, 8, 75, 58)), ("blue", (10, 10, 25, 55))],
    "sub/c.png": [("yellow", (30, 5, 45, 50))],
    "d.png": [],  # no persons
}


def scene_array(persons: list[tuple[str, tuple[int, int, int, int]]], size=(96, 64)) -> np.ndarray:
    """The RGB pixels [H, W, 3] of ``draw_scene``'s picture."""
    image = Image.new("RGB", size, BACKGROUND)
    draw = ImageDraw.Draw(image)
    for colour, (x1, y1, x2, y2) in persons:
        draw.rectangle([x1, y1, x2 - 1, y2 - 1], fill=COLOURS[colour])
    return np.asarray(image, dtype=np.uint8).copy()


def write_video(path: Path, frames: list[np.ndarray], fps: int = 4, codec: str = "png", gop: int | None = None) -> None:
    """Encode RGB frames [H, W, 3] into a video file with PyAV. ``codec="png"`` (in .mov / .mkv)
    is lossless and every frame a keyframe, so ColourEmbedder sees the exact colours;
    ``"libx264"`` with ``gop`` makes keyframes every ``gop`` frames (lossy)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames[0].shape[:2]
    options = {} if gop is None else {"g": str(gop), "bf": "0", "keyint_min": str(gop), "sc_threshold": "0"}
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps, options=options)
        stream.width, stream.height = width, height
        stream.pix_fmt = "rgb24" if codec == "png" else "yuv420p"
        for rgb in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def walking_frames(count: int, colours=("red", "blue"), size=(96, 64)) -> list[np.ndarray]:
    """``count`` frames in which each colour's person moves 4 px right per frame (wrapping)."""
    frames = []
    for index in range(count):
        persons = []
        for lane, colour in enumerate(colours):
            x1 = (5 + 4 * index + 30 * lane) % (size[0] - 16)
            persons.append((colour, (x1, 5 + 3 * lane, x1 + 14, 50 + 3 * lane)))
        frames.append(scene_array(persons, size))
    return frames
