"""Results file round trip, the messages for files that do not fit, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

import personsearch.data
from personsearch.cli.main import main
from personsearch.data.records import SceneRecord
from personsearch.errors import ResultsFileError
from personsearch.evaluation import check_results_fit, load_results_file, write_results_file

BOX = [10, 10, 60, 160]


def frames():
    return [SceneRecord(n, n, 400, 300, np.array([BOX], np.float32), np.array([7]), c, i)
            for i, (n, c) in enumerate([("c1s1_000001.jpg", 1), ("c1s1_000002.jpg", 1),
                                        ("c2s1_000003.jpg", 2)])]


def queries():
    return [SceneRecord("c1s1_000001.jpg", "c1s1_000001.jpg", 400, 300,
                        np.array([BOX], np.float32), np.array([7]), 1, 0)]


def write_good(path, **override):
    args = dict(gallery_names=[r.image_name for r in frames()],
                dets=[np.array([BOX + [0.9]]), np.array([BOX + [0.9]]), np.array([BOX + [0.8]])],
                feats=[np.array([[1.0, 0]]), np.array([[0.5, 0]]), np.array([[0.25, 0]])],
                query_feats=np.array([[1.0, 0]]))
    args.update(override)
    write_results_file(path, **args)


def rewrite(path, **changes):
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    for key, value in changes.items():
        if value is None:
            del arrays[key]
        else:
            arrays[key] = value
    np.savez(path, **arrays)


def test_round_trip(tmp_path):
    path = tmp_path / "r.npz"
    write_good(path, query_dets=[np.array([BOX + [0.9]])], query_det_feats=[np.array([[1.0, 0]])])
    results = load_results_file(path)
    assert results.gallery_names == [r.image_name for r in frames()]
    assert results.gallery.image_offsets.tolist() == [0, 1, 2, 3]
    assert results.query_detections.num_images == 1
    check_results_fit(results, results.gallery_names, 1)
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("changes, message", [
    ({"feats": None}, "missing keys \\['feats'\\]"),
    ({"det_offsets": np.array([0, 2, 1, 3])}, "not monotone: entry 2 \\(1\\) < entry 1 \\(2\\)"),
    ({"det_offsets": np.array([0, 1, 2, 4])}, "ends at 4 but 'dets' has 3 rows"),
    ({"det_offsets": np.array([0, 1, 3])}, "shape \\(4,\\)"),
    ({"dets": np.array([BOX + [0.9], BOX + [np.nan], BOX + [0.8]], np.float32)}, "NaN or inf"),
    ({"feats": np.zeros((3, 3), np.float32)}, "dimension 3 but 'query_feats' 2"),
    ({"query_feats": np.array([[np.inf, 0]], np.float32)}, "'query_feats' holds NaN or inf"),
    ({"dets": np.zeros((3, 4), np.float32)}, "'dets' must be a 2-d float array with 5 columns"),
    ({"query_dets": np.zeros((0, 5), np.float32)}, "query detection keys go together"),
    # issue 13: an object array was a traceback, integer features were accepted silently
    ({"feats": np.array([np.array([1.0, 0]), np.array([0.5, 0]), "x"], dtype=object)},
     "'feats' is an object array"),
    ({"gallery_names": np.array(["c1s1_000001.jpg", 2, None], dtype=object)},
     "'gallery_names' is an object array"),
    ({"feats": np.array([[1, 0], [0, 1], [1, 1]], np.int64)}, "'feats' must be a 2-d float array, got dtype int64"),
    ({"query_feats": np.array([[1, 0]], np.int32)}, "'query_feats' must be a 2-d float array, got dtype int32"),
])
def test_bad_files(tmp_path, changes, message):
    path = tmp_path / "r.npz"
    write_good(path)
    rewrite(path, **changes)
    with pytest.raises(ResultsFileError, match=message):
        load_results_file(path)


def test_does_not_fit_dataset(tmp_path):
    path = tmp_path / "r.npz"
    write_good(path)
    results = load_results_file(path)
    names = [r.image_name for r in frames()]
    with pytest.raises(ResultsFileError, match="3 gallery images but .* has 4"):
        check_results_fit(results, names + ["x.jpg"], 1)
    with pytest.raises(ResultsFileError, match="gallery_names\\[0\\] is 'c1s1_000001.jpg' but .* "
                                               "'c1s1_000002.jpg' \\(same names, different order"):
        check_results_fit(results, [names[1], names[0], names[2]], 1)
    with pytest.raises(ResultsFileError, match="1 query features but the dataset has 2"):
        check_results_fit(results, names, 2)
    with pytest.raises(ResultsFileError, match="no such file"):
        load_results_file(tmp_path / "missing.npz")


@pytest.fixture
def fake_prw(monkeypatch):
    splits = {"gallery": frames(), "query": queries()}
    monkeypatch.setattr(personsearch.data, "load_split",
                        lambda fmt, root, split, **_: splits[split])


def test_cli(tmp_path, fake_prw, capsys):
    # Gallery (same camera): f2 pos 0.5, f3 pos 0.25 -> AP 1, every hit.
    # Cross-camera: f3 only -> AP 1.
    path = tmp_path / "r.npz"
    write_good(path)
    out = tmp_path / "m.json"
    assert main(["evaluate-results", "--dataset", "prw", "--root", str(tmp_path), "--results",
                 str(path), "--json", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert {"mAP", "top1", "top5", "top10", "det_recall", "det_ap"} <= set(metrics)
    assert metrics["mAP"] == 1.0 and metrics["det_recall"] == 1.0
    assert "mAP" in capsys.readouterr().out
    assert main(["evaluate-results", "--dataset", "prw", "--root", str(tmp_path), "--results",
                 str(path), "--cross-camera", "--query-from-detection"]) == 0


def test_cli_rejects_bad_file(tmp_path, fake_prw, capsys):
    path = tmp_path / "r.npz"
    write_good(path, gallery_names=["c1s1_000002.jpg", "c1s1_000001.jpg", "c2s1_000003.jpg"])
    assert main(["evaluate-results", "--dataset", "prw", "--root", str(tmp_path), "--results",
                 str(path)]) == 2
    assert "gallery_names[0] is 'c1s1_000002.jpg'" in capsys.readouterr().err
