"""Person-search and detection evaluation, exactly SeqNet's ``eval_func.py`` protocol
(docs/evaluation.md), vectorised. One core (``search.py``); protocol builders for CUHK-SYSU
and PRW; evaluators a model streams into; the results file."""

from personsearch.evaluation.ap import average_precision
from personsearch.evaluation.detection import detection_metrics
from personsearch.evaluation.evaluators import (CuhkSysuEvaluator, PrwEvaluator,
                                                detection_report, evaluate_search,
                                                gt_box_detections)
from personsearch.evaluation.results_file import (check_results_fit, load_results_file,
                                                  write_results_file)
from personsearch.evaluation.search import (GalleryDetections, SearchProtocol, SearchResult,
                                            search_metrics, size_adaptive_iou_threshold)

__all__ = [
    "average_precision", "detection_metrics", "CuhkSysuEvaluator", "PrwEvaluator",
    "detection_report", "evaluate_search", "gt_box_detections", "check_results_fit",
    "load_results_file", "write_results_file", "GalleryDetections", "SearchProtocol",
    "SearchResult", "search_metrics", "size_adaptive_iou_threshold",
]


def __getattr__(name: str):
    # The model-running path imports torch; keep `import personsearch.evaluation` light.
    if name in ("evaluate_model", "run_model", "evaluate_outputs", "ModelOutputs"):
        from personsearch.evaluation import inference

        return getattr(inference, name)
    raise AttributeError(f"module 'personsearch.evaluation' has no attribute {name!r}")
