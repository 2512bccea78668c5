"""``make demo`` — the main job, end to end on a 2-core CPU:

1. generate the demo's synthetic PRW-format dataset into ``out/synth_demo`` (when missing;
   ``DEMO_DATA``: persons drawn taller than the generator's default) and check it;
2. train SSL with the ``ssl_demo`` preset (``configs/ssl_demo.yaml``: the SSL CPU preset with
   the demo's schedule) into ``out/demo/ssl`` (an interrupted demo resumes from its last
   checkpoint; a finished one is not trained again; a run of another config there is an error);
3. evaluate the checkpoint on the synthetic test split (``personsearch eval``), printing
   mAP/top-1 next to the demo run recorded in ``demo_recorded.json`` (next to this module,
   shipped with the package), whether this run reproduces it, and why figures can differ on
   another CPU;
4. write ``out/demo/search_results.png``: 6 queries drawn with the seed from all queries (not
   chosen for success), each the query crop beside its top 5 gallery hits with rank and
   similarity, framed green (the query person) or red; the caption gives the run's mAP/top-1;
5. print a summary (what mAP and top-1 mean in one line) and the demo's total wall time.

Options: ``--frames N`` (dataset size), ``--set KEY=VALUE`` (training overrides), ``--out DIR``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

#: The demo run recorded on the project's machine (its metrics, threads, CPU and wall time):
#: package data, so that an installed demo compares with it too.
RESULTS_FILE = Path(__file__).resolve().parent / "demo_recorded.json"
RESULTS_NAME = "src/personsearch/cli/demo_recorded.json"

#: The demo's training preset: the SSL CPU preset (ssl_synthetic) with the demo's schedule.
DEMO_PRESET = "ssl_demo"
#: The demo's synthetic data, beyond the generator's defaults: persons drawn ``height_scale``
#: times taller than PRW's height distribution at this frame size, so that in the 640x360
#: network input they are about as many pixels tall as PRW's persons are in the papers'
#: 1500x900 input (docs/synthetic_data.md; README "make demo").
DEMO_DATA = {"height_scale": 2.0}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default="out/synth_demo", help="synthetic dataset folder")
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", default=DEMO_PRESET,
                        help="training config file or preset name (default: %(default)s)")
    parser.add_argument("--out", default="out/demo")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--queries", type=int, default=6,
                        help="queries in the results picture, drawn at random (--seed) from all")


def step(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def dataset_mismatch(root: Path, frames: int, seed: int) -> list[str]:
    """The demo data settings (frames, seed, DEMO_DATA) that the dataset in ``root`` was not
    generated with, as ``name: found X, the demo uses Y`` (from its diagnostics/settings.json)."""
    settings_file = root / "diagnostics" / "settings.json"
    if not settings_file.is_file():
        return [f"{settings_file} is missing (not a dataset written by the generator)"]
    found = json.loads(settings_file.read_text())
    wanted = {"fmt": "prw", "frames": frames, "seed": seed, **DEMO_DATA}
    return [f"{name}: found {found.get(name)!r}, the demo uses {value!r}"
            for name, value in wanted.items() if found.get(name) != value]


def ensure_dataset(root: Path, frames: int, seed: int) -> None:
    from personsearch.data.check import check_dataset
    from personsearch.data.synth import generate_dataset
    from personsearch.errors import DatasetError

    if not (root / "query_info.txt").is_file():
        step(f"generating {frames} synthetic frames into {root} "
             f"({', '.join(f'{k}={v}' for k, v in DEMO_DATA.items())})")
        counts = generate_dataset(root, fmt="prw", frames=frames, seed=seed, progress=True,
                                  **DEMO_DATA)
        print(f"done in {counts['seconds']:.1f} s: {counts['frames']} frames, "
              f"{counts['identities']} identities, {counts['queries']} queries")
    else:
        step(f"using the synthetic dataset in {root}")
        mismatch = dataset_mismatch(root, frames, seed)
        if mismatch:
            raise DatasetError(root, "not the demo's synthetic data (" + "; ".join(mismatch)
                               + "); delete the folder or pass another --data")
    report = check_dataset("prw", root)
    if not report.ok:
        print(report.format())
        raise SystemExit(f"{root}: the dataset check found problems; delete the folder and rerun")


def check_existing_run(config: str, out_dir: Path, overrides: list[str]) -> None:
    """ConfigError when ``out_dir`` holds a run (finished or not) trained with another config
    than this demo's (e.g. by an earlier version of the demo): the demo would otherwise show
    that run's checkpoint as its own."""
    from personsearch.cli.train import config_differences
    from personsearch.config import config_from_dict, config_to_dict, load_config
    from personsearch.engine.checkpoint import load_checkpoint
    from personsearch.errors import ConfigError

    last = out_dir / "checkpoints" / "last.pt"
    if not last.is_file():
        return
    location = f"train.out_dir={json.dumps(str(out_dir))}"
    wanted = config_to_dict(load_config(config, [*overrides, location]))
    saved = config_to_dict(config_from_dict(load_checkpoint(last).get("config") or {}, [location]))
    changes = config_differences(saved, wanted)
    if changes:
        raise ConfigError(f"{out_dir} holds a run trained with another config ({', '.join(sorted(changes))} "
                          f"differ from this demo's); delete it or pass another --out")


