"""Render one person: vector body parts drawn at high resolution with numpy, then downsampled
to the box size with area filtering (PIL BOX), so that stripes, checks, logos and the face are
sharp on a large person and genuinely averaged away on a small one.

Coordinates inside :func:`render_person_highres` are in units of the person's height
(``y`` 0 = top of the head, 1 = soles; ``x`` 0 = body centre line).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from .identities import Appearance

FACINGS = ("front", "back", "left", "right")


@dataclass(frozen=True)
class Pose:
    """How a person stands in one appearance."""

    facing: str  # front | back | left | right
    aspect: float  # target width / height of the box
    swing: float  # 0..1, how far arms and legs are spread within the aspect


def sample_pose(rng: np.random.Generator, aspect: float) -> Pose:
    facing = FACINGS[int(rng.choice(4, p=[0.3, 0.3, 0.2, 0.2]))]
    return Pose(facing=facing, aspect=float(aspect), swing=float(rng.uniform(0.6, 1.0)))


class _Canvas:
    """RGB + coverage canvas with anti-aliased primitives (1 render pixel of edge ramp).

    Every primitive is evaluated only inside its own bounding window: it returns
    ``(window, coverage)`` with ``window`` a pair of slices into the canvas.
    """

    def __init__(self, height: int, width: int, centre_x: float) -> None:
        self.scale = float(height)
        self.centre_x = centre_x
        self.rgb = np.zeros((height, width, 3), dtype=np.float32)
        self.alpha = np.zeros((height, width), dtype=np.float32)
        self.ys = (np.arange(height, dtype=np.float32) + 0.5) / self.scale
        self.xs = (np.arange(width, dtype=np.float32) + 0.5) / self.scale - centre_x
        self.y = self.ys[:, None]
        self.x = self.xs[None, :]

    def _window(self, x0: float, y0: float, x1: float, y1: float):
        pad = 2.0 / self.scale
        height, width = self.alpha.shape
        r0 = int(np.clip(np.floor((y0 - pad) * self.scale), 0, height))
        r1 = int(np.clip(np.ceil((y1 + pad) * self.scale), 0, height))
        c0 = int(np.clip(np.floor((x0 - pad + self.centre_x) * self.scale), 0, width))
        c1 = int(np.clip(np.ceil((x1 + pad + self.centre_x) * self.scale), 0, width))
        window = (slice(r0, max(r0, r1)), slice(c0, max(c0, c1)))
        return window, self.ys[window[0]][:, None], self.xs[window[1]][None, :]

    def _coverage(self, signed_distance: np.ndarray) -> np.ndarray:
        coverage = signed_distance * np.float32(-self.scale)
        coverage += np.float32(0.5)
        np.maximum(coverage, 0.0, out=coverage)
        np.minimum(coverage, 1.0, out=coverage)
        return coverage

    def capsule(self, p0, p1, radius: float):
        (x0, y0), (x1, y1) = p0, p1
        window, y, x = self._window(min(x0, x1) - radius, min(y0, y1) - radius,
                                    max(x0, x1) + radius, max(y0, y1) + radius)
        dx, dy = x1 - x0, y1 - y0
        length2 = dx * dx + dy * dy + 1e-12
        t = np.clip(((x - x0) * dx + (y - y0) * dy) / length2, 0.0, 1.0)
        dist = np.sqrt((x - x0 - t * dx) ** 2 + (y - y0 - t * dy) ** 2)
        return window, self._coverage(dist - radius)

    def ellipse(self, cx: float, cy: float, rx: float, ry: float):
        window, y, x = self._window(cx - rx, cy - ry, cx + rx, cy + ry)
        norm = np.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2)
        return window, self._coverage((norm - 1.0) * min(rx, ry))

    def polygon(self, points):
        """Convex polygon, points in either winding order."""
        xs_, ys_ = zip(*points)
        signed_area = sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1)
                          in zip(points, points[1:] + points[:1]))
        if signed_area < 0:  # make the edge normals below point outwards
            points = points[::-1]
        window, y, x = self._window(min(xs_), min(ys_), max(xs_), max(ys_))
        distance = None
        count = len(points)
        for index in range(count):
            (x0, y0), (x1, y1) = points[index], points[(index + 1) % count]
            nx, ny = y1 - y0, -(x1 - x0)
            norm = np.hypot(nx, ny) + 1e-12
            edge = (x - x0) * (nx / norm) + (y - y0) * (ny / norm)
            distance = edge if distance is None else np.maximum(distance, edge)
        return window, self._coverage(distance)

    def rect(self, x0: float, y0: float, x1: float, y1: float):
        return self.polygon([(x0, y0), (x0, y1), (x1, y1), (x1, y0)])

    def paint(self, shape, colour) -> None:
        """Paint ``colour`` (RGB triple or full-canvas [H,W,3] field) over ``shape``
        (a ``(window, coverage)`` pair from a primitive)."""
        window, coverage = shape
        if coverage.size == 0:
            return
        colour = np.asarray(colour, dtype=np.float32)
        if colour.ndim == 3:
            colour = colour[window]
        cov = coverage[..., None]
        target = self.rgb[window]
        target -= colour
        target *= 1.0 - cov
        target += colour
        np.maximum(self.alpha[window], coverage, out=self.alpha[window])


def _pattern_field(canvas: _Canvas, base, second, pattern: str, period: float, duty: float,
                   y_origin: float) -> np.ndarray | tuple:
    if pattern in ("plain", "logo", "stripe"):
        return base
    base = np.asarray(base, dtype=np.float32)
    second = np.asarray(second, dtype=np.float32)
    rows = np.mod((canvas.y - y_origin) / period, 1.0) < duty
    cols = np.mod(canvas.x / period + 0.25, 1.0) < duty
    if pattern == "hstripes":
        mask = np.broadcast_to(rows, canvas.alpha.shape)
    elif pattern == "vstripes":
        mask = np.broadcast_to(cols, canvas.alpha.shape)
    else:  # checks
        mask = np.logical_xor(
            np.broadcast_to(rows, canvas.alpha.shape), np.broadcast_to(cols, canvas.alpha.shape)
        )
    return np.where(mask[..., None], second, base)


def render_person_highres(
    look: Appearance, pose: Pose, render_height: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Draw the person on a ``render_height``-high canvas of the pose's aspect.

    Returns ``rgb`` float32 [H, W, 3] (0..255) and ``alpha`` float32 [H, W], cropped to the
    figure's tight extent (so the box of the figure is the whole array).
    """
    aspect = pose.aspect
    width = max(8, int(round(render_height * aspect * 1.25)))
    canvas = _Canvas(render_height, width, centre_x=width / (2.0 * render_height))
    side = pose.facing in ("left", "right")
    direction = 1.0 if pose.facing == "right" else -1.0  # +x is "forward" when side-on
    build = look.build
    half_extent = aspect / 2.0

    head_top = 0.03 if look.hat else 0.0
    head_ry = 0.062 * look.head_scale
    head_rx = 0.047 * look.head_scale * (0.9 if side else 1.0)
    head_cy = head_top + head_ry
    shoulder_y = head_cy + head_ry + 0.03
    hip_y = 1.0 - look.leg_fraction
    knee_y = hip_y + (1.0 - hip_y) * 0.5
    ankle_y = 0.975
    leg_r = 0.036 * build
    arm_r = 0.027 * build
    shoulder_hw = (0.07 if side else 0.11) * build
    hip_hw = (0.07 if side else 0.09) * build

    # Spread of limbs fills the aspect: side-on it is the stride, front-on the arms and stance.
    if side:
        stride = np.clip((half_extent - leg_r) * pose.swing, 0.02, 0.24)
        feet_x = (direction * stride, -direction * stride)
        hip_x = (0.0, 0.0)
        knee_x = (direction * stride * 0.55, -direction * stride * 0.35)
        hands = ((direction * stride * 0.9, hip_y + 0.02), (-direction * stride * 0.9, hip_y))
        shoulders = ((0.0, shoulder_y + 0.01), (0.0, shoulder_y + 0.01))
    else:
        spread = np.clip(half_extent - shoulder_hw - arm_r, 0.0, 0.16) * pose.swing
        stance = np.clip((half_extent - leg_r) * 0.6 * pose.swing, 0.04, 0.16)
        feet_x = (-stance, stance)
        hip_x = (-0.045 * build, 0.045 * build)
        knee_x = (-(0.045 * build + stance) / 2, (0.045 * build + stance) / 2)
        hands = ((-(shoulder_hw + spread), hip_y + 0.01), (shoulder_hw + spread, hip_y + 0.01))
        shoulders = ((-(shoulder_hw - arm_r), shoulder_y + 0.015),
                     (shoulder_hw - arm_r, shoulder_y + 0.015))
    elbow = [((s[0] + h[0]) / 2 * 1.05, (s[1] + h[1]) / 2) for s, h in zip(shoulders, hands)]

    top_field = _pattern_field(canvas, look.top_colour, look.top_colour2, look.top_pattern,
                               look.top_period, look.top_duty, shoulder_y)
    bottom_field = _pattern_field(canvas, look.bottom_colour, look.bottom_colour2,
                                  look.bottom_pattern, look.top_period * 1.4, 0.5, hip_y)
    skin = look.skin
    far_shade = 0.78

    def draw_leg(index: int, shade: float) -> None:
        hip = (hip_x[index], hip_y + 0.01)
        knee = (knee_x[index], knee_y)
        ankle = (feet_x[index], ankle_y)
        upper = bottom_field if look.bottom_style != "skirt" else skin
        lower = bottom_field if look.bottom_style == "trousers" else skin
        canvas.paint(canvas.capsule(hip, knee, leg_r), _shade(upper, shade))
        canvas.paint(canvas.capsule(knee, ankle, leg_r * 0.85), _shade(lower, shade))
        if look.bottom_pattern == "stripe" and look.bottom_style == "trousers":
            offset = leg_r * 0.55 * (1 if index else -1)
            canvas.paint(
                canvas.capsule((hip[0] + offset, hip[1]), (ankle[0] + offset, ankle[1] - 0.02),
                               leg_r * 0.18),
                _shade(look.bottom_colour2, shade),
            )
        toe = 0.035 * direction if side else 0.0
        canvas.paint(
            canvas.capsule((feet_x[index] - toe * 0.3, 0.985 - 0.012),
                           (feet_x[index] + toe, 0.985 - 0.008), 0.014),
            _shade(look.shoe_colour, shade),
        )

    def draw_arm(index: int, shade: float) -> None:
        sleeve = top_field
        canvas.paint(canvas.capsule(shoulders[index], elbow[index], arm_r), _shade(sleeve, shade))
        lower = sleeve if look.long_sleeves else skin
        canvas.paint(canvas.capsule(elbow[index], hands[index], arm_r * 0.85),
                     _shade(lower, shade))
        canvas.paint(canvas.ellipse(hands[index][0], hands[index][1] + 0.012, arm_r * 0.9,
                                    arm_r * 1.1), _shade(skin, shade))

    def draw_hair_back() -> None:
        if look.long_hair:
            canvas.paint(canvas.rect(-head_rx * 1.05, head_cy, head_rx * 1.05,
                                     shoulder_y + 0.07), look.hair)

    # --- back layer ------------------------------------------------------------------------
    if look.backpack and pose.facing == "front":
        pass  # hidden behind the body; only straps show (drawn on the torso)
    if look.backpack and side:
        canvas.paint(canvas.rect(-direction * (0.07 * build + 0.075) if direction > 0 else
                                 0.07 * build, shoulder_y + 0.02,
                                 -0.07 * build if direction > 0 else 0.07 * build + 0.075,
                                 hip_y - 0.03), look.backpack_colour)
    if pose.facing != "back":
        draw_hair_back()
    if side:
        draw_arm(1, far_shade)
        draw_leg(1, far_shade)
    else:
        draw_leg(0, 1.0)
        draw_leg(1, 1.0)

    # --- torso -----------------------------------------------------------------------------
    torso = canvas.polygon([
        (-shoulder_hw, shoulder_y), (-hip_hw, hip_y + 0.04),
        (hip_hw, hip_y + 0.04), (shoulder_hw, shoulder_y),
    ])
    canvas.paint(torso, top_field)
    canvas.paint(canvas.ellipse(0.0, shoulder_y + 0.005, shoulder_hw, 0.03), top_field)
    if look.bottom_style == "skirt":
        canvas.paint(canvas.polygon([
            (-hip_hw, hip_y), (-hip_hw * 1.5, knee_y + 0.02),
            (hip_hw * 1.5, knee_y + 0.02), (hip_hw, hip_y),
        ]), bottom_field)
    if look.top_pattern == "logo" and pose.facing == "front":
        _draw_logo(canvas, look, 0.0, shoulder_y + 0.09, 0.035)
    if look.backpack and pose.facing == "back":
        canvas.paint(canvas.rect(-0.075 * build, shoulder_y + 0.02, 0.075 * build, hip_y - 0.02),
                     look.backpack_colour)
        canvas.paint(canvas.rect(-0.05 * build, hip_y - 0.09, 0.05 * build, hip_y - 0.04),
                     _shade(look.backpack_colour, 0.8))
    if look.backpack and pose.facing == "front":
        for sign in (-1.0, 1.0):
            canvas.paint(canvas.capsule((sign * shoulder_hw * 0.6, shoulder_y),
                                        (sign * shoulder_hw * 0.7, hip_y - 0.06), 0.01),
                         look.backpack_colour)

    # --- arms, head ------------------------------------------------------------------------
    if side:
        draw_leg(0, 1.0)
        draw_arm(0, 1.0)
    else:
        draw_arm(0, 1.0)
        draw_arm(1, 1.0)
    canvas.paint(canvas.rect(-0.02, head_cy + head_ry * 0.6, 0.02, shoulder_y + 0.01), skin)
    head_x = 0.008 * direction if side else 0.0
    canvas.paint(canvas.ellipse(head_x, head_cy, head_rx, head_ry), skin)
    if pose.facing == "back":
        canvas.paint(canvas.ellipse(head_x, head_cy, head_rx * 1.04, head_ry * 1.02), look.hair)
        draw_hair_back()
    else:
        hair = canvas.ellipse(head_x - 0.01 * direction * side, head_cy - head_ry * 0.3,
                              head_rx * 1.08, head_ry * 0.78)
        window, cover = hair
        cover = cover * (canvas.ys[window[0]][:, None] < head_cy - head_ry * 0.15)
        canvas.paint((window, cover), look.hair)
        if pose.facing == "front":
            for sign in (-1.0, 1.0):
                canvas.paint(canvas.ellipse(sign * head_rx * 0.38, head_cy + head_ry * 0.05,
                                            head_rx * 0.12, head_ry * 0.08), (30, 25, 25))
            canvas.paint(canvas.ellipse(0.0, head_cy + head_ry * 0.55, head_rx * 0.3,
                                        head_ry * 0.06), _shade(skin, 0.7))
    if look.hat:
        canvas.paint(canvas.ellipse(head_x, head_top + 0.02, head_rx * 1.12, 0.045), look.hat_colour)
        canvas.paint(canvas.rect(head_x - head_rx * 1.3, head_top + 0.028,
                                 head_x + head_rx * 1.3 + (0.03 * direction if side else 0.0),
                                 head_top + 0.04), _shade(look.hat_colour, 0.85))
    if look.bag:
        bag_side = direction if side else 1.0
        bag_x = bag_side * (shoulder_hw + 0.01)
        if not side:
            canvas.paint(canvas.capsule((-shoulder_hw * 0.6, shoulder_y),
                                        (bag_x, hip_y - 0.02), 0.008), look.bag_colour)
        canvas.paint(canvas.rect(min(bag_x, bag_x + bag_side * 0.075), hip_y - 0.07,
                                 max(bag_x, bag_x + bag_side * 0.075), hip_y + 0.05),
                     look.bag_colour)

    # --- shading, cloth texture, crop ------------------------------------------------------
    lateral = 1.0 - 0.22 * np.clip(np.abs(canvas.x) / max(half_extent, 1e-3), 0, 1.5) ** 2
    vertical = 1.05 - 0.12 * canvas.y
    texture = rng.standard_normal(canvas.alpha.shape, dtype=np.float32)
    texture *= 0.05
    texture += 1.0
    rgb = canvas.rgb * (lateral * vertical * texture)[..., None]
    alpha = canvas.alpha
    rows = np.flatnonzero(alpha.max(axis=1) > 0.02)
    cols = np.flatnonzero(alpha.max(axis=0) > 0.02)
    rgb = rgb[rows[0]: rows[-1] + 1, cols[0]: cols[-1] + 1]
    alpha = alpha[rows[0]: rows[-1] + 1, cols[0]: cols[-1] + 1]
    if pose.facing == "left":
        pass  # drawn facing -x already
    return np.clip(rgb, 0, 255), alpha


