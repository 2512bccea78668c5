"""Rehearsal of the paper presets at full benchmark size (issue 11 item 2).

    .venv/bin/python benchmarks/rehearsal.py --prw-root /work/data/prw-full \\
        --cuhk-root /work/data/cuhk-full --work /work/data/rehearsal \\
        --results benchmarks/results/rehearsal.jsonl [--presets ssl_arxiv_cuhk,cgps_cuhk,...]
        [--backbone small] [--iters-per-epoch 10]

Every preset (``configs/<method>_<dataset>.yaml`` for seqnet, cgps, ssl_arxiv, ssl_iccv, dicl
x prw, cuhk) runs on its full-size synthetic dataset (``personsearch data synth --like
prw-full | cuhk-sysu-full``) unchanged except ``model.backbone`` (``small``: the CPU backbone,
at the preset's own input size and batch size) and ``solver.iters_per_epoch`` (a short epoch),
in three stages, each its own ``personsearch`` process:

``epoch1``   ``personsearch train`` for one epoch: memory initialisation over every training
             box, pseudo labels over all N, the short epoch (DML / cluster contrast over all N
             slots), the epoch-end checkpoint;
``epoch2``   ``personsearch train --resume`` to two epochs (``solver.epochs`` 1 -> 2, accepted
             with ``--allow-config-change``): restore from the checkpoint, pseudo labels, the
             second short epoch, checkpoint;
``evaluate`` ``personsearch eval`` of the last checkpoint on the whole test split.

Per stage it records one JSON line in ``--results`` (appended and flushed as soon as the stage
ends): wall seconds, peak RSS of the stage's main process (``wait4``; DataLoader workers are
processes of their own and not included), CPU seconds, exit status, the seconds of each part
read from the run's ``metrics.jsonl``, wall and CPU (memory initialisation =
``seconds_method_setup``, pseudo labels = the epoch start, pseudo-label diagnostics, training
steps; CPU seconds are the main process's, steadier than wall time on a shared machine; the
DataLoader workers' are only in the stage's total), checkpoint bytes,
the training box count N, the evaluation metrics, the CPU model, thread count and load
averages. A later run skips every stage recorded as ``ok`` and continues with the first one
missing, so an interrupted rehearsal resumes where it stopped (a stage cut off midway is
started again: its run folder is cleared first). A failed stage is recorded with its exit
status and the end of its log (a finding), and the preset's later stages are skipped.

``--backbone resnet50`` runs the same stages with the preset's own backbone (random weights:
peak memory, not accuracy). ``--table`` prints the results as the markdown table of README /
docs/results.md (one row per preset; "not run" for the stages without a record);
``--model-sizes`` the parameter counts of each preset's model with ``--backbone`` and the bytes
they take in a checkpoint (weights + SGD momentum), without training.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import cpu_model  # noqa: E402  (benchmarks/timing.py, beside this script)

REPO = Path(__file__).resolve().parents[1]
METHODS = ("ssl_arxiv", "cgps", "ssl_iccv", "dicl", "seqnet")
DATASETS = {"cuhk": "cuhk-sysu", "prw": "prw"}
# Most informative first: the largest N (CUHK-SYSU, 55k boxes), the costliest methods first.
DEFAULT_ORDER = tuple(f"{m}_{d}" for d in ("cuhk", "prw") for m in METHODS)
STAGES = ("epoch1", "epoch2", "evaluate")
LOG_TAIL_CHARS = 3000


def load_results(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError:
            raise SystemExit(f"{path}: line {number} is not JSON; fix or remove it") from None
    return records


def append_result(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def stage_done(records: list[dict], preset: str, backbone: str, stage: str) -> bool:
    return any(r.get("preset") == preset and r.get("backbone") == backbone
               and r.get("stage") == stage and r.get("status") == "ok" for r in records)


def run_process(command: list[str], log_path: Path, env: dict[str, str]) -> dict:
    """Run ``command`` with stdout+stderr to ``log_path``; wall / CPU seconds, peak RSS of the
    process itself (MiB) and its exit status."""
    load_before = os.getloadavg()
    start = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                   cwd=REPO)
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return {
        "exit_status": process.returncode,
        "wall_s": round(time.perf_counter() - start, 2),
        "cpu_user_s": round(usage.ru_utime, 2),
        "cpu_system_s": round(usage.ru_stime, 2),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),  # Linux: KiB
        "load_avg_start": [round(v, 2) for v in load_before],
        "load_avg_end": [round(v, 2) for v in os.getloadavg()],
    }


def log_tail(path: Path) -> str:
    text = path.read_text(encoding="utf-8", errors="replace").replace("\r", "\n")
    return text[-LOG_TAIL_CHARS:]


def metrics_lines(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def epoch_parts(lines: list[dict], epoch: int) -> dict:
    """Seconds of each part of ``epoch`` (0-based) from the run's metrics log."""
    parts: dict = {}
    for line in lines:
        if line.get("epoch") != epoch:
            continue
        kind = line.get("type")
        if kind == "epoch_start":
            if "seconds_method_setup" in line:
                parts["memory_init_s"] = round(line["seconds_method_setup"], 2)
                parts["memory_init_cpu_s"] = round(line["cpu_seconds_method_setup"], 2)
            parts["pseudo_labels_s"] = round(line["seconds"], 2)
            parts["pseudo_labels_cpu_s"] = round(line["cpu_seconds"], 2)
            parts["pseudo_label_stats"] = {k: v for k, v in line.items()
                                           if k.startswith("pseudo/") or k == "threshold"}
        elif kind == "pseudo_label_diagnostics":
            parts["diagnostics_s"] = round(line["seconds"], 2)
            parts["diagnostics_cpu_s"] = round(line["cpu_seconds"], 2)
        elif kind == "epoch":
            steps = int(line["steps_timed"])
            parts["steps"] = steps
            parts["steps_s"] = round(line["step_seconds"], 2)
            parts["steps_cpu_s"] = round(line["step_cpu_seconds"], 2)
            parts["seconds_per_iteration"] = (round(line["step_seconds"] / steps, 3)
                                              if steps else None)
            parts["cpu_seconds_per_iteration"] = (round(line["step_cpu_seconds"] / steps, 3)
                                                  if steps else None)
            parts["mean_losses"] = {k: v for k, v in line.items() if k.startswith("mean/")}
    return parts


