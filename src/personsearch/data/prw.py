"""PRW (PRW-v16.04.20) reader, exactly as SeqNet's loader reads it (docs/datasets.md §2).

Layout under ``root``::

    frames/<frame>.jpg                     the images
    annotations/<frame>.jpg.mat            one N×5 array [id, x, y, w, h] per frame, variable
                                           'box_new', else 'anno_file', else 'anno_previous'
    frame_train.mat / frame_test.mat       'img_index_train' / 'img_index_test': cell of names
    query_info.txt                         "pid x y w h frame" per line (CRLF)

Conversions (bit-exact with SeqNet, stored as float32 of int values):

- gallery / train boxes: clip x, y, w, h to >= 0, then x2 = x + w, y2 = y + h, then int32
  truncation (x = -5, w = 50 -> x1 = 0, x2 = 50);
- query boxes: [x, y, x + w, y + h] -> int32 truncation -> clip to >= 0 (x2 before clipping:
  x = -5, w = 50 -> x1 = 0, x2 = 45);
- ids: the raw PRW identity (1...933); -2 (unlabeled) -> -1;
- camera id: the digit of the first ``c\\d`` in the frame name.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from personsearch.data.check import (Malformed, ProblemLog, image_size, load_mat, mat_str,
                                     mat_var, read_mat_cells, report_duplicates)
from personsearch.data.parse_cache import Arrays, cached_arrays
from personsearch.data.records import UNLABELED, SceneRecord

ANNOTATION_KEYS = ("box_new", "anno_file", "anno_previous")
SPLIT_FILES = {"train": ("frame_train.mat", "img_index_train"),
               "gallery": ("frame_test.mat", "img_index_test")}
PRW_UNLABELED = -2
_CAMERA = re.compile(r"c(\d)")


def camera_of(frame_name: str) -> int | None:
    match = _CAMERA.search(frame_name)
    return None if match is None else int(match.group(1))


def convert_frame_boxes(xywh: np.ndarray) -> np.ndarray:
    """[N,4] x, y, w, h (float) -> float32 [N,4] x1y1x2y2: clip >= 0, add, int32-truncate."""
    clipped = np.clip(np.asarray(xywh, np.float64).reshape(-1, 4), 0, None)
    clipped[:, 2:] += clipped[:, :2]
    return clipped.astype(np.int32).astype(np.float32)


def convert_query_box(x: float, y: float, w: float, h: float) -> np.ndarray:
    """Query box -> float32 [4] x1y1x2y2: add, int32-truncate, then clip >= 0."""
    box = np.array([x, y, x + w, y + h], np.float64).astype(np.int32)
    return np.clip(box, 0, None).astype(np.float32)


def convert_ids(raw_ids: np.ndarray) -> np.ndarray:
    """Raw PRW ids (float) -> int64 with -1 for unlabeled (every negative id)."""
    ids = np.asarray(raw_ids, np.float64).astype(np.int64)
    ids[ids < 0] = UNLABELED
    return ids


def frame_names(root: Path, split: str, log: ProblemLog) -> tuple[list[str], Path]:
    """Frame names of the split with '.jpg' appended, in file order, and the file read."""
    file_name, var = SPLIT_FILES[split]
    path = root / file_name
    entries = read_mat_cells(path, (var,), log)
    if entries is None:
        return [], path
    names: list[str] = []
    for index, entry in enumerate(entries):
        try:
            names.append(mat_str(entry) + ".jpg")
        except Malformed as error:
            log.error(path, f"entry {index}: {error}")
    report_duplicates(names, path, "entry", log)
    return names, path


def annotation_path(root: Path, image_name: str) -> Path:
    """``annotations/<frame>.jpg.mat`` (or the name itself when such a file exists, which is what
    scipy's implicit '.mat' suffix does for SeqNet)."""
    plain = root / "annotations" / image_name
    return plain if plain.is_file() else root / "annotations" / (image_name + ".mat")


def read_frame_annotation(path: Path, log: ProblemLog) -> tuple[np.ndarray, np.ndarray] | None:
    """One frame's MAT file -> (float32 [N,4] x1y1x2y2, int64 [N] ids, -1 unlabeled)."""
    contents = load_mat(path, log)
    if contents is None:
        return None
    array = mat_var(contents, ANNOTATION_KEYS, path, log)
    if array is None:
        return None
    array = np.asarray(array)
    if array.size == 0:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
    if array.ndim != 2 or array.shape[1] != 5 or not np.issubdtype(array.dtype, np.number):
        log.error(path, f"expected an N x 5 numeric array [id, x, y, w, h], got shape "
                        f"{array.shape} dtype {array.dtype}")
        return None
    array = array.astype(np.float64)
    bad_rows = np.flatnonzero(~np.isfinite(array).all(axis=1))
    for row in bad_rows:
        log.error(path, f"box {row}: non-finite values {array[row].tolist()}")
    if bad_rows.size:
        return None
    raw_ids = array[:, 0]
    odd = np.flatnonzero((raw_ids != np.trunc(raw_ids))
                         | ((raw_ids < 0) & (raw_ids != PRW_UNLABELED)))
    for row in odd:
        log.warn(path, f"box {row}: unexpected person id {raw_ids[row]!r} (taken as "
                       f"{'unlabeled' if raw_ids[row] < 0 else int(raw_ids[row])})")
    return convert_frame_boxes(array[:, 1:]), convert_ids(raw_ids)


def _record(root: Path, name: str, boxes, ids, index: int, log: ProblemLog,
            read_sizes: bool, source: Path) -> SceneRecord:
    image_path = os.path.join(root, "frames", name)  # = str(root / "frames" / name), faster
    width, height = image_size(image_path, log) if read_sizes else (0, 0)
    camera = camera_of(name)
    if camera is None:
        log.error(source, f"frame name {name!r} has no camera id (c<digit>)")
        camera = 0
    return SceneRecord(image_path=image_path, image_name=name, width=width, height=height,
                       boxes=boxes, person_ids=ids, camera_id=camera, image_index=index)


def read_frames(root: str | Path, split: str, log: ProblemLog,
                read_sizes: bool = True) -> list[SceneRecord]:
    """Train or gallery frames in frame_*.mat order, with their TRUE ids (-1 unlabeled)."""
    root = Path(root)
    names, source = frame_names(root, split, log)
    paths = [annotation_path(root, name) for name in names]
    if log.collect:
        annotations = _parse_frame_annotations(paths, log)
    else:  # strict: the per-frame MAT files are parsed once, then read from the parse cache
        arrays = cached_arrays([root / SPLIT_FILES[split][0], *paths], f"prw-frames:{split}",
                               lambda: _encode_frames(_parse_frame_annotations(paths, log)))
        offsets = arrays["offsets"].tolist()
        annotations = [(arrays["boxes"][offsets[i]:offsets[i + 1]].copy(),
                        arrays["ids"][offsets[i]:offsets[i + 1]].copy())
                       for i in range(len(names))]
    return [_record(root, name, boxes, ids, index, log, read_sizes, source)
            for index, (name, (boxes, ids)) in enumerate(zip(names, annotations))]


def _parse_frame_annotations(paths: list[Path], log: ProblemLog
                             ) -> list[tuple[np.ndarray, np.ndarray]]:
    """(boxes, ids) per annotation file; a frame whose file has a (collected) problem is kept
    without boxes."""
    empty = (np.zeros((0, 4), np.float32), np.zeros(0, np.int64))
    return [read_frame_annotation(path, log) or empty for path in paths]


def _encode_frames(annotations: list[tuple[np.ndarray, np.ndarray]]) -> Arrays:
    return {"offsets": np.cumsum([0] + [len(ids) for _, ids in annotations]).astype(np.int64),
            "boxes": np.concatenate([b for b, _ in annotations] + [np.zeros((0, 4), np.float32)]),
            "ids": np.concatenate([i for _, i in annotations] + [np.zeros(0, np.int64)])}


def read_queries(root: str | Path, log: ProblemLog, read_sizes: bool = True) -> list[SceneRecord]:
    """query_info.txt in file order: one record per query, person_ids = [pid]."""
    root = Path(root)
    path = root / "query_info.txt"
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        log.error(path, "file is missing")
        return []
    except (OSError, UnicodeDecodeError) as error:
        log.error(path, f"unreadable ({type(error).__name__}: {error})")
        return []
    records: list[SceneRecord] = []
    for line_number, line in enumerate(text.split("\n"), start=1):
        tokens = line.split()
        if not tokens:
            continue
        try:
            if len(tokens) != 6:
                raise ValueError(f"expected 6 fields 'pid x y w h frame', got {len(tokens)}")
            pid = int(tokens[0])
            x, y, w, h = (float(t) for t in tokens[1:5])
            if not np.isfinite([x, y, w, h]).all():
                raise ValueError("non-finite box")
        except ValueError as error:
            log.error(path, f"line {line_number}: {error}: {line.rstrip()!r}")
            continue
        if pid < 0:
            log.error(path, f"line {line_number}: query without identity (pid {pid})")
            continue
        records.append(_record(root, tokens[5] + ".jpg", convert_query_box(x, y, w, h)[None],
                               np.array([pid], np.int64), len(records), log, read_sizes, path))
    return records
