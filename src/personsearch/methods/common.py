"""Pieces every memory-based method shares: the slot layout of the training split, the one
memory-initialisation loop over the training images (test resize, ground-truth boxes; what is
embedded per box is the caller's), the cluster-label refresh of CGPS and SSL, the RoI labels
their losses take, and the pseudo-label diagnostics against the true identities.

Shape glossary
--------------
N        training GT boxes = memory slots (slot = offset of its image + box position)
D        embedding dimension
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from personsearch.comm import DistContext
from personsearch.data.records import SceneRecord
from personsearch.data.splits import slot_offsets
from personsearch.data.transforms import batch_images, load_image, preprocess
from personsearch.labels import BACKGROUND
from personsearch.methods.context import ExtractionSizes
from personsearch.pseudo_labels import CGPSPseudoLabeler

# (model, images [1,3,H,W] on the device, image_sizes, boxes [n,4] test-resized pixels on the
#  device, record, (h, w) of the resized image) -> [n, D] one feature per box
BoxEmbedder = Callable[[nn.Module, Tensor, list, Tensor, SceneRecord, tuple[int, int]], Tensor]


def slot_images(records: Sequence[SceneRecord]) -> Tensor:
    """[N] int64: the train-split image index of every slot."""
    counts = [record.num_boxes for record in records]
    return torch.repeat_interleave(torch.arange(len(records), dtype=torch.int64),
                                   torch.tensor(counts, dtype=torch.int64))


def num_slots(records: Sequence[SceneRecord]) -> int:
    return int(slot_offsets(records)[-1])


@torch.no_grad()
def extract_box_features(
    model: nn.Module,
    records: Sequence[SceneRecord],
    sizes: ExtractionSizes,
    device: torch.device,
    embed: BoxEmbedder,
    progress: bool = True,
    description: str = "memory init",
) -> Tensor:
    """[N, D] float32 CPU features of every GT box of ``records``, in slot order: the memory
    initialisation pass (docs/methods.md, "Initialisation"). Each image with boxes is loaded,
    resized as at test time, batched alone and handed with its scaled GT boxes to ``embed``;
    the model is in eval mode."""
    from tqdm import tqdm

    chunks: list[Tensor] = []
    model.eval()
    for record in tqdm(records, desc=description, unit="img", disable=not progress,
                       leave=False, dynamic_ncols=True):
        if record.num_boxes == 0:
            continue
        tensor, scale = preprocess(load_image(record.image_path), sizes.min_size, sizes.max_size)
        images, image_sizes = batch_images([tensor])
        boxes = torch.tensor(record.boxes, dtype=torch.float32) * scale
        resized = (int(tensor.shape[-2]), int(tensor.shape[-1]))
        features = embed(model, images.to(device), image_sizes, boxes.to(device), record, resized)
        chunks.append(features.float().cpu())
    if not chunks:  # no box in these records (a rank's share can be empty)
        return torch.zeros(0, int(getattr(model, "embedding_dim", 0) or 0))
    return torch.cat(chunks, dim=0)


def _gt_box_embeddings(model: nn.Module, images: Tensor, image_sizes: list, boxes: Tensor,
                       record: SceneRecord, resized: tuple[int, int]) -> Tensor:
    (embeddings,) = model.embed_boxes(images, image_sizes, [boxes])
    return embeddings


def extract_gt_embeddings(
    model: nn.Module,
    records: Sequence[SceneRecord],
    sizes: ExtractionSizes,
    device: torch.device,
    progress: bool = True,
    description: str = "memory init",
) -> Tensor:
    """[N, D] unit embeddings of every training GT box, in slot order, with the model in eval
    mode and the GT boxes as the proposals."""
    return extract_box_features(model, records, sizes, device, _gt_box_embeddings, progress,
                                description)


def extract_across_ranks(
    records: Sequence[SceneRecord],
    extract: Callable[[Sequence[SceneRecord]], Tensor],
    dist: DistContext,
) -> Tensor:
    """[N, D] per-slot features computed by every rank on its share of the images and
    gathered in slot order (memory initialisation split across ranks instead of rank 0 doing
    all of it while the others wait).

    Rank r extracts the records r, r + world_size, ...; ``extract(records) -> [n, D]`` returns
    the features of those records' boxes in record then box order. With one process this is
    ``extract(records)``. Every rank gets the same [N, D] (float32, on the CPU)."""
    if not dist.enabled:
        return extract(records)
    share = list(range(dist.rank, len(records), dist.world_size))
    local = extract([records[i] for i in share]).float().cpu().contiguous()
    gathered = dist.all_gather_cat(local)
    offsets = slot_offsets(records)
    rank_major = [i for r in range(dist.world_size) for i in range(r, len(records), dist.world_size)]
    slots = torch.cat([torch.arange(int(offsets[i]), int(offsets[i + 1]), dtype=torch.int64)
                       for i in rank_major]) if rank_major else torch.zeros(0, dtype=torch.int64)
    if gathered.shape[0] != slots.numel():
        raise RuntimeError(f"memory initialisation gathered {gathered.shape[0]} features for "
                           f"{slots.numel()} boxes")
    out = gathered.new_empty(gathered.shape)
    out[slots] = gathered
    return out


@dataclass(frozen=True)
class ClusterParams:
    """The parameters of the CGPS baseline that SSL keeps too: cluster contrast, self-paced
    DBSCAN pseudo labels on k-reciprocal Jaccard distances, quaduplet loss (docs/methods.md).
    Each method's ``Params`` extends this one."""

    temperature: float = 0.05
    top_percent: float = 0.6
    k1: int = 30
    k2: int = 6
    eps: tuple[float, float, float] = (0.68, 0.70, 0.72)
    min_samples: int = 4
    quaduplet_margin: float = 0.3
    bg_weight: float = 0.25


