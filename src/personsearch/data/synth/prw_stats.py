"""PRW statistics the synthetic generator follows (docs/datasets.md §2.6-2.7) and
samplers drawing from them.

Box figures are in pixels of the original 1920x1080 PRW frames; the generator rescales them to
its own frame height.
"""

from __future__ import annotations

import numpy as np

PRW_FRAME_HEIGHT = 1080
PRW_TRAIN_FRAMES = 5704
PRW_TEST_FRAMES = 6112
PRW_TRAIN_IDS = 483
PRW_TEST_IDS = 544
PRW_TEST_QUERY_IDS = 450
PRW_QUERIES = 2057
PRW_LABELED_FRACTION = {"train": 14907 / 18048, "test": 19127 / 25062}
PRW_PERSONS_PER_FRAME = {
    # mean, 90th percentile, max (persons per frame)
    "train": (3.16, 6, 14),
    "test": (4.1, 8, 19),
}
# Frames per camera (train), used as the camera mix.
PRW_FRAMES_PER_CAMERA = np.array([891, 754, 996, 566, 1251, 1246], dtype=np.float64)
# Number of cameras an identity appears in (train): 1..6 cameras -> number of ids.
PRW_CAMERAS_PER_ID = np.array([16, 41, 73, 135, 151, 67], dtype=np.float64)

# Box height quantiles (train, px out of 1080): probability -> height.
HEIGHT_QUANTILE_P = np.array([0.0, 0.05, 0.10, 0.25, 0.50, 0.75, 0.90, 0.95, 1.0])
HEIGHT_QUANTILE_PX = np.array([54, 93, 103, 121, 157, 257, 385, 490, 831], dtype=np.float64)
# Aspect ratio w/h quantiles. The 0 and 1 ends are not published; 0.25 / 0.62 are our
# extrapolation of the 5th/95th percentiles.
ASPECT_QUANTILE_P = np.array([0.0, 0.05, 0.25, 0.50, 0.75, 0.95, 1.0])
ASPECT_QUANTILE = np.array([0.25, 0.285, 0.327, 0.363, 0.42, 0.526, 0.62])


def height_at_quantile(u: np.ndarray, frame_height: int) -> np.ndarray:
    """Box height in pixels of a ``frame_height``-high frame at PRW height quantile ``u``
    (piecewise-linear inverse CDF through the published quantiles)."""
    px_1080 = np.interp(u, HEIGHT_QUANTILE_P, HEIGHT_QUANTILE_PX)
    return px_1080 * (frame_height / PRW_FRAME_HEIGHT)


def sample_aspect(rng: np.random.Generator, size: int) -> np.ndarray:
    """Box aspect ratios w/h drawn from the PRW distribution."""
    return np.interp(rng.random(size), ASPECT_QUANTILE_P, ASPECT_QUANTILE)


def sample_persons_per_frame(
    rng: np.random.Generator, size: int, mean: float, maximum: int
) -> np.ndarray:
    """Persons per frame: 1 + negative binomial (dispersion 2), capped at ``maximum``.

    With PRW's means (3.16 train, 4.1 test) this gives median 3 and 90th percentiles close to
    PRW's 6 and 8.
    """
    extra_mean = max(mean - 1.0, 1e-6)
    dispersion = 2.0
    p = dispersion / (dispersion + extra_mean)
    counts = 1 + rng.negative_binomial(dispersion, p, size=size)
    return np.minimum(counts, maximum).astype(np.int64)


def sample_cameras_per_id(rng: np.random.Generator, size: int, num_cameras: int) -> np.ndarray:
    """Number of cameras an identity appears in, PRW's distribution rescaled to
    ``num_cameras`` cameras."""
    probs = PRW_CAMERAS_PER_ID / PRW_CAMERAS_PER_ID.sum()
    drawn = rng.choice(np.arange(1, 7), size=size, p=probs)
    scaled = np.ceil(drawn * num_cameras / 6.0).astype(np.int64)
    return np.clip(scaled, 1, num_cameras)
