"""generate_masks: valid label maps for every training image, incremental and resumable runs,
clear errors, and ``check_dataset(..., masks=True)``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from personsearch.data import check_dataset, load_person_masks, load_split
from personsearch.data.masks import mask_path
from personsearch.data.masks_generate import generate_masks
from personsearch.errors import ConfigError, DatasetError, PersonSearchError


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    from personsearch.data.synth import generate_dataset

    root = tmp_path_factory.mktemp("synth_masks")
    # the generator's default frame size: at 320x180 the persons are too small for GrabCut
    # (benchmarks/mask_quality.py measures IoU by person height)
    generate_dataset(root, fmt="prw", frames=8, seed=1, width=960, height=540, workers=1)
    return root


def view(source: Path, target: Path) -> Path:
    """The dataset without its masks (links to its files)."""
    target.mkdir()
    for entry in source.iterdir():
        if entry.name not in ("masks", "diagnostics"):
            (target / entry.name).symlink_to(entry)
    return target


def mean_iou(true_root: Path, root: Path, records) -> float:
    ious = []
    for record in records:
        truth, test = load_person_masks(true_root, record), load_person_masks(root, record)
        for k in range(record.num_boxes):
            a, b = truth == k + 1, test == k + 1
            ious.append((a & b).sum() / max(1, (a | b).sum()))
    return float(np.mean(ious))


def test_every_train_image_gets_a_valid_map_and_grabcut_beats_box(synthetic, tmp_path):
    records = load_split("prw", synthetic, "train")
    grabcut_root = view(synthetic, tmp_path / "grabcut")
    summary = generate_masks("prw", grabcut_root, "grabcut", workers=2, progress=False)
    assert (summary.images, summary.written, summary.skipped) == (len(records), len(records), 0)
    assert summary.stats.persons == sum(r.num_boxes for r in records)
    box_root = view(synthetic, tmp_path / "box")
    generate_masks("prw", box_root, "box", progress=False)
    for record in records:
        labels = load_person_masks(grabcut_root, record)  # validates size and labels
        assert labels is not None and labels.max() <= record.num_boxes
    assert mean_iou(synthetic, grabcut_root, records) > mean_iou(synthetic, box_root, records) + 0.05
    # same masks from one process as from two (each image is independent and seeded)
    one = view(synthetic, tmp_path / "one_worker")
    generate_masks("prw", one, "grabcut", workers=1, progress=False)
    for record in records:
        np.testing.assert_array_equal(load_person_masks(one, record),
                                      load_person_masks(grabcut_root, record))
    assert check_dataset("prw", grabcut_root, masks=True).ok


class Interrupt(Exception):
    pass


def test_a_killed_run_resumes_with_the_images_left(synthetic, tmp_path):
    root = view(synthetic, tmp_path / "resume")
    records = load_split("prw", root, "train")
    written: list[str] = []

    def stop_after_two(record):
        written.append(record.image_name)
        if len(written) == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        generate_masks("prw", root, "grabcut", progress=False, on_written=stop_after_two)
    files = sorted(p.name for p in (root / "masks").iterdir())
    assert files == sorted(Path(n).stem + ".png" for n in written)  # whole files, no temp files
    first_times = {n: mask_path(root, r).stat().st_mtime_ns for r in records
                   for n in [r.image_name] if n in written}
    rest: list[str] = []
    summary = generate_masks("prw", root, "grabcut", progress=False,
                             on_written=lambda record: rest.append(record.image_name))
    assert summary.skipped == 2 and summary.written == len(records) - 2
    assert sorted(rest) == sorted(r.image_name for r in records if r.image_name not in written)
    for record in records:
        if record.image_name in written:
            assert mask_path(root, record).stat().st_mtime_ns == first_times[record.image_name]
    # nothing left to do, unless asked to recompute everything
    again = generate_masks("prw", root, "grabcut", progress=False)
    assert (again.written, again.skipped) == (0, len(records))
    box = generate_masks("prw", root, "box", progress=False, overwrite=True)
    assert (box.written, box.skipped) == (len(records), 0)
    record = records[0]
    x1, y1, x2, y2 = (int(v) for v in record.boxes[0])
    assert (load_person_masks(root, record)[y1 + 1:y2 - 1, x1 + 1:x2 - 1] > 0).all()


def test_invalid_mask_files_are_recomputed(synthetic, tmp_path):
    root = view(synthetic, tmp_path / "invalid")
    records = load_split("prw", root, "train")
    generate_masks("prw", root, "box", progress=False)
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(mask_path(root, records[0]))
    mask_path(root, records[1]).write_bytes(b"broken")
    report = check_dataset("prw", root, masks=True)
    assert not report.ok and report.masks.invalid == 2 and report.masks.valid == len(records) - 2
    summary = generate_masks("prw", root, "box", progress=False)
    assert (summary.written, summary.replaced_invalid) == (2, 2)
    assert check_dataset("prw", root, masks=True).ok


def test_check_reports_images_without_masks(synthetic, tmp_path):
    root = view(synthetic, tmp_path / "none")
    records = load_split("prw", root, "train")
    plain = check_dataset("prw", root)
    assert plain.ok and plain.masks is None and "masks:" not in plain.format()
    report = check_dataset("prw", root, masks=True)
    assert report.masks.missing == len(records) and report.masks.valid == 0
    text = report.format()
    assert f"masks: 0 of {len(records)} train images have a valid mask ({len(records)} missing, " \
           f"0 invalid)" in text
    assert f"error: {root / 'masks'}: {len(records)} train images have no mask (" in text
    assert "personsearch data masks writes them" in text


def test_bad_inputs_are_clear_errors(prw_root, tmp_path):
    with pytest.raises(ConfigError, match="--method schp needs --weights FILE"):
        generate_masks("prw", prw_root, "schp", progress=False)
    with pytest.raises(ConfigError, match="--weights is for --method schp only"):
        generate_masks("prw", prw_root, "box", weights="x.pth", progress=False)
    with pytest.raises(ConfigError, match="mask method must be one of"):
        generate_masks("prw", prw_root, "sam", progress=False)
    # a JPEG cut in half: its header (read by the dataset reader) is fine, its pixels are not
    image = prw_root / "frames" / "c2s1_000002.jpg"
    noise = np.random.default_rng(0).integers(0, 255, (120, 200, 3), dtype=np.uint8)
    Image.fromarray(noise).save(image, quality=95)
    image.write_bytes(image.read_bytes()[: image.stat().st_size // 2])
    with pytest.raises(DatasetError, match="c2s1_000002.jpg: cannot read image"):
        generate_masks("prw", prw_root, "box", progress=False)
    with pytest.raises(PersonSearchError, match="c2s1_000002.jpg: cannot read image"):
        generate_masks("prw", prw_root, "box", workers=2, progress=False)


def test_box_outside_the_image_is_named(prw_root):
    # c2s1_000002 (200x120): its one box moved entirely below the image
    scipy.io.savemat(str(prw_root / "annotations" / "c2s1_000002.jpg.mat"),
                     {"anno_file": np.array([[5, 100, 130, 30, 40]], np.float64)})
    with pytest.raises(DatasetError, match=r"c2s1_000002.jpg: box 0 \[100.0, 130.0, 130.0, "
                                           r"170.0\] has no pixel inside the 200x120 image"):
        generate_masks("prw", prw_root, "box", progress=False)
