"""Generator settings: one frozen dataclass, difficulty presets and keyword overrides.

``make_settings(frames, width, height, difficulty, **overrides)`` is the single place where the
user's arguments become a :class:`SynthSettings`. Unknown override names and out-of-range
values raise :class:`personsearch.errors.ConfigError`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from personsearch.errors import ConfigError

from . import prw_stats

FORMATS = ("prw", "cuhk-sysu")
DIFFICULTIES = ("easy", "normal", "hard")
CUHK_LABELED_FRACTION = 0.25


@dataclass(frozen=True)
class SynthSettings:
    """Everything that shapes a synthetic dataset. Counts left at ``None`` are derived from
    the frame count following PRW (see :func:`make_settings`)."""

    fmt: str = "prw"
    frames: int = 1000
    seed: int = 0
    width: int = 960
    height: int = 540
    difficulty: str = "normal"
    # --- split and identities -------------------------------------------------------------
    train_fraction: float = prw_stats.PRW_TRAIN_FRAMES / (
        prw_stats.PRW_TRAIN_FRAMES + prw_stats.PRW_TEST_FRAMES
    )
    num_train_ids: int | None = None
    num_test_ids: int | None = None
    labeled_fraction_train: float = prw_stats.PRW_LABELED_FRACTION["train"]
    labeled_fraction_test: float = prw_stats.PRW_LABELED_FRACTION["test"]
    query_id_fraction: float = prw_stats.PRW_TEST_QUERY_IDS / prw_stats.PRW_TEST_IDS
    # Cameras added to each test identity's PRW camera count (capped at num_cameras): PRW
    # queries are one per camera of a query identity, 2,057 / 450 = 4.57 per identity.
    extra_cameras_test: int = 0
    # --- scene content --------------------------------------------------------------------
    num_cameras: int = 6
    persons_per_frame_train: float = prw_stats.PRW_PERSONS_PER_FRAME["train"][0]
    persons_per_frame_test: float = prw_stats.PRW_PERSONS_PER_FRAME["test"][0]
    max_persons_per_frame: int = 19
    height_scale: float = 1.0  # multiplies every person height of the PRW distribution
    min_height: int | None = None  # px; default PRW's 54/1080 of the frame height
    max_height: int | None = None  # px; default 0.92 of the frame height
    min_visible: float = 0.35  # least box fraction not covered by persons in front
    occlusion_rate: float = 0.3  # chance a person is placed overlapping another one
    distractor_rate: float = 0.5  # mean person-like distractors (mannequins) per frame
    clutter_rate: float = 1.0  # mean cars/crates/poles per frame (some occlude persons)
    posters_per_camera: int = 2  # static person-like posters on each camera's walls
    # --- appearance -----------------------------------------------------------------------
    palette_size: int = 14  # clothing colours to draw from (fewer = more colour collisions)
    pattern_rate: float = 0.65  # chance a top has stripes / checks / a logo
    accessory_rate: float = 0.35  # chance of each accessory (hat, backpack, bag)
    # --- camera ---------------------------------------------------------------------------
    camera_shift: float = 1.0  # strength of per-camera gain / bias / white balance / gamma
    illumination_jitter: float = 0.06  # per-frame brightness change (fraction)
    blur: float = 0.6  # Gaussian blur radius (px) of the camera optics, per camera +-30%
    noise: float = 2.5  # sensor noise std (grey levels)
    jpeg_quality: int = 88
    # --- image sizes ----------------------------------------------------------------------
    # None: every image is width x height. Otherwise ((width, height, weight), ...): each
    # image's size is drawn from these weights (CUHK-SYSU's photos vary in size); width x height
    # is then only the nominal size the px settings (min_height, max_height) refer to.
    image_sizes: tuple[tuple[int, int, float], ...] | None = None
    # CUHK-SYSU: which TestG{N}.mat files to write (must include 50). None: every size the
    # pool can fill (50 and 100 always). At full size TestG500..4000 dominate generation time.
    cuhk_gallery_sizes: tuple[int, ...] | None = None

    def as_dict(self) -> dict:
        return asdict(self)


# Presets change only these fields; explicit keyword overrides win over the preset.
DIFFICULTY_PRESETS: dict[str, dict] = {
    "easy": dict(
        palette_size=20,
        pattern_rate=0.8,
        occlusion_rate=0.1,
        distractor_rate=0.1,
        clutter_rate=0.4,
        posters_per_camera=0,
        camera_shift=0.4,
        height_scale=1.4,
        blur=0.4,
        noise=1.5,
        jpeg_quality=92,
    ),
    "normal": dict(),
    "hard": dict(
        palette_size=8,
        pattern_rate=0.5,
        occlusion_rate=0.55,
        distractor_rate=1.2,
        clutter_rate=1.8,
        posters_per_camera=4,
        camera_shift=1.6,
        height_scale=0.85,
        blur=0.9,
        noise=4.0,
        jpeg_quality=80,
    ),
}

_RANGES = {
    "train_fraction": (0.05, 0.95),
    "labeled_fraction_train": (0.0, 1.0),
    "labeled_fraction_test": (0.05, 1.0),
    "query_id_fraction": (0.01, 1.0),
    "num_cameras": (1, 9),
    "extra_cameras_test": (0, 8),
    "persons_per_frame_train": (1.0, 40.0),
    "persons_per_frame_test": (1.0, 40.0),
    "max_persons_per_frame": (1, 60),
    "height_scale": (0.2, 5.0),
    "min_visible": (0.05, 1.0),
    "occlusion_rate": (0.0, 1.0),
    "distractor_rate": (0.0, 20.0),
    "clutter_rate": (0.0, 20.0),
    "posters_per_camera": (0, 20),
    "palette_size": (2, 24),
    "pattern_rate": (0.0, 1.0),
    "accessory_rate": (0.0, 1.0),
    "camera_shift": (0.0, 4.0),
    "illumination_jitter": (0.0, 0.5),
    "blur": (0.0, 5.0),
    "noise": (0.0, 30.0),
    "jpeg_quality": (30, 100),
}


def make_settings(
    fmt: str = "prw",
    frames: int = 1000,
    seed: int = 0,
    width: int = 960,
    height: int = 540,
    difficulty: str = "normal",
    **overrides,
) -> SynthSettings:
    """Validate the arguments of :func:`generate_dataset` and build the settings."""
    if fmt not in FORMATS:
        raise ConfigError(f"synthetic data: unknown format {fmt!r}; expected one of {FORMATS}")
    if difficulty not in DIFFICULTIES:
        raise ConfigError(
            f"synthetic data: unknown difficulty {difficulty!r}; expected one of {DIFFICULTIES}"
        )
    if int(frames) < 4:
        raise ConfigError(f"synthetic data: frames must be >= 4, got {frames}")
    if int(width) < 64 or int(height) < 64:
        raise ConfigError(f"synthetic data: image size must be >= 64x64, got {width}x{height}")
    known = {f.name for f in fields(SynthSettings)} - {
        "fmt", "frames", "seed", "width", "height", "difficulty"
    }
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(
            f"synthetic data: unknown setting(s) {unknown}; known: {sorted(known)}"
        )
    values = dict(DIFFICULTY_PRESETS[difficulty])
    values.update(overrides)
    for name, (low, high) in _RANGES.items():
        if name in values and not low <= values[name] <= high:
            raise ConfigError(
                f"synthetic data: {name}={values[name]!r} is outside [{low}, {high}]"
            )
    sizes = values.get("image_sizes")
    if sizes is not None:
        try:
            sizes = tuple((int(w), int(h), float(weight)) for w, h, weight in sizes)
        except (TypeError, ValueError):
            raise ConfigError(
                "synthetic data: image_sizes must be (width, height, weight) triples, "
                f"got {sizes!r}"
            ) from None
        if not sizes or any(w < 64 or h < 64 or weight <= 0 for w, h, weight in sizes):
            raise ConfigError(
                f"synthetic data: image_sizes need sizes >= 64x64 and weights > 0, got {sizes!r}"
            )
        values["image_sizes"] = sizes
    gallery_sizes = values.get("cuhk_gallery_sizes")
    if gallery_sizes is not None:
        allowed = (50, 100, 500, 1000, 2000, 4000)
        try:
            gallery_sizes = tuple(sorted({int(size) for size in gallery_sizes}))
        except (TypeError, ValueError):
            gallery_sizes = ()
        if 50 not in gallery_sizes or not set(gallery_sizes) <= set(allowed):
            raise ConfigError(
                f"synthetic data: cuhk_gallery_sizes must include 50 and be among {allowed}, "
                f"got {values['cuhk_gallery_sizes']!r}"
            )
        values["cuhk_gallery_sizes"] = gallery_sizes
    if fmt == "cuhk-sysu":
        # CUHK-SYSU photos come from many places; "cameras" become scene backgrounds. Most of
        # its boxes carry no identity (approximation: ~2.8 labeled boxes for each of 8,432 ids
        # among 96,143 boxes, i.e. ~25% labeled).
        for name, value in (("num_cameras", 8), ("labeled_fraction_train", CUHK_LABELED_FRACTION),
                            ("labeled_fraction_test", CUHK_LABELED_FRACTION)):
            if name not in overrides:
                values[name] = value
    settings = SynthSettings(
        fmt=fmt,
        frames=int(frames),
        seed=int(seed),
        width=int(width),
        height=int(height),
        difficulty=difficulty,
        **values,
    )
    min_height = settings.min_height
    if min_height is None:
        min_height = max(8, round(prw_stats.HEIGHT_QUANTILE_PX[0] * height / 1080))
    max_height = settings.max_height
    if max_height is None:
        max_height = int(0.92 * height)
    if not 8 <= min_height <= max_height <= height:
        raise ConfigError(
            f"synthetic data: need 8 <= min_height ({min_height}) <= max_height ({max_height}) "
            f"<= image height ({height})"
        )
    settings = replace(settings, min_height=int(min_height), max_height=int(max_height))
    for w, h, _ in settings.image_sizes or ():
        frame_min, frame_max = frame_height_range(settings, h)
        if not 8 <= frame_min <= frame_max <= h:
            raise ConfigError(
                f"synthetic data: image size {w}x{h} cannot hold persons of "
                f"{settings.min_height}..{settings.max_height} px per {height} px"
            )
    return settings


def frame_height_range(settings: SynthSettings, frame_height: int) -> tuple[int, int]:
    """(min_height, max_height) in px for an image ``frame_height`` high: the settings' px
    values, given for the nominal height, rescaled."""
    if frame_height == settings.height:
        return int(settings.min_height), int(settings.max_height)
    scale = frame_height / settings.height
    return (max(8, int(round(settings.min_height * scale))),
            min(frame_height, int(round(settings.max_height * scale))))
