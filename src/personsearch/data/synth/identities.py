"""Identity appearance: what stays the same for one person across frames and cameras.

Clothing colours come from a *limited, non-uniform* palette (dark and neutral colours are the
most common, as in street scenes), so the colour of a garment alone is shared by many
identities; the pattern (stripes, checks, logo), its period and colour, the body proportions,
hair, skin and accessories are what separate them — and patterns are fine details that vanish
when the person is small.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# (name, RGB, relative frequency). The first ``palette_size`` entries are used.
CLOTHING_PALETTE: tuple[tuple[str, tuple[int, int, int], float], ...] = (
    ("black", (28, 28, 32), 6.0),
    ("navy", (30, 40, 90), 3.0),
    ("grey", (120, 120, 125), 3.0),
    ("white", (225, 225, 220), 3.0),
    ("blue", (50, 90, 170), 2.0),
    ("dark red", (120, 25, 35), 1.5),
    ("khaki", (170, 150, 105), 1.5),
    ("brown", (100, 65, 40), 1.5),
    ("olive", (90, 100, 50), 1.2),
    ("beige", (215, 195, 160), 1.2),
    ("red", (200, 40, 40), 1.0),
    ("green", (40, 130, 70), 1.0),
    ("light blue", (140, 180, 220), 1.0),
    ("yellow", (230, 200, 50), 0.7),
    ("pink", (225, 140, 170), 0.7),
    ("purple", (110, 60, 140), 0.6),
    ("orange", (230, 120, 40), 0.6),
    ("teal", (30, 130, 130), 0.6),
    ("maroon", (80, 20, 40), 0.6),
    ("cream", (240, 230, 200), 0.6),
    ("dark green", (25, 70, 40), 0.6),
    ("charcoal", (60, 62, 66), 0.6),
    ("sky", (110, 160, 230), 0.5),
    ("lime", (150, 200, 60), 0.4),
)
HAIR_COLOURS = ((20, 16, 14), (55, 35, 22), (100, 70, 40), (190, 160, 100), (150, 150, 150))
HAIR_WEIGHTS = (5.0, 4.0, 2.0, 1.0, 0.7)
SKIN_TONES = ((245, 210, 185), (230, 185, 150), (200, 150, 110), (160, 110, 75), (110, 75, 50),
              (80, 55, 40))

TOP_PATTERNS = ("plain", "hstripes", "vstripes", "checks", "logo")
BOTTOM_PATTERNS = ("plain", "checks", "stripe")
BOTTOM_STYLES = ("trousers", "shorts", "skirt")
LOGO_SHAPES = ("disc", "square", "triangle", "bar")


@dataclass(frozen=True)
class Appearance:
    """One identity's persistent look. Colours are RGB floats 0..255; lengths are fractions
    of the person's height unless noted."""

    top_colour: tuple[float, float, float]
    top_pattern: str
    top_colour2: tuple[float, float, float]
    top_period: float  # pattern period, fraction of person height
    top_duty: float  # fraction of a period in colour2
    logo_shape: str
    long_sleeves: bool
    bottom_colour: tuple[float, float, float]
    bottom_pattern: str
    bottom_colour2: tuple[float, float, float]
    bottom_style: str
    shoe_colour: tuple[float, float, float]
    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    long_hair: bool
    hat: bool
    hat_colour: tuple[float, float, float]
    backpack: bool
    backpack_colour: tuple[float, float, float]
    bag: bool
    bag_colour: tuple[float, float, float]
    build: float  # body width factor (0.85 .. 1.2)
    leg_fraction: float  # hip height as a fraction of body height (0.44 .. 0.53)
    head_scale: float  # head size factor (0.9 .. 1.1)
    body_height: float  # stature factor applied to the box height (0.93 .. 1.07)


def _jitter(rng: np.random.Generator, rgb, amount: float = 12.0) -> tuple[float, float, float]:
    values = np.clip(np.asarray(rgb, dtype=np.float64) + rng.normal(0.0, amount, 3), 0, 255)
    return tuple(float(v) for v in values)


