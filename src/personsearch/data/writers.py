"""Writers of the real on-disk formats (PRW, CUHK-SYSU, COCO JSON), used by the synthetic
generator and by tests. Only annotation files are written; the caller writes the images
(``frames/<name>`` for PRW, ``Image/SSM/<name>`` for CUHK-SYSU, ``images/<file_name>`` for
COCO). Every file is written atomically (:mod:`personsearch.atomic`; not fsynced: a dataset is
regenerated, not recovered, after a power loss).

Input records are "record-like": anything with ``image_name`` (str), ``boxes`` ([N, 4]
x1y1x2y2 in pixels) and ``person_ids`` ([N], a true identity >= 0 or -1 for unlabeled), such as
:class:`~personsearch.data.records.SceneRecord`. COCO also needs ``width``, ``height`` and uses
``camera_id``. The MAT layouts are those of docs/datasets.md §1.2 / §2.2, so that both
our readers and SeqNet-style ``loadmat(...)[var].squeeze()`` indexing read them back. Boxes are
written as given (x, y, w, h = x1, y1, x2 - x1, y2 - y1); the readers' int truncation makes
integral boxes round-trip exactly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence

import numpy as np

from personsearch.atomic import atomic_open, atomic_write_bytes, atomic_write_text
from personsearch.data.cuhk_sysu import GALLERY_SIZES, SUBSETS, CuhkQuery, protocol_path


class RecordLike(Protocol):
    image_name: str
    boxes: Any
    person_ids: Any


# ---------------------------------------------------------------------------------------------
# helpers


def _savemat(path: Path, variables: dict[str, Any]) -> None:
    import scipy.io

    with atomic_open(path, fsync=False) as handle:
        scipy.io.savemat(handle, variables, do_compression=False)


def _xywh(boxes: Any) -> np.ndarray:
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


def _ids(record: RecordLike) -> np.ndarray:
    ids = np.asarray(record.person_ids, np.int64).reshape(-1)
    if len(ids) != len(np.asarray(record.boxes).reshape(-1, 4)):
        raise ValueError(f"{record.image_name}: boxes and person_ids differ in length")
    return ids


def _struct(shape: tuple[int, int], fields: Sequence[str], rows: Sequence[tuple]) -> np.ndarray:
    """A MATLAB struct array of ``shape`` (rows in linear order), every field an object."""
    array = np.empty(shape, dtype=[(name, object) for name in fields])
    flat = array.reshape(-1)
    for index, row in enumerate(rows):
        flat[index] = row
    return array


def _cell(values: Sequence[Any]) -> np.ndarray:
    """An N×1 MATLAB cell."""
    cell = np.empty((len(values), 1), dtype=object)
    for index, value in enumerate(values):
        cell[index, 0] = value
    return cell


def _format_float(value: float) -> str:
    return np.format_float_positional(float(value), trim="-")


def _check_unique(names: Sequence[str], what: str) -> None:
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate image names in {what}")


# ---------------------------------------------------------------------------------------------
# PRW


def write_prw(root: str | Path, train: Sequence[RecordLike], test: Sequence[RecordLike],
              queries: Sequence[RecordLike]) -> None:
    """Write PRW annotations under ``root``.

    train, test: frames in split order; ``image_name`` must be ``<frame>.jpg`` with a camera
        ``c<digit>`` in it. Writes ``annotations/<frame>.jpg.mat`` (variable ``box_new``, N×5
        double [id, x, y, w, h], id -1 -> -2), ``frame_train.mat`` ('img_index_train') and
        ``frame_test.mat`` ('img_index_test'), N×1 cells of frame names without ``.jpg``.
    queries: one box each, ``person_ids = [pid]`` (pid >= 0), image a test frame. Writes
        ``query_info.txt``: ``pid x y w h frame`` per query, CRLF line ends.
    """
    root = Path(root)
    names = [r.image_name for r in train] + [r.image_name for r in test]
    _check_unique(names, "train + test")
    for name in names:
        if not name.endswith(".jpg"):
            raise ValueError(f"PRW frame names end with .jpg, got {name!r}")
    for record in list(train) + list(test):
        ids = _ids(record).astype(np.float64)
        ids[ids < 0] = -2
        array = np.concatenate([ids[:, None], _xywh(record.boxes)], axis=1)
        _savemat(root / "annotations" / (record.image_name + ".mat"), {"box_new": array})
    for file_name, var, records in (("frame_train.mat", "img_index_train", train),
                                    ("frame_test.mat", "img_index_test", test)):
        _savemat(root / file_name, {var: _cell([r.image_name[:-4] for r in records])})
    test_names = {r.image_name for r in test}
    lines = []
    for index, query in enumerate(queries):
        ids = _ids(query)
        if len(ids) != 1 or ids[0] < 0 or query.image_name not in test_names:
            raise ValueError(f"query {index}: needs one labeled box in a test frame")
        x, y, w, h = _xywh(query.boxes)[0]
        lines.append(" ".join([str(int(ids[0]))] + [_format_float(v) for v in (x, y, w, h)]
                              + [query.image_name[:-4]]) + "\r\n")
    # Bytes, so that the "\r\n" line ends are written as they are on every platform.
    atomic_write_bytes(root / "query_info.txt", "".join(lines).encode("utf-8"), fsync=False)


# ---------------------------------------------------------------------------------------------
# CUHK-SYSU


def build_cuhk_protocol(test: Sequence[RecordLike], queries: Sequence[tuple[int, int]],
                        gallery_size: int, seed: int = 0,
                        allow_smaller: bool = False) -> list[CuhkQuery]:
    """A TestG-style protocol from test records with true ids.

    queries: (test record index, box index) of each query box. Gallery of a query = every other
    test image showing the same id (its first box of that id; positives first, in record order)
    followed by negatives (images without the id, never the query image) drawn at random
    (``seed``) to ``gallery_size`` images in total. ValueError when there are not enough
    images, unless ``allow_smaller`` (then the gallery holds every image there is).
    """
    rng = np.random.default_rng(seed)
    # where each id appears: id -> {test image index: its first box of that id}, so that a
    # query costs O(its positives + gallery size), not a scan of every test image
    first_box_of: dict[int, dict[int, int]] = {}
    for j, record in enumerate(test):
        for box, pid in enumerate(_ids(record).tolist()):
            if pid >= 0:
                first_box_of.setdefault(pid, {}).setdefault(j, box)
    all_images = np.arange(len(test))
    protocol = []
    for number, (image_index, box_index) in enumerate(queries):
        query = test[image_index]
        pid = int(_ids(query)[box_index])
        if pid < 0:
            raise ValueError(f"query {number}: box {box_index} of {query.image_name} is "
                             f"unlabeled")
        hits = first_box_of[pid]
        positive_images = sorted(j for j in hits if j != image_index)
        positives = [(test[j].image_name, _xywh(test[j].boxes)[hits[j]])
                     for j in positive_images]
        # negatives: every other image without the id, in record order
        negatives = np.delete(all_images, positive_images + [image_index])
        wanted = gallery_size - len(positives)
        if wanted > len(negatives) or wanted < 0:
            if not allow_smaller or wanted < 0:
                raise ValueError(f"query {number}: cannot build a {gallery_size}-image gallery "
                                 f"from {len(positives)} positives and {len(negatives)} "
                                 f"negatives")
            wanted = len(negatives)
        chosen = sorted(rng.choice(len(negatives), size=wanted, replace=False).tolist())
        protocol.append(CuhkQuery(query.image_name,
                                  np.asarray(query.boxes, np.float32).reshape(-1, 4)[box_index],
                                  positives + [(test[negatives[k]].image_name, None)
                                               for k in chosen]))
    return protocol


def _protocol_struct(protocol: Sequence[CuhkQuery]) -> np.ndarray:
    rows = []
    for index, query in enumerate(protocol):
        seen_negative = False
        gallery_rows = []
        for name, box in query.gallery:
            if box is not None and seen_negative:
                raise ValueError(f"protocol entry {index}: positives must come first")
            seen_negative |= box is None
            idlocate = np.zeros((1, 0)) if box is None else \
                np.asarray(box, np.float64).reshape(1, 4)
            gallery_rows.append((name, idlocate, 0.0))
        query_struct = _struct((1, 1), ("imname", "idlocate", "ishard", "idname"),
                               [(query.query_name, _xywh(query.query_box).reshape(1, 4), 0.0,
                                 f"p{index + 1}")])
        rows.append((query_struct, _struct((1, len(gallery_rows)),
                                           ("imname", "idlocate", "ishard"), gallery_rows)))
    return _struct((1, len(rows)), ("Query", "Gallery"), rows)


def write_cuhk_sysu(root: str | Path, train: Sequence[RecordLike], test: Sequence[RecordLike],
                    protocols: Mapping[int, Sequence[CuhkQuery]],
                    subsets: Mapping[str, Sequence[CuhkQuery]] | None = None) -> None:
    """Write CUHK-SYSU annotations under ``root/annotation``.

    train, test: the images (test = the gallery pool, in pool order). Writes ``Images.mat``
        ('Img', 1×N struct imname, nAppear, box; box 1×n struct idlocate [x y w h], ishard;
        train images first, then test), ``pool.mat`` ('pool', N×1 cell of the test names) and
        ``test/train_test/Train.mat`` ('Train', K×1 cell of 1×1 structs idname, nAppear, scene;
        one per distinct train id >= 0 in ascending id order, scene = its boxes in record then
        box order). The readers give training identity k = position in that order, so train ids
        0..K-1 come back unchanged. Test ``person_ids`` are not stored: CUHK-SYSU gallery ids
        come from TestG50.
    protocols: gallery size (50, 100, 500, 1000, 2000, 4000) -> the queries (same queries in
        the same order for every size), each gallery positives first, box ``None`` for a
        negative; see :func:`build_cuhk_protocol`. Writes ``test/train_test/TestG{N}.mat``.
        Size 50 is required (it defines the query split and the gallery ids).
    subsets: optional "occlusion" / "resolution" -> queries, written to ``test/subset/``.
    """
    root = Path(root)
    if 50 not in protocols:
        raise ValueError("protocols must include gallery size 50 (TestG50 defines the queries)")
    for size in protocols:
        if size not in GALLERY_SIZES:
            raise ValueError(f"gallery size {size} is not one of {GALLERY_SIZES}")
    records = list(train) + list(test)
    _check_unique([r.image_name for r in records], "train + test")
    annotation = root / "annotation"
    image_rows = []
    for record in records:
        boxes = _xywh(record.boxes)
        box_struct = _struct((1, len(boxes)), ("idlocate", "ishard"),
                             [(box.reshape(1, 4), 0.0) for box in boxes])
        image_rows.append((record.image_name, float(len(boxes)), box_struct))
    _savemat(annotation / "Images.mat",
             {"Img": _struct((1, len(image_rows)), ("imname", "nAppear", "box"), image_rows)})
    _savemat(annotation / "pool.mat", {"pool": _cell([r.image_name for r in test])})

    scenes: dict[int, list[tuple]] = {}
    for record in train:
        boxes = _xywh(record.boxes)
        for box, pid in zip(boxes, _ids(record).tolist()):
            if pid >= 0:
                scenes.setdefault(pid, []).append((record.image_name, box.reshape(1, 4), 0.0))
    identities = []
    for pid in sorted(scenes):
        rows = scenes[pid]
        identities.append(_struct((1, 1), ("idname", "nAppear", "scene"),
                                  [(f"p{pid}", float(len(rows)),
                                    _struct((1, len(rows)), ("imname", "idlocate", "ishard"),
                                            rows))]))
    _savemat(annotation / "test" / "train_test" / "Train.mat", {"Train": _cell(identities)})

    for size, protocol in protocols.items():
        path, var = protocol_path(root, size)
        _savemat(path, {var: _protocol_struct(protocol)})
    for subset, protocol in (subsets or {}).items():
        if subset not in SUBSETS:
            raise ValueError(f"subset must be one of {sorted(SUBSETS)}, got {subset!r}")
        path, var = protocol_path(root, 100, subset)
        _savemat(path, {var: _protocol_struct(protocol)})


# ---------------------------------------------------------------------------------------------
# COCO


def _coco_number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


def write_coco(root: str | Path, train: Sequence[RecordLike], gallery: Sequence[RecordLike],
               queries: Sequence[RecordLike]) -> None:
    """Write ``root/annotations/{train,gallery,query}.json`` (layout of
    :mod:`personsearch.data.coco`). Records need ``width``/``height``; ``camera_id`` is written
    when non-zero. Image ids = record position; annotation ids = running box index of the file
    (for train: the global training-slot index); ``person_id`` as given (-1 unlabeled);
    category 1 "person". queries: one box each, an image may hold several queries.
    """
    root = Path(root)

    def document(images: Sequence[RecordLike], boxes_of: list[list[tuple]]) -> dict:
        image_entries, annotations = [], []
        for image_id, record in enumerate(images):
            entry = {"id": image_id, "file_name": record.image_name,
                     "width": int(record.width), "height": int(record.height)}
            if getattr(record, "camera_id", 0):
                entry["camera_id"] = int(record.camera_id)
            image_entries.append(entry)
            for box, pid in boxes_of[image_id]:
                bbox = [_coco_number(v) for v in box]
                annotations.append({"id": len(annotations), "image_id": image_id, "bbox": bbox,
                                    "area": _coco_number(box[2] * box[3]), "category_id": 1,
                                    "iscrowd": 0, "person_id": int(pid), "segmentation": []})
        return {"images": image_entries, "annotations": annotations,
                "categories": [{"id": 1, "name": "person"}]}

    def write(split: str, data: dict) -> None:
        text = json.dumps(data)
        atomic_write_text(root / "annotations" / f"{split}.json", text, fsync=False)

    for split, records in (("train", train), ("gallery", gallery)):
        _check_unique([r.image_name for r in records], split)
        write(split, document(records, [list(zip(_xywh(r.boxes), _ids(r).tolist()))
                                        for r in records]))
    query_images: dict[str, int] = {}
    images = []
    for index, query in enumerate(queries):
        if len(_ids(query)) != 1:
            raise ValueError(f"query {index}: needs exactly one box")
        if query.image_name not in query_images:
            query_images[query.image_name] = len(images)
            images.append(query)
    # one image entry per name; the annotations in query order
    data = document(images, [[] for _ in images])
    for index, query in enumerate(queries):
        box = _xywh(query.boxes)[0]
        data["annotations"].append({"id": index, "image_id": query_images[query.image_name],
                                    "bbox": [_coco_number(v) for v in box],
                                    "area": _coco_number(box[2] * box[3]), "category_id": 1,
                                    "iscrowd": 0, "person_id": int(_ids(query)[0]),
                                    "segmentation": []})
    write("query", data)
