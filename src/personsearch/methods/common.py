"""Pieces every memory-based method shares: the slot layout of the training split, memory
initialisation by a pass over the training images with the ground-truth boxes, and the
pseudo-label diagnostics against the true identities.

Shape glossary
--------------
N        training GT boxes = memory slots (slot = offset of its image + box position)
D        embedding dimension
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from personsearch.data.records import SceneRecord
from personsearch.data.splits import slot_offsets
from personsearch.data.transforms import batch_images, load_image, preprocess
from personsearch.engine.distributed import DistContext


@dataclass(frozen=True)
class ExtractionSizes:
    """Test-pipeline resize used to extract memory features (methods.md §2.2: the 1500×900
    test pipeline); the train CLI sets it from the config's eval section."""

    min_size: int = 900
    max_size: int = 1500


def slot_images(records: Sequence[SceneRecord]) -> Tensor:
    """[N] int64: the train-split image index of every slot."""
    counts = [record.num_boxes for record in records]
    return torch.repeat_interleave(torch.arange(len(records), dtype=torch.int64),
                                   torch.tensor(counts, dtype=torch.int64))


def num_slots(records: Sequence[SceneRecord]) -> int:
    return int(slot_offsets(records)[-1])


@torch.no_grad()
def extract_gt_embeddings(
    model: nn.Module,
    records: Sequence[SceneRecord],
    sizes: ExtractionSizes,
    device: torch.device,
    progress: bool = True,
    description: str = "memory init",
) -> Tensor:
    """[N, D] unit embeddings of every training GT box, in slot order, with the model in eval
    mode and the GT boxes as the proposals (methods.md §2.2 "Initialisation")."""
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
        (embeddings,) = model.embed_boxes(images.to(device), image_sizes, [boxes.to(device)])
        chunks.append(embeddings.float().cpu())
    dim = getattr(model, "embedding_dim", None)
    if not chunks:
        return torch.zeros(0, int(dim or 0))
    return torch.cat(chunks, dim=0)


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


def multilabel_precision_recall(
    memory: Tensor, slot_image_index: Tensor, threshold: float, true_ids: np.ndarray,
    chunk: int = 1024,
) -> dict[str, float]:
    """Pairwise precision/recall of dynamic multi-label positives (SSL, paper Fig. 4) over the
    slots with a known identity: for every labelled slot i, P_i \\ {i} from
    :func:`~personsearch.pseudo_labels.multilabel_targets` on ``memory``; precision = fraction
    of predicted (i, j) pairs with the same true id; recall = fraction of same-id (i, j) pairs
    (j labelled, j != i) predicted. Chunked over rows: never an N×N matrix at once."""
    from personsearch.pseudo_labels import multilabel_targets

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
