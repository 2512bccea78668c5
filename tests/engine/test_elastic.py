"""Multi-node, fault-tolerant training under torch.distributed.elastic: two torchrun "nodes" on
localhost (one process each, c10d rendezvous, gloo) train with identical memory banks and labels
on both ranks; with --max-restarts, a worker SIGKILLed mid-epoch makes torchrun restart the
group, which resumes from the last checkpoint by itself and ends with exactly the final state of
an uninterrupted run of the same seed."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from personsearch.data.synth.generate import generate_dataset

# a script beside tests/toys.py (the toy model and method it installs), so it imports them
# from its own folder
WORKER = Path(__file__).resolve().parents[1] / "elastic_worker.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("elastic")
    root = folder / "prw"
    generate_dataset(root, "prw", frames=16, width=160, height=96, workers=1)
    path = folder / "toy.yaml"
    path.write_text(
        "data:\n  format: prw\n  root: " + json.dumps(str(root)) + "\n"
        "  min_size: 48\n  max_size: 96\n  batch_size: 1\n  masks: false\n"
        "method:\n  name: toy\n  params: {momentum: 0.3}\n"
        "solver:\n  lr: 0.01\n  warmup_iters: 2\n  lr_steps: [1]\n  epochs: 2\n"
        "train:\n  device: cpu\n  log_every: 1\n  progress: false\n  seed: 3\n"
        "  checkpoint_every_iters: 1\n"
    )
    return path


def run_two_nodes(config: Path, out: Path, kill_iteration: int | None = None) -> None:
    """Two torchrun agents (--nnodes 2, one worker each) meeting at one c10d endpoint."""
    port = free_port()
    # TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1: see elastic_store_warning in cli/train.py (without it
    # torch's shared store hands a restarted group the dead workers' addresses)
    env = dict(os.environ, OMP_NUM_THREADS="1", TORCH_DISABLE_SHARE_RDZV_TCP_STORE="1")
    if kill_iteration is not None:
        env.update(ELASTIC_TEST_KILL_RANK="1", ELASTIC_TEST_KILL_ITERATION=str(kill_iteration))
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2",
               "--nproc-per-node", "1", "--rdzv-backend", "c10d",
               "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", out.name,
               "--max-restarts", "1", "--monitor-interval", "0.5",
               str(WORKER), "train", str(config), "--out", str(out)]
    # each agent in its own process group, so that a failed or timed-out run takes its workers
    # down with it instead of leaving them running
    nodes = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, start_new_session=True) for _ in range(2)]
    outputs = []
    try:
        for node in nodes:
            outputs.append(node.communicate(timeout=400)[0])
    finally:
        for node in nodes:
            try:
                os.killpg(node.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    for node, output in zip(nodes, outputs):
        assert node.returncode == 0, output[-4000:]


def test_multi_node_restarts_on_the_shared_store_are_warned_about(monkeypatch):
    from personsearch.cli.train import elastic_store_warning

    monkeypatch.setenv("TORCHELASTIC_USE_AGENT_STORE", "True")
    monkeypatch.setenv("TORCHELASTIC_MAX_RESTARTS", "3")
    monkeypatch.setenv("GROUP_WORLD_SIZE", "2")
    assert "TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1" in elastic_store_warning()
    monkeypatch.setenv("GROUP_WORLD_SIZE", "1")  # one node: every restart is counted alike
    assert elastic_store_warning() is None
    monkeypatch.setenv("GROUP_WORLD_SIZE", "2")
    monkeypatch.setenv("TORCHELASTIC_USE_AGENT_STORE", "False")  # the variable was set
    assert elastic_store_warning() is None
    monkeypatch.setenv("TORCHELASTIC_USE_AGENT_STORE", "True")
    monkeypatch.setenv("TORCHELASTIC_MAX_RESTARTS", "0")
    assert elastic_store_warning() is None


def final_state(out: Path) -> dict:
    checkpoint = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]
    return {"checkpoint": checkpoint, "ranks": ranks}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_killed_worker_is_restarted_and_the_run_ends_as_if_uninterrupted(config, tmp_path):
    run_two_nodes(config, tmp_path / "uninterrupted")
    run_two_nodes(config, tmp_path / "killed", kill_iteration=5)

    whole, killed = final_state(tmp_path / "uninterrupted"), final_state(tmp_path / "killed")
    for state in (whole, killed):  # both ranks hold the same banks, labels and weights
        first, second = state["ranks"]
        assert torch.equal(first["memory"], second["memory"])
        assert torch.equal(first["labels"], second["labels"])
        for name in first["params"]:
            assert torch.equal(first["params"][name], second["params"][name]), name
    assert whole["ranks"][0]["iteration"] == killed["ranks"][0]["iteration"]
    for name, value in whole["checkpoint"]["model"].items():
        assert torch.equal(value, killed["checkpoint"]["model"][name]), name
    assert torch.equal(whole["ranks"][0]["memory"], killed["ranks"][0]["memory"])
    assert torch.equal(whole["ranks"][0]["labels"], killed["ranks"][0]["labels"])

    events = [json.loads(line) for line in
              (tmp_path / "killed" / "run_log.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events] == ["start", "resume"]
    assert events[0]["elastic_job"] == events[1]["elastic_job"] == "killed"
    assert events[1]["checkpoint"].endswith("last.pt")
    uninterrupted = [json.loads(line) for line in
                     (tmp_path / "uninterrupted" / "run_log.jsonl").read_text().splitlines()]
    assert [e["event"] for e in uninterrupted] == ["start"]