def train(config: str, out_dir: Path, data_root: Path, overrides: list[str]) -> Path:
    from personsearch.cli.ablate import train_row

    overrides = [f"data.root={json.dumps(str(data_root))}", *overrides]
    check_existing_run(config, out_dir, overrides)
    step(f"training SSL ({config}) into {out_dir}")
    return train_row(config, out_dir, overrides)


def recorded_figure() -> dict | None:
    """The demo run recorded in ``RESULTS_FILE`` (its metrics, threads, CPU and
    wall time; None when absent)."""
    if not RESULTS_FILE.is_file():
        return None
    return json.loads(RESULTS_FILE.read_text()).get("demo")


DETERMINISM_NOTE = (
    "note: training is seeded and deterministic on one machine with the pinned environment "
    "(requirements.lock) and the same number of torch threads, so a rerun there gives the same "
    "figures; another CPU (or BLAS / library build, or thread count) can change floating-point "
    "results and so the figures."
)


def recorded_settings(args: argparse.Namespace) -> bool:
    """Whether the demo runs with the settings of the recorded run (the defaults)."""
    return (args.frames == 600 and args.seed == 0 and not args.overrides
            and args.config == DEMO_PRESET)


def comparison_line(metrics: dict, recorded: dict | None) -> str:
    """How this run's figures relate to the recorded demo run, said as measured (rounded to the
    printed 0.1 point)."""
    if recorded is None:
        return f"(no demo run recorded in {RESULTS_NAME})"
    delta_map = round(100 * metrics["mAP"], 1) - round(100 * recorded["mAP"], 1)
    delta_top1 = round(100 * metrics["top1"], 1) - round(100 * recorded["top1"], 1)
    if abs(delta_map) < 0.05 and abs(delta_top1) < 0.05:
        return "this run gives the recorded figures"
    return (f"this run differs from the recorded figures by {delta_map:+.1f} mAP and "
            f"{delta_top1:+.1f} top-1 points (see the note below)")


def results_picture(data_root: Path, results: Path, out: Path, metrics: dict,
                    num_queries: int, seed: int, top: int = 5) -> Path:
    """The search results sheet (``personsearch.evaluation.figures.search_results_sheet``):
    ``num_queries`` queries drawn with ``seed`` from all queries of the test split, each with
    its top ``top`` gallery hits, and a caption with this run's mAP / top-1."""
    from personsearch.data import load_split
    from personsearch.evaluation.figures import sample_queries, search_results_sheet
    from personsearch.evaluation.results_file import load_results_file

    gallery = load_split("prw", data_root, "gallery")
    queries = load_split("prw", data_root, "query")
    loaded = load_results_file(results)
    chosen = sample_queries(len(queries), num_queries, seed)
    caption = [
        f"SSL on the synthetic test split: mAP {100 * metrics['mAP']:.1f}, top-1 "
        f"{100 * metrics['top1']:.1f} over all {len(queries)} queries.",
        f"The {len(chosen)} rows are queries drawn at random (seed {seed}), not chosen for success.",
        f"Each row: the query crop, then its top {top} gallery frames (one hit per frame; rank, "
        "similarity).",
        "Green = the query person, red = someone or something else.",
    ]
    return search_results_sheet(queries, gallery, loaded.gallery, loaded.query_feats, chosen,
                                caption, out, top=top)


#: One line that says what the two figures mean (printed with them).
METRICS_MEANING = ("mAP: mean over queries of the average precision of the ranked gallery "
                   "detections (how high all the frames showing the person rank); top-1: the "
                   "share of queries whose best-ranked detection is the right person.")


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
    picture = results_picture(data_root, results, out / "search_results.png", metrics,
                              args.queries, args.seed)
    step("summary")
    print(f"SSL (this run)             mAP {100 * metrics['mAP']:5.1f}   top-1 {100 * metrics['top1']:5.1f}")
    print(METRICS_MEANING)
    recorded = recorded_figure()
    if recorded:
        print(f"recorded demo run         mAP {100 * recorded['mAP']:5.1f}   top-1 "
              f"{100 * recorded['top1']:5.1f}   ({recorded['threads']} torch thread(s), "
              f"{recorded['cpu']}; {RESULTS_NAME})")
    if recorded_settings(args):
        print(comparison_line(metrics, recorded))
    else:
        print("(this run's settings differ from the recorded run's — --frames 600 --seed 0, the "
              f"{DEMO_PRESET} preset, no --set — so its figures are not compared)")
    print(DETERMINISM_NOTE)
    print(f"search results picture: {picture}")
    elapsed = time.perf_counter() - started
    print(f"demo finished: total wall time {int(elapsed // 60)} min {elapsed % 60:.0f} s")
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
