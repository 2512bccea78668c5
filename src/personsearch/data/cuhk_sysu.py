"""CUHK-SYSU reader, exactly as SeqNet's loader reads it (docs/datasets.md §1).

Layout under ``root``::

    Image/SSM/<name>.jpg
    annotation/Images.mat                  'Img': imname, nAppear, box
                                           (box: 1×n struct idlocate, ishard)
    annotation/pool.mat                    'pool': cell of the gallery (test) image names
    annotation/test/train_test/Train.mat   'Train': cell of 1×1 structs idname, nAppear, scene
    annotation/test/train_test/TestG{N}.mat 'TestG{N}': Query (1×1), Gallery (1×N) structs
    annotation/test/subset/Occlusion.mat   'Occlusion1' and Resolution.mat 'Test_Size'
                                           (same layout as TestG100)

Conversions (bit-exact with SeqNet; boxes stored as float32 of the int values):

- Images.mat boxes (``idlocate`` = x, y, w, h): boxes with w <= 0 or h <= 0 (raw values) are
  dropped; the rest are int32-truncated, then x2 = x + w, y2 = y + h. An image left without a
  box is an error (SeqNet asserts).
- split ``train`` = sorted(Images.mat names - pool names); ``gallery`` = pool.mat order;
  ``query`` = TestG50 order.
- ids. Train (``load_train_identities`` only): the index of the identity in Train.mat (0...5531,
  i.e. SeqNet's pid - 1), given to the first box of the image whose int32 x, y, w, h equals the
  scene's int32 x, y, w, h; -1 elsewhere. Gallery: TestG50 query index i (0...2899) for the query
  box and for the gallery positives of entry i (SeqNet's pid - 1; scanning stops at the first
  empty gallery box, as SeqNet does), -1 elsewhere. Query record i: person_ids = [i].
- camera id 0 everywhere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from personsearch.data.check import (Malformed, ProblemLog, image_size, mat_box, mat_cells,
                                     mat_str, read_mat_cells, report_duplicates, struct_field)
from personsearch.data.parse_cache import Arrays, cached_arrays
from personsearch.data.records import UNLABELED, SceneRecord

GALLERY_SIZES = (50, 100, 500, 1000, 2000, 4000)
SUBSETS = {"occlusion": ("Occlusion.mat", "Occlusion1"),
           "resolution": ("Resolution.mat", "Test_Size")}


@dataclass(frozen=True, eq=False)
class CuhkQuery:
    """One entry of a CUHK-SYSU protocol file.

    query_box: float32 [4] x1y1x2y2 (int32-truncated xywh, then x2 = x + w).
    gallery: (image name, box) in protocol order, box = the int32-truncated ``idlocate`` in
        **x, y, w, h** (float64 [4]) for a gallery image showing the query person, else None.
    """

    query_name: str
    query_box: np.ndarray
    gallery: list[tuple[str, np.ndarray | None]]


def annotation_dir(root: Path) -> Path:
    return Path(root) / "annotation"


def image_dir(root: Path) -> str:
    """The folder of every image, ``<root>/Image/SSM``."""
    return str(Path(root) / "Image" / "SSM")


def protocol_path(root: str | Path, gallery_size: int, subset: str | None = None
                  ) -> tuple[Path, str]:
    """(file, variable) of a protocol. gallery_size -1 -> TestG50 (the evaluation extends it to
    the full pool). A subset ("occlusion" | "resolution") has its own 100-image galleries, so
    gallery_size must then be 100 (or -1 for the full-pool extension)."""
    if subset is not None:
        if subset not in SUBSETS:
            raise ValueError(f"subset must be one of {sorted(SUBSETS)}, got {subset!r}")
        if gallery_size not in (100, -1):
            raise ValueError(f"the {subset} subset has 100-image galleries; gallery_size must "
                             f"be 100 or -1, got {gallery_size}")
        file_name, var = SUBSETS[subset]
        return annotation_dir(Path(root)) / "test" / "subset" / file_name, var
    if gallery_size == -1:
        gallery_size = 50
    if gallery_size not in GALLERY_SIZES:
        raise ValueError(f"gallery_size must be one of {GALLERY_SIZES} or -1, got {gallery_size}")
    var = f"TestG{gallery_size}"
    return annotation_dir(Path(root)) / "test" / "train_test" / f"{var}.mat", var


def xywh_to_int32(box: np.ndarray) -> np.ndarray:
    return np.asarray(box, np.float64).astype(np.int32)


def xywh_int_to_x1y1x2y2(boxes: np.ndarray) -> np.ndarray:
    """int32 [N,4] x, y, w, h -> float32 [N,4] x1y1x2y2."""
    boxes = np.array(boxes, np.int32).reshape(-1, 4)
    boxes[:, 2:] += boxes[:, :2]
    return boxes.astype(np.float32)


def read_protocol_file(path: Path, var: str, log: ProblemLog) -> list[CuhkQuery]:
    """Every entry of a TestG / subset file (problems reported with the entry index). Strict
    reads come from the parse cache (:mod:`personsearch.data.parse_cache`) when the file was
    parsed before; collecting reads (``data check``) always parse."""
    if log.collect:
        return _parse_protocol_file(path, var, log)
    return _decode_protocol(cached_arrays(
        [path], f"cuhk-protocol:{var}",
        lambda: _encode_protocol(_parse_protocol_file(path, var, log))))


def _encode_protocol(queries: list[CuhkQuery]) -> Arrays:
    entries = [entry for query in queries for entry in query.gallery]
    no_box = np.full(4, np.nan)
    return {
        "query_names": np.array([q.query_name for q in queries], dtype=str),
        "query_boxes": np.array([q.query_box for q in queries], np.float32).reshape(-1, 4),
        "gallery_offsets": np.cumsum([0] + [len(q.gallery) for q in queries]).astype(np.int64),
        "gallery_names": np.array([name for name, _ in entries], dtype=str),
        "gallery_boxes": np.array([no_box if box is None else box for _, box in entries],
                                  np.float64).reshape(-1, 4),
    }


def _decode_protocol(arrays: Arrays) -> list[CuhkQuery]:
    names = arrays["gallery_names"].tolist()
    boxes = arrays["gallery_boxes"]
    positive = ~np.isnan(boxes[:, 0])
    entries = [(name, boxes[k].copy() if positive[k] else None)
               for k, name in enumerate(names)]
    offsets = arrays["gallery_offsets"].tolist()
    return [CuhkQuery(name, arrays["query_boxes"][i].copy(), entries[offsets[i]:offsets[i + 1]])
            for i, name in enumerate(arrays["query_names"].tolist())]


def _parse_protocol_file(path: Path, var: str, log: ProblemLog) -> list[CuhkQuery]:
    items = read_mat_cells(path, (var,), log)
    if items is None:
        return []
    queries: list[CuhkQuery] = []
    for index, item in enumerate(items):
        try:
            query = struct_field(item, "Query")
            name = mat_str(struct_field(query, "imname"))
            box = mat_box(struct_field(query, "idlocate"))
            if box is None:
                raise Malformed("empty query box")
            gallery: list[tuple[str, np.ndarray | None]] = []
            seen_empty = False
            for k, entry in enumerate(mat_cells(struct_field(item, "Gallery"))):
                gallery_name = mat_str(struct_field(entry, "imname"))
                gallery_box = mat_box(struct_field(entry, "idlocate"))
                if gallery_box is not None:
                    gallery_box = xywh_to_int32(gallery_box).astype(np.float64)
                    if seen_empty:
                        log.warn(path, f"entry {index}: gallery item {k} is a positive after a "
                                       f"negative (positives must come first)")
                seen_empty |= gallery_box is None
                if gallery_name == name:
                    log.warn(path, f"entry {index}: gallery item {k} is the query image {name}")
                gallery.append((gallery_name, gallery_box))
        except Malformed as error:
            log.error(path, f"entry {index}: {error}")
            continue
        queries.append(CuhkQuery(name, xywh_int_to_x1y1x2y2(xywh_to_int32(box))[0], gallery))
    return queries


def load_cuhk_protocol(root: str | Path, gallery_size: int,
                       subset: str | None = None) -> list[CuhkQuery]:
    """The queries of ``TestG{gallery_size}.mat`` (TestG50 for -1), or of the occlusion
    (``Occlusion.mat``/'Occlusion1') or low-resolution (``Resolution.mat``/'Test_Size') subset.
    Raises DatasetError on the first problem."""
    path, var = protocol_path(root, gallery_size, subset)
    return read_protocol_file(path, var, ProblemLog())


@dataclass
class ImagesMat:
    """Parsed Images.mat: names in file order and int32 x, y, w, h boxes (zero-size dropped)."""

    path: Path
    names: list[str]
    boxes: dict[str, np.ndarray]


def read_images_mat(root: Path, log: ProblemLog) -> ImagesMat:
    """Images.mat; strict reads come from the parse cache when the file was parsed before."""
    path = annotation_dir(root) / "Images.mat"
    if log.collect:
        return _parse_images_mat(path, log)

    def parse() -> Arrays:
        parsed = _parse_images_mat(path, log)
        counts = [len(parsed.boxes[name]) for name in parsed.names]
        return {"names": np.array(parsed.names, dtype=str),
                "box_offsets": np.cumsum([0] + counts).astype(np.int64),
                "boxes": np.concatenate([parsed.boxes[name] for name in parsed.names]
                                        + [np.zeros((0, 4), np.int32)]).astype(np.int32)}

    arrays = cached_arrays([path], "cuhk-images", parse)
    names = arrays["names"].tolist()
    offsets = arrays["box_offsets"].tolist()
    return ImagesMat(path, names, {name: arrays["boxes"][offsets[i]:offsets[i + 1]].copy()
                                   for i, name in enumerate(names)})


def _parse_images_mat(path: Path, log: ProblemLog) -> ImagesMat:
    result = ImagesMat(path, [], {})
    entries = read_mat_cells(path, ("Img",), log)
    if entries is None:
        return result
    for index, entry in enumerate(entries):
        try:
            name = mat_str(struct_field(entry, "imname"))
            box_list = [mat_box(struct_field(b, "idlocate"))
                        for b in mat_cells(struct_field(entry, "box"))]
            if any(b is None for b in box_list):
                raise Malformed("empty idlocate")
        except Malformed as error:
            log.error(path, f"entry {index}: {error}")
            continue
        raw = np.asarray(box_list, np.float64).reshape(-1, 4)
        valid = (raw[:, 2] > 0) & (raw[:, 3] > 0)
        for k in np.flatnonzero(~valid):
            log.warn(path, f"entry {index} ({name}) box {k}: zero or negative size "
                           f"{raw[k].tolist()} (dropped)")
        if not valid.any():
            log.error(path, f"entry {index} ({name}): no box with positive size")
        if name in result.boxes:
            log.error(path, f"entry {index}: duplicate image name {name!r}")
            continue
        result.names.append(name)
        result.boxes[name] = raw[valid].astype(np.int32)
    return result


def read_pool(root: Path, log: ProblemLog) -> tuple[list[str], Path]:
    """pool.mat's names; strict reads come from the parse cache when it was parsed before."""
    path = annotation_dir(root) / "pool.mat"
    if log.collect:
        return _parse_pool(path, log), path
    arrays = cached_arrays([path], "cuhk-pool",
                           lambda: {"names": np.array(_parse_pool(path, log), dtype=str)})
    return arrays["names"].tolist(), path


