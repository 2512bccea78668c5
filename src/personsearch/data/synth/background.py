"""Backgrounds and clutter: a fixed street scene per camera (facades with windows, ground with
perspective tiles, poles, trees, benches, person-like posters), and per-frame objects drawn in
depth order with the persons (car-like blobs, crates, poles, mannequins).

Every object is an ``(rgb float32 [h,w,3], alpha float32 [h,w])`` sprite; nothing here is
annotated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from .identities import mannequin_appearance, sample_appearance
from .person import Pose, render_person

WALL_COLOURS = ((170, 160, 150), (150, 120, 100), (200, 195, 180), (120, 125, 135),
                (180, 150, 120), (100, 100, 95), (210, 200, 170), (140, 90, 70))
GROUND_COLOURS = ((110, 110, 110), (140, 135, 125), (90, 92, 95), (160, 150, 130),
                  (120, 115, 100))
CAR_COLOURS = ((200, 200, 205), (30, 30, 35), (150, 20, 25), (40, 60, 120), (120, 120, 120),
               (230, 230, 225), (60, 90, 60))


@dataclass(frozen=True)
class CameraLook:
    """A camera's fixed geometry and colour response."""

    horizon: float  # horizon height as a fraction of the image height
    ground_gain: float  # person height (fraction of image) per unit of foot-below-horizon
    gain: tuple[float, float, float]  # per-channel multiplicative white balance x exposure
    bias: tuple[float, float, float]  # per-channel offset (grey levels)
    gamma: float
    blur: float  # Gaussian blur radius, px
    noise: float  # sensor noise std, grey levels
    jpeg_quality: int


def sample_camera(rng: np.random.Generator, shift: float, blur: float, noise: float,
                  jpeg_quality: int) -> CameraLook:
    horizon = float(rng.uniform(0.08, 0.38))
    return CameraLook(
        horizon=horizon,
        ground_gain=float(rng.uniform(0.4, 0.7)),
        gain=tuple(float(g) for g in np.exp(rng.normal(0.0, 0.10 * shift, 3))
                   * np.exp(rng.normal(0.0, 0.08 * shift))),
        bias=tuple(float(b) for b in rng.normal(0.0, 7.0 * shift, 3)),
        gamma=float(np.exp(rng.normal(0.0, 0.12 * shift))),
        blur=float(blur * rng.uniform(0.7, 1.3)),
        noise=float(noise * rng.uniform(0.7, 1.3)),
        jpeg_quality=int(np.clip(jpeg_quality + rng.integers(-4, 5), 30, 100)),
    )


