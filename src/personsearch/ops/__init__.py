"""Detection ops in pure PyTorch: boxes, NMS, RoIAlign, deformable RoI pooling."""

from personsearch.ops.boxes import (
    box_area,
    box_iou,
    clip_boxes,
    decode_boxes,
    encode_boxes,
    remove_small_boxes,
)
from personsearch.ops.deform_roi_pool import DeformRoIPool, deform_roi_pool
from personsearch.ops.nms import batched_nms, nms
from personsearch.ops.roi_align import roi_align

__all__ = [
    "box_area",
    "box_iou",
    "clip_boxes",
    "remove_small_boxes",
    "encode_boxes",
    "decode_boxes",
    "nms",
    "batched_nms",
    "roi_align",
    "DeformRoIPool",
    "deform_roi_pool",
]
