"""Top level: plan the dataset, render the frames in ``workers`` processes, write images,
masks, annotations and diagnostics.

Determinism: the plan comes from the seed alone; each frame is rendered from a generator seeded
by ``(seed, frame index)`` and per-camera caches that are pure functions of the seed, so the
bytes do not depend on the number of workers or the order frames finish in.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from personsearch.atomic import atomic_write_bytes
from personsearch.errors import ConfigError

from .output import image_dir, write_annotations, write_diagnostics, write_json
from .plan import FramePlan, build_plan
from .scene import RenderContext, render_frame
from .settings import make_settings

_CONTEXT: dict = {}


def _init_worker(context: RenderContext, root: str) -> None:
    _CONTEXT["context"] = context
    _CONTEXT["root"] = Path(root)


def _render_and_write(frame: FramePlan) -> tuple[str, list[int]]:
    """Render one frame, write its JPEG and mask; return the mask pixel count of each box."""
    context: RenderContext = _CONTEXT["context"]
    root: Path = _CONTEXT["root"]
    image, labels = render_frame(frame, context)
    buffer = BytesIO()
    image.save(buffer, format="JPEG", quality=context.cameras[frame.camera].jpeg_quality)
    atomic_write_bytes(image_dir(root, context.settings.fmt) / frame.name, buffer.getvalue(),
                       fsync=False)
    buffer = BytesIO()
    Image.fromarray(labels, mode="L").save(buffer, format="PNG", compress_level=3)
    atomic_write_bytes(root / "masks" / (Path(frame.name).stem + ".png"), buffer.getvalue(),
                       fsync=False)
    counts = np.bincount(labels.ravel(), minlength=len(frame.persons) + 1)[1:]
    return frame.name, [int(c) for c in counts]


def _written_mask_pixels(root: Path, fmt: str, frame: FramePlan) -> list[int] | None:
    """The mask pixel count of each box of a frame a previous run wrote completely (image and
    mask both present: each is written atomically, the mask last), else None."""
    mask_path = root / "masks" / (Path(frame.name).stem + ".png")
    if not (image_dir(root, fmt) / frame.name).is_file() or not mask_path.is_file():
        return None
    with Image.open(mask_path) as mask:
        labels = np.asarray(mask)
    counts = np.bincount(labels.ravel(), minlength=len(frame.persons) + 1)[1:]
    return [int(c) for c in counts]


def _check_resumable(root: Path, settings_path: Path, settings: dict) -> None:
    if not settings_path.is_file():
        raise ConfigError(f"{root}: nothing to resume: no {settings_path.relative_to(root)} "
                          f"(written when a generation starts)")
    try:
        started = json.loads(settings_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ConfigError(f"{settings_path}: unreadable ({error})") from None
    changed = sorted(key for key in set(started) | set(settings)
                     if started.get(key) != settings.get(key))
    if changed:
        raise ConfigError(f"{root}: the generation there was started with other settings "
                          f"({', '.join(changed)} differ); resume with the same arguments or "
                          f"use a new folder")


def generate_dataset(out_dir: str | Path, fmt: str = "prw", frames: int = 1000, seed: int = 0,
                     width: int = 960, height: int = 540, difficulty: str = "normal",
                     progress: bool = False, workers: int | None = None, resume: bool = False,
                     **overrides) -> dict:
    """Write a synthetic person-search dataset in the real on-disk format ``fmt`` ("prw" or
    "cuhk-sysu") into the new or empty folder ``out_dir``, plus ``masks/`` (person label maps)
    and ``diagnostics/`` (true identities and heights of every box, settings).

    ``overrides``: any field of :class:`~personsearch.data.synth.settings.SynthSettings`
    (e.g. ``num_train_ids=50, occlusion_rate=0.5, palette_size=6``); see
    docs/synthetic_data.md. Returns counts: frames per split, boxes, labeled boxes,
    identities, queries, seconds.

    ``resume``: continue an interrupted generation in ``out_dir`` (started with the same
    settings, recorded in ``diagnostics/settings.json`` when it starts): frames whose image and
    mask are both on disk are kept, the others rendered. Frames are pure functions of the seed
    and settings, so the result is byte-identical to an uninterrupted run.
    """
    start = time.perf_counter()
    settings = make_settings(fmt, frames, seed, width, height, difficulty, **overrides)
    root = Path(out_dir)
    settings_path = root / "diagnostics" / "settings.json"
    settings_dict = json.loads(json.dumps(settings.as_dict()))
    if resume:
        _check_resumable(root, settings_path, settings_dict)
    elif root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ConfigError(f"{root}: the synthetic dataset needs a new or empty folder (or "
                          f"resume=True / --resume to continue a generation there)")
    workers = (os.cpu_count() or 1) if workers is None else int(workers)
    if workers < 1:
        raise ConfigError(f"synthetic data: workers must be >= 1, got {workers}")
    plan = build_plan(settings)
    for folder in (image_dir(root, fmt), root / "masks"):
        folder.mkdir(parents=True, exist_ok=True)
    write_json(settings_path, settings_dict)  # identifies the generation for a resume
    context = RenderContext(settings, plan.cameras, plan.appearances)
    # Frames grouped by camera so each worker reuses its cached camera background.
    order = sorted(plan.frames, key=lambda f: (f.camera, f.index))
    mask_pixels: dict[str, list[int]] = {}
    if resume:
        for frame in order:
            counts = _written_mask_pixels(root, fmt, frame)
            if counts is not None:
                mask_pixels[frame.name] = counts
        order = [frame for frame in order if frame.name not in mask_pixels]
    bar = tqdm(total=len(order) + len(mask_pixels), initial=len(mask_pixels),
               desc="synthetic frames", unit="frame", disable=not progress)
    if workers == 1 or len(order) <= 1:
        _init_worker(context, str(root))
        for frame in order:
            name, counts = _render_and_write(frame)
            mask_pixels[name] = counts
            bar.update()
    else:
        methods = multiprocessing.get_all_start_methods()
        mp = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        with mp.Pool(min(workers, len(order)), initializer=_init_worker,
                     initargs=(context, str(root))) as pool:
            for name, counts in pool.imap_unordered(_render_and_write, order, chunksize=4):
                mask_pixels[name] = counts
                bar.update()
    bar.close()
    rendered = time.perf_counter()
    num_queries = write_annotations(root, plan)
    write_diagnostics(root, plan, mask_pixels)
    counts = summarise(plan, num_queries)
    counts["seconds"] = round(time.perf_counter() - start, 3)
    # Plan + images + masks vs. annotation files and diagnostics (CUHK-SYSU's TestG files
    # grow with queries x gallery size, not with the frame count).
    counts["seconds_images"] = round(rendered - start, 3)
    counts["seconds_annotations"] = round(time.perf_counter() - rendered, 3)
    write_json(root / "diagnostics" / "counts.json", {k: v for k, v in counts.items()
                                                      if not k.startswith("seconds")})
    return counts


def summarise(plan, num_queries: int) -> dict:
    persons = [p for f in plan.frames for p in f.persons]
    return {
        "format": plan.settings.fmt,
        "frames": {split: len(plan.split_frames(split)) for split in ("train", "test")},
        "boxes": {split: sum(len(f.persons) for f in plan.split_frames(split))
                  for split in ("train", "test")},
        "labeled_boxes": {split: sum(p.labeled for f in plan.split_frames(split)
                                     for p in f.persons) for split in ("train", "test")},
        "identities": {"train": len({p.true_id for f in plan.split_frames("train")
                                     for p in f.persons if p.labeled}),
                       "test": len({p.true_id for f in plan.split_frames("test")
                                    for p in f.persons if p.labeled})},
        "unlabeled_persons": sum(not p.labeled for p in persons),
        "queries": num_queries,
    }
