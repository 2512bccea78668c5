"""``personsearch evaluate-results`` reads annotations and the results file only: it works with
the dataset's images gone, and gives the same metrics from a cold and a warm parse cache."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from personsearch.cli.main import main
from personsearch.data import load_split, parse_cache
from personsearch.evaluation.results_file import write_results_file


@pytest.mark.parametrize("fmt", ["prw", "cuhk-sysu"])
def test_no_image_is_read_and_cached_parses_give_the_same_metrics(tmp_path, monkeypatch, fmt):
    from personsearch.data.synth import generate_dataset

    root = tmp_path / "data"
    generate_dataset(root, fmt=fmt, frames=24, seed=3, width=320, height=180, workers=1)
    gallery = load_split(fmt, root, "gallery")
    queries = load_split(fmt, root, "query")
    rng = np.random.default_rng(0)
    dets, feats = [], []
    for record in gallery:  # the GT boxes as detections, random features
        dets.append(np.concatenate([record.boxes, np.full((record.num_boxes, 1), 0.9,
                                                          np.float32)], 1))
        feats.append(rng.standard_normal((record.num_boxes, 8)).astype(np.float32))
    results = tmp_path / "results.npz"
    write_results_file(results, [r.image_name for r in gallery], dets, feats,
                       rng.standard_normal((len(queries), 8)).astype(np.float32))
    image_folder = root / ("frames" if fmt == "prw" else "Image")
    shutil.rmtree(image_folder)
    monkeypatch.setenv("PERSONSEARCH_CACHE_DIR", str(tmp_path / "cache"))
    metrics = []
    for run in range(2):  # cold cache (parses), then warm (a new process reads the disk)
        parse_cache.clear_memory()
        out = tmp_path / f"metrics{run}.json"
        arguments = ["evaluate-results", "--dataset", fmt, "--root", str(root), "--results",
                     str(results), "--json", str(out)]
        if fmt == "cuhk-sysu":
            arguments += ["--gallery-size", "50"]
        assert main(arguments) == 0
        metrics.append(json.loads(out.read_text()))
    assert metrics[0] == metrics[1]
    assert metrics[0]["det_recall"] == 1.0  # the GT boxes were the detections
    assert list((tmp_path / "cache" / "annotations").glob("*.npz"))
