"""DICL OIC masking: patches inside boxes, grid-aligned, mean fill, quirks, determinism."""

from __future__ import annotations

import pytest
import torch

from personsearch.data.occlusion import occlusion_mask_boxes


def _images(batch: int = 2, height: int = 64, width: int = 48) -> torch.Tensor:
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(0))


def _changed(original: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """[B, H, W] bool: pixels whose value changed in any channel."""
    return (original != masked).any(dim=1)


def test_prob_zero_is_identity() -> None:
    images = _images()
    boxes = [torch.tensor([[2.0, 2.0, 30.0, 60.0]]), torch.tensor([[0.0, 0.0, 48.0, 64.0]])]
    out = occlusion_mask_boxes(images, boxes, prob=0.0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out, images)


def test_patches_inside_box_grid_aligned_and_mean_filled() -> None:
    images = _images()
    original = images.clone()
    # box 1: x 4..16 (w=12), y 8..36 (h=28): cell 28//14 x 12//6 = 2 x 2 pixels
    # box 2 (fractional): pixels fully inside = cols ceil(20.5)=21 .. floor(44.9)=44 -> w=23,
    #        rows ceil(3.2)=4 .. floor(60.0)=60 -> h=56: cell 4 x 3
    boxes = [torch.tensor([[4.0, 8.0, 16.0, 36.0], [20.5, 3.2, 44.9, 60.0]]), torch.zeros(0, 4)]
    for seed in range(10):
        out = occlusion_mask_boxes(images, boxes, prob=1.0, patches=2, generator=torch.Generator().manual_seed(seed))
        assert torch.equal(images, original)          # input not modified
        changed = _changed(images, out)
        assert not changed[1].any()                   # image without boxes untouched
        inside = torch.zeros_like(changed[0])
        for (left, top, right, bottom, cell_h, cell_w) in [(4, 8, 16, 36, 2, 2), (21, 4, 44, 60, 4, 3)]:
            inside[top:bottom, left:right] = True
            region = changed[0, top:bottom, left:right]
            ys, xs = region.nonzero(as_tuple=True)
            cells = {(int(y) // cell_h, int(x) // cell_w) for y, x in zip(ys, xs)}
            assert 1 <= len(cells) <= 2                # prob 1 -> masked; <= 2 distinct cells
            for row, col in cells:                     # each masked cell completely filled
                assert row < 14 and col < 6
                assert region[row * cell_h:(row + 1) * cell_h, col * cell_w:(col + 1) * cell_w].all()
            assert region.sum() == len(cells) * cell_h * cell_w
        assert not (changed[0] & ~inside).any()        # nothing outside the boxes
        # filled with the per-channel mean of the whole (unmasked) image
        mean = images[0].mean(dim=(1, 2))
        torch.testing.assert_close(out[0][:, changed[0]], mean[:, None].expand(3, int(changed[0].sum())))


def test_deterministic_with_generator() -> None:
    images = _images()
    boxes = [torch.tensor([[0.0, 0.0, 24.0, 56.0], [24.0, 0.0, 48.0, 56.0]])] * 2
    first = occlusion_mask_boxes(images, boxes, generator=torch.Generator().manual_seed(3))
    second = occlusion_mask_boxes(images, boxes, generator=torch.Generator().manual_seed(3))
    assert torch.equal(first, second)
    outcomes = {
        occlusion_mask_boxes(images, boxes, generator=torch.Generator().manual_seed(s)).sum().item() for s in range(8)
    }
    assert len(outcomes) > 1  # the seed matters


def test_small_box_quirk_both_ways() -> None:
    images = _images(batch=1)
    big_a = [2.0, 2.0, 20.0, 30.0]
    tiny = [30.0, 40.0, 33.0, 60.0]          # 3 px wide < 4
    big_b = [22.0, 32.0, 46.0, 62.0]
    boxes = [torch.tensor([big_a, tiny, big_b])]

    quirk = _changed(images, occlusion_mask_boxes(images, boxes, prob=1.0, generator=torch.Generator().manual_seed(0)))
    fixed = _changed(
        images,
        occlusion_mask_boxes(images, boxes, prob=1.0, generator=torch.Generator().manual_seed(0), fix_small_box_quirk=True),
    )
    # official quirk: the tiny box breaks the loop -> big_b is never masked
    assert quirk[0, 2:30, 2:20].any()
    assert not quirk[0, 32:62, 22:46].any()
    # fixed: tiny box skipped, big_b masked; big_a masked identically (same draws before)
    assert fixed[0, 32:62, 22:46].any()
    assert torch.equal(fixed[0, 2:30, 2:20], quirk[0, 2:30, 2:20])


def test_bad_input() -> None:
    images = _images(batch=1)
    with pytest.raises(ValueError, match="box tensors"):
        occlusion_mask_boxes(images, [])
    with pytest.raises(ValueError, match="prob"):
        occlusion_mask_boxes(images, [torch.zeros(0, 4)], prob=1.5)


def _sequential_reference(images, boxes_per_image, prob, patches, grid, generator, fix):
    """The procedure as the module docstring states it, box by box with in-place fills."""
    import math

    masked = images.clone()
    means = images.mean(dim=(2, 3))
    height, width = images.shape[2:]
    for index, boxes in enumerate(boxes_per_image):
        for box in boxes.reshape(-1, 4).tolist():
            left = min(max(math.ceil(box[0]), 0), width)
            top = min(max(math.ceil(box[1]), 0), height)
            right = max(min(math.floor(box[2]), width), left)
            bottom = max(min(math.floor(box[3]), height), top)
            if right - left < 4 or bottom - top < 4:
                if fix:
                    continue
                break
            if torch.rand(1, generator=generator).item() >= prob:
                continue
            cell_h, cell_w = (bottom - top) // grid[0], (right - left) // grid[1]
            cols = torch.randint(grid[1], (patches,), generator=generator).tolist()
            rows = torch.randint(grid[0], (patches,), generator=generator).tolist()
            for row, col in zip(rows, cols):
                y0, x0 = top + row * cell_h, left + col * cell_w
                masked[index, :, y0:y0 + cell_h, x0:x0 + cell_w] = means[index][:, None, None]
    return masked


@pytest.mark.parametrize("fix", [False, True])
def test_batched_painting_equals_box_by_box_masking(fix) -> None:
    generator = torch.Generator().manual_seed(5)
    images = torch.randn(3, 3, 90, 70, generator=generator)
    boxes = []
    for _ in range(3):
        xy = torch.rand(5, 2, generator=generator) * torch.tensor([50.0, 60.0])
        wh = torch.rand(5, 2, generator=generator) * torch.tensor([30.0, 40.0]) + 1.0
        boxes.append(torch.cat([xy, xy + wh], dim=1))
    boxes[1][2, 2:] = boxes[1][2, :2] + 2.5  # a small box: stops (quirk) or is skipped
    args = (0.7, 2, (14, 6))
    out = occlusion_mask_boxes(images, boxes, *args, torch.Generator().manual_seed(9), fix)
    expected = _sequential_reference(images, boxes, *args, torch.Generator().manual_seed(9), fix)
    assert torch.equal(out, expected)
    assert not torch.equal(out, images)
