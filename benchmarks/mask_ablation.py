"""SSL's background filtering with masks from different sources (SSL paper Table 2, the rows
with and without †), on the synthetic PRW-format dataset where the true masks are known.

Rows (each the CPU preset ``configs/ssl_synthetic.yaml`` with the ablation's ``full`` row
switches, same seed and budget; only the masks differ):
    true      the generator's masks (the synthetic dataset as written)
    grabcut   ``personsearch data masks --method grabcut`` on a view of the dataset
    box       ``personsearch data masks --method box`` (whole box = no filtering, as a mask file)
    no_mask   ``method.params.use_masks=false`` (the exemplar branch without any mask)

A view is a folder of symbolic links to the dataset's images and annotations with its own
``masks/``. Training and evaluation use the ``personsearch ablate`` machinery (train_row /
evaluate_row / format_table); an interrupted run resumes (rows already trained are reused, rows
already evaluated with the same overrides are kept). Rows can run in parallel processes
(``--rows grabcut`` in one, ``--rows box`` in another, same ``--out``); a last run with every
row then only collects the table.

    personsearch data synth out/synth --format prw --frames 600 --seed 0
    .venv/bin/python benchmarks/mask_ablation.py --data out/synth --out out/mask_ablation \
        > benchmarks/results/mask_ablation.json

Prints JSON (rows with metrics, pseudo-label diagnostics, the mask IoU against the true masks)
and writes ``OUT/table.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

ROWS = ("true", "grabcut", "box", "no_mask")


def main() -> None:
    from mask_quality import dataset_view, per_person_iou

    from personsearch.atomic import atomic_write_text
    from personsearch.cli.ablate import (P, ROWS as ABLATION_ROWS, evaluate_row, format_table,
                                         last_diagnostics, train_row)
    from personsearch.config import load_config
    from personsearch.data import load_split
    from personsearch.data.masks_generate import generate_masks

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="synthetic PRW-format dataset (with masks/)")
    parser.add_argument("--config", default="configs/ssl_synthetic.yaml")
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--out", default="out/mask_ablation")
    parser.add_argument("--workers", type=int, default=2, help="mask processes")
    parser.add_argument("--evaluate-checkpoint", default=None, metavar="NAME",
                        help="only evaluate OUT/<row>/checkpoints/NAME of the rows that have it "
                             "(e.g. epoch_001.pt, a copy of last.pt taken when epoch 1 began: "
                             "the rows after their first epoch); results_<stem>.json, "
                             "table_<stem>.md")
    args = parser.parse_args()
    if args.evaluate_checkpoint:
        evaluate_checkpoints(args)
        return

    data, out = Path(args.data).resolve(), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # the preset frozen fully resolved (its base: chain merged): every row trains with the same
    # settings even if the preset or one of its bases changes
    config = out / "config.yaml"
    if not config.is_file():
        from personsearch.config import dump_config, load_config

        config.write_text(dump_config(load_config(args.config)))
    base = [f"{k}={json.dumps(v)}" for k, v in ABLATION_ROWS["full"].items()]
    train_records = load_split("prw", data, "train")
    results_file = out / "results.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    for name in [r.strip() for r in args.rows.split(",") if r.strip()]:
        if name not in ROWS:
            raise SystemExit(f"unknown row {name!r} (known: {', '.join(ROWS)})")
        row: dict = {}
        root = data
        overrides = list(base)
        if name in ("grabcut", "box"):
            root = dataset_view(data, out / "data" / name)
            summary = generate_masks("prw", root, method=name, workers=args.workers,
                                     progress=False)
            ious = per_person_iou(data, root, train_records)
            row["mask"] = {"method": name, "mean_iou": float(ious.mean()),
                           "persons": int(ious.size), "seconds_this_run": round(summary.seconds, 1),
                           "whole_box_fallbacks": summary.stats.box_fallbacks}
        elif name == "no_mask":
            overrides.append(f"{P}use_masks=false")
        overrides += [f"data.root={json.dumps(str(root))}", f"eval.root={json.dumps(str(data))}"]
        if results.get(name, {}).get("overrides") == overrides:
            continue  # trained and evaluated by an earlier (or a parallel) run
        start = time.perf_counter()
        checkpoint = train_row(str(config), out / name, overrides)
        cfg = load_config(str(config), overrides)
        row.update({"overrides": overrides, "metrics": evaluate_row(checkpoint, cfg),
                    "diagnostics": last_diagnostics(out / name / "metrics.jsonl"),
                    "seconds_this_run": round(time.perf_counter() - start, 1)})
        # rows may run in parallel processes (--rows X each): merge with what is on disk now
        results = json.loads(results_file.read_text()) if results_file.is_file() else {}
        results[name] = row
        atomic_write_text(results_file, json.dumps(results, indent=1))
        print(f"[mask_ablation] {name}: mAP {100 * row['metrics']['mAP']:.2f} "
              f"top-1 {100 * row['metrics']['top1']:.2f}", file=sys.stderr, flush=True)
    table = format_table(results)
    (out / "table.md").write_text(table + "\n")
    print(table, file=sys.stderr)
    config_hash = hashlib.sha256(config.read_bytes()).hexdigest()[:16]
    print(json.dumps({"command": " ".join(["benchmarks/mask_ablation.py"] + sys.argv[1:]),
                      "config": args.config, "config_sha256_16": config_hash,
                      "rows": results}, indent=1))


def evaluate_checkpoints(args) -> None:
    """Evaluate one named checkpoint per row (trained rows are not touched). Diagnostics: the
    last pseudo-label record of the epochs the checkpoint covers."""
    from personsearch.cli.ablate import ROWS as ABLATION_ROWS, evaluate_row, format_table
    from personsearch.config import load_config

    base = [f"{k}={json.dumps(v)}" for k, v in ABLATION_ROWS["full"].items()]

    out = Path(args.out)
    trained = json.loads((out / "results.json").read_text()) if (out / "results.json").is_file() else {}
    name = args.evaluate_checkpoint
    stem = Path(name).stem
    epochs_done = int(stem.split("_")[-1]) if stem.startswith("epoch_") else None
    results_file = out / f"results_{stem}.json"  # rows evaluated by earlier calls are kept
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    for row in [r.strip() for r in args.rows.split(",") if r.strip()]:
        checkpoint = out / row / "checkpoints" / name
        if not checkpoint.is_file():
            print(f"[mask_ablation] {row}: no {checkpoint} yet", file=sys.stderr, flush=True)
            continue
        if results.get(row, {}).get("checkpoint") == str(checkpoint):
            continue  # evaluated by an earlier call
        cfg = load_config(str(out / row / "config.yaml"), [])  # as the row's run resolved it
        records = [json.loads(line) for line in (out / row / "metrics.jsonl").read_text().splitlines()
                   if line.strip()]
        diagnostics = [r for r in records if r.get("type") == "pseudo_label_diagnostics"
                       and (epochs_done is None or r.get("epoch", 0) <= epochs_done)]
        results[row] = {"checkpoint": str(checkpoint),
                        "overrides": trained.get(row, {}).get("overrides", base),
                        "metrics": evaluate_row(checkpoint, cfg),
                        "diagnostics": diagnostics[-1] if diagnostics else {}}
        if row in trained and "mask" in trained[row]:
            results[row]["mask"] = trained[row]["mask"]
        print(f"[mask_ablation] {row} ({name}): mAP {100 * results[row]['metrics']['mAP']:.2f} "
              f"top-1 {100 * results[row]['metrics']['top1']:.2f}", file=sys.stderr, flush=True)
    results = {r: results[r] for r in ROWS if r in results}  # table order
    results_file.write_text(json.dumps(results, indent=1))
    table = format_table(results)
    (out / f"table_{stem}.md").write_text(table + "\n")
    print(table, file=sys.stderr)
    print(json.dumps({"command": " ".join(["benchmarks/mask_ablation.py"] + sys.argv[1:]),
                      "checkpoint": name, "rows": results}, indent=1))


if __name__ == "__main__":
    main()