def sample_appearance(
    rng: np.random.Generator,
    palette_size: int,
    pattern_rate: float,
    accessory_rate: float,
) -> Appearance:
    """Draw one identity's appearance."""
    palette = CLOTHING_PALETTE[:palette_size]
    weights = np.array([entry[2] for entry in palette])
    weights = weights / weights.sum()

    def colour(exclude: int | None = None) -> tuple[int, tuple[float, float, float]]:
        probs = weights.copy()
        if exclude is not None and len(palette) > 1:
            probs[exclude] = 0.0
            probs /= probs.sum()
        index = int(rng.choice(len(palette), p=probs))
        return index, _jitter(rng, palette[index][1], 8.0)

    top_index, top_colour = colour()
    _, top_colour2 = colour(exclude=top_index)
    if rng.random() < pattern_rate:
        top_pattern = str(rng.choice(TOP_PATTERNS[1:], p=[0.3, 0.15, 0.25, 0.3]))
    else:
        top_pattern = "plain"
    bottom_index, bottom_colour = colour()
    _, bottom_colour2 = colour(exclude=bottom_index)
    bottom_pattern = str(rng.choice(BOTTOM_PATTERNS, p=[0.75, 0.12, 0.13]))
    bottom_style = str(rng.choice(BOTTOM_STYLES, p=[0.75, 0.15, 0.10]))
    hair_probs = np.array(HAIR_WEIGHTS) / sum(HAIR_WEIGHTS)
    _, hat_colour = colour()
    _, backpack_colour = colour()
    _, bag_colour = colour()
    return Appearance(
        top_colour=top_colour,
        top_pattern=top_pattern,
        top_colour2=top_colour2,
        top_period=float(rng.uniform(0.025, 0.06)),
        top_duty=float(rng.uniform(0.3, 0.55)),
        logo_shape=str(rng.choice(LOGO_SHAPES)),
        long_sleeves=bool(rng.random() < 0.6),
        bottom_colour=bottom_colour,
        bottom_pattern=bottom_pattern,
        bottom_colour2=bottom_colour2,
        bottom_style=bottom_style,
        shoe_colour=_jitter(rng, (40, 35, 35) if rng.random() < 0.7 else (220, 220, 220), 10),
        skin=_jitter(rng, SKIN_TONES[int(rng.integers(len(SKIN_TONES)))], 6.0),
        hair=_jitter(rng, HAIR_COLOURS[int(rng.choice(len(HAIR_COLOURS), p=hair_probs))], 5.0),
        long_hair=bool(rng.random() < 0.35),
        hat=bool(rng.random() < accessory_rate * 0.6),
        hat_colour=hat_colour,
        backpack=bool(rng.random() < accessory_rate),
        backpack_colour=backpack_colour,
        bag=bool(rng.random() < accessory_rate * 0.8),
        bag_colour=bag_colour,
        build=float(rng.uniform(0.85, 1.2)),
        leg_fraction=float(rng.uniform(0.44, 0.53)),
        head_scale=float(rng.uniform(0.9, 1.1)),
        body_height=float(rng.uniform(0.93, 1.07)),
    )


def mannequin_appearance(rng: np.random.Generator) -> Appearance:
    """A person-shaped distractor: one flat material colour everywhere, no accessories."""
    base = _jitter(rng, [(200, 200, 195), (60, 60, 60), (180, 150, 120)][int(rng.integers(3))], 10)
    return Appearance(
        top_colour=base, top_pattern="plain", top_colour2=base, top_period=0.05, top_duty=0.5,
        logo_shape="disc", long_sleeves=True, bottom_colour=base, bottom_pattern="plain",
        bottom_colour2=base, bottom_style="trousers", shoe_colour=base, skin=base, hair=base,
        long_hair=False, hat=False, hat_colour=base, backpack=False, backpack_colour=base,
        bag=False, bag_colour=base, build=float(rng.uniform(0.85, 1.1)), leg_fraction=0.48,
        head_scale=1.0, body_height=1.0,
    )
