"""CGPS per-epoch pseudo labels: Jaccard -> 3× DBSCAN -> scene context -> self-paced (§2.4).

Shape glossary
--------------
N  number of memory slots
D  feature dimension
``features``     float [N, D] memory features (L2-normalised here)
``slot_images``  int64 [N]   image index of every slot
``labels``       int64 [N]   result: contiguous, clusters first then singletons

State: ``indep_thres`` is fixed by the first clustering that has a cluster of > 1 member and
reused afterwards; it is part of :meth:`CGPSPseudoLabeler.state_dict` (tensors only).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from personsearch.errors import CheckpointError, PersonSearchError
from personsearch.pseudo_labels.dbscan import dbscan_labels
from personsearch.pseudo_labels.jaccard import as_unit_features, exact_knn, jaccard_distance_sparse
from personsearch.pseudo_labels.scene_context import split_same_image
from personsearch.pseudo_labels.self_paced import self_paced_labels

__all__ = ["PseudoLabelResult", "CGPSPseudoLabeler"]


@dataclass(frozen=True)
class PseudoLabelResult:
    labels: np.ndarray  # int64 [N]
    num_clusters: int  # classes with >= 2 members
    num_outliers: int  # singleton classes (un-clustered instances)
    stats: dict[str, float] = field(default_factory=dict)


class CGPSPseudoLabeler:
    """``CGPSPseudoLabeler(k1=30, k2=6, eps=(0.68, 0.70, 0.72), min_samples=4)``.

    ``eps`` = (tight, normal, loose). CGPS hard-codes ``min_samples=4``; DICL uses 4 on PRW and
    2 on CUHK-SYSU. ``progress=True`` shows a tqdm bar over the six stages (kNN, Jaccard,
    3× DBSCAN + scene context, self-paced).
    """

    def __init__(
        self,
        k1: int = 30,
        k2: int = 6,
        eps: tuple[float, float, float] = (0.68, 0.70, 0.72),
        min_samples: int = 4,
        progress: bool = False,
    ) -> None:
        eps = tuple(float(value) for value in eps)
        if len(eps) != 3 or not 0 < eps[0] <= eps[1] <= eps[2] < 1:
            raise PersonSearchError(f"CGPSPseudoLabeler: eps must be (tight <= normal <= loose) in (0, 1), got {eps}")
        if k1 < 1 or not 1 <= k2 <= k1:
            raise PersonSearchError(f"CGPSPseudoLabeler: need 1 <= k2 <= k1, got k1={k1}, k2={k2}")
        if min_samples < 1:
            raise PersonSearchError(f"CGPSPseudoLabeler: min_samples must be >= 1, got {min_samples}")
        self.k1 = int(k1)
        self.k2 = int(k2)
        self.eps = eps
        self.min_samples = int(min_samples)
        self.progress = bool(progress)
        self.indep_thres: float | None = None

    def __call__(self, features: np.ndarray | torch.Tensor, slot_images: np.ndarray | torch.Tensor) -> PseudoLabelResult:
        stats: dict[str, float] = {}
        bar = tqdm(total=6, desc="pseudo labels", unit="stage", disable=not self.progress)
        clock, cpu_clock = time.perf_counter(), time.process_time()
        unit = as_unit_features(features)
        images = np.asarray(torch.as_tensor(slot_images).cpu().numpy() if isinstance(slot_images, torch.Tensor)
                            else slot_images).reshape(-1).astype(np.int64)
        if images.size != unit.shape[0]:
            raise PersonSearchError(
                f"CGPSPseudoLabeler: {unit.shape[0]} features but {images.size} slot_images"
            )
        k1 = min(self.k1, unit.shape[0])
        rank = exact_knn(unit, k1)
        stats["seconds_knn"] = time.perf_counter() - clock
        stats["cpu_seconds_knn"] = time.process_time() - cpu_clock
        bar.update()

        clock, cpu_clock = time.perf_counter(), time.process_time()
        distances = jaccard_distance_sparse(unit, k1=k1, k2=min(self.k2, k1), max_distance=max(self.eps), rank=rank)
        stats["seconds_jaccard"] = time.perf_counter() - clock
        stats["cpu_seconds_jaccard"] = time.process_time() - cpu_clock
        stats["jaccard_pairs"] = float(distances.nnz)
        bar.update()

        clock, cpu_clock = time.perf_counter(), time.process_time()
        labelings = []
        for name, eps in zip(("tight", "normal", "loose"), self.eps):
            raw, num_clusters, num_outliers = dbscan_labels(distances, eps, self.min_samples)
            split = split_same_image(raw, unit, images)
            stats[f"{name}_clusters"] = float(num_clusters)
            stats[f"{name}_dbscan_outliers"] = float(num_outliers)
            stats[f"{name}_scene_splits"] = float(int(split.max()) - int(raw.max()))
            labelings.append(split)
            bar.update()
        stats["seconds_dbscan"] = time.perf_counter() - clock
        stats["cpu_seconds_dbscan"] = time.process_time() - cpu_clock

        clock, cpu_clock = time.perf_counter(), time.process_time()
        tight, normal, loose = labelings
        result = self_paced_labels(normal, tight, loose, self.indep_thres)
        if self.indep_thres is None:
            self.indep_thres = result.indep_thres
        stats["seconds_self_paced"] = time.perf_counter() - clock
        stats["cpu_seconds_self_paced"] = time.process_time() - cpu_clock
        bar.update()
        bar.close()
        stats["ejected"] = float(result.num_ejected)
        stats["indep_thres"] = float("nan") if self.indep_thres is None else float(self.indep_thres)
        stats["num_clusters"] = float(result.num_clusters)
        stats["num_outliers"] = float(result.num_singletons)
        return PseudoLabelResult(result.labels, result.num_clusters, result.num_singletons, stats)

    # ------------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict[str, torch.Tensor]:
        """``indep_thres``: float64 tensor of shape [1], or shape [0] while not yet fixed."""
        value = [] if self.indep_thres is None else [self.indep_thres]
        return {"indep_thres": torch.tensor(value, dtype=torch.float64)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if "indep_thres" not in state:
            raise CheckpointError("CGPSPseudoLabeler state is missing 'indep_thres'")
        value = torch.as_tensor(state["indep_thres"]).reshape(-1)
        if value.numel() > 1:
            raise CheckpointError(f"CGPSPseudoLabeler state: indep_thres has {value.numel()} values")
        self.indep_thres = float(value[0]) if value.numel() else None
