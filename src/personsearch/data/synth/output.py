"""Everything written besides the images: annotations in the real format (through
:mod:`personsearch.data.writers`), the per-box height/identity diagnostics, and the settings.

The MAT files' 116-byte text header (scipy writes the creation time into it) is rewritten to a
fixed text so that the same seed and settings give byte-identical datasets.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from personsearch.atomic import atomic_write_text
from personsearch.data import writers
from personsearch.data.cuhk_sysu import GALLERY_SIZES
from personsearch.data.records import SceneRecord

from .plan import FramePlan, ScenePlan
from .protocol import cuhk_queries, prw_queries

MAT_HEADER = b"MATLAB 5.0 MAT-file, written by the personsearch synthetic scene generator"


def image_dir(root: Path, fmt: str) -> Path:
    return root / ("frames" if fmt == "prw" else "Image/SSM")


def frame_record(root: Path, plan: ScenePlan, frame: FramePlan, index: int) -> SceneRecord:
    """The frame as a record; labeled persons carry their id, one-off persons -1."""
    boxes = np.array([p.box for p in frame.persons], dtype=np.float32).reshape(-1, 4)
    ids = np.array([p.true_id if p.labeled else -1 for p in frame.persons], dtype=np.int64)
    return SceneRecord(
        image_path=str(image_dir(root, plan.settings.fmt) / frame.name),
        image_name=frame.name, width=frame.width, height=frame.height,
        boxes=boxes, person_ids=ids,
        camera_id=frame.camera if plan.settings.fmt == "prw" else 0, image_index=index)


def cuhk_gallery_sizes(pool_size: int, wanted: tuple[int, ...] | None = None) -> list[int]:
    """TestG sizes written for a pool of ``pool_size`` images: 50 and 100 always (capped at
    pool_size - 1 images when the pool is smaller), larger sizes only when the pool can fill
    them (a larger file would repeat "every other pool image", which is the full-set protocol,
    gallery_size -1, and scipy needs ~70-300 us of CPU per gallery entry to write it).
    ``wanted`` (settings.cuhk_gallery_sizes): only these of them."""
    sizes = [size for size in GALLERY_SIZES if size <= 100 or size < pool_size]
    return sizes if wanted is None else [size for size in sizes if size in wanted]


def _normalise_mat_headers(root: Path) -> None:
    for path in sorted(root.rglob("*.mat")):
        with open(path, "r+b") as handle:
            header = handle.read(116)
            if header.startswith(b"MATLAB 5.0 MAT-file") and header != MAT_HEADER.ljust(116):
                handle.seek(0)
                handle.write(MAT_HEADER.ljust(116))


def write_json(path: Path, data) -> None:
    atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True), fsync=False)


def write_annotations(root: Path, plan: ScenePlan) -> int:
    """Write the format's annotation files; returns the number of queries."""
    train_frames, test_frames = plan.split_frames("train"), plan.split_frames("test")
    train = [frame_record(root, plan, f, i) for i, f in enumerate(train_frames)]
    test = [frame_record(root, plan, f, i) for i, f in enumerate(test_frames)]
    if plan.settings.fmt == "prw":
        picks = prw_queries(plan)
        queries = [
            SceneRecord(image_path=test[pos].image_path, image_name=test[pos].image_name,
                        width=test[pos].width, height=test[pos].height,
                        boxes=test[pos].boxes[box:box + 1], person_ids=test[pos].person_ids[box:box + 1],
                        camera_id=test[pos].camera_id, image_index=number)
            for number, (pos, box) in enumerate(picks)
        ]
        writers.write_prw(root, train, test, queries)
    else:
        picks = cuhk_queries(plan)
        protocols = {
            size: writers.build_cuhk_protocol(test, picks, size, seed=plan.settings.seed,
                                              allow_smaller=True)
            for size in cuhk_gallery_sizes(len(test), plan.settings.cuhk_gallery_sizes)
        }
        writers.write_cuhk_sysu(root, train, test, protocols)
    _normalise_mat_headers(root)
    return len(picks)


def write_diagnostics(root: Path, plan: ScenePlan, mask_pixels: dict[str, list[int]]) -> None:
    """``diagnostics/train_identities.json`` (and the same for test): per image name, the
    true identity of every box in annotation order (one-off persons included, with their own
    ids), its height in pixels, whether the annotation labels it, and its mask pixel count."""
    for split in ("train", "test"):
        entries = {}
        for frame in plan.split_frames(split):
            entries[frame.name] = {
                "true_ids": [p.true_id for p in frame.persons],
                "heights": [p.height for p in frame.persons],
                "labeled": [p.labeled for p in frame.persons],
                "mask_pixels": mask_pixels[frame.name],
                "camera": frame.camera,
            }
        write_json(root / "diagnostics" / f"{split}_identities.json", entries)
    write_json(root / "diagnostics" / "settings.json", plan.settings.as_dict())
