"""``make demo`` — the main job, end to end on a 2-core CPU:

1. generate the synthetic PRW-format dataset into ``out/synth`` (when missing) and check it;
2. train SSL with ``configs/ssl_synthetic.yaml`` into ``out/demo/ssl`` (an interrupted demo
   resumes from its last checkpoint; a finished one is not trained again);
3. evaluate the checkpoint on the synthetic test split (``personsearch eval``), printing
   mAP/top-1 next to the SSL and CGPS figures recorded in ``benchmarks/results/``, whether
   this run reproduces the recorded SSL figures, and why they can differ on another CPU;
4. write ``out/demo/search_results.png``: for a few queries, the query crop beside the top
   gallery frames with the matched box drawn (green = the right person).

Options: ``--frames N`` (dataset size), ``--set KEY=VALUE`` (training overrides), ``--out DIR``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
RESULTS_FILE = REPO / "benchmarks" / "results" / "synthetic_comparison.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default="out/synth", help="synthetic dataset folder")
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", default=str(REPO / "configs" / "ssl_synthetic.yaml"))
    parser.add_argument("--out", default="out/demo")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--queries", type=int, default=4, help="queries in the results picture")


def step(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def ensure_dataset(root: Path, frames: int, seed: int) -> None:
    from personsearch.data.check import check_dataset
    from personsearch.data.synth import generate_dataset

    if not (root / "query_info.txt").is_file():
        step(f"generating {frames} synthetic frames into {root}")
        counts = generate_dataset(root, fmt="prw", frames=frames, seed=seed, progress=True)
        print(f"done in {counts['seconds']:.1f} s: {counts['frames']} frames, "
              f"{counts['identities']} identities, {counts['queries']} queries")
    else:
        step(f"using the synthetic dataset in {root}")
    report = check_dataset("prw", root)
    if not report.ok:
        print(report.format())
        raise SystemExit(f"{root}: the dataset check found problems; delete the folder and rerun")


def train(config: str, out_dir: Path, data_root: Path, overrides: list[str]) -> Path:
    from personsearch.cli.ablate import train_row

    step(f"training SSL ({config}) into {out_dir}")
    return train_row(config, out_dir, [f"data.root={json.dumps(str(data_root))}", *overrides])


def recorded_figure(row: str) -> dict | None:
    """The metrics of ``row`` in the recorded synthetic comparison (None when absent)."""
    if not RESULTS_FILE.is_file():
        return None
    rows = json.loads(RESULTS_FILE.read_text()).get("rows", {})
    return (rows.get(row) or {}).get("metrics")


def baseline_figure() -> dict | None:
    return recorded_figure("cgps")


DETERMINISM_NOTE = (
    "note: training is seeded and deterministic on one machine with the pinned environment "
    "(requirements.lock), so a rerun there gives the same figures; another CPU (or BLAS / "
    "library build) can change floating-point results and so the figures. The recorded "
    "figures were measured on the project's 2-core development machine."
)


def recorded_settings(args: argparse.Namespace) -> bool:
    """Whether the demo runs with the settings of the recorded SSL row (the defaults)."""
    return (args.frames == 600 and args.seed == 0 and not args.overrides
            and Path(args.config).resolve() == (REPO / "configs" / "ssl_synthetic.yaml").resolve())


def comparison_line(metrics: dict, recorded: dict | None) -> str:
    """How this run's figures relate to the recorded SSL row, said as measured (rounded to the
    printed 0.1 point)."""
    if recorded is None:
        return f"(no SSL figure recorded in {RESULTS_FILE.relative_to(REPO)})"
    delta_map = round(100 * metrics["mAP"], 1) - round(100 * recorded["mAP"], 1)
    delta_top1 = round(100 * metrics["top1"], 1) - round(100 * recorded["top1"], 1)
    if abs(delta_map) < 0.05 and abs(delta_top1) < 0.05:
        return "this run gives the recorded SSL figures"
    return (f"this run differs from the recorded SSL figures by {delta_map:+.1f} mAP and "
            f"{delta_top1:+.1f} top-1 points (see the note below)")


def results_picture(checkpoint: Path, data_root: Path, results: Path, out: Path,
                    num_queries: int, top: int = 5) -> Path:
    """Query crop beside its top gallery frames (SeqNet ranking: score-weighted similarity of
    every gallery detection with score >= 0.5), matched box drawn green when it is the query
    person (IoU >= 0.5 with its ground truth), red otherwise."""
    import numpy as np
    from PIL import Image, ImageDraw

    from personsearch.atomic import atomic_open
    from personsearch.data import load_split
    from personsearch.data.transforms import load_image
    from personsearch.evaluation.results_file import load_results_file
    from personsearch.evaluation.search import pairwise_iou

    gallery = load_split("prw", data_root, "gallery")
    queries = load_split("prw", data_root, "query")
    loaded = load_results_file(results)
    dets = loaded.gallery
    height = 160
    rows = []
    for q in np.linspace(0, len(queries) - 1, num=min(num_queries, len(queries))).astype(int):
        query = queries[q]
        similarity = dets.feats @ loaded.query_feats[q]
        keep = dets.scores >= 0.5
        image_of = np.repeat(np.arange(len(gallery)), np.diff(dets.image_offsets))
        # bool even when nothing was detected (an empty float array cannot be and-ed)
        keep &= np.array([gallery[i].image_name != query.image_name for i in image_of], dtype=bool)
        order = [i for i in np.argsort(-similarity) if keep[i]]
        best_per_image: list[int] = []
        for det in order:
            if image_of[det] not in {image_of[d] for d in best_per_image}:
                best_per_image.append(det)
            if len(best_per_image) == top:
                break
        crop = Image.fromarray(load_image(query.image_path)).crop(tuple(int(v) for v in query.boxes[0]))
        tiles = [crop.resize((max(1, int(crop.width * height / crop.height)), height))]
        for det in best_per_image:
            record = gallery[image_of[det]]
            frame = Image.fromarray(load_image(record.image_path))
            scale = height / frame.height
            frame = frame.resize((int(frame.width * scale), height))
            box = dets.boxes[det]
            match = record.person_ids == query.person_ids[0]
            correct = bool(match.any()) and float(pairwise_iou(box[None], record.boxes[match][:1])[0]) >= 0.5
            ImageDraw.Draw(frame).rectangle([float(v) * scale for v in box],
                                            outline=(0, 200, 0) if correct else (220, 0, 0), width=3)
            tiles.append(frame)
        width = sum(t.width for t in tiles) + 8 * len(tiles)
        row = Image.new("RGB", (width, height), (255, 255, 255))
        x = 0
        for tile in tiles:
            row.paste(tile, (x, 0))
            x += tile.width + 8
        rows.append(row)
    sheet = Image.new("RGB", (max(r.width for r in rows), sum(r.height + 8 for r in rows)), (255, 255, 255))
    y = 0
    for row in rows:
        sheet.paste(row, (0, y))
        y += row.height + 8
    with atomic_open(out, "wb") as handle:
        sheet.save(handle, format="PNG")
    return out


def run(args: argparse.Namespace) -> int:
    from personsearch.cli.main import main as cli

    started = time.perf_counter()
    data_root = Path(args.data)
    out = Path(args.out)
    ensure_dataset(data_root, args.frames, args.seed)
    checkpoint = train(args.config, out / "ssl", data_root, args.overrides)
    step("evaluating on the synthetic test split")
    results = out / "ssl_results.npz"
    metrics_file = out / "ssl_metrics.json"
    code = cli(["eval", str(checkpoint), "--dataset", "prw", "--root", str(data_root),
                "--results-out", str(results), "--json", str(metrics_file), "--no-progress"])
    if code:
        return code
    metrics = json.loads(metrics_file.read_text())
    picture = results_picture(checkpoint, data_root, results, out / "search_results.png", args.queries)
    step("summary")
    print(f"SSL (this run)             mAP {100 * metrics['mAP']:5.1f}   top-1 {100 * metrics['top1']:5.1f}")
    recorded = recorded_figure("ssl")
    if recorded:
        print(f"SSL (recorded, README)     mAP {100 * recorded['mAP']:5.1f}   top-1 {100 * recorded['top1']:5.1f}"
              f"   ({RESULTS_FILE.relative_to(REPO)})")
    baseline = baseline_figure()
    if baseline:
        print(f"CGPS baseline (recorded)   mAP {100 * baseline['mAP']:5.1f}   top-1 {100 * baseline['top1']:5.1f}")
    else:
        print(f"(no baseline figure recorded yet in {RESULTS_FILE.relative_to(REPO)})")
    if recorded_settings(args):
        print(comparison_line(metrics, recorded))
    else:
        print("(this run's settings differ from the recorded run's — --frames 600 --seed 0, the "
              "default config, no --set — so its figures are not compared)")
    print(DETERMINISM_NOTE)
    print(f"search results picture: {picture}")
    print(f"demo finished in {(time.perf_counter() - started) / 60:.1f} min")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m personsearch.cli.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    from personsearch.errors import PersonSearchError

    try:
        return run(parser.parse_args(argv))
    except PersonSearchError as error:
        print(f"demo: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
