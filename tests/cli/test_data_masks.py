"""``personsearch data masks`` end to end: a synthetic PRW- and CUHK-SYSU-format dataset without
masks gets them, ``data check --masks`` is clean, and the SSL paper presets (shrunk to a tiny
budget, method settings kept) train on them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from personsearch.cli.main import main

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SHRINK = {  # as tests/methods/test_presets_run.py: data, backbone and budget only
    "data.min_size": 180, "data.max_size": 320, "data.multi_scale": [],
    "data.batch_size": 2, "data.workers": 0,
    "model.backbone": "small", "model.backbone_weights": None, "model.frozen_stem": False,
    "model.frozen_bn": False, "model.rpn_pre_nms_top_n_train": 200,
    "model.rpn_post_nms_top_n_train": 64, "model.roi_batch_size_per_image": 16,
    "solver.epochs": 1, "solver.warmup_iters": 1, "solver.lr_steps": [5],
    "train.progress": False, "train.log_every": 1, "train.checkpoint_every_iters": 0,
    "eval.min_size": 180, "eval.max_size": 320,
}


def dataset_without_masks(root: Path, fmt: str) -> Path:
    from personsearch.data.synth import generate_dataset

    generate_dataset(root, fmt=fmt, frames=8, seed=4, width=320, height=180, workers=1)
    shutil.rmtree(root / "masks")
    return root


@pytest.mark.slow
@pytest.mark.parametrize("fmt, method, preset", [("prw", "grabcut", "ssl_arxiv_prw"),
                                                 ("cuhk-sysu", "box", "ssl_iccv_cuhk")])
def test_masks_then_the_ssl_preset_trains(tmp_path, capsys, fmt, method, preset):
    root = dataset_without_masks(tmp_path / "data", fmt)
    train = ["train", str(CONFIGS / f"{preset}.yaml"), "--out", str(tmp_path / "run")]
    for key, value in {**SHRINK, "data.root": str(root), "data.format": fmt}.items():
        train += ["--set", f"{key}={json.dumps(value)}"]
    assert main(train) == 2  # the preset reads masks and there are none yet
    err = capsys.readouterr().err
    assert "no person mask for this image" in err and "personsearch data masks" in err
    assert main(["data", "check", str(root), "--format", fmt, "--masks"]) == 1
    assert "train images have no mask" in capsys.readouterr().out

    assert main(["data", "masks", str(root), "--format", fmt, "--method", method,
                 "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert f"masks ({method}): " in out and "0 already valid" in out
    assert main(["data", "check", str(root), "--format", fmt, "--masks"]) == 0
    assert "invalid)" in capsys.readouterr().out
    assert main(["data", "masks", str(root), "--format", fmt, "--method", method]) == 0
    assert " 0 written" in capsys.readouterr().out  # incremental: nothing left to do

    shutil.rmtree(tmp_path / "run")
    assert main(train) == 0
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any(r.get("type") == "iter" for r in records)


def test_cli_errors_are_one_line(tmp_path, capsys):
    root = dataset_without_masks(tmp_path / "data", "prw")
    assert main(["data", "masks", str(root), "--format", "prw", "--method", "schp"]) == 2
    assert "--method schp needs --weights FILE" in capsys.readouterr().err
    junk = tmp_path / "exp-schp-lip.pth"
    junk.write_bytes(b"\x00" * 10)
    assert main(["data", "masks", str(root), "--format", "prw", "--method", "schp",
                 "--weights", str(junk)]) == 2
    err = capsys.readouterr().err
    assert f"{junk}: not a readable PyTorch weights file" in err and "Traceback" not in err
