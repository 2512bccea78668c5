"""Property-based tests (hypothesis): the vectorised evaluation core against the loop reference
(eval_reference.py) over generated scenes, and results-file validation (a valid file round-trips;
any damage gives a ResultsFileError, never another exception). Bounded, derandomized examples."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from eval_reference import (random_detections, random_features, random_scene, reference_prw,
                            reference_query_from_detection)
from personsearch.errors import ResultsFileError
from personsearch.evaluation import load_results_file, write_results_file
from personsearch.evaluation.prw import build_prw_protocol, query_feats_from_detections
from personsearch.evaluation.search import GalleryDetections, search_metrics
from test_against_reference import assert_close, gallery_of, records_of

SETTINGS = settings(max_examples=30, deadline=None, derandomize=True, database=None)


@st.composite
def prw_case(draw):
    """A random PRW-style scene (some images empty, some persons unlabeled), detections with
    tied scores, queries among the labeled persons."""
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    annos = random_scene(rng, draw(st.integers(1, 14)), draw(st.integers(1, 5)),
                         draw(st.integers(0, 4)), cams=draw(st.integers(1, 3)))
    tied = draw(st.booleans())
    dets, feats = random_detections(rng, annos, 4, tied_feats=tied, tied_scores=draw(st.booleans()))
    queries = [{"name": a["name"], "boxes": a["boxes"][k:k + 1], "pids": np.array([pid]),
                "cam": a["cam"]}
               for a in annos for k, pid in enumerate(a["pids"]) if pid >= 0]
    query_feats = random_features(rng, len(queries), 4, tied).reshape(-1, 4)
    return annos, dets, feats, queries, query_feats


@SETTINGS
@given(prw_case(), st.sampled_from([0.0, 0.3, 0.5, 0.9]), st.booleans())
def test_prw_core_matches_the_loop_reference(case, det_thresh, ignore_cam_id):
    annos, dets, feats, queries, query_feats = case
    expected = reference_prw(annos, dets, feats, queries, query_feats, det_thresh, ignore_cam_id)
    protocol = build_prw_protocol(records_of(annos), records_of(queries), ignore_cam_id)
    # a tiny chunk budget splits the queries into many chunks: the result must not change
    for chunk in (1 << 23, 3):
        result = search_metrics(gallery_of(dets, feats), query_feats, protocol, det_thresh,
                                max_chunk_items=chunk)
        assert_close(result.summary(), expected)


@SETTINGS
@given(prw_case())
def test_query_from_detection_matches_the_loop_and_handles_empty_frames(case):
    annos, dets, feats, _, _ = case
    rng = np.random.default_rng(len(annos))
    query_boxes = np.sort(rng.integers(0, 150, (len(annos), 4)), axis=1)[:, [0, 1, 2, 3]].astype(np.float32)
    detections = GalleryDetections.from_per_image([d[:, :4] for d in dets], [d[:, 4] for d in dets],
                                                  feats, feat_dim=4)
    ours, found = query_feats_from_detections(query_boxes, detections)
    assert found.tolist() == [len(d) > 0 for d in dets]
    assert np.all(ours[~found] == 0)
    if found.any():
        expected = reference_query_from_detection(query_boxes[found], [d for d in dets if len(d)],
                                                  [f for d, f in zip(dets, feats) if len(d)])
        assert np.array_equal(ours[found], expected)


# ------------------------------------------------------------------------------ results file

@st.composite
def results_arrays(draw):
    num_images, dim = draw(st.integers(0, 5)), draw(st.integers(1, 4))
    counts = draw(st.lists(st.integers(0, 3), min_size=num_images, max_size=num_images))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
    dets = []
    for count in counts:
        xy = rng.uniform(0, 50, (count, 2))
        dets.append(np.concatenate([xy, xy + rng.uniform(0, 30, (count, 2)),
                                    rng.uniform(0, 1, (count, 1))], axis=1).astype(np.float32))
    feats = [rng.standard_normal((count, dim)).astype(np.float32) for count in counts]
    query_feats = rng.standard_normal((draw(st.integers(0, 3)), dim)).astype(np.float32)
    names = [f"frame {i} é.jpg" for i in range(num_images)]
    return names, dets, feats, query_feats


def _write(path, names, dets, feats, query_feats):
    write_results_file(path, names, dets, feats, query_feats)


@SETTINGS
@given(results_arrays())
def test_a_valid_results_file_round_trips(tmp_path_factory, arrays):
    names, dets, feats, query_feats = arrays
    path = tmp_path_factory.mktemp("results") / "r.npz"
    _write(path, names, dets, feats, query_feats)
    loaded = load_results_file(path)
    assert loaded.gallery_names == names
    np.testing.assert_array_equal(loaded.query_feats, query_feats)
    assert loaded.gallery.counts.tolist() == [len(d) for d in dets]
    np.testing.assert_array_equal(loaded.gallery.boxes, np.concatenate(dets + [np.zeros((0, 5), np.float32)])[:, :4])


KEYS = ["gallery_names", "det_offsets", "dets", "feats", "query_feats"]
DAMAGE = st.sampled_from(["drop", "object", "int", "nan", "transpose", "flat", "string", "scalar",
                          "negative_width"])


def _damage(array: np.ndarray, how: str):
    if how == "drop":
        return None
    if how == "object":
        return np.array([object(), 1], dtype=object)
    if how == "int":
        return np.zeros(array.shape, np.int64) if array.dtype.kind == "f" else np.zeros((1, 1), np.int8)
    if how == "nan":
        return np.full(array.shape if array.size else (1, 1), np.nan, np.float32)
    if how == "transpose":
        return np.atleast_2d(array).T.copy()
    if how == "flat":
        return array.reshape(-1).copy() if array.ndim > 1 else array[:, None].copy()
    if how == "string":
        return np.array(["a", "b"])
    if how == "scalar":
        return np.float32(1.0)
    if how == "negative_width" and array.ndim == 2 and array.shape[1] == 5 and len(array):
        damaged = array.copy()
        damaged[0, 2] = damaged[0, 0] - 1
        return damaged
    return np.array([[1.0, 2.0, 3.0]], np.float32)


@SETTINGS
@given(results_arrays(), st.sampled_from(KEYS), DAMAGE)
def test_damaged_results_files_give_only_results_file_errors(tmp_path_factory, arrays, key, how):
    names, dets, feats, query_feats = arrays
    path = tmp_path_factory.mktemp("damaged") / "r.npz"
    _write(path, names, dets, feats, query_feats)
    with np.load(path) as data:
        content = {k: data[k] for k in data.files}
    damaged = _damage(content[key], how)
    if damaged is None:
        del content[key]
    else:
        content[key] = damaged
    np.savez(path, **content)  # object arrays are pickled by savez: the loader must refuse them
    try:
        load_results_file(path)
    except ResultsFileError as error:
        assert str(error).startswith(f"{path}: ") and "\n" not in str(error)
    # a damage that leaves a valid file (e.g. transposing a square matrix) may load: fine


@settings(max_examples=30, deadline=None, derandomize=True, database=None)
@given(st.binary(max_size=400), st.booleans())
@example(b"", False)  # an empty file was an EOFError traceback (found by this test)
def test_arbitrary_bytes_give_a_results_file_error(tmp_path_factory, payload, as_zip):
    path = tmp_path_factory.mktemp("bytes") / "r.npz"
    if as_zip:  # a zip archive whose member is garbage
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("dets.npy", payload)
        payload = buffer.getvalue()
    path.write_bytes(payload)
    with pytest.raises(ResultsFileError, match="r.npz: "):
        load_results_file(path)
