"""Command-line interface: ``personsearch.cli.main`` dispatches to one module per sub-command."""

from __future__ import annotations

import argparse
import math


def finite_float(text: str) -> float:
    """argparse type: a finite number (``nan`` / ``inf`` would silently match nothing or
    everything in a score comparison)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value
