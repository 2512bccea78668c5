"""Synthetic person-search scenes: the embedded default dataset (no downloads).

``generate_dataset(out_dir, fmt="prw", frames=1000, ...)`` writes a complete PRW or CUHK-SYSU
dataset (real on-disk format), person foreground masks and identity diagnostics. Modules:
``settings`` (arguments, presets), ``prw_stats`` (target statistics), ``identities``
(appearance), ``person`` (rendering one person), ``background`` (scenes, clutter), ``plan``
(who is where), ``scene`` (composing a frame), ``protocol`` (queries, galleries), ``output``
(annotation files, diagnostics), ``generate`` (the top level). See docs/synthetic_data.md.
"""

from .generate import generate_dataset
from .settings import SynthSettings, make_settings

__all__ = ["generate_dataset", "make_settings", "SynthSettings"]