def cluster_labeler(params: ClusterParams) -> CGPSPseudoLabeler:
    """The pseudo labeler these parameters describe."""
    return CGPSPseudoLabeler(k1=params.k1, k2=params.k2, eps=tuple(params.eps),
                             min_samples=params.min_samples)


def refresh_cluster_labels(labeler: Any, memory: Any, features: Callable[[], Tensor],
                           dist: DistContext) -> dict[str, float]:
    """The per-epoch cluster pseudo labels of CGPS and SSL: the main process clusters
    ``features()`` ([N, D], the one host copy of the memory per epoch) with ``labeler``
    (``pseudo_labels.CGPSPseudoLabeler``), every process receives the labels into
    ``memory.set_labels`` and the labeler's self-paced state; returns the clustering
    statistics as ``pseudo/<name>`` metrics (the same on every process)."""
    labels = torch.zeros(memory.num_slots, dtype=torch.int64)
    stats: dict[str, float] = {}
    if dist.is_main:
        result = labeler(features().cpu(), memory.slot_images.cpu())
        labels = torch.from_numpy(np.asarray(result.labels, dtype=np.int64))
        stats = {f"pseudo/{k}": float(v) for k, v in result.stats.items()}
    memory.set_labels(dist.broadcast_tensor(labels))
    labeler.indep_thres = dist.broadcast_object(labeler.indep_thres)
    return dist.broadcast_object(stats)


def roi_labels(roi_slots: Tensor, slot_labels: Tensor | None) -> Tensor:
    """[R] int64 label of each sampled RoI for the quaduplet loss: the label of its GT slot
    (``slot_labels[slot]``, or the slot itself when ``slot_labels`` is None: every box its own
    class) and ``BACKGROUND`` for background RoIs (slot -1)."""
    positive = roi_slots >= 0
    classes = slot_labels[roi_slots.clamp(min=0)] if slot_labels is not None else roi_slots
    return torch.where(positive, classes, torch.full_like(roi_slots, BACKGROUND))


def memory_update_mask(batch: dict, image_index: Tensor) -> Tensor:
    """[n] bool: True for the rows (RoIs / GT boxes of batch image ``image_index[n]``) whose
    features may update a memory bank; False for the images a distributed sampler repeated
    only to give every rank the same number of batches (``batch["padding"]``, [B] bool). A
    batch without that key has no repeats."""
    padding = batch.get("padding")
    if padding is None:
        return torch.ones_like(image_index, dtype=torch.bool)
    return ~padding.to(image_index.device)[image_index]


def concat_true_ids(identities: Sequence[np.ndarray]) -> np.ndarray:
    """Per-record true ids (``load_train_identities``) -> [N] in slot order."""
    if not identities:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([np.asarray(ids, dtype=np.int64).reshape(-1) for ids in identities])


#: Elements of one [rows, N] block of :func:`multilabel_precision_recall`: its temporaries
#: (similarities, candidate masks, int64 indices) take ~20 bytes per element, so ~80 MB
#: whatever N. A fixed 1,024 rows took 2.3 GB of peak RSS at CUHK-SYSU's N = 55,272.
DIAGNOSTIC_BLOCK_ELEMENTS = 1 << 22


def multilabel_precision_recall(
    memory: Tensor, slot_image_index: Tensor, threshold: float, true_ids: np.ndarray,
    chunk: int | None = None,
) -> dict[str, float]:
    """Pairwise precision/recall of dynamic multi-label positives (SSL, paper Fig. 4) over the
    slots with a known identity: for every labelled slot i, P_i \\ {i} from
    :func:`~personsearch.pseudo_labels.multilabel_targets` on ``memory``; precision = fraction
    of predicted (i, j) pairs with the same true id; recall = fraction of same-id (i, j) pairs
    (j labelled, j != i) predicted. Chunked over rows, ``chunk`` rows at a time (default:
    ``DIAGNOSTIC_BLOCK_ELEMENTS // N``): never an N×N matrix, and memory bounded whatever N.
    Time is O(labelled slots × N)."""
    from personsearch.pseudo_labels import multilabel_targets

    if chunk is None:
        chunk = max(1, DIAGNOSTIC_BLOCK_ELEMENTS // max(1, memory.shape[0]))
    true = torch.as_tensor(true_ids, dtype=torch.int64)
    labelled = torch.nonzero(true >= 0).squeeze(1)
    predicted = correct = 0
    same_total = int(sum(n * (n - 1) for n in torch.bincount(true[labelled]).tolist()))
    for start in range(0, labelled.numel(), chunk):
        rows = labelled[start:start + chunk]
        sim = memory[rows] @ memory.t()
        targets = multilabel_targets(sim, slot_image_index, threshold, own_slots=rows)
        targets[torch.arange(rows.numel()), rows] = False
        targets &= (true >= 0)[None, :]
        same = true[rows][:, None] == true[None, :]
        predicted += int(targets.sum())
        correct += int((targets & same).sum())
    precision = correct / predicted if predicted else 0.0
    recall = correct / same_total if same_total else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}
