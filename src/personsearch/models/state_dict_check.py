"""Compare a state dict read from a file with the one a module expects: which keys are missing,
which are unexpected, which tensors have another shape. The one comparison behind every loader
of outside weights (torchvision-named backbone weights, the SCHP parser, the reference
checkpoints of ``engine.reference_checkpoints``); each loader states the problems in its own
words, naming the file.

Shape glossary
--------------
given, expected   mappings key -> tensor (or anything with ``.shape``); only names and shapes
                  are compared, never values
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

__all__ = ["StateDictDiff", "compare_state_dicts", "show_keys"]


@dataclass(frozen=True)
class StateDictDiff:
    """Keys of ``expected`` absent from ``given`` (missing), keys of ``given`` absent from
    ``expected`` (unexpected), and (key, given shape, expected shape) of the keys in both whose
    shapes differ — each in the order of the dict it comes from."""

    missing: list[str]
    unexpected: list[str]
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]]

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.mismatched)


def compare_state_dicts(given: Mapping[str, object], expected: Mapping[str, object],
                        ignore: Callable[[str], bool] | None = None) -> StateDictDiff:
    """The differences between ``given`` and ``expected``; keys for which ``ignore(key)`` is
    true (e.g. BatchNorm's ``num_batches_tracked`` counters) are left out on both sides."""
    def kept(key: str) -> bool:
        return ignore is None or not ignore(key)

    return StateDictDiff(
        missing=[k for k in expected if k not in given and kept(k)],
        unexpected=[k for k in given if k not in expected and kept(k)],
        mismatched=[(k, tuple(given[k].shape), tuple(expected[k].shape))  # type: ignore[attr-defined]
                    for k in expected if k in given and kept(k)
                    and tuple(given[k].shape) != tuple(expected[k].shape)],  # type: ignore[attr-defined]
    )


def show_keys(keys: Sequence[str], limit: int) -> str:
    """The first ``limit`` keys, comma-separated, then how many there are in all."""
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")
