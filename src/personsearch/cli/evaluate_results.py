"""``personsearch evaluate-results``: evaluate a results .npz (see
personsearch/evaluation/results_file.py for its keys) against a dataset's test split."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from personsearch.atomic import atomic_write_text

DATASETS = {"prw": "prw", "cuhk-sysu": "cuhk-sysu"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    parser.add_argument("--root", required=True, help="dataset root folder")
    parser.add_argument("--results", required=True, help="results .npz file")
    parser.add_argument("--gallery-size", type=int, default=100,
                        help="CUHK-SYSU gallery size: 50/100/500/1000/2000/4000, or -1 for the "
                             "full pool (default 100)")
    parser.add_argument("--cross-camera", action="store_true",
                        help="PRW: cross-camera gallery (default: every frame but the query's)")
    parser.add_argument("--query-from-detection", action="store_true",
                        help="PRW (CGPS/DICL): query feature = the query frame's detection with "
                             "max IoU to the query box")
    parser.add_argument("--det-thresh", type=float, default=0.5,
                        help="search detection threshold (default 0.5)")
    parser.add_argument("--json", help="also write the metrics to this JSON file")


def format_table(metrics: dict) -> str:
    rows = [("mAP", "mAP"), ("top-1", "top1"), ("top-5", "top5"), ("top-10", "top10"),
            ("det recall (thr 0.01)", "det_recall"), ("det AP (thr 0.01)", "det_ap"),
            ("det recall (thr 0.5)", "det_recall@0.5"), ("det AP (thr 0.5)", "det_ap@0.5"),
            ("det recall, labeled (0.01)", "det_recall_labeled")]
    width = max(len(label) for label, _ in rows)
    lines = [f"{label:<{width}}  {100 * metrics[key]:6.2f}%" for label, key in rows
             if key in metrics]
    lines.append(f"{'queries':<{width}}  {metrics['num_queries']}"
                 + (f" ({metrics['queries_without_gt']} without GT in the gallery, left out)"
                    if metrics.get("queries_without_gt") else ""))
    if metrics.get("queries_without_query_detection"):
        lines.append(f"{'':<{width}}  {metrics['queries_without_query_detection']} with no "
                     f"detection in the query frame (AP 0, no hit, counted)")
    return "\n".join(lines)


def evaluate_results(dataset: str, root: str, results_path: str, gallery_size: int = 100,
                     cross_camera: bool = False, query_from_detection: bool = False,
                     det_thresh: float = 0.5) -> dict:
    from personsearch.data import load_split
    from personsearch.evaluation.evaluators import evaluate_search
    from personsearch.evaluation.results_file import check_results_fit, load_results_file

    # The evaluation needs names, boxes and ids, not image sizes: reading 6,978 gallery and
    # 2,900 query JPEG headers would be most of the process's time.
    gallery_records = load_split(dataset, root, "gallery", read_sizes=False)
    query_records = load_split(dataset, root, "query", read_sizes=False)
    results = load_results_file(results_path)
    check_results_fit(results, [r.image_name for r in gallery_records], len(query_records))
    protocol = None
    if dataset == "cuhk-sysu":
        from personsearch.data.cuhk_sysu import load_cuhk_protocol
        protocol = load_cuhk_protocol(root, gallery_size)
    try:
        return evaluate_search(dataset, gallery_records, query_records, results.gallery,
                               results.query_feats, cuhk_protocol=protocol,
                               gallery_size=gallery_size, ignore_cam_id=not cross_camera,
                               det_thresh=det_thresh, query_from_detection=query_from_detection,
                               query_detections=results.query_detections)
    except ValueError as error:
        from personsearch.errors import ResultsFileError
        raise ResultsFileError(f"{results_path}: {error}") from None


def run(args: argparse.Namespace) -> int:
    from personsearch.evaluation.evaluators import check_protocol_options

    check_protocol_options(args.dataset, gallery_size=args.gallery_size,
                           cross_camera=args.cross_camera,
                           query_from_detection=args.query_from_detection,
                           det_thresh=args.det_thresh)
    metrics = evaluate_results(args.dataset, args.root, args.results, args.gallery_size,
                               args.cross_camera, args.query_from_detection, args.det_thresh)
    print(format_table(metrics))
    if args.json:
        write_json(Path(args.json), metrics)
    return 0


def write_json(path: Path, metrics: dict) -> None:
    """Write ``metrics`` as JSON atomically (temp file + rename)."""
    atomic_write_text(path, json.dumps(metrics, indent=1))
