"""Method comparison on the synthetic PRW-format dataset (one seed, one budget, 2-core CPU).

    .venv/bin/python benchmarks/synthetic_comparison.py [--rows untrained,cgps,seqnet,ssl,dicl]

Every row is evaluated twice: on its own detections (the standard protocol) and with the
ground-truth gallery boxes (docs/evaluation.md §4: re-id quality alone, detection taken out).

Rows: ``untrained`` (the seeded initial model, no training), ``cgps``, ``seqnet`` (supervised
upper bound), ``seqnet_oim025`` (the same with the OIM loss weighted 0.25), ``ssl``, ``dicl`` (evaluated with and without inference fusion) and
``dicl_no_oic``. Each trains ``configs/<method>_synthetic.yaml`` into ``out/bench/<row>``
(skipped when already trained, resumed when interrupted), then is evaluated on the test split.
Writes ``benchmarks/results/synthetic_comparison.json`` (metrics, per-epoch pseudo-label
precision/recall against the true training ids) and ``.md`` (the README table),
and prints the JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
ROWS = {
    "untrained": ("cgps", []),
    "cgps": ("cgps", []),
    "seqnet": ("seqnet", []),
    "seqnet_oim025": ("seqnet", ["method.params.oim_weight=0.25"]),
    "ssl": ("ssl", []),
    "dicl": ("dicl", []),
    "dicl_no_oic": ("dicl", ["method.params.oic=false"]),
}


def untrained_checkpoint(config: Path, out_dir: Path) -> Path:
    """The initial model of a run (seeded like training), saved as a checkpoint."""
    from personsearch.config import config_to_dict, load_config, model_kwargs
    from personsearch.engine.checkpoint import save_checkpoint
    from personsearch.engine.trainer import seed_everything
    from personsearch.models import build_model

    cfg = load_config(config)
    seed_everything(cfg.train.seed)
    kwargs = model_kwargs(cfg)
    model = build_model(**kwargs)
    path = out_dir / "checkpoints" / "last.pt"
    save_checkpoint(path, {"model_kwargs": kwargs, "model": model.state_dict(), "method": "untrained",
                           "config": config_to_dict(cfg), "epoch": 0, "iteration": 0})
    return path


def pseudo_label_history(metrics_file: Path) -> list[dict]:
    from personsearch.evaluation.figures import read_diagnostics

    keep = ("precision", "recall", "f1")
    return [{"epoch": r["epoch"], **{k.removeprefix("diag/"): v for k, v in r.items()
                                     if k.startswith("diag/") and k.endswith(keep)}}
            for r in read_diagnostics(metrics_file)]


def evaluate(checkpoint: Path, config: Path, fusion: str, use_gt_boxes: bool = False) -> dict:
    from personsearch.config import load_config
    from personsearch.engine.checkpoint import load_model
    from personsearch.evaluation.inference import evaluate_model, method_feature_extractors
    from personsearch.models.inference import prepare_for_inference

    cfg = load_config(config)
    model, info = load_model(checkpoint)
    prepare_for_inference(model)  # the path `personsearch eval` takes by default
    return evaluate_model(model, fmt=cfg.data.format, root=cfg.data.root,
                          det_thresh=cfg.eval.det_thresh, min_size=cfg.eval.min_size,
                          max_size=cfg.eval.max_size, progress=False, use_gt_boxes=use_gt_boxes,
                          channels_last=True,
                          **method_feature_extractors(info, fusion))


def table(rows: dict) -> str:
    def pct(value):
        return "–" if value is None else f"{100 * value:.1f}"

    lines = ["| method | mAP | top-1 | mAP (GT boxes) | top-1 (GT boxes) | det AP | det recall | "
             "pseudo-label precision / recall (last epoch) |",
             "|---|---|---|---|---|---|---|---|"]
    for name, row in rows.items():
        m = row["metrics"]
        history = row.get("pseudo_labels") or []
        last = history[-1] if history else {}
        precision = last.get("dml_precision", last.get("precision"))
        recall = last.get("dml_recall", last.get("recall"))
        pl = f"{pct(precision)} / {pct(recall)}" if precision is not None else "–"
        gt = row.get("metrics_gt_boxes") or {}
        lines.append(f"| {name} | {pct(m['mAP'])} | {pct(m['top1'])} | {pct(gt.get('mAP'))} | "
                     f"{pct(gt.get('top1'))} | {pct(m.get('det_ap'))} | "
                     f"{pct(m.get('det_recall'))} | {pl} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from personsearch.cli.ablate import train_row

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--out", default=None, help="runs folder (default out/bench[_eN])")
    parser.add_argument("--epochs", type=int, default=None,
                        help="longer budget: train N epochs (lr x0.1 at 80%%) instead of the "
                             "presets' budget; results go to synthetic_comparison_eN.*")
    args = parser.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = f"_e{args.epochs}" if args.epochs else ""
    budget = ([f"solver.epochs={args.epochs}", f"solver.lr_steps=[{max(1, int(0.8 * args.epochs))}]"]
              if args.epochs else [])
    out_root = Path(args.out or REPO / "out" / f"bench{suffix}")
    json_path = RESULTS / f"synthetic_comparison{suffix}.json"
    results = json.loads(json_path.read_text()) if json_path.is_file() else {"rows": {}}
    for name in args.rows.split(","):
        method, overrides = ROWS[name]
        config = REPO / "configs" / f"{method}_synthetic.yaml"
        out_dir = out_root / name
        if name == "untrained":
            checkpoint = untrained_checkpoint(config, out_dir)
        else:
            checkpoint = train_row(str(config), out_dir, ["train.progress=false", *budget, *overrides])
        row = {"config": str(config.relative_to(REPO)), "overrides": budget + overrides,
               "pseudo_labels": pseudo_label_history(out_dir / "metrics.jsonl")}
        fusion = "auto" if method == "dicl" else "off"
        row["metrics"] = evaluate(checkpoint, config, fusion)
        row["metrics_gt_boxes"] = evaluate(checkpoint, config, fusion, use_gt_boxes=True)
        results["rows"][name] = row
        if method == "dicl":
            results["rows"][f"{name}_scene_only"] = {
                **row, "metrics": evaluate(checkpoint, config, "off"),
                "metrics_gt_boxes": evaluate(checkpoint, config, "off", use_gt_boxes=True)}
        order = [key for row_name in ROWS for key in (row_name, f"{row_name}_scene_only")]
        results["rows"] = {key: results["rows"][key] for key in sorted(
            results["rows"], key=lambda key: order.index(key) if key in order else len(order))}
        all_rows = [row_name for row_name in ROWS if row_name in results["rows"]]  # every row in the file
        results["command"] = ("python benchmarks/synthetic_comparison.py --rows " + ",".join(all_rows)
                              + (f" --epochs {args.epochs}" if args.epochs else ""))
        json_path.write_text(json.dumps(results, indent=1))
        (RESULTS / f"synthetic_comparison{suffix}.md").write_text(table(results["rows"]) + "\n")
        print(f"[comparison] {name}: mAP {100 * row['metrics']['mAP']:.2f} top-1 "
              f"{100 * row['metrics']['top1']:.2f}", flush=True)
    print(table(results["rows"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
