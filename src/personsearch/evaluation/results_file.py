"""The results file: everything the evaluation needs from a model, in one ``.npz``.

Keys (G gallery images, M gallery detections, Q queries, D feature dimension):

  gallery_names      (G,)    str      gallery image names, in the gallery split's order
  det_offsets        (G+1,)  int64    detections of image g are rows det_offsets[g]:det_offsets[g+1]
  dets               (M,5)   float32  x1, y1, x2, y2, score (original pixels)
  feats              (M,D)   float32  features as the model hands them (SeqNet: score-weighted)
  query_feats        (Q,D)   float32  one per query, in the query split's order (GT-box RoI
                                      feature, not score-weighted)

Optional, for the CGPS/DICL PRW "query from detection" variant (the detections the model made
on each query's frame when run on it; without them the gallery detections of the query frame
are used):

  query_det_offsets  (Q+1,)  int64
  query_dets         (Mq,5)  float32
  query_det_feats    (Mq,D)  float32

Writing is atomic (:func:`personsearch.atomic.atomic_open`).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from personsearch.atomic import atomic_open
from personsearch.errors import ResultsFileError
from personsearch.evaluation.search import GalleryDetections

REQUIRED_KEYS = ("gallery_names", "det_offsets", "dets", "feats", "query_feats")
QUERY_DETECTION_KEYS = ("query_det_offsets", "query_dets", "query_det_feats")


@dataclass(frozen=True, eq=False)
class ResultsFile:
    path: str
    gallery_names: list[str]
    gallery: GalleryDetections
    query_feats: np.ndarray
    query_detections: GalleryDetections | None


def _offsets_dets_feats(per_image_dets: Sequence[np.ndarray], per_image_feats: Sequence[np.ndarray],
                        feat_dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if len(per_image_dets) != len(per_image_feats):
        raise ValueError(f"{len(per_image_dets)} detection arrays but {len(per_image_feats)} "
                         f"feature arrays")
    dets = [np.asarray(d, dtype=np.float32).reshape(-1, 5) for d in per_image_dets]
    feats = [np.asarray(f, dtype=np.float32).reshape(len(d), feat_dim)
             for d, f in zip(dets, per_image_feats)]
    offsets = np.concatenate([[0], np.cumsum([len(d) for d in dets])]).astype(np.int64)
    return (offsets, np.concatenate(dets + [np.zeros((0, 5), np.float32)]),
            np.concatenate(feats + [np.zeros((0, feat_dim), np.float32)]))


def write_results_file(path: str | Path, gallery_names: Sequence[str],
                       dets: Sequence[np.ndarray], feats: Sequence[np.ndarray],
                       query_feats: np.ndarray,
                       query_dets: Sequence[np.ndarray] | None = None,
                       query_det_feats: Sequence[np.ndarray] | None = None) -> None:
    """Write a results file atomically.

    Args:
        gallery_names: G names in gallery order.
        dets / feats: per gallery image, [m,5] (x1,y1,x2,y2,score) and [m,D].
        query_feats: [Q, D].
        query_dets / query_det_feats: optional, per query, the detections on its frame.
    """
    path = Path(path)
    query_feats = np.asarray(query_feats, dtype=np.float32)
    if query_feats.ndim != 2:
        raise ValueError(f"query_feats must be [Q, D], got shape {query_feats.shape}")
    feat_dim = query_feats.shape[1]
    if len(gallery_names) != len(dets):
        raise ValueError(f"{len(gallery_names)} gallery names but detections for {len(dets)}")
    offsets, all_dets, all_feats = _offsets_dets_feats(dets, feats, feat_dim)
    arrays = {"gallery_names": np.asarray([str(n) for n in gallery_names], dtype=np.str_),
              "det_offsets": offsets, "dets": all_dets, "feats": all_feats,
              "query_feats": query_feats}
    if (query_dets is None) != (query_det_feats is None):
        raise ValueError("query_dets and query_det_feats go together")
    if query_dets is not None:
        if len(query_dets) != len(query_feats):
            raise ValueError(f"{len(query_feats)} queries but query detections for "
                             f"{len(query_dets)}")
        q_offsets, q_dets, q_feats = _offsets_dets_feats(query_dets, query_det_feats, feat_dim)
        arrays.update(query_det_offsets=q_offsets, query_dets=q_dets, query_det_feats=q_feats)
    with atomic_open(path) as stream:
        np.savez(stream, **arrays)


def _fail(path: str, problem: str) -> ResultsFileError:
    return ResultsFileError(f"{path}: {problem}")


def _read(path: str, data, key: str) -> np.ndarray:
    """One array of the file; an object array (pickled Python objects, never loaded) or a
    damaged member is a ResultsFileError naming the key."""
    try:
        return np.asarray(data[key])
    except ValueError as error:
        if "allow_pickle" in str(error):
            raise _fail(path, f"'{key}' is an object array (Python objects, which are never "
                              f"unpickled): write it as a plain numeric or string array") from None
        raise _fail(path, f"'{key}' cannot be read ({error})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as error:
        raise _fail(path, f"'{key}' cannot be read ({error})") from None


def _float_array(path: str, data, key: str, ndim: int, columns: int | None = None) -> np.ndarray:
    """Floating point only: integer features or boxes mean the writer lost precision or
    wrote the wrong array, so they are refused rather than converted."""
    array = _read(path, data, key)
    if array.dtype.kind != "f" or array.ndim != ndim or (
            columns is not None and array.shape[1] != columns):
        want = f"{ndim}-d float array" + (f" with {columns} columns" if columns is not None
                                           else "")
        raise _fail(path, f"'{key}' must be a {want}, got dtype {array.dtype} "
                          f"shape {array.shape}")
    if not np.all(np.isfinite(array)):
        bad = np.argwhere(~np.isfinite(array))[0].tolist()
        raise _fail(path, f"'{key}' holds NaN or inf (first at index {bad})")
    return array.astype(np.float32)


def _offsets(path: str, data, key: str, count: int, rows: int, rows_key: str) -> np.ndarray:
    offsets = _read(path, data, key)
    if offsets.dtype.kind not in "iu" or offsets.shape != (count + 1,):
        raise _fail(path, f"'{key}' must be an integer array of shape ({count + 1},), got "
                          f"dtype {offsets.dtype} shape {offsets.shape}")
    offsets = offsets.astype(np.int64)
    if offsets[0] != 0:
        raise _fail(path, f"'{key}' must start at 0, starts at {offsets[0]}")
    steps = np.diff(offsets)
    if np.any(steps < 0):
        at = int(np.flatnonzero(steps < 0)[0])
        raise _fail(path, f"'{key}' is not monotone: entry {at + 1} ({offsets[at + 1]}) < "
                          f"entry {at} ({offsets[at]})")
    if offsets[-1] != rows:
        raise _fail(path, f"'{key}' ends at {offsets[-1]} but '{rows_key}' has {rows} rows")
    return offsets


def _detections(path: str, data, offsets_key: str, dets_key: str, feats_key: str,
                count: int, feat_dim: int) -> GalleryDetections:
    dets = _float_array(path, data, dets_key, 2, 5)
    feats = _float_array(path, data, feats_key, 2)
    if len(feats) != len(dets):
        raise _fail(path, f"'{dets_key}' has {len(dets)} rows but '{feats_key}' {len(feats)}")
    if feats.shape[1] != feat_dim:
        raise _fail(path, f"'{feats_key}' has dimension {feats.shape[1]} but 'query_feats' "
                          f"{feat_dim}")
    bad = np.flatnonzero((dets[:, 2] < dets[:, 0]) | (dets[:, 3] < dets[:, 1]))
    if len(bad):
        raise _fail(path, f"'{dets_key}' row {int(bad[0])} has x2 < x1 or y2 < y1: "
                          f"{dets[bad[0], :4].tolist()} ({len(bad)} such rows)")
    offsets = _offsets(path, data, offsets_key, count, len(dets), dets_key)
    return GalleryDetections(offsets, dets[:, :4], dets[:, 4], feats)


def load_results_file(path: str | Path) -> ResultsFile:
    """Read and check a results file on its own (ResultsFileError naming the problem)."""
    path = str(path)
    try:
        data = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise _fail(path, "no such file") from None
    except EOFError:
        raise _fail(path, "the file is empty") from None
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise _fail(path, f"not a readable .npz file ({error})") from None
    with data:
        missing = [key for key in REQUIRED_KEYS if key not in data.files]
        if missing:
            raise _fail(path, f"missing keys {missing} (has {sorted(data.files)})")
        names = _read(path, data, "gallery_names")
        if names.dtype.kind not in "US" or names.ndim != 1:
            raise _fail(path, f"'gallery_names' must be a 1-d string array, got dtype "
                              f"{names.dtype} shape {names.shape}")
        gallery_names = [str(n) for n in names]
        query_feats = _float_array(path, data, "query_feats", 2)
        gallery = _detections(path, data, "det_offsets", "dets", "feats", len(gallery_names),
                              query_feats.shape[1])
        present = [key for key in QUERY_DETECTION_KEYS if key in data.files]
        query_detections = None
        if present and len(present) != len(QUERY_DETECTION_KEYS):
            raise _fail(path, f"has {present} but not "
                              f"{[k for k in QUERY_DETECTION_KEYS if k not in present]}: the "
                              f"query detection keys go together")
        if present:
            query_detections = _detections(path, data, "query_det_offsets", "query_dets",
                                           "query_det_feats", len(query_feats),
                                           query_feats.shape[1])
    return ResultsFile(path, gallery_names, gallery, query_feats, query_detections)


def check_results_fit(results: ResultsFile, gallery_names: Sequence[str],
                      num_queries: int) -> None:
    """ResultsFileError unless the file's gallery is ``gallery_names`` in that order and it
    has ``num_queries`` query features."""
    expected = [str(n) for n in gallery_names]
    found = results.gallery_names
    if len(found) != len(expected):
        raise _fail(results.path, f"{len(found)} gallery images but the dataset's gallery split "
                                  f"has {len(expected)}")
    if found != expected:
        at = next(i for i, (a, b) in enumerate(zip(found, expected)) if a != b)
        same_set = sorted(found) == sorted(expected)
        raise _fail(results.path,
                    f"gallery_names[{at}] is {found[at]!r} but the dataset's gallery image {at} "
                    f"is {expected[at]!r}" + (" (same names, different order: write them in "
                                              "the gallery split's order)" if same_set else ""))
    if len(results.query_feats) != num_queries:
        raise _fail(results.path, f"{len(results.query_feats)} query features but the dataset "
                                  f"has {num_queries} queries")
