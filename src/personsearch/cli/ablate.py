"""``personsearch ablate CONFIG --rows baseline,dml,sl,full [--out DIR] [--set K=V ...]``

Trains every row of an ablation with the same seed and budget (each row = the config plus the
row's overrides), evaluates it, and writes ``DIR/table.md``, ``DIR/results.json`` and the
figures ``DIR/pseudo_labels.png`` (pseudo-label precision/recall per epoch, DML versus
clustering: the SSL paper's Fig. 4) and ``DIR/embedding.png`` (2-D embedding of test features
coloured by identity, marker by person height: the paper's Fig. 7). A row already trained
(its checkpoint covers every epoch) is not trained again; an interrupted row resumes.

Rows (SSL paper, Tables 1-3; any config key may be overridden): see ``ROWS``. Besides
mAP/top-1 the table splits the queries by scale gap: the largest height ratio between the
query box and its ground-truth gallery boxes (>= 3x: "far scales").
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

P = "method.params."
ROWS: dict[str, dict[str, object]] = {
    # Table 1
    "baseline": {P + "use_scale_loss": False, P + "use_dml": False, P + "use_cluster": True},
    "dml": {P + "use_scale_loss": False, P + "use_dml": True, P + "use_cluster": True},
    "sl": {P + "use_scale_loss": True, P + "use_dml": False, P + "use_cluster": True},
    "full": {P + "use_scale_loss": True, P + "use_dml": True, P + "use_cluster": True},
    # the quaduplet loss (CGPS's detection context) is in neither SSL paper: full with / without it
    "full_quaduplet": {P + "use_scale_loss": True, P + "use_dml": True, P + "use_cluster": True,
                       P + "use_quaduplet": True},
    "full_no_quaduplet": {P + "use_scale_loss": True, P + "use_dml": True, P + "use_cluster": True,
                          P + "use_quaduplet": False},
    # ICCV variant of the full method: no clustering
    "full_no_cluster": {P + "use_scale_loss": True, P + "use_dml": True, P + "use_cluster": False},
    # Table 2 (exemplar branch)
    "original_scale": {P + "use_scale_loss": True, P + "use_dml": True, P + "scales": [],
                       P + "original_scale": True},
    "one_scale": {P + "use_scale_loss": True, P + "use_dml": True, "__one_scale__": True},
    "no_mask": {P + "use_scale_loss": True, P + "use_dml": True, P + "use_masks": False},
    # Table 3 (threshold)
    "fixed_threshold": {P + "use_scale_loss": True, P + "use_dml": True,
                        P + "fixed_threshold": 0.7},
}
FAR_SCALE_RATIO = 3.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="base YAML config (e.g. configs/ssl_synthetic.yaml)")
    parser.add_argument("--rows", default="baseline,dml,sl,full",
                        help=f"comma-separated rows among: {', '.join(ROWS)}")
    parser.add_argument("--out", default="out/ablation", help="output folder")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override for every row (repeatable)")
    parser.add_argument("--no-figures", action="store_true")


def row_overrides(name: str, cfg) -> list[str]:
    from personsearch.errors import ConfigError

    if name not in ROWS:
        raise ConfigError(f"--rows: unknown row {name!r} (known: {', '.join(ROWS)})")
    overrides = []
    for key, value in ROWS[name].items():
        if key == "__one_scale__":  # the middle scale of the config's pyramid
            scales = list(cfg.method.params.get("scales", [[224, 96]]))
            key, value = P + "scales", [list(scales[len(scales) // 2])] if scales else [[224, 96]]
        overrides.append(f"{key}={json.dumps(value)}")
    return overrides


def train_row(config: str, out_dir: Path, overrides: list[str]) -> Path:
    """Train (or finish training) one row; returns its last checkpoint."""
    from personsearch.cli.main import main
    from personsearch.engine.checkpoint import load_checkpoint

    last = out_dir / "checkpoints" / "last.pt"
    args = ["train", config, "--out", str(out_dir)] + [a for o in overrides for a in ("--set", o)]
    if last.is_file():
        state = load_checkpoint(last)
        epochs = int(state.get("config", {}).get("solver", {}).get("epochs", 0))
        if int(state.get("epoch", 0)) >= epochs and state.get("epoch_complete", True):
            return last
        args.append("--resume")
    code = main(args)
    if code != 0:
        from personsearch.errors import PersonSearchError

        raise PersonSearchError(f"training row {out_dir.name} failed (exit {code})")
    return last


def query_scale_gaps(gallery, queries) -> "np.ndarray":
    """[Q] largest height ratio between each query box and its GT boxes in other frames."""
    import numpy as np

    gaps = np.ones(len(queries))
    for q, query in enumerate(queries):
        pid = int(query.person_ids[0])
        q_height = float(query.boxes[0, 3] - query.boxes[0, 1])
        for record in gallery:
            if record.image_name == query.image_name:
                continue
            match = np.nonzero(record.person_ids == pid)[0]
            if match.size:
                height = float(record.boxes[match[0], 3] - record.boxes[match[0], 1])
                gaps[q] = max(gaps[q], q_height / height, height / q_height)
    return gaps


def evaluate_row(checkpoint: Path, cfg) -> dict:
    """Search metrics of a checkpoint on the config's test split, overall and per scale-gap
    bucket (PRW-format datasets)."""
    import numpy as np

    from personsearch.data import load_split
    from personsearch.engine.checkpoint import load_model
    from personsearch.evaluation.evaluators import evaluate_search
    from personsearch.evaluation.inference import run_model
    from personsearch.evaluation.prw import build_prw_protocol
    from personsearch.evaluation.search import GalleryDetections, search_metrics

    fmt = cfg.eval.format or cfg.data.format
    root = cfg.eval.root or cfg.data.root
    from personsearch.models.inference import prepare_for_inference

    model, _ = load_model(checkpoint)
    prepare_for_inference(model)  # the path `personsearch eval` takes by default
    gallery = load_split(fmt, root, "gallery")
    queries = load_split(fmt, root, "query")
    outputs = run_model(model, gallery, queries, min_size=cfg.eval.min_size,
                        max_size=cfg.eval.max_size, progress=cfg.train.progress, channels_last=True)
    detections = GalleryDetections.from_per_image(outputs.boxes, outputs.scores, outputs.feats)
    protocol = None
    if fmt == "cuhk-sysu":
        from personsearch.data import load_cuhk_protocol

        protocol = load_cuhk_protocol(root, cfg.eval.gallery_size)
    metrics = evaluate_search(fmt, gallery, queries, detections, outputs.query_feats,
                              cuhk_protocol=protocol, gallery_size=cfg.eval.gallery_size,
                              det_thresh=cfg.eval.det_thresh)
    if fmt == "prw":
        result = search_metrics(detections, outputs.query_feats,
                                build_prw_protocol(gallery, queries), cfg.eval.det_thresh)
        gaps = query_scale_gaps(gallery, queries)
        far = (gaps >= FAR_SCALE_RATIO) & result.evaluated
        near = (gaps < FAR_SCALE_RATIO) & result.evaluated
        for name, mask in (("far", far), ("near", near)):
            metrics[f"mAP_{name}_scale"] = float(result.average_precisions[mask].mean()) if mask.any() else float("nan")
            metrics[f"top1_{name}_scale"] = float(result.hits[mask, 0].mean()) if mask.any() else float("nan")
            metrics[f"queries_{name}_scale"] = int(mask.sum())
    return metrics


def last_diagnostics(metrics_file: Path) -> dict[str, float]:
    records = [json.loads(line) for line in metrics_file.read_text().splitlines() if line.strip()]
    diagnostics = [r for r in records if r.get("type") == "pseudo_label_diagnostics"]
    return diagnostics[-1] if diagnostics else {}


def format_table(results: dict[str, dict]) -> str:
    def pct(value):
        return "–" if value is None or value != value else f"{100 * value:.1f}"

    header = ("| row | mAP | top-1 | mAP, far scales (≥3×) | mAP, near scales | det AP | "
              "pseudo-label precision | pseudo-label recall |")
    lines = [header, "|---|---|---|---|---|---|---|---|"]
    for name, row in results.items():
        m, d = row["metrics"], row["diagnostics"]
        # the labels the row trained with: DML when it is on, else the cluster labels
        kind = "dml" if f"{P}use_dml=true" in row.get("overrides", []) else "cluster"
        precision = d.get(f"diag/{kind}_precision", d.get("diag/precision"))
        recall = d.get(f"diag/{kind}_recall", d.get("diag/recall"))
        lines.append(f"| {name} | {pct(m.get('mAP'))} | {pct(m.get('top1'))} | "
                     f"{pct(m.get('mAP_far_scale'))} | {pct(m.get('mAP_near_scale'))} | "
                     f"{pct(m.get('det_ap'))} | {pct(precision)} | {pct(recall)} |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from personsearch.atomic import atomic_write_text
    from personsearch.config import load_config
    from personsearch.evaluation.figures import embedding_figure, pseudo_label_figure

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = load_config(args.config, args.overrides)
    results: dict[str, dict] = {}
    results_file = out / "results.json"
    if results_file.is_file():
        results = json.loads(results_file.read_text())
    for name in [r.strip() for r in args.rows.split(",") if r.strip()]:
        overrides = list(args.overrides) + row_overrides(name, base)
        row_dir = out / name
        checkpoint = train_row(args.config, row_dir, overrides)
        cfg = load_config(args.config, overrides)
        results[name] = {"overrides": overrides, "metrics": evaluate_row(checkpoint, cfg),
                         "diagnostics": last_diagnostics(row_dir / "metrics.jsonl")}
        atomic_write_text(results_file, json.dumps(results, indent=1))  # a crash keeps the rows so far
        print(f"[ablate] {name}: mAP {100 * results[name]['metrics']['mAP']:.2f} "
              f"top-1 {100 * results[name]['metrics']['top1']:.2f}", flush=True)
    table = format_table(results)
    atomic_write_text(out / "table.md", table + "\n")
    print(table)
    if not args.no_figures:
        runs = {name: out / name / "metrics.jsonl" for name in results}
        pseudo_label_figure(runs, out / "pseudo_labels.png")
        figure_rows = [n for n in ("baseline", "full") if n in results] or list(results)[:1]
        embedding_figure({n: out / n / "checkpoints" / "last.pt" for n in figure_rows},
                         base, out / "embedding.png")
        print(f"figures: {out / 'pseudo_labels.png'}, {out / 'embedding.png'}")
    return 0
