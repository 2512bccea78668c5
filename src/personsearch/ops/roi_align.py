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
Hw, Ww       rows / columns of a RoI's (or a bin's) window: the map pixels its samples touch

Each output bin is the mean of gh x gw bilinear samples at the centres of a regular sub-grid of
the bin. Bilinear sampling follows torchvision's ``roi_align`` kernel exactly: a sample with
y < -1 or y > H (or x < -1 or x > W) contributes 0; otherwise y is clamped to [0, H-1] (x to
[0, W-1]) and interpolated between the neighbouring pixels. ``aligned=False`` (torchvision's
default, used by SeqNet) scales the box without the half-pixel shift and forces the RoI to be at
least 1x1 feature pixel; ``aligned=True`` shifts by -0.5 pixel (Detectron2 / mmcv).

Implementation. The average of bilinear samples is separable: a bin's value is
sum_y sum_x Wy[y] * Wx[x] * F[y, x], where Wy is the mean over the bin's gh sample rows of their
two-tap row weights (and Wx likewise; an out-of-range sample zeroes its own axis weight, which
zeroes the product, so torchvision's joint validity test factorises). The axis weights of all
RoIs are built at once, densely over H (or W), and cut to each RoI's window.

* Plain RoIAlign: per RoI, out[c] = Wy [h, Hw] @ F_win[c] [Hw, Ww] @ Wx^T [Ww, w]. RoIs are sorted
  by window size and processed in chunks padded to the chunk's largest window: the windows are
  gathered from the channels-last map with one ``index_select`` and contracted by two batched
  matmuls. Backward (a custom autograd function) does the transposed products and adds the window
  gradients into the map with ``index_add_``.
* With offsets (deformable pooling) every bin has its own window (at most ~gh+1 rows by gw+1
  columns): out[bin] = sum over the window of (Wy outer Wx) * F, one gathered window per bin and a
  batched vector-matrix product. Bins are grouped by window size (the same grouping as the RoI
  chunks) and each group is padded to its own largest window, so the work per bin is bounded by
  its own window class, not by the largest window in the batch. The weights are built with differentiable ops, so gradients reach
  ``offsets`` through them; the product's backward is a custom autograd function as above.

The output is [K, C, h, w] in channels-last memory format (the products produce [K, h, w, C]).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from personsearch.amp import autocast_off
from personsearch.ops._torchvision import chunk_budget, compiled_ops, warn_if_slow_fallback

__all__ = ["roi_align", "roi_sample_bins"]

#: Upper bound on the elements of one chunk's gathered windows (rows x window pixels x C) on
#: the CPU; ``chunk_budget`` scales it up on CUDA.
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


def _axis_taps(coords: Tensor, size: int) -> tuple[Tensor, Tensor, Tensor]:
    """torchvision's 1-D bilinear rule for sample coordinates [...].

    Returns (index [..., 2] int64 of the low/high taps, weight [..., 2], valid [...] bool).
    Invalid samples (coord < -1 or > size) get weight 0. Differentiable in ``coords``.
    """
    valid = (coords >= -1.0) & (coords <= size)
    coords = coords.clamp(min=0)
    low = coords.detach().floor().long()
    at_edge = low >= size - 1
    low = torch.where(at_edge, torch.full_like(low, size - 1), low)
    high = torch.where(at_edge, low, low + 1)
    coords = torch.where(at_edge, low.to(coords.dtype), coords)
    frac = coords - low.to(coords.dtype)
    weight = torch.stack((1.0 - frac, frac), dim=-1) * valid[..., None].to(coords.dtype)
    return torch.stack((low, high), dim=-1), weight, valid


def _axis_weights(coords: Tensor, used: Tensor, count: Tensor, size: int) -> tuple[Tensor, Tensor, Tensor]:
    """Mean two-tap weights of the samples [..., G] of one axis, dense over the axis.

    ``used`` [..., G] masks padded samples (RoIs with fewer samples than G), ``count`` [...] is
    the number of samples (>= 1). Returns (weights [..., size], first [...], extent [...]): the
    window first..first+extent-1 covers every tap of a valid sample (extent 0 when none).
    """
    index, weight, valid = _axis_taps(coords, size)
    valid = valid & used
    weight = weight * (valid[..., None].to(weight.dtype) / count[..., None, None])
    dense = weight.new_zeros((*coords.shape[:-1], size)).scatter_add(-1, index.flatten(-2), weight.flatten(-2))
    first = torch.where(valid, index[..., 0], size).amin(-1)
    last = torch.where(valid, index[..., 1], -1).amax(-1)
    extent = (last - first + 1).clamp(min=0)
    return dense, first.clamp(max=size - 1), extent


def _window(dense: Tensor, first: Tensor, length: int, extent: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """Cut dense weights [..., size] to windows of ``length`` from ``first`` [...].

    Positions past a RoI's own ``extent`` (padding) get weight 0 and a clamped, valid index.
    Returns (indices [..., length] int64, weights [..., length]).
    """
    steps = torch.arange(length, device=first.device)
    index = (first[..., None] + steps).clamp(max=size - 1)
    inside = steps < extent[..., None]
    weights = dense.gather(-1, index.expand(*dense.shape[:-1], length)) * inside.to(dense.dtype)
    return index, weights


def _union_window(first: Tensor, extent: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """One window [K] (first, extent) covering the bins' windows [K, n] (empty ones ignored)."""
    nonempty = extent > 0
    start = torch.where(nonempty, first, size).amin(1)
    end = torch.where(nonempty, first + extent, 0).amax(1)
    return start.clamp(max=size - 1), (end - start).clamp(min=0)


def _sample_grid(
    rois: Tensor, out_h: int, out_w: int, spatial_scale: float, sampling_ratio: int, aligned: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Sample coordinates of every RoI without offsets.

    Returns ys [K, h, Gh], xs [K, w, Gw], their masks used_y [K, Gh], used_x [K, Gw], the
    per-RoI grid sizes grid_h, grid_w [K] (int64), and roi_h, roi_w [K] in feature pixels.
    Coordinates follow torchvision: start + p * bin + (i + 0.5) * bin / grid.
    """
    dtype = rois.dtype
    shift = 0.5 if aligned else 0.0
    start_x = rois[:, 1] * spatial_scale - shift
    start_y = rois[:, 2] * spatial_scale - shift
    roi_w = rois[:, 3] * spatial_scale - shift - start_x
    roi_h = rois[:, 4] * spatial_scale - shift - start_y
    if not aligned:
        roi_w = roi_w.clamp(min=1.0)
        roi_h = roi_h.clamp(min=1.0)
    bin_h = roi_h / out_h
    bin_w = roi_w / out_w
    num_rois = rois.shape[0]
    if sampling_ratio > 0:
        grid_h = torch.full((num_rois,), sampling_ratio, dtype=torch.int64, device=rois.device)
        grid_w = grid_h
    else:
        grid_h = torch.ceil(roi_h / out_h).long().clamp(min=0)
        grid_w = torch.ceil(roi_w / out_w).long().clamp(min=0)
    max_h = max(int(grid_h.max()), 1)
    max_w = max(int(grid_w.max()), 1)
    sub_y = torch.arange(max_h, dtype=dtype, device=rois.device)
    sub_x = torch.arange(max_w, dtype=dtype, device=rois.device)
    used_y = sub_y[None, :] < grid_h[:, None]
    used_x = sub_x[None, :] < grid_w[:, None]
    step_h = bin_h / grid_h.clamp(min=1).to(dtype)
    step_w = bin_w / grid_w.clamp(min=1).to(dtype)
    bins_y = torch.arange(out_h, dtype=dtype, device=rois.device)
    bins_x = torch.arange(out_w, dtype=dtype, device=rois.device)
    ys = start_y[:, None, None] + bins_y[None, :, None] * bin_h[:, None, None] + (sub_y + 0.5)[None, None, :] * step_h[:, None, None]
    xs = start_x[:, None, None] + bins_x[None, :, None] * bin_w[:, None, None] + (sub_x + 0.5)[None, None, :] * step_w[:, None, None]
    return ys, xs, used_y, used_x, grid_h, grid_w, roi_h, roi_w


def _size_class(sizes: Tensor) -> Tensor:
    """Round window sizes up to 1, 2, 3, 4, 6, 8, 12, 16, ... (powers of two and 1.5x them)."""
    power = torch.pow(2.0, torch.log2(sizes.clamp(min=1).double()).floor())
    return torch.where(sizes.double() <= power, power,
                       torch.where(sizes.double() <= power * 1.5, power * 1.5, power * 2)).ceil().long()


def _chunks(rows: Tensor, cols: Tensor, work: Callable[[int, int], int], budget: int) -> list[Tensor]:
    """Group RoIs with similar windows (rows [K] x cols [K]) into chunks whose padded work fits.

    RoIs are sorted by row count rounded up to a power-of-two-ish class (1, 2, 3, 4, 6, 8, 12,
    ...) and then by column count; a chunk is cut greedily when ``work(max_rows, max_cols)`` per
    RoI times its length exceeds ``budget``, or when padding would exceed half the real work.
    Few, large chunks matter: every chunk costs a handful of parallel kernel launches.
    """
    power = torch.pow(2.0, torch.log2(rows.clamp(min=1).double()).floor())
    row_class = torch.where(rows.double() <= power * 1.5, power * 1.5, power * 2).ceil().long()
    order = torch.sort(row_class * (int(cols.max()) + 1) + cols, stable=True).indices
    rows_list, cols_list = rows[order].tolist(), cols[order].tolist()
    pieces: list[Tensor] = []
    first = 0
    max_rows = max_cols = 0
    real = 0
    for position, (num_rows, num_cols) in enumerate(zip(rows_list, cols_list)):
        grown_rows, grown_cols = max(max_rows, num_rows, 1), max(max_cols, num_cols, 1)
        count = position - first + 1
        padded = count * work(grown_rows, grown_cols)
        if count > 1 and (padded > budget or padded > 1.5 * (real + work(max(num_rows, 1), max(num_cols, 1)))):
            pieces.append(order[first:position])
            first = position
            grown_rows, grown_cols = max(num_rows, 1), max(num_cols, 1)
            real = 0
        max_rows, max_cols = grown_rows, grown_cols
        real += work(max(num_rows, 1), max(num_cols, 1))
    pieces.append(order[first:])
    return pieces


class _Workspace:
    """Reusable flat buffers: fresh large allocations cost page faults on every chunk."""

    def __init__(self, like: Tensor) -> None:
        self.like = like
        self.buffers: dict[str, Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...]) -> Tensor:
        numel = 1
        for size in shape:
            numel *= size
        buffer = self.buffers.get(name)
        if buffer is None or buffer.numel() < numel:
            buffer = self.like.new_empty(numel)
            self.buffers[name] = buffer
        return buffer[:numel].view(shape)


class _SeparablePool(torch.autograd.Function):
    """out[k] = Wy[k] @ F[window k] @ Wx[k]^T for chunks of RoIs; features channels-last flat.

    Inputs: flat map [B*H*W, C]; per chunk (RoI ids [k], pixel ids [k, Hw, Ww], Wy [k, h, Hw],
    Wx [k, w, Ww]). Output [K, h, w, C]. Only the map receives a gradient.
    """

    @staticmethod
    def forward(ctx, flat_map: Tensor, num_rois: int, out_h: int, out_w: int, chunks: list) -> Tensor:
        channels = flat_map.shape[1]
        out = flat_map.new_empty((num_rois, out_h, out_w, channels))
        work = _Workspace(flat_map)
        for roi_ids, pixels, weight_y, weight_x in chunks:
            k, rows, cols = pixels.shape
            window = work.get("window", (rows * cols * k, channels))
            torch.index_select(flat_map, 0, pixels.flatten(), out=window)
            rows_pooled = work.get("rows", (k, out_h, cols * channels))
            torch.bmm(weight_y, window.view(k, rows, cols * channels), out=rows_pooled)
            pooled = work.get("pooled", (k * out_h, out_w, channels))
            weight_x_rows = weight_x[:, None].expand(k, out_h, out_w, cols).reshape(k * out_h, out_w, cols)
            torch.bmm(weight_x_rows, rows_pooled.view(k * out_h, cols, channels), out=pooled)
            out.index_copy_(0, roi_ids, pooled.view(k, out_h, out_w, channels))
        ctx.chunks = chunks
        ctx.map_shape = flat_map.shape
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor):
        grad_map = grad_out.new_zeros(ctx.map_shape)
        channels = grad_map.shape[1]
        work = _Workspace(grad_map)
        for roi_ids, pixels, weight_y, weight_x in ctx.chunks:
            k, rows, cols = pixels.shape
            out_h, out_w = weight_y.shape[1], weight_x.shape[1]
            grad_pooled = work.get("pooled", (k, out_h, out_w, channels))
            torch.index_select(grad_out, 0, roi_ids, out=grad_pooled)
            grad_rows = work.get("rows", (k * out_h, cols, channels))
            weight_x_t = weight_x.transpose(1, 2)[:, None].expand(k, out_h, cols, out_w).reshape(k * out_h, cols, out_w)
            torch.bmm(weight_x_t, grad_pooled.view(k * out_h, out_w, channels), out=grad_rows)
            grad_window = work.get("window", (k, rows, cols * channels))
            torch.bmm(weight_y.transpose(1, 2), grad_rows.view(k, out_h, cols * channels), out=grad_window)
            grad_map.index_add_(0, pixels.flatten(), grad_window.view(-1, channels))
        return grad_map, None, None, None, None


class _WindowSum(torch.autograd.Function):
    """out[n] = sum_r weights[n, r] * F[pixels[n, r]] in chunks of rows; both inputs get gradients.

    Inputs: flat map [B*H*W, C], pixels [N, R] int64, weights [N, R], row chunk size. Output [N, C].
    """

    @staticmethod
    def forward(ctx, flat_map: Tensor, pixels: Tensor, weights: Tensor, chunk: int) -> Tensor:
        channels = flat_map.shape[1]
        num, taps = pixels.shape
        out = flat_map.new_empty((num, channels))
        work = _Workspace(flat_map)
        for first in range(0, num, chunk):
            rows = slice(first, first + chunk)
            index = pixels[rows].flatten()
            window = work.get("window", (index.numel(), channels))
            torch.index_select(flat_map, 0, index, out=window)
            torch.bmm(weights[rows, None, :], window.view(-1, taps, channels), out=out[rows, None, :])
        ctx.save_for_backward(flat_map, pixels, weights)
        ctx.chunk = chunk
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor):
        flat_map, pixels, weights = ctx.saved_tensors
        chunk = ctx.chunk
        num, taps = pixels.shape
        channels = flat_map.shape[1]
        grad_out = grad_out.contiguous()
        grad_map = torch.zeros_like(flat_map) if ctx.needs_input_grad[0] else None
        grad_weights = torch.empty_like(weights) if ctx.needs_input_grad[2] else None
        work = _Workspace(flat_map)
        for first in range(0, num, chunk):
            rows = slice(first, first + chunk)
            index = pixels[rows].flatten()
            if grad_weights is not None:
                window = work.get("window", (index.numel(), channels))
                torch.index_select(flat_map, 0, index, out=window)
                torch.bmm(window.view(-1, taps, channels), grad_out[rows, :, None], out=grad_weights[rows, :, None])
            if grad_map is not None:
                grad_window = work.get("grad_window", (index.numel() // taps, taps, channels))
                torch.mul(weights[rows, :, None], grad_out[rows, None, :], out=grad_window)
                grad_map.index_add_(0, index, grad_window.view(-1, channels))
        return grad_map, None, grad_weights, None


def _pool_separable(
    flat_map: Tensor, shape: tuple[int, int, int, int], rois: Tensor, out_h: int, out_w: int,
    spatial_scale: float, sampling_ratio: int, aligned: bool,
) -> Tensor:
    """RoIAlign without offsets -> [K, h, w, C] (see module docstring)."""
    batch, channels, height, width = shape
    ys, xs, used_y, used_x, grid_h, grid_w, _, _ = _sample_grid(rois, out_h, out_w, spatial_scale, sampling_ratio, aligned)
    count_y = grid_h.clamp(min=1).to(ys.dtype)[:, None].expand(-1, out_h)
    count_x = grid_w.clamp(min=1).to(xs.dtype)[:, None].expand(-1, out_w)
    dense_y, first_y, extent_y = _axis_weights(ys, used_y[:, None, :], count_y, height)  # [K, h, H], [K, h]
    dense_x, first_x, extent_x = _axis_weights(xs, used_x[:, None, :], count_x, width)
    # one window per RoI covering the windows of all its bins
    top, rows = _union_window(first_y, extent_y, height)
    left, cols = _union_window(first_x, extent_x, width)
    batch_index = rois[:, 0].long()

    def work(num_rows: int, num_cols: int) -> int:  # window + row-pooled + pooled elements
        return (num_rows * num_cols + out_h * num_cols + out_h * out_w) * channels

    pieces = _chunks(rows, cols, work, chunk_budget(_CHUNK_ELEMENTS, flat_map.device))
    order = torch.cat(pieces)
    # windows of all RoIs in chunk order, padded to the largest; chunks slice them
    max_rows = max(int(rows.max()), 1)
    max_cols = max(int(cols.max()), 1)
    row_index, weight_y = _window(dense_y[order], top[order, None], max_rows, rows[order, None], height)
    col_index, weight_x = _window(dense_x[order], left[order, None], max_cols, cols[order, None], width)
    image_rows = batch_index[order, None] * height + row_index[:, 0]  # [K, max_rows]
    col_index = col_index[:, 0]
    chunks = []
    first = 0
    for roi_ids in pieces:
        last = first + roi_ids.numel()
        num_rows = max(int(rows[roi_ids].max()), 1)
        num_cols = max(int(cols[roi_ids].max()), 1)
        pixels = image_rows[first:last, :num_rows, None] * width + col_index[first:last, None, :num_cols]
        chunks.append((
            roi_ids, pixels,
            weight_y[first:last, :, :num_rows].contiguous(), weight_x[first:last, :, :num_cols].contiguous(),
        ))
        first = last
    return _SeparablePool.apply(flat_map, rois.shape[0], out_h, out_w, chunks)


def _pool_with_offsets(
    flat_map: Tensor, shape: tuple[int, int, int, int], rois: Tensor, out_h: int, out_w: int,
    spatial_scale: float, sampling_ratio: int, aligned: bool, offsets: Tensor,
) -> Tensor:
    """Pooling with per-bin offsets [K, 2, h, w] -> [K, h, w, C] (one window per bin)."""
    batch, channels, height, width = shape
    ys, xs, used_y, used_x, grid_h, grid_w, _, _ = _sample_grid(rois, out_h, out_w, spatial_scale, sampling_ratio, aligned)
    num_rois = rois.shape[0]
    # per-bin sample coordinates: ys [K, h, w, Gh], xs [K, h, w, Gw]
    ys = ys[:, :, None, :] + offsets[:, 1, :, :, None]
    xs = xs[:, None, :, :] + offsets[:, 0, :, :, None]
    count_y = grid_h.clamp(min=1).to(ys.dtype)[:, None, None].expand(-1, out_h, out_w)
    count_x = grid_w.clamp(min=1).to(xs.dtype)[:, None, None].expand(-1, out_h, out_w)
    dense_y, first_y, extent_y = _axis_weights(ys, used_y[:, None, None, :], count_y, height)  # [K, h, w, H]
    dense_x, first_x, extent_x = _axis_weights(xs, used_x[:, None, None, :], count_x, width)
    num_bins = num_rois * out_h * out_w
    dense_y, first_y, extent_y = dense_y.reshape(num_bins, height), first_y.reshape(-1), extent_y.reshape(-1)
    dense_x, first_x, extent_x = dense_x.reshape(num_bins, width), first_x.reshape(-1), extent_x.reshape(-1)
    bin_image = rois[:, 0].long().repeat_interleave(out_h * out_w)  # [K*h*w]

    # Bins are grouped by window size class (rows and columns each rounded up to 1, 2, 3, 4,
    # 6, 8, 12, ...) and each group is padded to its own class, not to the batch's largest
    # window: a few large RoIs no longer make every bin of the batch pay for them, and the
    # padding stays under 2x per axis. At most a few dozen groups (one host read for the list).
    row_class, col_class = _size_class(extent_y), _size_class(extent_x)
    key_base = int(col_class.max()) + 1
    group_key = row_class * key_base + col_class
    budget = chunk_budget(_CHUNK_ELEMENTS, flat_map.device)
    parts = []
    order = torch.sort(group_key, stable=True).indices
    keys, counts = torch.unique_consecutive(group_key[order], return_counts=True)
    start = 0
    for key, count in zip(keys.tolist(), counts.tolist()):
        bins = order[start:start + count]
        start += count
        num_rows = max(key // key_base, 1)  # the class bounds every window of the group
        num_cols = max(key % key_base, 1)
        row_index, weight_y = _window(dense_y[bins], first_y[bins], num_rows, extent_y[bins], height)  # [n, Hw]
        col_index, weight_x = _window(dense_x[bins], first_x[bins], num_cols, extent_x[bins], width)
        pixels = (bin_image[bins, None, None] * height + row_index[:, :, None]) * width + col_index[:, None, :]
        weights = weight_y[:, :, None] * weight_x[:, None, :]  # [n, Hw, Ww]
        taps = num_rows * num_cols
        chunk = max(1, budget // (taps * channels))
        parts.append((bins, _WindowSum.apply(flat_map, pixels.reshape(-1, taps), weights.reshape(-1, taps), chunk)))
    out = flat_map.new_zeros((num_bins, channels))
    for bins, values in parts:
        out = out.index_copy(0, bins, values)
    return out.view(num_rois, out_h, out_w, channels)


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
    batch_index = rois[:, 0].long()
    if batch_index.min() < 0 or batch_index.max() >= batch:
        raise ValueError(f"rois batch index out of range [0, {batch}): {batch_index.unique().tolist()}")

    # channels-last rows [B*H*W, C] (a free view when the map is already channels-last)
    flat_map = features.to(compute_dtype).permute(0, 2, 3, 1).contiguous().view(batch * height * width, channels)
    rois = rois.detach().to(compute_dtype)
    shape = (batch, channels, height, width)
    # the products run in compute_dtype: autocast must not lower them to bf16
    with torch.autocast(device_type=features.device.type, enabled=False):
        if offsets is None:
            pooled = _pool_separable(flat_map, shape, rois, out_h, out_w, spatial_scale, sampling_ratio, aligned)
        else:
            pooled = _pool_with_offsets(
                flat_map, shape, rois, out_h, out_w, spatial_scale, sampling_ratio, aligned, offsets.to(compute_dtype)
            )
    # [K, h, w, C] -> [K, C, h, w] view in channels-last memory format
    return pooled.permute(0, 3, 1, 2).to(out_dtype)


def roi_align(
    features: Tensor,
    rois: Tensor,
    output_size: int | tuple[int, int],
    spatial_scale: float,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> Tensor:
    """RoIAlign: features [B, C, H, W], rois [K, 5] -> [K, C, h, w] (differentiable in features).

    The RoI coordinates are used in float32 (or float64) whatever the feature dtype or autocast
    state; the output has the features' dtype.

    ``sampling_ratio`` <= 0 means adaptive: ceil(roi_size / output_size) samples per bin side.
    """
    _check_rois(features, rois)
    out_h, out_w = _pair(output_size)
    ops = compiled_ops()
    if ops is not None:
        # The compiled kernel wants one dtype for both. Boxes never go below float32 (bf16
        # puts 1499.3 px on 1496); a half-precision map is pooled in float32 and cast back.
        compute_dtype = features.dtype if features.dtype in (torch.float32, torch.float64) else torch.float32
        with autocast_off(features.device.type):
            pooled = ops.roi_align(
                features.to(compute_dtype), rois.to(compute_dtype), float(spatial_scale), out_h, out_w,
                int(sampling_ratio), bool(aligned),
            )
        return pooled.to(features.dtype)
    warn_if_slow_fallback(features.device)
    return roi_sample_bins(features, rois, (out_h, out_w), spatial_scale, sampling_ratio, aligned)