def _parse_pool(path: Path, log: ProblemLog) -> list[str]:
    names: list[str] = []
    entries = read_mat_cells(path, ("pool",), log)
    if entries is None:
        return names
    for index, entry in enumerate(entries):
        try:
            names.append(mat_str(entry))
        except Malformed as error:
            log.error(path, f"entry {index}: {error}")
    report_duplicates(names, path, "entry", log)
    return names


def _assign(ids: np.ndarray, boxes: np.ndarray, box: np.ndarray, pid: int) -> bool:
    """SeqNet's set_box_pid: the first box equal to ``box`` (int32 xywh) gets ``pid``."""
    match = np.flatnonzero((boxes == box).all(axis=1))
    if match.size:
        ids[match[0]] = pid
    return bool(match.size)


def _ids_of(images: ImagesMat, names: list[str]) -> dict[str, np.ndarray]:
    return {n: np.full(len(images.boxes[n]), UNLABELED, np.int64)
            for n in names if n in images.boxes}


def _lookup(images: ImagesMat, name: str, path: Path, where: str, log: ProblemLog) -> bool:
    if name in images.boxes:
        return True
    if images.names:  # Images.mat itself was readable
        log.error(path, f"{where}: image {name!r} is not in {images.path.name}")
    return False


def train_identities(root: Path, images: ImagesMat, names: list[str],
                     log: ProblemLog) -> dict[str, np.ndarray]:
    """Per train image: Train.mat index per box (-1 unlabeled)."""
    path = annotation_dir(root) / "test" / "train_test" / "Train.mat"
    ids = _ids_of(images, names)
    entries = read_mat_cells(path, ("Train",), log)
    if entries is None:
        return ids
    for index, entry in enumerate(entries):
        try:
            cell = entry
            while isinstance(cell, np.ndarray) and cell.dtype == object:  # nested 1×1 cells
                if cell.size != 1:
                    raise Malformed(f"expected a 1x1 cell, got shape {cell.shape}")
                cell = cell.reshape(-1)[0]
            scenes = [(mat_str(struct_field(s, "imname")), mat_box(struct_field(s, "idlocate")))
                      for s in mat_cells(struct_field(cell, "scene"))]
        except Malformed as error:
            log.error(path, f"identity {index}: {error}")
            continue
        for k, (name, box) in enumerate(scenes):
            where = f"identity {index} scene {k}"
            if box is None:
                log.error(path, f"{where}: empty box")
            elif not _lookup(images, name, path, where, log):
                continue
            elif name not in ids:
                log.warn(path, f"{where}: {name} is not a training image")
            elif not _assign(ids[name], images.boxes[name], xywh_to_int32(box), index):
                log.warn(path, f"{where}: box {box.tolist()} matches no box of {name}")
    return ids


