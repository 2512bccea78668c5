"""``personsearch train`` end to end on a tiny synthetic PRW dataset, with the toy model and
method of tests/toys.py (the real detector and methods are tested in their own packages)."""

from __future__ import annotations

import json

import pytest

from personsearch.cli.main import main
from personsearch.data.synth.generate import generate_dataset
from personsearch.engine.checkpoint import load_checkpoint
from toys import install_toys


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "prw"
    generate_dataset(root, "prw", frames=12, width=160, height=96, workers=1)
    return root


@pytest.fixture
def toys(monkeypatch):
    install_toys(monkeypatch.setattr)


def write_config(tmp_path, root):
    path = tmp_path / "toy.yaml"
    path.write_text(
        "data:\n  format: prw\n  root: " + json.dumps(str(root)) + "\n"
        "  min_size: 48\n  max_size: 96\n  multi_scale: [[96, 48], [128, 64]]\n"
        "  batch_size: 2\n  masks: true\n"
        "method:\n  name: toy\n  params: {momentum: 0.3}\n"
        "solver:\n  lr: 0.01\n  warmup_iters: 2\n  lr_steps: [1]\n  epochs: 1\n"
        "train:\n  device: cpu\n  log_every: 1\n  progress: false\n"
    )
    return path


def test_train_writes_outputs_and_resumes(tmp_path, dataset, toys, capsys):
    config = write_config(tmp_path, dataset)
    out = tmp_path / "run"
    assert main(["train", str(config), "--out", str(out)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    from personsearch.data import load_split

    iters_per_epoch = -(-len(load_split("prw", dataset, "train")) // 2)  # batch 2
    assert result["epoch"] == 1 and result["iteration"] == iters_per_epoch
    assert (out / "config.yaml").is_file()
    assert (out / "checkpoints" / "last.pt").is_file()
    assert (out / "checkpoints" / "epoch_001.pt").is_file()
    state = load_checkpoint(out / "checkpoints" / "last.pt")
    assert state["method"] == "toy" and state["config"]["method"]["params"] == {"momentum": 0.3}
    assert state["config"]["train"]["out_dir"] == str(out)
    records = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["type"] for r in records] == ["epoch_start", *["iter"] * iters_per_epoch, "epoch"]

    # an existing run is not overwritten without --resume
    assert main(["train", str(config), "--out", str(out)]) == 2
    assert "already holds a training run" in capsys.readouterr().err

    # --resume with more epochs: a config change, refused unless allowed (tests/cli/test_train_resume.py)
    assert main(["train", str(config), "--out", str(out), "--resume", "--set", "solver.epochs=2"]) == 2
    assert "solver.epochs (1 -> 2)" in capsys.readouterr().err
    assert main(["train", str(config), "--out", str(out), "--resume", "--set", "solver.epochs=2",
                 "--allow-config-change"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out.strip().splitlines()[-1])["iteration"] == 2 * iters_per_epoch
    assert "solver.epochs" in captured.err  # the config change is reported
    assert (out / "checkpoints" / "epoch_002.pt").is_file()


def test_train_errors(tmp_path, dataset, toys, capsys):
    config = write_config(tmp_path, dataset)
    assert main(["train", str(config), "--out", str(tmp_path / "new"), "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert main(["train", str(config), "--set", "solver.lr=fast"]) == 2
    assert "solver.lr: expected a number" in capsys.readouterr().err
    assert main(["train", str(config), "--out", str(tmp_path / "x"),
                 "--set", "method.params.nope=1"]) == 2
    assert "method.params.nope: unknown key" in capsys.readouterr().err
