"""Compose one frame from its plan: camera background, clutter, mannequins and persons drawn
back to front (by foot y), then the camera (gain / bias / gamma / white balance, sensor noise,
optical blur). Returns the RGB image and the person label map (0 background, k + 1 = visible
foreground of box k; front-most owns a pixel; occluders in front erase it)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageFilter

from .background import (CameraLook, render_background, render_car, render_crate,
                         render_mannequin, render_pole)
from .identities import Appearance
from .person import render_person, sample_pose
from .plan import FramePlan
from .settings import SynthSettings

MASK_THRESHOLD = 0.5  # alpha at or above which a pixel is the person's foreground
MAX_OCCLUDER_COVER = 0.4  # an unannotated object may hide at most this much of a person box


@dataclass(frozen=True)
class RenderContext:
    settings: SynthSettings
    cameras: dict[int, CameraLook]
    appearances: dict[int, Appearance]


_BACKGROUNDS: dict[tuple, np.ndarray] = {}


def camera_background(context: RenderContext, camera: int,
                      settings: SynthSettings | None = None) -> np.ndarray:
    """The camera's static scene (cached per process; a pure function of seed, camera and
    image size). ``settings``: the context's, with the image's own size."""
    settings = context.settings if settings is None else settings
    key = (settings.seed, camera, settings.width, settings.height, settings.posters_per_camera,
           settings.palette_size)
    if key not in _BACKGROUNDS:
        if len(_BACKGROUNDS) > 32:
            _BACKGROUNDS.clear()
        rng = np.random.default_rng([settings.seed, 5, camera])
        scene = render_background(rng, settings.width, settings.height, context.cameras[camera],
                                  settings.posters_per_camera, settings.palette_size)
        blur = context.cameras[camera].blur
        if blur > 0.05:
            blurred = Image.fromarray(scene.astype(np.uint8)).filter(ImageFilter.GaussianBlur(blur))
            scene = np.asarray(blurred, dtype=np.float32).copy()
        _BACKGROUNDS[key] = scene
    return _BACKGROUNDS[key]


def _blit(image: np.ndarray, labels: np.ndarray, rgb: np.ndarray, alpha: np.ndarray,
          x1: int, y1: int, label: int) -> None:
    """Alpha-composite a sprite with top-left (x1, y1), clipped to the image; write ``label``
    into the label map where alpha >= MASK_THRESHOLD (0 for an occluder)."""
    height, width = labels.shape
    h, w = alpha.shape
    sx0, sy0 = max(0, -x1), max(0, -y1)
    dx0, dy0 = max(0, x1), max(0, y1)
    dx1, dy1 = min(width, x1 + w), min(height, y1 + h)
    if dx1 <= dx0 or dy1 <= dy0:
        return
    sprite_alpha = alpha[sy0: sy0 + dy1 - dy0, sx0: sx0 + dx1 - dx0]
    sprite_rgb = rgb[sy0: sy0 + dy1 - dy0, sx0: sx0 + dx1 - dx0]
    region = image[dy0:dy1, dx0:dx1]
    region += sprite_alpha[..., None] * (sprite_rgb - region)
    labels[dy0:dy1, dx0:dx1][sprite_alpha >= MASK_THRESHOLD] = label


def _cover(box, other) -> float:
    """Fraction of ``box`` covered by ``other`` (x1, y1, x2, y2)."""
    ix = max(0.0, min(box[2], other[2]) - max(box[0], other[0]))
    iy = max(0.0, min(box[3], other[3]) - max(box[1], other[1]))
    area = max(1e-6, (box[2] - box[0]) * (box[3] - box[1]))
    return ix * iy / area


def _objects(rng: np.random.Generator, frame: FramePlan, settings: SynthSettings,
             camera: CameraLook) -> list[tuple]:
    """Unannotated objects standing on the ground: (foot_y, kind, x1, y1, w, h)."""
    width, height = settings.width, settings.height
    kinds = ["car", "crate", "pole"]
    wanted = [str(rng.choice(kinds, p=[0.4, 0.35, 0.25]))
              for _ in range(rng.poisson(settings.clutter_rate))]
    wanted += ["mannequin"] * int(rng.poisson(settings.distractor_rate))
    placed = []
    for kind in wanted:
        for _ in range(5):
            foot = float(rng.uniform(camera.horizon + 0.05, 1.0))
            person_h = max(8.0, (foot - camera.horizon) * camera.ground_gain * height)
            obj_h, obj_w = {
                "car": (0.8 * person_h, 1.9 * person_h),
                "crate": (0.45 * person_h, 0.5 * person_h),
                "pole": (min(3.0 * person_h, foot * height), max(2.0, 0.06 * person_h)),
                "mannequin": (person_h * rng.uniform(0.9, 1.05), person_h * 0.36),
            }[kind]
            obj_h, obj_w = max(4, int(obj_h)), max(2, int(obj_w))
            y2 = int(round(foot * height))
            x1 = int(rng.integers(-obj_w // 2, width - obj_w // 2))
            box = (x1, y2 - obj_h, x1 + obj_w, y2)
            hides = [_cover(p.box, box) for p in frame.persons if p.box[3] < y2]
            if not hides or max(hides) <= MAX_OCCLUDER_COVER:
                placed.append((y2, kind, x1, y2 - obj_h, obj_w, obj_h))
                break
    return placed


def _camera_lut(camera: CameraLook, brightness: float) -> list[int]:
    values = np.arange(256, dtype=np.float64) / 255.0
    table = []
    for channel in range(3):
        out = 255.0 * (values ** camera.gamma) * camera.gain[channel] * brightness
        out += camera.bias[channel]
        table.append(np.clip(np.round(out), 0, 255).astype(np.int64))
    return np.concatenate(table).tolist()


def render_frame(frame: FramePlan, context: RenderContext) -> tuple[Image.Image, np.ndarray]:
    """The frame's RGB image (PIL, before JPEG) and uint8 [H, W] person label map."""
    settings = context.settings
    if (frame.width, frame.height) != (settings.width, settings.height):
        settings = replace(settings, width=frame.width, height=frame.height)
    camera = context.cameras[frame.camera]
    rng = np.random.default_rng([settings.seed, 4, frame.index])
    image = camera_background(context, frame.camera, settings).copy()
    labels = np.zeros((settings.height, settings.width), dtype=np.uint8)

    drawables = []  # (foot_y, order, kind, payload)
    for k, person in enumerate(frame.persons):
        drawables.append((person.box[3], 1, k, "person", person))
    for order, obj in enumerate(_objects(rng, frame, settings, camera)):
        drawables.append((obj[0], 0, order, "object", obj))
    drawables.sort(key=lambda item: item[:3])
    renderers = {"car": render_car, "crate": render_crate, "pole": render_pole,
                 "mannequin": render_mannequin}
    for _, _, k, what, payload in drawables:
        if what == "person":
            x1, y1, x2, y2 = payload.box
            look = context.appearances[payload.true_id]
            pose = sample_pose(rng, (x2 - x1) / (y2 - y1))
            rgb, alpha = render_person(look, pose, x2 - x1, y2 - y1, rng)
            rgb *= np.float32(rng.uniform(0.9, 1.1))  # local light on this person
            _blit(image, labels, _soften(rgb, camera.blur), _soften(alpha, camera.blur),
                  x1, y1, k + 1)
        else:
            _, kind, x1, y1, w, h = payload
            rgb, alpha = renderers[kind](rng, w, h)
            _blit(image, labels, _soften(np.asarray(rgb, np.float32), camera.blur),
                  _soften(alpha, camera.blur), x1, y1, 0)

    # Sensor noise: a random window of a fixed noise field (cheap, deterministic per frame).
    bank = _noise_bank(settings)
    oy = int(rng.integers(0, bank.shape[0] - settings.height + 1))
    ox = int(rng.integers(0, bank.shape[1] - settings.width + 1))
    image += bank[oy: oy + settings.height, ox: ox + settings.width] * np.float32(camera.noise)
    np.clip(image, 0.0, 255.0, out=image)
    pil = Image.fromarray(image.astype(np.uint8), mode="RGB")  # truncation: <1 grey level
    brightness = float(1.0 + rng.normal(0.0, settings.illumination_jitter))
    return pil.point(_camera_lut(camera, brightness)), labels