def train_command(config: Path, run_dir: Path, overrides: list[str], resume: bool) -> list[str]:
    command = [sys.executable, "-m", "personsearch.cli.main", "train", str(config),
               "--out", str(run_dir)]
    for override in overrides:
        command += ["--set", override]
    if resume:
        command += ["--resume", "--allow-config-change"]
    return command


def rehearse(preset: str, root: Path, args: argparse.Namespace, records: list[dict],
             env: dict[str, str], machine: dict) -> None:
    method, dataset = preset.rsplit("_", 1)
    config = REPO / "configs" / f"{preset}.yaml"
    run_dir = Path(args.work) / f"{preset}_{args.backbone}"
    overrides = [f"data.root={json.dumps(str(root))}",
                 f"solver.iters_per_epoch={args.iters_per_epoch}"]
    if args.backbone != "preset":
        overrides.append(f"model.backbone={args.backbone}")
    results_path = Path(args.results)
    for stage in STAGES:
        if stage_done(records, preset, args.backbone, stage):
            print(f"{preset} [{args.backbone}] {stage}: recorded already, skipped", flush=True)
            continue
        if stage == "epoch1":
            if run_dir.exists():  # an epoch 1 cut off before its record: start it again
                shutil.rmtree(run_dir)
            command = train_command(config, run_dir, overrides + ["solver.epochs=1"], False)
        elif stage == "epoch2":
            command = train_command(config, run_dir, overrides + ["solver.epochs=2"], True)
        else:
            command = [sys.executable, "-m", "personsearch.cli.main", "eval",
                       str(run_dir / "checkpoints" / "last.pt"), "--dataset",
                       DATASETS[dataset], "--root", str(root), "--json",
                       str(run_dir / "eval.json")]
        print(f"{preset} [{args.backbone}] {stage}: running ({' '.join(command[1:])})",
              flush=True)
        log_path = run_dir.parent / f"{run_dir.name}_{stage}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        measured = run_process(command, log_path, env)
        record = {"preset": preset, "backbone": args.backbone, "stage": stage,
                  "iters_per_epoch": args.iters_per_epoch, "command": " ".join(command[1:]),
                  "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  **machine, **measured}
        record["status"] = "ok" if measured["exit_status"] == 0 else "failed"
        if record["status"] == "failed":
            record["log_tail"] = log_tail(log_path)
        elif stage in ("epoch1", "epoch2"):
            lines = metrics_lines(run_dir)
            record.update(epoch_parts(lines, 0 if stage == "epoch1" else 1))
            checkpoint = run_dir / "checkpoints" / "last.pt"
            record["checkpoint_bytes"] = checkpoint.stat().st_size
            signature = json.loads((run_dir / "dataset.json").read_text(encoding="utf-8"))
            record["train_images"], record["train_boxes_N"] = signature["images"], signature["boxes"]
        else:
            record["metrics"] = json.loads((run_dir / "eval.json").read_text(encoding="utf-8"))
        append_result(results_path, record)
        records.append(record)
        print(f"{preset} [{args.backbone}] {stage}: {record['status']} in {record['wall_s']} s, "
              f"peak RSS {record['peak_rss_mib']} MiB", flush=True)
        if record["status"] != "ok":
            print(f"{preset}: {stage} failed (exit {record['exit_status']}); see {log_path}",
                  flush=True)
            return


def _pair(wall: float | None, cpu: float | None) -> str:
    if wall is None:
        return "-"
    return f"{wall:,.1f} / {cpu:,.1f}" if cpu is not None else f"{wall:,.1f}"


def markdown_table(records: list[dict], backbone: str, presets: list[str]) -> str:
    """One row per preset from the latest record of each stage: what was measured, and
    "not run" where a stage has no record."""
    lines = ["| preset | N (boxes) | memory init s (wall / CPU) | pseudo labels s, epoch 1 / 2 "
             "| s per iteration (wall / CPU) | evaluation s (wall / CPU) | peak RSS MiB "
             "| checkpoint MB | stages |",
             "|---|---|---|---|---|---|---|---|---|"]
    for preset in presets:
        latest = {}
        for record in records:
            if record.get("preset") == preset and record.get("backbone") == backbone:
                latest[record["stage"]] = record
        first, second, evaluate = (latest[stage] if latest.get(stage, {}).get("status") == "ok"
                                   else {} for stage in STAGES)
        status = ", ".join(f"{stage} {latest[stage]['status']}" if stage in latest
                           else f"{stage} not run" for stage in STAGES)
        rss = [r["peak_rss_mib"] for r in latest.values() if r.get("status") == "ok"]
        checkpoint = (second or first).get("checkpoint_bytes")
        pseudo = [r.get("pseudo_labels_s") for r in (first, second)]
        lines.append(" | ".join([
            f"| {preset}", str(first.get("train_boxes_N", "-")),
            _pair(first.get("memory_init_s"), first.get("memory_init_cpu_s")),
            " / ".join("-" if v is None else f"{v:,.1f}" for v in pseudo),
            _pair(first.get("seconds_per_iteration"), first.get("cpu_seconds_per_iteration")),
            _pair(evaluate.get("wall_s"),
                  None if not evaluate else evaluate["cpu_user_s"] + evaluate["cpu_system_s"]),
            f"{max(rss):,.0f}" if rss else "-",
            f"{checkpoint / 1e6:,.1f}" if checkpoint else "-", status]) + " |")
    return "\n".join(lines)


def model_sizes(presets: list[str], backbone: str) -> dict:
    """Parameter counts of each preset's model with ``backbone`` (built, never run; random
    weights) and what they put in a training checkpoint: the weights and SGD's momentum
    buffer, float32 (``8 x trainable + 4 x frozen`` bytes, before the memory banks)."""
    from personsearch.config import load_config, model_kwargs
    from personsearch.models import build_model

    sizes = {}
    for preset in presets:
        kwargs = model_kwargs(load_config(REPO / "configs" / f"{preset}.yaml"))
        if backbone != "preset":
            kwargs["backbone"] = backbone
        model = build_model(**kwargs)
        params = sum(p.numel() for p in model.parameters())
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        buffers = sum(b.numel() for b in model.buffers())
        sizes[preset] = {"backbone": kwargs["backbone"], "params": params,
                         "trainable": trainable, "buffers": buffers,
                         "checkpoint_model_bytes": 4 * (params + buffers) + 4 * trainable}
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prw-root", default="/work/data/prw-full")
    parser.add_argument("--cuhk-root", default="/work/data/cuhk-full")
    parser.add_argument("--work", default="/work/data/rehearsal",
                        help="run folders (checkpoints, metrics, logs)")
    parser.add_argument("--results", default=str(REPO / "benchmarks/results/rehearsal.jsonl"))
    parser.add_argument("--presets", default=",".join(DEFAULT_ORDER),
                        help="comma-separated <method>_<prw|cuhk>, in the order to run")
    parser.add_argument("--backbone", default="small",
                        help="small (default), resnet18, resnet50, or preset (keep the preset's)")
    parser.add_argument("--iters-per-epoch", type=int, default=10)
    parser.add_argument("--table", action="store_true",
                        help="print the markdown table of --results (for --backbone) and exit")
    parser.add_argument("--model-sizes", action="store_true",
                        help="print each preset's parameter counts with --backbone and exit")
    args = parser.parse_args(argv)
    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    for preset in presets:
        method, _, dataset = preset.rpartition("_")
        if method not in METHODS or dataset not in DATASETS:
            parser.error(f"unknown preset {preset!r}; expected <{'|'.join(METHODS)}>_<prw|cuhk>")
    if args.model_sizes:
        print(json.dumps(model_sizes(presets, args.backbone), indent=1))
        return 0
    if args.table:
        print(markdown_table(load_results(Path(args.results)), args.backbone, presets))
        return 0
    if args.iters_per_epoch < 1:
        parser.error("--iters-per-epoch must be >= 1")
    env = dict(os.environ)
    threads = env.get("OMP_NUM_THREADS")
    machine = {"cpu": cpu_model(), "cores": os.cpu_count(),
               "omp_num_threads": int(threads) if threads else None}
    records = load_results(Path(args.results))
    roots = {"prw": Path(args.prw_root), "cuhk": Path(args.cuhk_root)}
    for preset in presets:
        root = roots[preset.rpartition("_")[2]]
        if not (root / "diagnostics" / "counts.json").is_file():
            print(f"{preset}: no complete dataset at {root} (personsearch data synth {root} "
                  f"--like ...); not run", flush=True)
            continue
        rehearse(preset, root, args, records, env, machine)
    return 0


if __name__ == "__main__":
    sys.exit(main())
