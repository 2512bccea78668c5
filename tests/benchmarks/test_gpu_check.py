"""benchmarks/gpu_check.py runs end to end on the CPU with ``--device cpu --smoke``: trains SSL
(the CPU-sized synthetic variant of the preset, to keep the test short) for a few iterations on
a tiny synthetic set, evaluates, and reports the fields the GPU run records (here with the
CPU's sync count and no GPU memory)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(600)
def test_gpu_check_smoke_on_cpu(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--smoke",
         "--preset", str(ROOT / "configs" / "ssl_synthetic.yaml"),
         "--iterations", "2", "--warmup", "1", "--out", str(tmp_path)],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["device"] == "cpu" and report["smoke"] and report["amp"] == "none"
    assert report["iterations"] == 2 and report["timed_iterations"] == 1
    assert report["losses_finite"] is True
    assert report["iterations_per_s"] > 0 and report["test_images_per_s"] > 0
    assert report["peak_gpu_memory_gib"] is None  # no GPU here
    assert 0 < report["syncs_per_step"] < 1000
    assert set(report["bank_devices"]) == {"bank_main", "bank_multiscale", "labels", "slot_images"}
    assert set(report["bank_devices"].values()) == {"cpu"}
    assert 0.0 <= report["metrics"]["mAP"] <= 1.0 and report["metrics"]["num_queries"] > 0
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