_NOISE: dict[tuple, np.ndarray] = {}


def _noise_bank(settings: SynthSettings) -> np.ndarray:
    """Unit Gaussian noise, larger than a frame so that frames take random windows; a pure
    function of the seed and the frame size."""
    key = (settings.seed, settings.width, settings.height)
    if key not in _NOISE:
        if len(_NOISE) >= 8:  # a few image sizes (image_sizes) stay cached together
            _NOISE.clear()
        rng = np.random.default_rng([settings.seed, 6])
        bank = rng.standard_normal((settings.height + 61, settings.width + 97, 3),
                                   dtype=np.float32)
        _NOISE[key] = bank
    return _NOISE[key]


def _soften(array: np.ndarray, radius: float) -> np.ndarray:
    """Separable 3-tap Gaussian-like blur of std ``radius`` px (capped at 1) along the first two
    axes, edges replicated: the camera optics, applied to each sprite (the background is
    blurred once with PIL) instead of to the whole frame."""
    if radius <= 0.05 or min(array.shape[:2]) < 3:
        return array
    side = float(np.exp(-1.0 / (2.0 * min(radius, 1.0) ** 2)))
    side = np.float32(side / (1.0 + 2.0 * side))
    centre = np.float32(1.0 - 2.0 * side)
    padded = np.concatenate([array[:1], array, array[-1:]], axis=0)
    array = centre * array + side * (padded[:-2] + padded[2:])
    padded = np.concatenate([array[:, :1], array, array[:, -1:]], axis=1)
    return centre * array + side * (padded[:, :-2] + padded[:, 2:])
