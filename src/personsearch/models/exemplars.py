"""The multi-scale exemplar branch of SSL (docs/methods.md §3.2; arXiv v1 Eq. 1) and the crop branch
of DICL (§4.2): person crops cut from the network input, optionally with the background
filtered out by a foreground mask, resized, and embedded by the model's own backbone and re-id
head (``model.embed_crops``).

Shape glossary
--------------
B           images of the batch; images [B, 3, H, W] normalised, padded
P           persons (GT boxes) of the batch, in target order
boxes       [P, 4] x1y1x2y2 input pixels;  box_image [P] batch image index
masks       per image a uint8 [h, w] label map in input pixels (0 background, k+1 = box k)
K           resized scales;  (h_s, w_s) = scales[s]
exemplars   [P, K+1, D] unit embeddings; index 0 = original scale
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from personsearch.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from personsearch.ops import roi_align


def black_value(device: torch.device, dtype: torch.dtype) -> Tensor:
    """[3, 1, 1] the normalised value of a black pixel (background after x ⊙ mask in raw
    pixel space, docs/methods.md §3.2, our choice)."""
    mean = torch.tensor(IMAGENET_MEAN, device=device, dtype=dtype)
    std = torch.tensor(IMAGENET_STD, device=device, dtype=dtype)
    return (-mean / std).view(3, 1, 1)


def person_rois(boxes_per_image: Sequence[Tensor]) -> Tensor:
    """[P, 5] (batch index, x1, y1, x2, y2) for ``roi_align``."""
    rois = [torch.cat([torch.full((len(b), 1), float(i), device=b.device, dtype=b.dtype), b], dim=1)
            for i, b in enumerate(boxes_per_image)]
    if not rois:
        return torch.zeros(0, 5)
    return torch.cat(rois, dim=0)


def filter_background(images: Tensor, boxes_per_image: Sequence[Tensor],
                      masks: Sequence[Tensor | None] | None) -> list[Tensor]:
    """One image per person [3, H, W]: the batch image with every pixel that is not this
    person's foreground set to black. Without masks the image itself (all-ones mask)."""
    per_person: list[Tensor] = []
    black = black_value(images.device, images.dtype)
    for index, boxes in enumerate(boxes_per_image):
        mask = None if masks is None else masks[index]
        for k in range(len(boxes)):
            if mask is None:
                per_person.append(images[index])
                continue
            height, width = mask.shape
            foreground = torch.zeros(images.shape[-2:], dtype=torch.bool, device=images.device)
            foreground[:height, :width] = mask.to(images.device) == (k + 1)
            per_person.append(torch.where(foreground, images[index], black))
    return per_person


def crop_and_resize(images: Tensor, rois: Tensor, size: tuple[int, int]) -> Tensor:
    """[P, 3, h, w]: every RoI of ``rois`` [P, 5] cut from ``images`` and bilinearly resized
    (RoIAlign at stride 1, aligned)."""
    if rois.numel() == 0:
        return images.new_zeros((0, images.shape[1], *size))
    return roi_align(images, rois.float(), size, spatial_scale=1.0, sampling_ratio=2,
                     aligned=True)  # boxes stay float32 whatever the image dtype


def _rect(box: Sequence[float], height: int, width: int) -> tuple[int, int, int, int]:
    """Integer pixel rectangle (x1, y1, x2, y2) of the original-scale crop of a box (host
    floats): floor/ceil, clipped, at least one pixel."""
    x1 = min(max(math.floor(box[0]), 0), width - 1)
    y1 = min(max(math.floor(box[1]), 0), height - 1)
    x2 = min(max(math.ceil(box[2]), x1 + 1), width)
    y2 = min(max(math.ceil(box[3]), y1 + 1), height)
    return x1, y1, x2, y2


def _pad_crops(crops: list[Tensor], like: Tensor, min_side: int) -> tuple[Tensor, list[tuple[int, int]]]:
    """Enlarge sides shorter than ``min_side``, then zero-pad into one batch."""
    resized = []
    for crop in crops:
        crop = crop.unsqueeze(0)
        if crop.shape[-2] < min_side or crop.shape[-1] < min_side:
            new_size = (max(min_side, crop.shape[-2]), max(min_side, crop.shape[-1]))
            crop = F.interpolate(crop, size=new_size, mode="bilinear", align_corners=False)
        resized.append(crop[0])
    sizes = [(int(c.shape[-2]), int(c.shape[-1])) for c in resized]
    if not resized:
        return like.new_zeros((0, like.shape[-3], min_side, min_side)), sizes
    batch = like.new_zeros((len(resized), like.shape[-3], max(h for h, _ in sizes), max(w for _, w in sizes)))
    for index, crop in enumerate(resized):
        batch[index, :, : crop.shape[-2], : crop.shape[-1]] = crop
    return batch, sizes


def original_scale_crops(images: Tensor, boxes: Tensor, min_side: int = 32
                         ) -> tuple[Tensor, list[tuple[int, int]]]:
    """The persons at their own size in the network input (the original-scale exemplar,
    docs/methods.md §3.2, our choice), zero-padded into one batch: ([P, 3, h_max, w_max],
    [(h_p, w_p)]). ``images`` [P, 3, H, W] holds person p's image at p. Sides shorter than
    ``min_side`` are bilinearly enlarged to it so the stride-16 map keeps more than one cell
    (BatchNorm in training needs it). The boxes are read back to the host once."""
    height, width = images.shape[-2:]
    rects = [_rect(box, height, width) for box in boxes.tolist()]
    crops = [image[:, y1:y2, x1:x2] for image, (x1, y1, x2, y2) in zip(images, rects)]
    return _pad_crops(crops, images, min_side)


