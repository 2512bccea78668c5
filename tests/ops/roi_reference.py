"""Scalar, loop-based reference of RoIAlign / mmcv deformable RoI pooling for the tests.

Written straight from the kernel description (one sample at a time), deliberately naive.
"""

import math

import torch


def bilinear(feature, y, x):
    """torchvision's bilinear_interpolate on a [H, W] tensor at (y, x)."""
    height, width = feature.shape
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return 0.0
    y = max(y, 0.0)
    x = max(x, 0.0)
    y_low, x_low = int(y), int(x)
    if y_low >= height - 1:
        y_high = y_low = height - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_high = x_low = width - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1.0 - ly, 1.0 - lx
    f = feature
    return (
        hy * hx * float(f[y_low, x_low]) + hy * lx * float(f[y_low, x_high])
        + ly * hx * float(f[y_high, x_low]) + ly * lx * float(f[y_high, x_high])
    )


def reference_pool(features, rois, out_h, out_w, scale, sampling_ratio, aligned, offsets=None, gamma=0.1):
    num = rois.shape[0]
    channels = features.shape[1]
    out = torch.zeros(num, channels, out_h, out_w, dtype=torch.float64)
    shift = 0.5 if aligned else 0.0
    for k in range(num):
        b = int(rois[k, 0])
        x1, y1, x2, y2 = (float(v) for v in rois[k, 1:])
        start_w, start_h = x1 * scale - shift, y1 * scale - shift
        roi_w, roi_h = x2 * scale - shift - start_w, y2 * scale - shift - start_h
        if not aligned:
            roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
        bin_h, bin_w = roi_h / out_h, roi_w / out_w
        grid_h = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_h / out_h)
        grid_w = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_w / out_w)
        count = max(grid_h * grid_w, 1)
        for c in range(channels):
            for ph in range(out_h):
                for pw in range(out_w):
                    sh, sw = start_h, start_w
                    if offsets is not None:
                        sw += gamma * roi_w * float(offsets[k, 0, ph, pw])
                        sh += gamma * roi_h * float(offsets[k, 1, ph, pw])
                    total = 0.0
                    for iy in range(grid_h):
                        y = sh + ph * bin_h + (iy + 0.5) * bin_h / grid_h
                        for ix in range(grid_w):
                            x = sw + pw * bin_w + (ix + 0.5) * bin_w / grid_w
                            total += bilinear(features[b, c], y, x)
                    out[k, c, ph, pw] = total / count
    return out
