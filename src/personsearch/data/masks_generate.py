"""``personsearch data masks``: write the person label maps SSL's background filtering reads
(``<root>/masks/<image stem>.png``, contract in :mod:`personsearch.data.masks`) for every image
of a split, with one of the methods of :mod:`personsearch.data.masks_methods`.

Incremental and resumable: an image whose mask file already exists and is valid (readable,
8-bit single-channel, the image's size, no label above its box count) is skipped; an invalid one
is recomputed. Each file is written atomically (temp file + rename), so a run killed at any point
leaves only whole files and the next run carries on with the images still missing. ``grabcut``
and ``box`` run in ``workers`` processes (each image is independent and CPU-bound); ``schp`` runs
in the calling process on one device, batching the crops of an image.
"""

from __future__ import annotations

import io
import multiprocessing
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from personsearch.data.masks import load_person_masks, mask_path
from personsearch.data.masks_methods import (MaskStats, SchpParser, box_label_map,
                                             grabcut_label_map)
from personsearch.data.records import SceneRecord
from personsearch.errors import ConfigError, DatasetError, PersonSearchError

METHODS = ("grabcut", "box", "schp")
_CPU_METHODS = {"grabcut": grabcut_label_map, "box": box_label_map}


def mask_state(root: str | Path, record: SceneRecord) -> str:
    """"valid", "missing", or "invalid: <why>" for the mask file of ``record``."""
    try:
        labels = load_person_masks(root, record)
    except DatasetError as error:
        return f"invalid: {error.problem}"
    return "missing" if labels is None else "valid"


@dataclass
class MaskRunSummary:
    method: str
    images: int = 0            # images in the split
    skipped: int = 0           # valid mask already there
    written: int = 0           # computed in this run
    replaced_invalid: int = 0  # of ``written``: an invalid file was there before
    seconds: float = 0.0
    stats: MaskStats = field(default_factory=MaskStats)

    def format(self) -> str:
        lines = [f"masks ({self.method}): {self.images} images, {self.written} written "
                 f"({self.replaced_invalid} replacing invalid files), {self.skipped} already "
                 f"valid, {self.seconds:.1f} s"]
        if self.stats.box_fallbacks:
            reasons = ", ".join(f"{count} {why}" for why, count in sorted(self.stats.reasons.items()))
            lines.append(f"  {self.stats.box_fallbacks} of {self.stats.persons} persons got their "
                         f"whole box: {reasons}")
        return "\n".join(lines)


def encode_label_map(labels: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(labels, mode="L").save(buffer, format="PNG", compress_level=3)
    return buffer.getvalue()


def _read_image(record: SceneRecord) -> np.ndarray:
    from personsearch.data.transforms import load_image

    image = load_image(record.image_path)
    if image.shape[:2] != (record.height, record.width):
        raise DatasetError(record.image_path, f"image is {image.shape[1]}x{image.shape[0]} but "
                                              f"the annotation says {record.width}x{record.height}")
    return image


def write_mask(root: str | Path, record: SceneRecord, labels: np.ndarray) -> None:
    from personsearch.atomic import atomic_write_bytes

    atomic_write_bytes(mask_path(root, record), encode_label_map(labels), fsync=False)


def _cpu_task(task: tuple[str, str, SceneRecord]) -> tuple[str, object]:
    """Worker: compute and write one image's mask. Errors come back as text (our exceptions
    carry extra constructor arguments and do not pickle)."""
    method, root, record = task
    try:
        import cv2

        cv2.setNumThreads(1)
        stats = MaskStats()
        labels = _CPU_METHODS[method](_read_image(record), record.boxes, record.image_path, stats)
        write_mask(root, record, labels)
        return "ok", stats
    except PersonSearchError as error:
        return "error", str(error)


def generate_masks(fmt: str, root: str | Path, method: str = "grabcut", split: str = "train",
                   workers: int = 1, weights: str | None = None, device: str = "auto",
                   schp_dataset: str | None = None, progress: bool = True,
                   overwrite: bool = False,
                   on_written: Callable[[SceneRecord], None] | None = None) -> MaskRunSummary:
    """Write the masks of every ``split`` image of the dataset at ``root`` that has no valid
    one yet. ``on_written(record)`` is called in this process after each image's file is in
    place (progress hooks; tests use it to interrupt a run). A valid file is kept whatever
    method made it; ``overwrite`` recomputes every image (another method, new weights)."""
    from tqdm import tqdm

    from personsearch.data import load_split

    if method not in METHODS:
        raise ConfigError(f"mask method must be one of {', '.join(METHODS)}, got {method!r}")
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    if method == "schp" and not weights:
        raise ConfigError("--method schp needs --weights FILE (a released SCHP checkpoint; "
                          "see docs/masks.md)")
    if method != "schp" and weights:
        raise ConfigError(f"--weights is for --method schp only (got --method {method})")
    start = time.perf_counter()
    records = load_split(fmt, root, split)
    summary = MaskRunSummary(method=method, images=len(records))
    todo: list[SceneRecord] = []
    invalid: set[str] = set()
    for record in records:
        state = mask_state(root, record)
        if state == "valid" and not overwrite:
            summary.skipped += 1
        else:
            todo.append(record)
            if state.startswith("invalid"):
                invalid.add(record.image_name)
    parser = SchpParser(weights, device, schp_dataset) if method == "schp" else None
    (Path(root) / "masks").mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=len(todo), desc=f"masks ({method}, {summary.skipped} already done)",
               unit="img", disable=not progress, smoothing=0.05)

    def done(record: SceneRecord, stats: MaskStats) -> None:
        summary.written += 1
        summary.replaced_invalid += record.image_name in invalid
        summary.stats.add(stats)
        bar.update()
        if on_written is not None:
            on_written(record)

    try:
        if parser is not None or workers == 1 or len(todo) <= 1:
            for record in todo:
                stats = MaskStats()
                image = _read_image(record)
                if parser is not None:
                    labels = parser.label_map(image, record.boxes, record.image_path, stats)
                else:
                    labels = _CPU_METHODS[method](image, record.boxes, record.image_path, stats)
                write_mask(root, record, labels)
                done(record, stats)
        else:
            methods = multiprocessing.get_all_start_methods()
            context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
            tasks = [(method, str(root), r) for r in todo]
            with context.Pool(min(workers, len(todo))) as pool:
                results = pool.imap(_cpu_task, tasks, chunksize=2)
                for record, (status, payload) in zip(todo, results):
                    if status == "error":
                        raise PersonSearchError(str(payload))
                    done(record, payload)
    finally:
        bar.close()
    summary.seconds = time.perf_counter() - start
    return summary