def _shade(colour, factor: float):
    return np.asarray(colour, dtype=np.float32) * factor


def _draw_logo(canvas: _Canvas, look: Appearance, cx: float, cy: float, size: float) -> None:
    if look.logo_shape == "disc":
        cover = canvas.ellipse(cx, cy, size, size)
    elif look.logo_shape == "square":
        cover = canvas.rect(cx - size, cy - size, cx + size, cy + size)
    elif look.logo_shape == "triangle":
        cover = canvas.polygon([(cx, cy - size), (cx - size, cy + size), (cx + size, cy + size)])
    else:
        cover = canvas.rect(cx - size * 1.4, cy - size * 0.45, cx + size * 1.4, cy + size * 0.45)
    canvas.paint(cover, look.top_colour2)


def render_height_for(box_height: int) -> int:
    """High-resolution render height for a box: 2x oversampled, 128..400 px."""
    return int(np.clip(2 * box_height, 128, 400))


def render_person(
    look: Appearance, pose: Pose, box_width: int, box_height: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The person as it appears in a ``box_width`` x ``box_height`` box: ``rgb`` float32
    [h, w, 3] and ``alpha`` float32 [h, w] in 0..1, area-downsampled from the high-res
    drawing (the figure touches all four sides of the box)."""
    rgb, alpha = render_person_highres(look, pose, render_height_for(box_height), rng)
    rgba = np.concatenate([rgb, alpha[..., None] * 255.0], axis=2)
    image = Image.fromarray(np.round(rgba).astype(np.uint8), mode="RGBA")
    small = np.asarray(image.resize((box_width, box_height), Image.Resampling.BOX),
                       dtype=np.float32)
    return small[..., :3], small[..., 3] / 255.0
