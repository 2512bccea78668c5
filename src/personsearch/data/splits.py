"""The public entry points of the readers: ``load_split``, ``load_train_identities`` and
``slot_offsets``.

Formats: ``"prw"`` (:mod:`personsearch.data.prw`), ``"cuhk-sysu"``
(:mod:`personsearch.data.cuhk_sysu`), ``"coco"`` (:mod:`personsearch.data.coco`; layout
``root/images/`` + ``root/annotations/{train,gallery,query}.json``). Each module's docstring
gives its layout and the exact box / id conversions.

Identities (``person_ids``; -1 = unlabeled everywhere):

============  ============================  ===================  ======================
format        train (load_train_identities)  gallery              query
============  ============================  ===================  ======================
prw           raw PRW id (1..933)            raw PRW id           [raw PRW id]
cuhk-sysu     Train.mat index (0..5531)      TestG50 index        [TestG50 index]
coco          raw ``person_id``              raw ``person_id``    [raw ``person_id``]
============  ============================  ===================  ======================

Train records returned by ``load_split`` carry -1 for every box by construction (the weakly
supervised setting must not see training identities); ``load_train_identities`` is the explicit
diagnostics-only call for them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from personsearch.data import coco, cuhk_sysu, prw
from personsearch.data.check import ProblemLog
from personsearch.data.records import UNLABELED, SceneRecord

FORMATS = ("prw", "cuhk-sysu", "coco")
SPLITS = ("train", "gallery", "query")


def _validate(fmt: str, split: str | None = None) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def read_split(fmt: str, root: str | Path, split: str, log: ProblemLog,
               read_sizes: bool = True, **kwargs) -> list[SceneRecord]:
    """Records of a split with TRUE ids, problems sent to ``log``."""
    _validate(fmt, split)
    if fmt == "prw":
        if split == "query":
            return prw.read_queries(root, log, read_sizes)
        return prw.read_frames(root, split, log, read_sizes)
    if fmt == "cuhk-sysu":
        return cuhk_sysu.read_split(root, split, log, read_sizes, **kwargs)
    return coco.read_split(root, split, log, read_sizes)


def _without_ids(record: SceneRecord) -> SceneRecord:
    return SceneRecord(image_path=record.image_path, image_name=record.image_name,
                       width=record.width, height=record.height, boxes=record.boxes,
                       person_ids=np.full(record.num_boxes, UNLABELED, np.int64),
                       camera_id=record.camera_id, image_index=record.image_index)


def load_split(fmt: str, root: str | Path, split: str, read_sizes: bool = True
               ) -> list[SceneRecord]:
    """The records of ``split`` ("train" | "gallery" | "query") of the dataset at ``root`` in
    format ``fmt`` ("prw" | "cuhk-sysu" | "coco"), in the dataset's own order. Raises
    DatasetError (file + problem) on the first fatal problem; ``check_dataset`` lists them all.
    Train records have every person id -1. ``read_sizes=False``: image headers are not read
    (width and height 0; for callers that need only names, boxes and ids)."""
    records = read_split(fmt, root, split, ProblemLog(), read_sizes=read_sizes)
    return [_without_ids(r) for r in records] if split == "train" else records


def load_train_identities(fmt: str, root: str | Path) -> list[np.ndarray]:
    """Per train record (same order as ``load_split(fmt, root, "train")``) the true ids, int64
    [N] with -1 unlabeled (see the table above). Diagnostics only. Image sizes are not read."""
    records = read_split(fmt, root, "train", ProblemLog(), read_sizes=False)
    return [np.array(r.person_ids, np.int64) for r in records]


def slot_offsets(records: Sequence[SceneRecord]) -> np.ndarray:
    """int64 [len(records) + 1] cumulative box counts: the global training-slot index of box k
    of record i is ``offsets[i] + k``; ``offsets[-1]`` is the number of slots."""
    counts = np.fromiter((r.num_boxes for r in records), np.int64, count=len(records))
    return np.concatenate([np.zeros(1, np.int64), np.cumsum(counts)])


def parse_dataset(fmt: str, root: Path, log: ProblemLog) -> dict:
    """Every split with true ids, for ``check_dataset``: keys train, train_ids, gallery, query,
    query_file."""
    _validate(fmt)
    extra = {}
    if fmt == "cuhk-sysu":
        extra["images"] = cuhk_sysu.read_images_mat(root, log)
    train = read_split(fmt, root, "train", log, **extra)
    parsed = {"train": [_without_ids(r) for r in train],
              "train_ids": [r.person_ids for r in train],
              "gallery": read_split(fmt, root, "gallery", log, **extra),
              "query": read_split(fmt, root, "query", log)}
    if fmt == "prw":
        parsed["query_file"] = str(root / "query_info.txt")
    elif fmt == "cuhk-sysu":
        parsed["query_file"] = str(cuhk_sysu.protocol_path(root, 50)[0])
        for size in cuhk_sysu.GALLERY_SIZES[1:]:
            path, var = cuhk_sysu.protocol_path(root, size)
            if path.is_file() or size == 100:
                _check_protocol(path, var, parsed["gallery"], parsed["query"], log)
        for subset in cuhk_sysu.SUBSETS:
            path, var = cuhk_sysu.protocol_path(root, 100, subset)
            if path.is_file():
                _check_protocol(path, var, parsed["gallery"], None, log)
    else:
        parsed["query_file"] = str(coco.json_path(root, "query"))
    return parsed


def _check_protocol(path: Path, var: str, gallery: list[SceneRecord],
                    test50: list[SceneRecord] | None, log: ProblemLog) -> None:
    """A CUHK-SYSU protocol file other than TestG50: readable, gallery names in the pool, the
    same queries in the same order as TestG50 (``test50``; None for the subsets)."""
    queries = cuhk_sysu.read_protocol_file(path, var, log)
    if not path.is_file():
        return
    pool = {r.image_name for r in gallery}
    if test50 is not None and len(queries) != len(test50):
        log.error(path, f"{len(queries)} queries but TestG50 has {len(test50)}")
    for index, query in enumerate(queries):
        if test50 is not None and index < len(test50) and (
                query.query_name != test50[index].image_name
                or not np.array_equal(query.query_box, test50[index].boxes[0])):
            log.error(path, f"entry {index}: query differs from TestG50 entry {index}")
        for k, (name, _) in enumerate(query.gallery):
            if pool and name not in pool:
                log.error(path, f"entry {index} gallery item {k}: {name} is not in pool.mat")
