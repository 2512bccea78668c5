"""The multi-scale exemplar branch of SSL (methods.md §3.2; arXiv v1 Eq. 1) and the crop branch
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

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from personsearch.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from personsearch.ops import roi_align


def black_value(device: torch.device, dtype: torch.dtype) -> Tensor:
    """[3, 1, 1] the normalised value of a black pixel (background after x ⊙ mask in raw
    pixel space, methods.md §3.2 [open] default)."""
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


def original_scale_crops(images: Tensor, boxes: Tensor, min_side: int = 32
                         ) -> tuple[Tensor, list[tuple[int, int]]]:
    """The persons at their own size in the network input (the original-scale exemplar,
    methods.md §3.2 [open] default), zero-padded into one batch: ([P, 3, h_max, w_max],
    [(h_p, w_p)]). Sides shorter than ``min_side`` are bilinearly enlarged to it so the
    stride-16 map keeps more than one cell (BatchNorm in training needs it)."""
    height, width = images.shape[-2:]
    crops: list[Tensor] = []
    for image, box in zip(images, boxes):
        x1 = int(box[0].floor().clamp(0, width - 1))
        y1 = int(box[1].floor().clamp(0, height - 1))
        x2 = int(box[2].ceil().clamp(x1 + 1, width))
        y2 = int(box[3].ceil().clamp(y1 + 1, height))
        crop = image[:, y1:y2, x1:x2].unsqueeze(0)
        if crop.shape[-2] < min_side or crop.shape[-1] < min_side:
            new_size = (max(min_side, crop.shape[-2]), max(min_side, crop.shape[-1]))
            crop = F.interpolate(crop, size=new_size, mode="bilinear", align_corners=False)
        crops.append(crop[0])
    sizes = [(int(c.shape[-2]), int(c.shape[-1])) for c in crops]
    batch = images.new_zeros((len(crops), 3, max(h for h, _ in sizes), max(w for _, w in sizes)))
    for index, crop in enumerate(crops):
        batch[index, :, : crop.shape[-2], : crop.shape[-1]] = crop
    return batch, sizes


def exemplar_embeddings(
    model: nn.Module,
    images: Tensor,
    boxes_per_image: Sequence[Tensor],
    scales: Sequence[tuple[int, int]],
    masks: Sequence[Tensor | None] | None = None,
    original_scale: bool = True,
) -> Tensor:
    """[P, K+1, D] exemplar embeddings (index 0 the original scale) of every person.

    Each person's image is background-filtered with its mask, the person is cropped and
    resized to every (h, w) of ``scales`` (one ``embed_crops`` call per scale, batched over
    persons) and, for index 0, kept at its own size (one padded batch, each person pooled
    over its own region).
    With ``original_scale=False`` index 0 is the first resized scale's embedding instead.
    """
    filtered = filter_background(images, boxes_per_image, masks)
    num_persons = len(filtered)
    dim = model.embedding_dim
    if num_persons == 0:
        return images.new_zeros((0, len(scales) + 1, dim))
    stacked = torch.stack(filtered)  # [P, 3, H, W]
    boxes = torch.cat([b.to(images.dtype) for b in boxes_per_image], dim=0)
    rois = torch.cat([torch.arange(num_persons, device=images.device, dtype=images.dtype)[:, None],
                      boxes], dim=1)
    per_scale = [model.embed_crops(crop_and_resize(stacked, rois, tuple(size))) for size in scales]
    if original_scale:
        crops, crop_sizes = original_scale_crops(stacked, boxes)
        original = model.embed_crops(crops, crop_sizes)
    else:
        original = per_scale[0]
    return torch.stack([original, *per_scale], dim=1)
