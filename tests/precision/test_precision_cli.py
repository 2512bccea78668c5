"""``personsearch quantize`` and ``--precision`` through the CLI: an INT8 checkpoint written by
the command loads through ``eval`` and ``index build`` like any checkpoint, and each command
says which inference path it ran."""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from personsearch.cli.main import main



@pytest.fixture(scope="module")
def quantize_run(tmp_path_factory, float_checkpoint) -> tuple[str, str]:
    """(INT8 checkpoint written by `personsearch quantize`, what the command printed)."""
    out = tmp_path_factory.mktemp("quantize_cli") / "int8.pt"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["quantize", str(float_checkpoint), "--out", str(out), "--images", "2", "--check-images", "1",
                     "--rois-per-call", "8", "--no-progress"])
    assert code == 0
    return str(out), printed.getvalue()


@pytest.fixture(scope="module")
def quantized(quantize_run) -> str:
    return quantize_run[0]


def test_quantize_prints_its_calibration(quantize_run):
    path, printed = quantize_run
    summary = json.loads(printed[: printed.rindex("}") + 1])
    assert len(summary["calibration"]["images"]) == 2 and len(summary["calibration"]["check_images"]) == 1
    assert set(summary["graph_megabytes"]) == {"backbone", "rpn_head", "box_head.res5", "reid_head.res5"}
    assert printed.rstrip().endswith(f"INT8 checkpoint: {path}")


def test_quantize_rejects_bad_counts(float_checkpoint, tmp_path, capsys):
    assert main(["quantize", str(float_checkpoint), "--out", str(tmp_path / "x.pt"), "--images", "0"]) == 2
    assert "--images must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()


def test_eval_says_which_path(quantized, synth_root, capsys, tmp_path):
    for precision in ("fp32", "int8"):
        assert main(["eval", quantized, "--dataset", "prw", "--root", str(synth_root), "--precision", precision,
                     "--no-progress", "--json", str(tmp_path / f"{precision}.json")]) == 0
        assert f"inference path {precision}" in capsys.readouterr().out
    fp32, int8 = (json.loads((tmp_path / f"{p}.json").read_text()) for p in ("fp32", "int8"))
    assert abs(fp32["mAP"] - int8["mAP"]) < 0.25  # a random model on 5 queries: same ballpark only


def test_eval_rejects_contradicting_flags(quantized, synth_root, capsys):
    assert main(["eval", quantized, "--dataset", "prw", "--root", str(synth_root), "--precision", "int8",
                 "--bf16"]) == 2
    assert "--bf16 contradicts --precision int8" in capsys.readouterr().err


def test_index_build_reports_path_and_throughput(quantized, synth_root, tmp_path, capsys):
    assert main(["index", "build", quantized, str(synth_root / "frames"), "--out", str(tmp_path / "index"),
                 "--precision", "int8", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "images/s" in out and "inference path int8" in out
