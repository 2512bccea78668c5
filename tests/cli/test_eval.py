"""``personsearch eval CHECKPOINT --results-out FILE`` gives exactly the metrics of
``personsearch evaluate-results`` on FILE (tiny synthetic PRW dataset, tiny random model), and
``--use-gt-boxes`` recalls every GT box."""

import json
import math

import numpy as np
import pytest
import torch

from personsearch.cli.main import main

MODEL_KWARGS = {"backbone": "small", "rpn_pre_nms_top_n_test": 100, "rpn_post_nms_top_n_test": 20,
                "box_score_thresh": 0.0, "detections_per_image": 10, "embedding_dim": 32}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from personsearch.data.synth import generate_dataset

    root = tmp_path_factory.mktemp("prw_eval")
    generate_dataset(root, fmt="prw", frames=16, seed=5, width=320, height=180, workers=1)
    return root


def _save_checkpoint(folder, method, config):
    from personsearch.engine.checkpoint import save_checkpoint
    from personsearch.models import build_model

    torch.manual_seed(0)
    model = build_model(**MODEL_KWARGS)
    path = folder / "model.pt"
    save_checkpoint(path, {"model_kwargs": MODEL_KWARGS, "model": model.state_dict(),
                           "method": method, "config": config, "epoch": 0, "iteration": 0})
    return path


EVAL_SIZES = {"eval": {"min_size": 180, "max_size": 320}}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return _save_checkpoint(tmp_path_factory.mktemp("ckpt"), "cgps", EVAL_SIZES)


@pytest.fixture(scope="module")
def dicl_checkpoint(tmp_path_factory):
    """A DICL checkpoint: eval fuses scene and crop features (small crops, to stay fast)."""
    config = {**EVAL_SIZES, "method": {"name": "dicl", "params": {"crop_size": [32, 16]}}}
    return _save_checkpoint(tmp_path_factory.mktemp("ckpt_dicl"), "dicl", config)


def _eval(checkpoint, dataset, tmp_path, *extra):
    results, metrics_json = tmp_path / "results.npz", tmp_path / "eval.json"
    code = main(["eval", str(checkpoint), "--dataset", "prw", "--root", str(dataset),
                 "--results-out", str(results), "--json", str(metrics_json), "--no-progress",
                 *extra])
    assert code == 0
    return results, json.loads(metrics_json.read_text())


def _evaluate_results(dataset, results, tmp_path, *extra):
    metrics_json = tmp_path / "evaluate_results.json"
    code = main(["evaluate-results", "--dataset", "prw", "--root", str(dataset),
                 "--results", str(results), "--json", str(metrics_json), *extra])
    assert code == 0
    return json.loads(metrics_json.read_text())


@pytest.fixture(scope="module")
def plain_run(checkpoint, dataset, tmp_path_factory):
    """``eval --results-out`` of the plain (CGPS) checkpoint, every detection searched."""
    return _eval(checkpoint, dataset, tmp_path_factory.mktemp("plain"), "--det-thresh", "0.0")


def test_eval_results_out_gives_the_metrics_of_evaluate_results(plain_run, dataset, tmp_path):
    results, from_eval = plain_run
    from_file = _evaluate_results(dataset, results, tmp_path, "--det-thresh", "0.0")
    assert from_eval == from_file
    assert from_eval["num_queries"] > 0
    # the random model does detect (score threshold 0): there is something to compare
    with np.load(results) as data:
        assert len(data["dets"]) > 0
        assert data["query_feats"].shape == (from_eval["num_queries"]
                                             + from_eval.get("queries_without_gt", 0), 32)
    assert all(not (isinstance(v, float) and math.isnan(v)) for v in from_eval.values())


@pytest.mark.parametrize("options", [["--cross-camera", "--det-thresh", "0"],
                                     ["--query-from-detection", "--det-thresh", "0"]])
def test_eval_results_out_matches_evaluate_results_for_every_variant(checkpoint, dataset, tmp_path,
                                                                    options):
    results, from_eval = _eval(checkpoint, dataset, tmp_path, *options)
    assert from_eval == _evaluate_results(dataset, results, tmp_path, *options)


def test_eval_results_out_of_a_dicl_checkpoint_keeps_the_fused_features(
        plain_run, dicl_checkpoint, dataset, tmp_path):
    results, from_eval = _eval(dicl_checkpoint, dataset, tmp_path, "--det-thresh", "0")
    assert from_eval == _evaluate_results(dataset, results, tmp_path, "--det-thresh", "0")
    plain, _ = plain_run
    with np.load(results) as fused, np.load(plain) as scene:
        np.testing.assert_array_equal(fused["dets"], scene["dets"])  # same weights, same boxes
        assert not np.allclose(fused["query_feats"], scene["query_feats"])  # fused features


def test_eval_with_gt_boxes_recalls_every_box(checkpoint, dataset, tmp_path):
    results, from_eval = _eval(checkpoint, dataset, tmp_path, "--use-gt-boxes")
    assert from_eval["det_recall"] == 1.0
    assert from_eval["mAP"] > 0  # non-trivial numbers to compare (the detections above miss)
    assert from_eval == _evaluate_results(dataset, results, tmp_path)


def test_default_fast_path_equals_the_reference_path(plain_run, checkpoint, dataset, tmp_path, monkeypatch):
    """Default: BN folded + channels_last; --reference-path: the model as trained. Same
    detections and features up to float rounding, hence the same metrics."""
    import personsearch.models.inference as inference

    fast_results, fast_metrics = plain_run
    prepared = []
    original = inference.prepare_for_inference
    monkeypatch.setattr(inference, "prepare_for_inference", lambda model, **kw: prepared.append(1) or original(model, **kw))
    reference_results, reference_metrics = _eval(checkpoint, dataset, tmp_path, "--det-thresh", "0.0",
                                                 "--reference-path")
    assert prepared == []  # the reference path runs the model as trained
    _eval(checkpoint, dataset, tmp_path, "--det-thresh", "0.0")
    assert prepared == [1]  # the default folds it
    with np.load(fast_results) as fast, np.load(reference_results) as reference:
        np.testing.assert_array_equal(fast["det_offsets"], reference["det_offsets"])
        assert len(fast["dets"]) > 0
        np.testing.assert_allclose(fast["dets"], reference["dets"], rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(fast["feats"], reference["feats"], atol=1e-5)
        np.testing.assert_allclose(fast["query_feats"], reference["query_feats"], atol=1e-5)
    for key, value in reference_metrics.items():
        assert fast_metrics[key] == pytest.approx(value, abs=1e-6), key


def test_eval_test_proposals_limits_the_detections(plain_run, checkpoint, dataset, tmp_path, capsys):
    plain, _ = plain_run
    results, _ = _eval(checkpoint, dataset, tmp_path, "--det-thresh", "0.0", "--test-proposals", "3")
    with np.load(results) as few, np.load(plain) as default:
        assert np.diff(few["det_offsets"]).max() <= 3 < np.diff(default["det_offsets"]).max()
    assert main(["eval", str(checkpoint), "--dataset", "prw", "--root", str(dataset),
                 "--test-proposals", "0", "--no-progress"]) == 2
    assert "--test-proposals: test proposals must be a positive integer" in capsys.readouterr().err
