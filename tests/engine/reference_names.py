"""Test helper: a state dict renamed prefix by prefix (ours -> a reference's), the way the
import tests write reference files from our names, independently of the converters' rules."""

from __future__ import annotations

from torch import Tensor


def rename_prefixes(state: dict[str, Tensor], prefix_map: list[tuple[str, str]]) -> dict[str, Tensor]:
    """Each key starting with one of the ``(ours, theirs)`` prefixes (the first that matches)
    gets ``theirs`` instead; other keys stay."""
    out = {}
    for key, value in state.items():
        name = key
        for ours_prefix, theirs_prefix in prefix_map:
            if key.startswith(ours_prefix):
                name = theirs_prefix + key[len(ours_prefix):]
                break
        out[name] = value
    return out
