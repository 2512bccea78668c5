"""Safe resume (issue 13): ``--resume`` continues with the run's saved config, refuses --set
values that differ from it (unless --allow-config-change, then logged) and another dataset; a
damaged last.pt names the newest intact checkpoint and the command to resume from it. Toy
model and method of tests/toys.py on a tiny synthetic PRW dataset."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from personsearch.cli.main import main
from personsearch.data.synth.generate import generate_dataset
from personsearch.engine.checkpoint import load_checkpoint
from toys import install_toys


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    folder = tmp_path_factory.mktemp("synth")
    generate_dataset(folder / "prw", "prw", frames=12, width=160, height=96, workers=1, seed=0)
    generate_dataset(folder / "other", "prw", frames=10, width=160, height=96, workers=1, seed=1)
    shutil.copytree(folder / "prw", folder / "moved")
    return folder


@pytest.fixture
def toys(monkeypatch):
    install_toys(monkeypatch.setattr)


def write_config(folder, root):
    path = folder / "toy.yaml"
    path.write_text(
        "data:\n  format: prw\n  root: " + json.dumps(str(root)) + "\n"
        "  min_size: 48\n  max_size: 96\n  batch_size: 4\n"
        "method:\n  name: toy\n"
        "solver:\n  lr: 0.01\n  warmup_iters: 1\n  lr_steps: [5]\n  epochs: 2\n"
        "train:\n  device: cpu\n  log_every: 1\n  progress: false\n"
    )
    return path


@pytest.fixture
def run(tmp_path, datasets, toys, capsys):
    """A run started with --set solver.lr=0.005, one epoch done (solver.epochs=1 then the
    file's 2 would be a change: the run trains its whole 2 epochs, and last.pt is rewound to
    a copy of epoch_001.pt to stand for an interrupted run)."""
    config = write_config(tmp_path, datasets / "prw")
    out = tmp_path / "run"
    assert main(["train", str(config), "--out", str(out), "--set", "solver.lr=0.005"]) == 0
    checkpoints = out / "checkpoints"
    shutil.copyfile(checkpoints / "epoch_001.pt", checkpoints / "last.pt")
    (checkpoints / "epoch_002.pt").unlink()
    capsys.readouterr()
    return config, out


def test_resume_without_the_original_set_keeps_the_saved_config(run, capsys):
    config, out = run
    assert main(["train", str(config), "--out", str(out), "--resume"]) == 0
    captured = capsys.readouterr()
    assert "toy.yaml differs from the run's saved config in solver.lr" in captured.err
    state = load_checkpoint(out / "checkpoints" / "last.pt")
    assert state["epoch"] == 2 and state["config"]["solver"]["lr"] == 0.005
    assert yaml.safe_load((out / "config.yaml").read_text())["solver"]["lr"] == 0.005
    log = [json.loads(line) for line in (out / "run_log.jsonl").read_text().splitlines()]
    assert [r["event"] for r in log] == ["start", "resume"] and log[1]["config_changes"] == {}


def test_a_differing_set_is_refused_listing_the_keys_unless_allowed(run, capsys):
    config, out = run
    before = (out / "checkpoints" / "last.pt").read_bytes()
    code = main(["train", str(config), "--out", str(out), "--resume", "--set", "solver.lr=0.02",
                 "--set", "solver.momentum=0.8"])
    assert code == 2
    err = capsys.readouterr().err
    assert "differs from the run's saved config in 2 key(s)" in err
    assert "solver.lr (0.005 -> 0.02)" in err and "solver.momentum (0.9 -> 0.8)" in err
    assert "--allow-config-change" in err and err.count("\n") == 1
    assert (out / "checkpoints" / "last.pt").read_bytes() == before
    # the same value as saved is no change
    assert main(["train", str(config), "--out", str(out), "--resume",
                 "--set", "solver.lr=0.005"]) == 0
    capsys.readouterr()


def test_an_allowed_change_is_used_and_recorded(run, capsys):
    config, out = run
    assert main(["train", str(config), "--out", str(out), "--resume", "--set", "solver.lr=0.02",
                 "--allow-config-change"]) == 0
    assert "continuing with config changes solver.lr (0.005 -> 0.02)" in capsys.readouterr().err
    assert load_checkpoint(out / "checkpoints" / "last.pt")["config"]["solver"]["lr"] == 0.02
    log = [json.loads(line) for line in (out / "run_log.jsonl").read_text().splitlines()]
    assert log[-1]["config_changes"] == {"solver.lr": {"from": 0.005, "to": 0.02}}


def test_another_dataset_is_refused_saying_so(run, datasets, capsys):
    config, out = run
    other = ["--set", f"data.root={json.dumps(str(datasets / 'other'))}"]
    assert main(["train", str(config), "--out", str(out), "--resume", *other]) == 2
    err = capsys.readouterr().err
    assert "resuming it on another dataset" in err and "data.root" in err
    # even with --allow-config-change: the content differs
    assert main(["train", str(config), "--out", str(out), "--resume", *other,
                 "--allow-config-change"]) == 2
    err = capsys.readouterr().err
    assert "a different dataset" in err and "bank_main" not in err
    # the same dataset moved elsewhere is accepted with --allow-config-change
    moved = ["--set", f"data.root={json.dumps(str(datasets / 'moved'))}"]
    assert main(["train", str(config), "--out", str(out), "--resume", *moved,
                 "--allow-config-change"]) == 0
    capsys.readouterr()


def test_a_damaged_last_checkpoint_names_the_intact_one_and_the_command(run, capsys):
    config, out = run
    last = out / "checkpoints" / "last.pt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])
    assert main(["train", str(config), "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    intact = out / "checkpoints" / "epoch_001.pt"
    assert f"{last}: cannot load checkpoint: the file is truncated or corrupt" in err
    assert f"the newest intact checkpoint beside it is {intact}" in err
    assert f"--resume-from {intact}" in err and "weights_only" not in err
    # the command it gives works
    command = err.split("to resume from it: ")[1].strip().split()
    assert command[:2] == ["personsearch", "train"]
    assert main(command[1:]) == 0
    assert load_checkpoint(last)["epoch"] == 2
    capsys.readouterr()


@pytest.mark.parametrize("content, message", [
    (b"", "the file is empty (0 bytes)"),
    (bytes(range(256)) * 20, "not a checkpoint written by personsearch"),
])
def test_empty_or_random_last_checkpoint(run, capsys, content, message):
    config, out = run
    (out / "checkpoints" / "last.pt").write_bytes(content)
    assert main(["train", str(config), "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert message in err and "weights_only" not in err and "will likely succeed" not in err