def gallery_identities(images: ImagesMat, pool: list[str], protocol: list[CuhkQuery],
                       path: Path, log: ProblemLog) -> dict[str, np.ndarray]:
    """Per pool image: TestG50 query index per box (-1 elsewhere)."""
    ids = _ids_of(images, pool)
    for index, query in enumerate(protocol):
        corner = query.query_box[:2]
        query_xywh = np.concatenate([corner, query.query_box[2:] - corner])
        entries = [(query.query_name, query_xywh)]
        for name, box in query.gallery:
            if box is None:
                break  # SeqNet stops at the first negative
            entries.append((name, box))
        for k, (name, box) in enumerate(entries):
            where = f"entry {index} " + ("query" if k == 0 else f"gallery item {k - 1}")
            if not _lookup(images, name, path, where, log):
                continue
            if name not in ids:
                log.error(path, f"{where}: image {name} is not in pool.mat")
            elif not _assign(ids[name], images.boxes[name], box.astype(np.int32), index):
                log.warn(path, f"{where}: box {box.tolist()} matches no box of {name}")
    return ids


def _records(root: Path, names: list[str], images: ImagesMat, ids: dict[str, np.ndarray],
             log: ProblemLog, read_sizes: bool) -> list[SceneRecord]:
    records = []
    pool_path = annotation_dir(root) / "pool.mat"
    image_folder = image_dir(root)
    for name in names:
        if not _lookup(images, name, pool_path, "pool", log):
            continue
        image_path = os.path.join(image_folder, name)
        width, height = image_size(image_path, log) if read_sizes else (0, 0)
        records.append(SceneRecord(image_path=image_path, image_name=name, width=width,
                                   height=height, boxes=xywh_int_to_x1y1x2y2(images.boxes[name]),
                                   person_ids=ids[name], camera_id=0, image_index=len(records)))
    return records


