"""The demo's search-results picture from a results file (the training and evaluation it calls
are tested elsewhere)."""

import numpy as np
from PIL import Image

from personsearch.cli.demo import results_picture
from personsearch.data import load_split
from personsearch.evaluation.results_file import write_results_file


def test_results_picture_marks_hits(tmp_path):
    from personsearch.data.synth import generate_dataset

    root = tmp_path / "synth"
    generate_dataset(root, fmt="prw", frames=12, seed=2, width=320, height=180, workers=1)
    gallery = load_split("prw", root, "gallery")
    queries = load_split("prw", root, "query")
    # "detections" = the GT boxes with score 1 and one-hot identity features: perfect ranking
    dim = 64
    def feats(ids):
        out = np.zeros((len(ids), dim), np.float32)
        out[np.arange(len(ids)), np.asarray(ids) % dim] = 1.0
        return out
    dets = [np.concatenate([r.boxes, np.ones((r.num_boxes, 1), np.float32)], axis=1) for r in gallery]
    write_results_file(tmp_path / "res.npz", [r.image_name for r in gallery], dets,
                       [feats(r.person_ids) for r in gallery],
                       feats([int(q.person_ids[0]) for q in queries]))
    out = results_picture(root, tmp_path / "res.npz", tmp_path / "pic.png",
                          {"mAP": 1.0, "top1": 1.0}, 2, seed=0)
    image = np.asarray(Image.open(out).convert("RGB"))
    assert image.shape[0] > 100 and image.shape[1] > 100
    green = (image[..., 1] > 150) & (image[..., 0] < 40) & (image[..., 2] < 40)
    assert green.sum() > 20  # correct hits are framed green


def test_metrics_are_explained_in_one_line():
    from personsearch.cli.demo import METRICS_MEANING

    assert "\n" not in METRICS_MEANING and "mAP" in METRICS_MEANING and "top-1" in METRICS_MEANING


def test_comparison_with_the_recorded_figures_is_stated_as_measured():
    """Issue 13: the demo claimed equality with the README figures; it now says what it
    measured (rounded as printed) and why another CPU may differ."""
    from personsearch.cli.demo import DETERMINISM_NOTE, comparison_line

    recorded = {"mAP": 0.0430, "top1": 0.1456}
    assert comparison_line({"mAP": 0.04304, "top1": 0.14563}, recorded) == \
        "this run gives the recorded figures"
    line = comparison_line({"mAP": 0.0470, "top1": 0.2140}, recorded)
    assert line.startswith("this run differs from the recorded figures by +0.4 mAP and +6.8 top-1")
    assert "no demo run recorded" in comparison_line({"mAP": 0.1, "top1": 0.2}, None)
    assert "deterministic on one machine" in DETERMINISM_NOTE and "another CPU" in DETERMINISM_NOTE
    assert "equal" not in DETERMINISM_NOTE


def test_recorded_demo_run_is_read_from_its_results_file(tmp_path, monkeypatch):
    import json

    import personsearch.cli.demo as demo

    monkeypatch.setattr(demo, "RESULTS_FILE", tmp_path / "demo.json")
    assert demo.recorded_figure() is None  # nothing recorded: the demo says so
    record = {"mAP": 0.21, "top1": 0.52, "threads": 2, "cpu": "AMD EPYC (2 cores)"}
    (tmp_path / "demo.json").write_text(json.dumps({"demo": record}))
    assert demo.recorded_figure() == record


def test_a_dataset_with_other_settings_is_refused(tmp_path):
    """The demo's data draws persons taller than the generator's default: a folder written
    with other settings (e.g. by an earlier demo) is named as such, not trained on."""
    import json

    import pytest

    from personsearch.cli.demo import DEMO_DATA, dataset_mismatch, ensure_dataset
    from personsearch.errors import DatasetError

    root = tmp_path / "synth"
    (root / "diagnostics").mkdir(parents=True)
    settings = {"fmt": "prw", "frames": 600, "seed": 0, **DEMO_DATA}
    (root / "diagnostics" / "settings.json").write_text(json.dumps(settings))
    assert dataset_mismatch(root, 600, 0) == []
    (root / "diagnostics" / "settings.json").write_text(json.dumps({**settings, "height_scale": 1.0}))
    assert dataset_mismatch(root, 600, 0) == [
        f"height_scale: found 1.0, the demo uses {DEMO_DATA['height_scale']!r}"]
    assert dataset_mismatch(root, 40, 0)[0] == "frames: found 600, the demo uses 40"
    (root / "query_info.txt").write_text("")
    with pytest.raises(DatasetError, match="not the demo's synthetic data"):
        ensure_dataset(root, 600, 0)


def test_a_run_of_another_config_in_the_output_folder_is_refused(tmp_path):
    import pytest

    from personsearch.cli.demo import DEMO_PRESET, check_existing_run
    from personsearch.config import config_to_dict, load_config
    from personsearch.errors import ConfigError

    out = tmp_path / "ssl"
    check_existing_run(DEMO_PRESET, out, [])  # nothing there yet
    (out / "checkpoints").mkdir(parents=True)
    import torch

    saved = config_to_dict(load_config(DEMO_PRESET, ["solver.epochs=1"]))
    torch.save({"config": saved}, out / "checkpoints" / "last.pt")
    check_existing_run(DEMO_PRESET, out, ["solver.epochs=1"])  # the same config: resumed
    with pytest.raises(ConfigError, match="solver.epochs"):
        check_existing_run(DEMO_PRESET, out, [])


def test_results_picture_when_nothing_was_detected(tmp_path):
    """Issue 13 (found running the demo for one epoch): a results file without any detection
    made the picture step crash (an empty float array and-ed with a bool mask)."""
    from personsearch.data.synth import generate_dataset

    root = tmp_path / "synth"
    generate_dataset(root, fmt="prw", frames=8, seed=3, width=160, height=96, workers=1)
    gallery = load_split("prw", root, "gallery")
    queries = load_split("prw", root, "query")
    write_results_file(tmp_path / "res.npz", [r.image_name for r in gallery],
                       [np.zeros((0, 5), np.float32) for _ in gallery],
                       [np.zeros((0, 8), np.float32) for _ in gallery],
                       np.ones((len(queries), 8), np.float32))
    out = results_picture(root, tmp_path / "res.npz", tmp_path / "pic.png",
                          {"mAP": 0.0, "top1": 0.0}, 2, seed=0)
    image = np.asarray(Image.open(out).convert("RGB"))
    assert image.shape[0] >= 2 * 150  # one row per query: the query crop alone


def test_only_the_recorded_settings_are_compared():
    from personsearch.cli.demo import add_arguments, recorded_settings
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert recorded_settings(parser.parse_args([]))
    assert not recorded_settings(parser.parse_args(["--config", "ssl_synthetic"]))
    assert not recorded_settings(parser.parse_args(["--frames", "40"]))
    assert not recorded_settings(parser.parse_args(["--set", "solver.epochs=1"]))
