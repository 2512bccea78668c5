"""``--like`` presets: synthetic datasets with a real benchmark's sizes.

``like_arguments(name, frames=None, image_scale=1.0)`` returns the keyword arguments of
:func:`personsearch.data.synth.generate_dataset` that reproduce benchmark ``name``'s counts
(docs/synthetic_data.md, "Full-size datasets"): frames, train/test split, identities per split,
labeled share, persons per image, image size(s), and thereby the query count.

``frames`` scales the preset down (or up) keeping its proportions: the split share, persons
per image and labeled share are ratios already; the identity counts are multiplied by
``frames / preset frames`` (at least 3 each). ``image_scale`` multiplies every image size
(box heights follow, they are relative to the image height) -- for quick rehearsals and tests.
"""

from __future__ import annotations

from personsearch.errors import ConfigError

from . import prw_stats

# CUHK-SYSU (docs/synthetic_data.md; docs/datasets.md §1.5 figures, derived ones marked).
CUHK_IMAGES = 18184
CUHK_TRAIN_IMAGES = 11206
CUHK_TEST_IMAGES = 6978  # the gallery pool
CUHK_TRAIN_IDS = 5532
CUHK_TEST_IDS = 2900  # one query per test identity
CUHK_TRAIN_BOXES = 55272
CUHK_TEST_BOXES = 96143 - 55272  # 40,871 (derived)
CUHK_STREET_SHARE = 12490 / 18184  # street photos; the rest are movie frames
# Labeled boxes per identity: ~2.8 (8,432 identities; our approximation, see the docs).
CUHK_BOXES_PER_LABELED_ID = 2.8
# Image sizes: docs/datasets.md gives no size distribution for CUHK-SYSU, only the street / movie
# split. OUR CHOICE (not measured on the dataset): street photos at three common still-camera
# sizes (mostly landscape), movie frames at two widescreen sizes. (width, height, weight).
CUHK_IMAGE_SIZES = (
    (800, 600, 0.45 * CUHK_STREET_SHARE / 0.70),
    (600, 800, 0.15 * CUHK_STREET_SHARE / 0.70),
    (1024, 768, 0.10 * CUHK_STREET_SHARE / 0.70),
    (1280, 720, 0.60 * (1 - CUHK_STREET_SHARE)),
    (960, 540, 0.40 * (1 - CUHK_STREET_SHARE)),
)
CUHK_NOMINAL = (800, 600)
CUHK_MAX_PERSONS = 30  # our choice: the papers give no per-image maximum

PRW_FRAMES = prw_stats.PRW_TRAIN_FRAMES + prw_stats.PRW_TEST_FRAMES  # 11,816

LIKE_PRESETS = ("prw-full", "cuhk-sysu-full")


def _preset(name: str) -> dict:
    if name == "prw-full":
        return {
            "fmt": "prw",
            "frames": PRW_FRAMES,
            "width": 1920,
            "height": 1080,
            "train_fraction": prw_stats.PRW_TRAIN_FRAMES / PRW_FRAMES,
            "num_train_ids": prw_stats.PRW_TRAIN_IDS,
            "num_test_ids": prw_stats.PRW_TEST_IDS,
            "labeled_fraction_train": prw_stats.PRW_LABELED_FRACTION["train"],
            "labeled_fraction_test": prw_stats.PRW_LABELED_FRACTION["test"],
            "persons_per_frame_train": prw_stats.PRW_PERSONS_PER_FRAME["train"][0],
            "persons_per_frame_test": prw_stats.PRW_PERSONS_PER_FRAME["test"][0],
            "max_persons_per_frame": prw_stats.PRW_PERSONS_PER_FRAME["test"][2],
            "query_id_fraction": prw_stats.PRW_TEST_QUERY_IDS / prw_stats.PRW_TEST_IDS,
            "num_cameras": 6,
            # PRW's 2,057 queries = 4.57 cameras per query identity; with the train camera
            # distribution the full plan gives 1,620 queries, with 2 extra cameras 1,924.
            "extra_cameras_test": 2,
        }
    if name == "cuhk-sysu-full":
        return {
            "fmt": "cuhk-sysu",
            "frames": CUHK_IMAGES,
            "width": CUHK_NOMINAL[0],
            "height": CUHK_NOMINAL[1],
            "image_sizes": CUHK_IMAGE_SIZES,
            "train_fraction": CUHK_TRAIN_IMAGES / CUHK_IMAGES,
            "num_train_ids": CUHK_TRAIN_IDS,
            "num_test_ids": CUHK_TEST_IDS,
            "labeled_fraction_train": CUHK_TRAIN_IDS * CUHK_BOXES_PER_LABELED_ID / CUHK_TRAIN_BOXES,
            "labeled_fraction_test": CUHK_TEST_IDS * CUHK_BOXES_PER_LABELED_ID / CUHK_TEST_BOXES,
            "persons_per_frame_train": CUHK_TRAIN_BOXES / CUHK_TRAIN_IMAGES,
            "persons_per_frame_test": CUHK_TEST_BOXES / CUHK_TEST_IMAGES,
            "max_persons_per_frame": CUHK_MAX_PERSONS,
            "num_cameras": 8,
        }
    raise ConfigError(f"synthetic data: unknown --like preset {name!r}; expected one of "
                      f"{LIKE_PRESETS}")


def like_arguments(name: str, frames: int | None = None, image_scale: float = 1.0) -> dict:
    """Keyword arguments of ``generate_dataset`` for preset ``name`` (see the module doc)."""
    values = _preset(name)
    if not 0.05 <= image_scale <= 4.0:
        raise ConfigError(f"synthetic data: image_scale must be in [0.05, 4], got {image_scale}")
    if frames is not None:
        if int(frames) < 4:
            raise ConfigError(f"synthetic data: frames must be >= 4, got {frames}")
        ratio = int(frames) / values["frames"]
        values["frames"] = int(frames)
        for key in ("num_train_ids", "num_test_ids"):
            values[key] = max(3, int(round(values[key] * ratio)))
    if image_scale != 1.0:
        values["width"] = max(64, int(round(values["width"] * image_scale)))
        values["height"] = max(64, int(round(values["height"] * image_scale)))
        if "image_sizes" in values:
            values["image_sizes"] = tuple(
                (max(64, int(round(w * image_scale))), max(64, int(round(h * image_scale))), p)
                for w, h, p in values["image_sizes"])
    return values