def read_split(root: str | Path, split: str, log: ProblemLog, read_sizes: bool = True,
               images: ImagesMat | None = None) -> list[SceneRecord]:
    """Records of a split with their TRUE ids (train: Train.mat index; gallery/query: TestG50
    index). ``images``: an already parsed Images.mat to reuse."""
    root = Path(root)
    if split == "query":
        path, var = protocol_path(root, 50)
        records = []
        image_folder = image_dir(root)
        for index, query in enumerate(read_protocol_file(path, var, log)):
            image_path = os.path.join(image_folder, query.query_name)
            width, height = image_size(image_path, log) if read_sizes else (0, 0)
            records.append(SceneRecord(image_path=image_path, image_name=query.query_name,
                                       width=width, height=height, boxes=query.query_box[None],
                                       person_ids=[index], camera_id=0, image_index=index))
        return records
    images = read_images_mat(root, log) if images is None else images
    pool, _ = read_pool(root, log)
    if split == "gallery":
        path, var = protocol_path(root, 50)
        ids = gallery_identities(images, pool, read_protocol_file(path, var, log), path, log)
        return _records(root, pool, images, ids, log, read_sizes)
    if split != "train":
        raise ValueError(f"split must be train, gallery or query, got {split!r}")
    names = sorted(set(images.names) - set(pool))
    return _records(root, names, images, train_identities(root, images, names, log), log,
                    read_sizes)