def _colour(rng: np.random.Generator, table, jitter: float = 12.0) -> tuple[int, int, int]:
    base = np.asarray(table[int(rng.integers(len(table)))], dtype=np.float64)
    return tuple(int(v) for v in np.clip(base + rng.normal(0, jitter, 3), 0, 255))


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cell: int,
                  amplitude: float) -> np.ndarray:
    small = rng.normal(0.0, amplitude, (max(2, height // cell), max(2, width // cell)))
    image = Image.fromarray(small.astype(np.float32), mode="F")
    return np.asarray(image.resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32)


def render_background(
    rng: np.random.Generator, width: int, height: int, camera: CameraLook,
    posters: int, palette_size: int,
) -> np.ndarray:
    """A camera's static scene, float32 [H, W, 3] in 0..255."""
    horizon = int(camera.horizon * height)
    image = Image.new("RGB", (width, height), _colour(rng, WALL_COLOURS))
    draw = ImageDraw.Draw(image)
    # Facades with window grids.
    x = -int(rng.integers(0, width // 6))
    while x < width:
        facade_w = int(rng.uniform(0.15, 0.45) * width)
        top = int(rng.uniform(-0.1, 0.5) * horizon)
        wall = _colour(rng, WALL_COLOURS)
        draw.rectangle([x, top, x + facade_w, horizon], fill=wall)
        if top > 0:
            sky = tuple(int(v) for v in np.clip(rng.normal([170, 190, 215], 15), 0, 255))
            draw.rectangle([x, 0, x + facade_w, top], fill=sky)
        win_w = max(3, int(rng.uniform(0.02, 0.05) * width))
        win_h = max(3, int(win_w * rng.uniform(0.8, 1.8)))
        gap = int(win_w * rng.uniform(0.6, 1.5))
        dark = tuple(int(v * 0.35) for v in wall)
        for wy in range(top + gap, horizon - win_h - gap, win_h + gap):
            for wx in range(x + gap, x + facade_w - win_w, win_w + gap):
                lit = rng.random() < 0.15
                draw.rectangle([wx, wy, wx + win_w, wy + win_h],
                               fill=(230, 210, 150) if lit else dark)
        if rng.random() < 0.5:  # shop sign
            sign_y = horizon - int(0.12 * height)
            draw.rectangle([x + gap, sign_y, x + facade_w - gap, sign_y + int(0.03 * height)],
                           fill=_colour(rng, CAR_COLOURS, 30))
        x += facade_w
    # Ground with perspective tile lines.
    ground = _colour(rng, GROUND_COLOURS)
    draw.rectangle([0, horizon, width, height], fill=ground)
    line_colour = tuple(int(v * 0.8) for v in ground)
    vanish_x = int(rng.uniform(0.2, 0.8) * width)
    for bottom_x in np.linspace(-width, 2 * width, int(rng.integers(8, 20))):
        draw.line([(vanish_x, horizon), (int(bottom_x), height)], fill=line_colour, width=2)
    step = 0.04
    y = horizon + 4.0
    while y < height:
        draw.line([(0, int(y)), (width, int(y))], fill=line_colour, width=1)
        y += step * height * (1 + 4 * (y - horizon) / height)
    # Kerb.
    draw.rectangle([0, horizon - 2, width, horizon + 3], fill=tuple(int(v * 0.7) for v in ground))
    # Trees, poles, benches along the kerb.
    for _ in range(int(rng.integers(1, 5))):
        tx = int(rng.uniform(0, width))
        trunk_h = int(rng.uniform(0.1, 0.3) * height)
        draw.rectangle([tx - 3, horizon - trunk_h, tx + 3, horizon], fill=(70, 50, 35))
        radius = int(trunk_h * rng.uniform(0.3, 0.6))
        green = tuple(int(v) for v in np.clip(rng.normal([60, 110, 50], 15), 0, 255))
        draw.ellipse([tx - radius, horizon - trunk_h - radius, tx + radius,
                      horizon - trunk_h + radius // 2], fill=green)
    for _ in range(int(rng.integers(1, 4))):
        px = int(rng.uniform(0, width))
        draw.rectangle([px - 2, int(horizon * rng.uniform(0.1, 0.6)), px + 2, horizon + 6],
                       fill=(50, 55, 60))
    if rng.random() < 0.6:
        bx = int(rng.uniform(0, width * 0.8))
        bench_w = int(0.1 * width)
        draw.rectangle([bx, horizon + 4, bx + bench_w, horizon + 10], fill=(100, 70, 40))
    canvas = np.asarray(image, dtype=np.float32).copy()
    # Posters: framed, person-like pictures on the facades (hard negatives, not annotated).
    for _ in range(posters):
        poster_h = int(rng.uniform(0.12, 0.3) * height)
        poster_w = int(poster_h * rng.uniform(0.45, 0.7))
        px = int(rng.uniform(0, max(1, width - poster_w)))
        py = int(rng.uniform(0.05, 0.9) * max(1, horizon - poster_h))
        frame_colour = np.asarray(_colour(rng, CAR_COLOURS, 20), dtype=np.float32)
        canvas[py: py + poster_h, px: px + poster_w] = frame_colour
        inner = canvas[py + 3: py + poster_h - 3, px + 3: px + poster_w - 3]
        inner[:] = np.asarray(_colour(rng, WALL_COLOURS, 30), dtype=np.float32)
        fig_h = int(inner.shape[0] * 0.9)
        fig_w = max(4, int(fig_h * rng.uniform(0.3, 0.45)))
        if fig_h >= 8 and fig_w < inner.shape[1]:
            look = sample_appearance(rng, palette_size, 0.6, 0.3)
            rgb, alpha = render_person(look, Pose("front", fig_w / fig_h, 0.8), fig_w, fig_h, rng)
            oy = inner.shape[0] - fig_h
            ox = (inner.shape[1] - fig_w) // 2
            region = inner[oy: oy + fig_h, ox: ox + fig_w]
            region += alpha[..., None] * (rgb - region)
    canvas += _smooth_noise(rng, height, width, 8, 6.0)[..., None]
    return np.clip(canvas, 0, 255)


def render_car(rng: np.random.Generator, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """A car-like blob: body, window band, two wheels."""
    image = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    body = _colour(rng, CAR_COLOURS) + (255,)
    draw.rounded_rectangle([0, int(0.35 * height), width - 1, int(0.85 * height)],
                           radius=max(1, height // 6), fill=body)
    draw.rounded_rectangle([int(0.2 * width), 0, int(0.8 * width), int(0.45 * height)],
                           radius=max(1, height // 8), fill=body)
    draw.rectangle([int(0.25 * width), int(0.08 * height), int(0.75 * width), int(0.38 * height)],
                   fill=(40, 50, 60, 255))
    wheel = int(0.3 * height)
    for cx in (int(0.22 * width), int(0.78 * width)):
        draw.ellipse([cx - wheel // 2, height - wheel, cx + wheel // 2, height - 1],
                     fill=(20, 20, 20, 255))
    array = np.asarray(image, dtype=np.float32)
    return array[..., :3], array[..., 3] / 255.0


def render_crate(rng: np.random.Generator, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """A box / bin / kiosk: a rectangle with a few lines."""
    colour = np.asarray(_colour(rng, WALL_COLOURS + CAR_COLOURS, 20), dtype=np.float32)
    rgb = np.broadcast_to(colour, (height, width, 3)).copy()
    for row in range(0, height, max(2, height // int(rng.integers(2, 6)))):
        rgb[row: row + 1] *= 0.6
    return rgb, np.ones((height, width), dtype=np.float32)


def render_pole(rng: np.random.Generator, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    colour = np.asarray(_colour(rng, ((60, 62, 66), (120, 120, 110), (40, 80, 60)), 10),
                        dtype=np.float32)
    rgb = np.broadcast_to(colour, (height, width, 3)).copy()
    rgb[:, : max(1, width // 3)] *= 1.2
    return np.clip(rgb, 0, 255), np.ones((height, width), dtype=np.float32)


def render_mannequin(rng: np.random.Generator, width: int, height: int):
    """A person-shaped distractor (statue / mannequin): one material colour, no face."""
    look = mannequin_appearance(rng)
    return render_person(look, Pose(("front", "left", "right")[int(rng.integers(3))],
                                    width / height, 0.5), width, height, rng)
