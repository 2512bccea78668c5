"""benchmarks/rehearsal.py: the per-stage records (parts read from the run's metrics log), the
order of the stages, and continuing where an earlier invocation stopped. The stage processes
are replaced by a fake that writes what ``personsearch train`` / ``eval`` would, so the test
takes a second; the real stages run in the benchmark itself."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def rehearsal():
    spec = importlib.util.spec_from_file_location("rehearsal", ROOT / "benchmarks" / "rehearsal.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


METRICS = [
    {"type": "epoch_start", "epoch": 0, "iteration": 0, "seconds_method_setup": 12.5,
     "cpu_seconds_method_setup": 6.0, "seconds": 3.25, "cpu_seconds": 3.0,
     "pseudo/num_clusters": 40.0, "threshold": 0.7},
    {"type": "pseudo_label_diagnostics", "epoch": 0, "iteration": 0, "seconds": 1.5,
     "cpu_seconds": 1.25},
    {"type": "iter", "epoch": 0, "iteration": 2, "total": 3.0},
    {"type": "epoch", "epoch": 0, "iteration": 2, "mean/total": 3.0, "step_seconds": 8.0,
     "step_cpu_seconds": 5.0, "steps_timed": 2},
    {"type": "epoch_start", "epoch": 1, "iteration": 2, "seconds": 2.0, "cpu_seconds": 1.0},
    {"type": "epoch", "epoch": 1, "iteration": 4, "step_seconds": 9.0, "step_cpu_seconds": 6.0,
     "steps_timed": 3},
]


def test_epoch_parts_reads_the_seconds_of_each_part(rehearsal):
    first = rehearsal.epoch_parts(METRICS, 0)
    assert first["memory_init_s"] == 12.5 and first["pseudo_labels_s"] == 3.25
    assert (first["memory_init_cpu_s"], first["pseudo_labels_cpu_s"]) == (6.0, 3.0)
    assert (first["diagnostics_s"], first["diagnostics_cpu_s"]) == (1.5, 1.25)
    assert (first["steps"], first["steps_s"], first["seconds_per_iteration"]) == (2, 8.0, 4.0)
    assert (first["steps_cpu_s"], first["cpu_seconds_per_iteration"]) == (5.0, 2.5)
    assert first["pseudo_label_stats"] == {"pseudo/num_clusters": 40.0, "threshold": 0.7}
    second = rehearsal.epoch_parts(METRICS, 1)
    assert "memory_init_s" not in second and second["pseudo_labels_s"] == 2.0
    assert second["seconds_per_iteration"] == 3.0


class FakeStages:
    """Stands in for run_process: writes the files a stage leaves; ``fail`` = stages that
    exit 1 this time."""

    def __init__(self, fail=()):
        self.calls = []
        self.fail = set(fail)

    def __call__(self, command, log_path, env):
        stage = log_path.stem.rsplit("_", 1)[1]
        self.calls.append(stage)
        run_dir = Path(command[command.index("--out") + 1]) if "--out" in command else \
            Path(command[4]).parents[1]
        log_path.write_text("the end of the log\n")
        if stage in self.fail:
            return {"exit_status": 1, "wall_s": 1.0, "peak_rss_mib": 10.0}
        if stage == "epoch1":
            assert not run_dir.exists()  # cleared before (re)starting
            (run_dir / "checkpoints").mkdir(parents=True)
            (run_dir / "metrics.jsonl").write_text(
                "".join(json.dumps(line) + "\n" for line in METRICS[:4]))
            (run_dir / "dataset.json").write_text(json.dumps({"images": 7, "boxes": 30}))
        if stage == "epoch2":
            assert "--resume" in command and "solver.epochs=2" in command
            with open(run_dir / "metrics.jsonl", "a") as handle:
                handle.write("".join(json.dumps(line) + "\n" for line in METRICS[4:]))
        if stage in ("epoch1", "epoch2"):
            (run_dir / "checkpoints" / "last.pt").write_bytes(b"x" * (100 if stage == "epoch1" else 120))
        else:
            (run_dir / "eval.json").write_text(json.dumps({"mAP": 0.01}))
        return {"exit_status": 0, "wall_s": 2.0, "peak_rss_mib": 99.0, "cpu_user_s": 1.5,
                "cpu_system_s": 0.25}


def _args(tmp_path, dataset_root):
    return ["--prw-root", str(dataset_root), "--cuhk-root", str(tmp_path / "missing"),
            "--work", str(tmp_path / "work"), "--results", str(tmp_path / "results.jsonl"),
            "--presets", "cgps_cuhk,ssl_arxiv_prw", "--iters-per-epoch", "2"]


def test_stages_are_recorded_and_a_rerun_continues_after_the_last_one_recorded(
        rehearsal, tmp_path, monkeypatch, capsys):
    root = tmp_path / "prw"
    (root / "diagnostics").mkdir(parents=True)
    (root / "diagnostics" / "counts.json").write_text("{}")
    failing = FakeStages(fail={"evaluate"})
    monkeypatch.setattr(rehearsal, "run_process", failing)
    assert rehearsal.main(_args(tmp_path, root)) == 0
    assert "cgps_cuhk: no complete dataset" in capsys.readouterr().out
    assert failing.calls == ["epoch1", "epoch2", "evaluate"]
    records = rehearsal.load_results(tmp_path / "results.jsonl")
    assert [(r["preset"], r["stage"], r["status"]) for r in records] == [
        ("ssl_arxiv_prw", "epoch1", "ok"), ("ssl_arxiv_prw", "epoch2", "ok"),
        ("ssl_arxiv_prw", "evaluate", "failed")]
    first, second, failed = records
    assert first["memory_init_s"] == 12.5 and first["checkpoint_bytes"] == 100
    assert first["train_boxes_N"] == 30 and first["backbone"] == "small"
    assert "model.backbone=small" in first["command"]
    assert "solver.iters_per_epoch=2" in first["command"]
    assert second["pseudo_labels_s"] == 2.0 and second["checkpoint_bytes"] == 120
    assert failed["log_tail"] == "the end of the log\n" and failed["exit_status"] == 1
    # the rerun runs only what is not recorded as ok
    again = FakeStages()
    monkeypatch.setattr(rehearsal, "run_process", again)
    assert rehearsal.main(_args(tmp_path, root)) == 0
    assert again.calls == ["evaluate"]
    records = rehearsal.load_results(tmp_path / "results.jsonl")
    assert records[-1]["stage"] == "evaluate" and records[-1]["metrics"] == {"mAP": 0.01}


def test_an_epoch1_cut_off_midway_starts_again_in_a_clean_folder(rehearsal, tmp_path,
                                                                  monkeypatch):
    root = tmp_path / "prw"
    (root / "diagnostics").mkdir(parents=True)
    (root / "diagnostics" / "counts.json").write_text("{}")
    leftover = tmp_path / "work" / "ssl_arxiv_prw_small" / "checkpoints"
    leftover.mkdir(parents=True)
    (leftover / "last.pt").write_bytes(b"old")
    fake = FakeStages()
    monkeypatch.setattr(rehearsal, "run_process", fake)  # asserts the folder was cleared
    assert rehearsal.main(_args(tmp_path, root)) == 0
    assert fake.calls == ["epoch1", "epoch2", "evaluate"]


def test_table_shows_measured_rows_and_says_what_was_not_run(rehearsal, tmp_path, monkeypatch,
                                                             capsys):
    root = tmp_path / "prw"
    (root / "diagnostics").mkdir(parents=True)
    (root / "diagnostics" / "counts.json").write_text("{}")
    monkeypatch.setattr(rehearsal, "run_process", FakeStages(fail={"evaluate"}))
    rehearsal.main(_args(tmp_path, root))
    capsys.readouterr()
    rehearsal.main(_args(tmp_path, root) + ["--table"])
    table = capsys.readouterr().out.splitlines()
    assert len(table) == 4  # header, rule, two presets
    cgps, ssl = table[2], table[3]
    assert cgps.startswith("| cgps_cuhk | - |")
    assert "epoch1 not run, epoch2 not run, evaluate not run" in cgps
    cells = [cell.strip() for cell in ssl.strip("|").split("|")]
    assert cells[:5] == ["ssl_arxiv_prw", "30", "12.5 / 6.0", "3.2 / 2.0", "4.0 / 2.5"]
    assert cells[5] == "-" and cells[6] == "99" and cells[7] == "0.0"
    assert cells[8] == "epoch1 ok, epoch2 ok, evaluate failed"


def test_model_sizes_count_weights_and_momentum(rehearsal, capsys):
    assert rehearsal.main(["--model-sizes", "--presets", "cgps_prw", "--backbone", "small"]) == 0
    sizes = json.loads(capsys.readouterr().out)["cgps_prw"]
    assert sizes["backbone"] == "small" and 0 < sizes["trainable"] <= sizes["params"]
    assert sizes["checkpoint_model_bytes"] == 4 * (sizes["params"] + sizes["buffers"]) + \
        4 * sizes["trainable"]