#: Pixels kept around a box when a person is cut out before masking: RoIAlign's bilinear taps
#: (aligned, stride 1) reach at most one pixel beyond the box.
WINDOW_MARGIN = 2


def _masked_windows(images: Tensor, boxes: list[list[float]], box_image: list[int], box_rank: list[int],
                    masks: Sequence[Tensor | None]) -> tuple[list[Tensor], list[tuple[int, int]]]:
    """Per person the window of its image around its box (WINDOW_MARGIN pixels, clipped),
    background set to black where the image has a label map: [3, h_p, w_p] pieces and their
    (top, left) offsets. Crop first, mask second: no full-image copy per person."""
    height, width = images.shape[-2:]
    black = black_value(images.device, images.dtype)
    padded_masks: dict[int, Tensor] = {}
    pieces, offsets = [], []
    for box, index, rank in zip(boxes, box_image, box_rank):
        top = min(max(math.floor(box[1]) - WINDOW_MARGIN, 0), height - 1)
        left = min(max(math.floor(box[0]) - WINDOW_MARGIN, 0), width - 1)
        bottom = max(min(math.ceil(box[3]) + WINDOW_MARGIN, height), top + 1)
        right = max(min(math.ceil(box[2]) + WINDOW_MARGIN, width), left + 1)
        piece = images[index, :, top:bottom, left:right]
        mask = masks[index]
        if mask is not None:
            if index not in padded_masks:  # label map -> padded batch size (0 = background)
                full = torch.zeros((height, width), dtype=torch.uint8, device=images.device)
                full[: mask.shape[0], : mask.shape[1]] = mask.to(images.device)
                padded_masks[index] = full
            foreground = padded_masks[index][top:bottom, left:right] == (rank + 1)
            piece = torch.where(foreground, piece, black)
        pieces.append(piece)
        offsets.append((top, left))
    return pieces, offsets


def exemplar_embeddings(
    model: nn.Module,
    images: Tensor,
    boxes_per_image: Sequence[Tensor],
    scales: Sequence[tuple[int, int]],
    masks: Sequence[Tensor | None] | None = None,
    original_scale: bool = True,
    min_side: int = 32,
) -> Tensor:
    """[P, K+1, D] exemplar embeddings (index 0 the original scale) of every person.

    Each person is background-filtered with its mask (as :func:`filter_background` defines
    it), cropped and resized to every (h, w) of ``scales`` (one ``embed_crops`` call per scale,
    batched over persons) and, for index 0, kept at its own size (one padded batch, each person
    pooled over its own region). With ``original_scale=False`` index 0 is the first resized
    scale's embedding instead.

    GPU-friendly: the boxes are read back to the host once per batch; with masks each person
    is cut out of its image (a small window around the box) before masking, never a full-image
    copy per person; without masks the resized crops come straight from the batch images.
    The branch runs the same modules whether or not the batch has persons (an empty batch of
    crops when it has none), so every process of a distributed run calls the same layers
    (SyncBatchNorm, DDP).
    """
    dim = model.embedding_dim
    boxes_host = [box for b in boxes_per_image for box in b.tolist()]  # the one host read
    box_image = [i for i, b in enumerate(boxes_per_image) for _ in range(len(b))]
    box_rank = [k for b in boxes_per_image for k in range(len(b))]
    num_persons = len(boxes_host)
    if num_persons == 0:
        empty = [model.embed_crops(images.new_zeros((0, images.shape[1], *size))) for size in scales]
        if original_scale:
            empty.insert(0, model.embed_crops(images.new_zeros((0, images.shape[1], min_side, min_side)), []))
        return images.new_zeros((0, len(scales) + 1, dim)) + sum(e.sum() for e in empty) * 0.0
    height, width = images.shape[-2:]
    use_masks = masks is not None and any(m is not None for m in masks)
    if use_masks:
        pieces, offsets = _masked_windows(images, boxes_host, box_image, box_rank, masks)
        max_h = max(p.shape[-2] for p in pieces)
        max_w = max(p.shape[-1] for p in pieces)
        # edge-replicated padding: a window cut at the image border keeps the border's clamping
        source = torch.stack([F.pad(p[None], (0, max_w - p.shape[-1], 0, max_h - p.shape[-2]),
                                    mode="replicate")[0] if p.shape[-2:] != (max_h, max_w) else p
                              for p in pieces])
        roi_rows = [[float(p), box[0] - left, box[1] - top, box[2] - left, box[3] - top]
                    for p, (box, (top, left)) in enumerate(zip(boxes_host, offsets))]
    else:
        source = images
        roi_rows = [[float(i), *box] for i, box in zip(box_image, boxes_host)]
    rois = torch.tensor(roi_rows, dtype=torch.float32).to(images.device, non_blocking=True)
    per_scale = [model.embed_crops(crop_and_resize(source, rois, tuple(size))) for size in scales]
    if original_scale:
        crops = []
        for index, box in enumerate(boxes_host):
            x1, y1, x2, y2 = _rect(box, height, width)
            if use_masks:
                top, left = offsets[index]
                crops.append(pieces[index][:, y1 - top:y2 - top, x1 - left:x2 - left])
            else:
                crops.append(images[box_image[index], :, y1:y2, x1:x2])
        batch, crop_sizes = _pad_crops(crops, images, min_side)
        original = model.embed_crops(batch, crop_sizes)
    else:
        original = per_scale[0]
    return torch.stack([original, *per_scale], dim=1)
