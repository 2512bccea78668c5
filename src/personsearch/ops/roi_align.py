"""RoIAlign (Mask R-CNN / torchvision / Detectron semantics), pure PyTorch with autograd.

Shape glossary
--------------
B, C, H, W   feature map batch, channels, height, width
K            number of RoIs
rois         float [K, 5] = (batch_index, x1, y1, x2, y2) in input-image pixels
h, w         output_size (pooled height, width)
gh, gw       sampling points per bin along y / x (sampling_ratio, or adaptive
             ceil(roi_height / h), ceil(roi_width / w) per RoI)
offsets      float [K, 2, h, w] optional per-bin shift of the bin start in feature pixels
             (channel 0 = x, channel 1 = y); used by deformable RoI pooling

Each output bin is the mean of gh x gw bilinear samples at the centres of a regular sub-grid of
the bin. Bilinear sampling follows torchvision's ``roi_align`` kernel exactly: a sample with
y < -1 or y > H (or x < -1 or x > W) contributes 0; otherwise y is clamped to [0, H-1] (x to
[0, W-1]) and interpolated between the neighbouring pixels. ``aligned=False`` (torchvision's
default, used by SeqNet) scales the box without the half-pixel shift and forces the RoI to be at
least 1x1 feature pixel; ``aligned=True`` shifts by -0.5 pixel (Detectron2 / mmcv).

Implementation, plain RoIAlign (no offsets): the bilinear taps of all samples of a chunk of RoIs
form a sparse [K*h*w, B*H*W] weight matrix (built per axis, duplicates coalesced), applied to the
channels-last feature matrix with one ``torch.sparse.mm``; backward is the transposed product.
With offsets (deformable pooling): RoIs are grouped by (image, gh, gw); each group is processed
in chunks as one ``grid_sample`` call (bilinear, align_corners=True) over the feature map padded by one zero
pixel, so that clamped samples reproduce the edge rule and out-of-range samples read an exact 0,
followed by an average pool over each gh x gw sub-grid. Gradients flow to the features (and to
``offsets`` when given). There is no Python loop over RoIs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from personsearch.ops._torchvision import compiled_ops

__all__ = ["roi_align", "roi_sample_bins"]

#: Upper bound on the elements of one chunk's sampled tensor (C * rois * h*gh * w*gw).
_CHUNK_ELEMENTS = 1 << 24


def _pair(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)


def _check_rois(features: Tensor, rois: Tensor) -> None:
    if features.dim() != 4:
        raise ValueError(f"features must have shape [B, C, H, W], got {tuple(features.shape)}")
    if rois.dim() != 2 or rois.shape[1] != 5:
        raise ValueError(
            f"rois must have shape [K, 5] (batch_index, x1, y1, x2, y2), got {tuple(rois.shape)}"
        )


def roi_sample_bins(
    features: Tensor,
    rois: Tensor,
    output_size: int | tuple[int, int],
    spatial_scale: float,
    sampling_ratio: int = -1,
    aligned: bool = False,
    offsets: Tensor | None = None,
) -> Tensor:
    """Average of bilinear samples per output bin -> [K, C, h, w] (see module docstring).

    This is the shared engine of :func:`roi_align` (offsets None) and deformable RoI pooling
    (offsets [K, 2, h, w] in feature pixels added to each bin's start).
    """
    _check_rois(features, rois)
    out_h, out_w = _pair(output_size)
    num_rois = rois.shape[0]
    batch, channels, height, width = features.shape
    if offsets is not None and offsets.shape != (num_rois, 2, out_h, out_w):
        raise ValueError(
            f"offsets must have shape [K, 2, h, w] = {(num_rois, 2, out_h, out_w)}, "
            f"got {tuple(offsets.shape)}"
        )
    out_dtype = features.dtype
    compute_dtype = features.dtype if features.dtype in (torch.float32, torch.float64) else torch.float32
    if num_rois == 0:
        return features.new_zeros((0, channels, out_h, out_w))

    feats = features.to(compute_dtype)
    rois = rois.detach().to(compute_dtype)
    if offsets is not None:
        offsets = offsets.to(compute_dtype)
    # one zero pixel around the map: out-of-range samples point at padded[0, 0] == 0
    padded = F.pad(feats, (1, 1, 1, 1))
    pad_h, pad_w = height + 2, width + 2

    shift = 0.5 if aligned else 0.0
    batch_index = rois[:, 0].long()
    if num_rois and (batch_index.min() < 0 or batch_index.max() >= batch):
        raise ValueError(f"rois batch index out of range [0, {batch}): {batch_index.unique().tolist()}")
    if offsets is None:
        return _pool_sparse(feats, rois, out_h, out_w, spatial_scale, sampling_ratio, aligned).to(out_dtype)
    start_x = rois[:, 1] * spatial_scale - shift
    start_y = rois[:, 2] * spatial_scale - shift
    roi_w = rois[:, 3] * spatial_scale - shift - start_x
    roi_h = rois[:, 4] * spatial_scale - shift - start_y
    if not aligned:
        roi_w = roi_w.clamp(min=1.0)
        roi_h = roi_h.clamp(min=1.0)
    bin_w = roi_w / out_w
    bin_h = roi_h / out_h
    if sampling_ratio > 0:
        grid_h = torch.full((num_rois,), sampling_ratio, dtype=torch.int64)
        grid_w = grid_h
    else:
        grid_h = torch.ceil(roi_h / out_h).long().clamp(min=0)
        grid_w = torch.ceil(roi_w / out_w).long().clamp(min=0)

    # group RoIs by (image, gh, gw)
    max_grid = int(max(grid_h.max().item(), grid_w.max().item())) + 1
    group_key = (batch_index * max_grid + grid_h) * max_grid + grid_w
    keys, group_of_roi = torch.unique(group_key, return_inverse=True)
    pieces: list[Tensor] = []
    piece_rois: list[Tensor] = []
    for group, key in enumerate(keys.tolist()):
        members = torch.nonzero(group_of_roi == group).flatten()
        gw = key % max_grid
        gh = (key // max_grid) % max_grid
        image = key // (max_grid * max_grid)
        if gh == 0 or gw == 0:  # empty RoI (aligned=True, zero size): output 0
            pieces.append(feats.new_zeros((members.numel(), channels, out_h, out_w)))
            piece_rois.append(members)
            continue
        per_roi = channels * out_h * gh * out_w * gw
        chunk = max(1, _CHUNK_ELEMENTS // per_roi)
        for first in range(0, members.numel(), chunk):
            idx = members[first:first + chunk]
            pieces.append(
                _sample_chunk(
                    padded[image:image + 1], pad_h, pad_w, height, width,
                    start_x[idx], start_y[idx], bin_w[idx], bin_h[idx], gh, gw, out_h, out_w,
                    None if offsets is None else offsets[idx],
                )
            )
            piece_rois.append(idx)
    output = torch.cat(pieces)
    order = torch.cat(piece_rois)
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.numel())
    return output[inverse].to(out_dtype)


#: Upper bound on the sparse entries (bilinear taps) built at once by the sparse engine.
_SPARSE_ENTRIES = 1 << 23


def _axis_taps(coords: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """torchvision's 1-D bilinear rule: (index [..., 2] int64, weight [..., 2]) of low/high taps."""
    valid = (coords >= -1.0) & (coords <= size)
    coords = coords.clamp(min=0)
    low = coords.floor().long()
    at_edge = low >= size - 1
    low = torch.where(at_edge, torch.full_like(low, size - 1), low)
    high = torch.where(at_edge, low, low + 1)
    coords = torch.where(at_edge, low.to(coords.dtype), coords)
    frac = coords - low.to(coords.dtype)
    weight = torch.stack((1.0 - frac, frac), dim=-1) * valid[..., None].to(coords.dtype)
    return torch.stack((low, high), dim=-1), weight


def _pool_sparse(
    feats: Tensor, rois: Tensor, out_h: int, out_w: int, spatial_scale: float, sampling_ratio: int, aligned: bool
) -> Tensor:
    """RoIAlign without offsets as one sparse [K*h*w, B*H*W] x dense [B*H*W, C] product per chunk.

    Bilinear sampling is separable, so each bin is a weighted sum of feature pixels: the weights
    are built per axis (2 taps per sample), combined by broadcasting, and duplicate pixels are
    summed by coalescing. The features are read once per chunk as a channels-last matrix, and
    autograd's backward of the sparse product (S^T @ grad) scatters gradients to the pixels.
    """
    batch, channels, height, width = feats.shape
    num_rois = rois.shape[0]
    dtype = feats.dtype
    dense = feats.permute(0, 2, 3, 1).reshape(batch * height * width, channels)
    shift = 0.5 if aligned else 0.0
    start_x = rois[:, 1] * spatial_scale - shift
    start_y = rois[:, 2] * spatial_scale - shift
    roi_w = rois[:, 3] * spatial_scale - shift - start_x
    roi_h = rois[:, 4] * spatial_scale - shift - start_y
    if not aligned:
        roi_w = roi_w.clamp(min=1.0)
        roi_h = roi_h.clamp(min=1.0)
    if sampling_ratio > 0:
        grid_h = torch.full((num_rois,), sampling_ratio, dtype=torch.int64)
        grid_w = grid_h
    else:
        grid_h = torch.ceil(roi_h / out_h).long().clamp(min=0)
        grid_w = torch.ceil(roi_w / out_w).long().clamp(min=0)
    taps = (grid_h * grid_w * 4 * out_h * out_w).clamp(min=1)
    batch_index = rois[:, 0].long()
    pieces = []
    first = 0
    cumulative = torch.cumsum(taps, 0)
    while first < num_rois:
        budget = (cumulative[first - 1] if first > 0 else 0) + _SPARSE_ENTRIES
        last = max(first + 1, int(torch.searchsorted(cumulative, budget, right=True)))
        last = min(last, num_rois)
        rows_list, cols_list, vals_list = [], [], []
        chunk_gh, chunk_gw = grid_h[first:last], grid_w[first:last]
        keys = torch.unique(chunk_gh * (int(chunk_gw.max()) + 1) + chunk_gw)
        for key in keys.tolist():
            gw_mod = int(chunk_gw.max()) + 1
            gh, gw = key // gw_mod, key % gw_mod
            if gh == 0 or gw == 0:
                continue  # empty RoIs: no taps, output 0
            idx = first + torch.nonzero((chunk_gh == gh) & (chunk_gw == gw)).flatten()
            sub_y = (torch.arange(gh, dtype=dtype) + 0.5) / gh
            sub_x = (torch.arange(gw, dtype=dtype) + 0.5) / gw
            bins_y = torch.arange(out_h, dtype=dtype)
            bins_x = torch.arange(out_w, dtype=dtype)
            ys = start_y[idx, None, None] + (bins_y[None, :, None] + sub_y[None, None, :]) * (roi_h[idx] / out_h)[:, None, None]
            xs = start_x[idx, None, None] + (bins_x[None, :, None] + sub_x[None, None, :]) * (roi_w[idx] / out_w)[:, None, None]
            y_index, y_weight = _axis_taps(ys, height)  # [k, h, gh, 2]
            x_index, x_weight = _axis_taps(xs, width)  # [k, w, gw, 2]
            count = gh * gw
            k = idx.numel()
            # entries [k, h, w, gh, 2, gw, 2]
            weight = (y_weight[:, :, None, :, :, None, None] * x_weight[:, None, :, None, None, :, :]) / count
            col = (
                (batch_index[idx] * (height * width))[:, None, None, None, None, None, None]
                + y_index[:, :, None, :, :, None, None] * width
                + x_index[:, None, :, None, None, :, :]
            )
            row = (
                (idx * (out_h * out_w))[:, None, None]
                + torch.arange(out_h)[None, :, None] * out_w
                + torch.arange(out_w)[None, None, :]
            )[:, :, :, None, None, None, None]
            shape = (k, out_h, out_w, gh, 2, gw, 2)
            rows_list.append(row.expand(shape).reshape(-1))
            cols_list.append(col.expand(shape).reshape(-1))
            vals_list.append(weight.expand(shape).reshape(-1))
        row_offset = first * out_h * out_w
        num_rows = (last - first) * out_h * out_w
        if rows_list:
            indices = torch.stack((torch.cat(rows_list) - row_offset, torch.cat(cols_list)))
            matrix = torch.sparse_coo_tensor(
                indices, torch.cat(vals_list), (num_rows, dense.shape[0]), dtype=dtype, check_invariants=False
            ).coalesce()
            pieces.append(torch.sparse.mm(matrix, dense))
        else:
            pieces.append(dense.new_zeros((num_rows, channels)))
        first = last
    out = torch.cat(pieces) if len(pieces) > 1 else pieces[0]
    return out.view(num_rois, out_h, out_w, channels).permute(0, 3, 1, 2).contiguous()


def _sample_chunk(
    padded_image: Tensor, pad_h: int, pad_w: int, height: int, width: int,
    start_x: Tensor, start_y: Tensor, bin_w: Tensor, bin_h: Tensor,
    gh: int, gw: int, out_h: int, out_w: int, offsets: Tensor | None,
) -> Tensor:
    """Pooled bins [k, C, h, w] for k RoIs of one image sharing the sub-grid gh x gw."""
    k = start_x.shape[0]
    dtype = padded_image.dtype
    bins_y = torch.arange(out_h, dtype=dtype)
    bins_x = torch.arange(out_w, dtype=dtype)
    sub_y = (torch.arange(gh, dtype=dtype) + 0.5) / gh
    sub_x = (torch.arange(gw, dtype=dtype) + 0.5) / gw
    # [k, h, gh] and [k, w, gw] sample coordinates in feature pixels
    ys = start_y[:, None, None] + bins_y[None, :, None] * bin_h[:, None, None] + sub_y[None, None, :] * bin_h[:, None, None]
    xs = start_x[:, None, None] + bins_x[None, :, None] * bin_w[:, None, None] + sub_x[None, None, :] * bin_w[:, None, None]
    ys = ys[:, :, :, None, None]  # [k, h, gh, 1, 1]
    xs = xs[:, None, None, :, :]  # [k, 1, 1, w, gw]
    if offsets is not None:
        ys = ys + offsets[:, 1, :, None, :, None]  # [k, h, 1, w, 1]
        xs = xs + offsets[:, 0, :, None, :, None]
    ys, xs = torch.broadcast_tensors(ys, xs)  # [k, h, gh, w, gw]
    valid = (ys >= -1.0) & (ys <= height) & (xs >= -1.0) & (xs <= width)
    # clamp to the map (torchvision's edge rule), then +1 for the zero padding
    ys = ys.clamp(0, height - 1) + 1.0
    xs = xs.clamp(0, width - 1) + 1.0
    zero = torch.zeros((), dtype=dtype)
    ys = torch.where(valid, ys, zero)
    xs = torch.where(valid, xs, zero)
    grid = torch.stack((xs * (2.0 / (pad_w - 1)) - 1.0, ys * (2.0 / (pad_h - 1)) - 1.0), dim=-1)
    grid = grid.reshape(1, k * out_h * gh, out_w * gw, 2)
    sampled = F.grid_sample(padded_image, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    pooled = F.avg_pool2d(sampled, kernel_size=(gh, gw), stride=(gh, gw))  # [1, C, k*h, w]
    channels = padded_image.shape[1]
    return pooled.reshape(channels, k, out_h, out_w).transpose(0, 1)


def roi_align(
    features: Tensor,
    rois: Tensor,
    output_size: int | tuple[int, int],
    spatial_scale: float,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> Tensor:
    """RoIAlign: features [B, C, H, W], rois [K, 5] -> [K, C, h, w] (differentiable in features).

    ``sampling_ratio`` <= 0 means adaptive: ceil(roi_size / output_size) samples per bin side.
    """
    _check_rois(features, rois)
    out_h, out_w = _pair(output_size)
    ops = compiled_ops()
    if ops is not None:
        return ops.roi_align(
            features, rois.to(features.dtype), float(spatial_scale), out_h, out_w, int(sampling_ratio), bool(aligned)
        )
    return roi_sample_bins(features, rois, (out_h, out_w), spatial_scale, sampling_ratio, aligned)
