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


def test_baseline_figure_reads_the_recorded_cgps_metrics():
    from personsearch.cli.demo import baseline_figure

    metrics = baseline_figure()
    assert metrics is not None and 0.0 <= metrics["mAP"] <= 1.0 and 0.0 <= metrics["top1"] <= 1.0


def test_comparison_with_the_recorded_figures_is_stated_as_measured():
    """Issue 13: the demo claimed equality with the README figures; it now says what it
    measured (rounded as printed) and why another CPU may differ."""
    from personsearch.cli.demo import DETERMINISM_NOTE, comparison_line

    recorded = {"mAP": 0.0430, "top1": 0.1456}
    assert comparison_line({"mAP": 0.04304, "top1": 0.14563}, recorded) == \
        "this run gives the recorded SSL figures"
    line = comparison_line({"mAP": 0.0470, "top1": 0.2140}, recorded)
    assert line.startswith("this run differs from the recorded SSL figures by +0.4 mAP and +6.8 top-1")
    assert "no SSL figure recorded" in comparison_line({"mAP": 0.1, "top1": 0.2}, None)
    assert "deterministic on one machine" in DETERMINISM_NOTE and "another CPU" in DETERMINISM_NOTE
    assert "equal" not in DETERMINISM_NOTE


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
    assert not recorded_settings(parser.parse_args(["--frames", "40"]))
    assert not recorded_settings(parser.parse_args(["--set", "solver.epochs=1"]))
