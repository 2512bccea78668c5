"""Synthetic scene generator: determinism, statistics, masks, splits and protocols, and that
the project's readers load what it writes."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from personsearch.data import load_split, load_train_identities
from personsearch.data.cuhk_sysu import load_cuhk_protocol
from personsearch.data.masks import load_person_masks
from personsearch.data.synth import generate_dataset
from personsearch.data.synth.identities import sample_appearance
from personsearch.data.synth.person import Pose, render_person
from personsearch.errors import ConfigError

SMALL = dict(width=480, height=270)


@pytest.fixture(scope="module")
def prw_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth_prw") / "PRW"
    generate_dataset(root, fmt="prw", frames=60, seed=1, workers=2, **SMALL)
    return root


@pytest.fixture(scope="module")
def cuhk_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth_cuhk") / "CUHK-SYSU"
    generate_dataset(root, fmt="cuhk-sysu", frames=40, seed=2, workers=2, **SMALL)
    return root


def _diagnostics(root: Path, split: str) -> dict:
    return json.loads((root / "diagnostics" / f"{split}_identities.json").read_text())


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_same_seed_gives_identical_bytes_for_any_worker_count(tmp_path):
    first = generate_dataset(tmp_path / "a", frames=12, seed=7, workers=1, **SMALL)
    second = generate_dataset(tmp_path / "b", frames=12, seed=7, workers=2, **SMALL)
    files_a, files_b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert sorted(files_a) == sorted(files_b)
    assert any(name.endswith(".mat") for name in files_a)
    for name in files_a:
        assert files_a[name] == files_b[name], name
    for counts in (first, second):
        for key in ("seconds", "seconds_images", "seconds_annotations"):
            counts.pop(key)
    assert first == second


def test_different_seed_gives_different_data(tmp_path):
    generate_dataset(tmp_path / "a", frames=12, seed=7, workers=1, **SMALL)
    generate_dataset(tmp_path / "b", frames=12, seed=8, workers=1, **SMALL)
    files_a, files_b = _files(tmp_path / "a"), _files(tmp_path / "b")
    jpegs_a = [files_a[n] for n in files_a if n.endswith(".jpg")]
    jpegs_b = [files_b[n] for n in files_b if n.endswith(".jpg")]
    assert len(jpegs_a) == len(jpegs_b) == 12
    assert not set(jpegs_a) & set(jpegs_b)  # no image is the same
    assert files_a["diagnostics/train_identities.json"] != \
        files_b["diagnostics/train_identities.json"]


def test_readers_load_every_prw_split(prw_root):
    train = load_split("prw", prw_root, "train")
    gallery = load_split("prw", prw_root, "gallery")
    queries = load_split("prw", prw_root, "query")
    assert len(train) + len(gallery) == 60
    assert abs(len(train) / 60 - 5704 / 11816) < 0.1
    assert all((r.person_ids == -1).all() for r in train)  # weakly supervised train split
    assert all(r.width == 480 and r.height == 270 and 1 <= r.camera_id <= 6 for r in gallery)
    assert queries and all(q.num_boxes == 1 and q.person_ids[0] >= 0 for q in queries)
    # Diagnostics: one entry per box, in the readers' box order, labeled ids agree.
    diagnostics = _diagnostics(prw_root, "train")
    identities = load_train_identities("prw", prw_root)
    for record, ids in zip(train, identities):
        entry = diagnostics[record.image_name]
        assert len(entry["true_ids"]) == record.num_boxes == len(entry["heights"])
        np.testing.assert_array_equal(record.boxes[:, 3] - record.boxes[:, 1], entry["heights"])
        labeled = np.array(entry["labeled"])
        assert (ids[~labeled] == -1).all() and (ids[labeled] >= 0).all()


def test_statistics_follow_prw(prw_root):
    frames = {**_diagnostics(prw_root, "train"), **_diagnostics(prw_root, "test")}
    per_frame = np.array([len(e["true_ids"]) for e in frames.values()])
    assert 2.5 <= per_frame.mean() <= 5.5 and per_frame.min() >= 1
    heights = np.concatenate([e["heights"] for e in frames.values()])
    assert heights.min() >= round(54 * 270 / 1080)
    assert 40 * 270 / 1080 < np.median(heights) < 260 * 270 / 1080  # PRW median 157 of 1080
    by_id: dict[int, list[int]] = {}
    for entry in frames.values():
        for pid, height, labeled in zip(entry["true_ids"], entry["heights"], entry["labeled"]):
            if labeled:
                by_id.setdefault(pid, []).append(height)
    spreads = [max(h) / min(h) for h in by_id.values() if len(h) >= 5]
    assert max(spreads) >= 4.0  # the same person at very different sizes
    gallery = load_split("prw", prw_root, "gallery") + load_split("prw", prw_root, "train")
    boxes = np.concatenate([r.boxes for r in gallery])
    aspect = (boxes[:, 2] - boxes[:, 0]) / (boxes[:, 3] - boxes[:, 1])
    assert 0.3 <= np.median(aspect) <= 0.45
    assert 0.22 <= np.percentile(aspect, 5) and np.percentile(aspect, 95) <= 0.7
    unlabeled = sum(not flag for e in frames.values() for flag in e["labeled"])
    assert 0 < unlabeled < 0.5 * len(heights)
    cameras = {e["camera"] for e in frames.values()}
    assert cameras == set(range(1, 7))


def test_masks_lie_inside_their_boxes_and_are_not_empty(prw_root):
    records = load_split("prw", prw_root, "train") + load_split("prw", prw_root, "gallery")
    for record in records:
        labels = load_person_masks(prw_root, record)
        assert labels is not None and labels.shape == (270, 480)
        assert labels.max() <= record.num_boxes
        for k, (x1, y1, x2, y2) in enumerate(record.boxes.astype(int)):
            ys, xs = np.nonzero(labels == k + 1)
            assert ys.size > 0, (record.image_name, k)
            assert xs.min() >= x1 and xs.max() < x2 and ys.min() >= y1 and ys.max() < y2


def test_train_and_test_identities_are_disjoint(prw_root):
    train, test = _diagnostics(prw_root, "train"), _diagnostics(prw_root, "test")

    def labeled_ids(frames):
        return {pid for e in frames.values() for pid, flag in zip(e["true_ids"], e["labeled"])
                if flag}

    assert labeled_ids(train) and labeled_ids(test)
    assert not labeled_ids(train) & labeled_ids(test)
    one_offs = [pid for frames in (train, test) for e in frames.values()
                for pid, flag in zip(e["true_ids"], e["labeled"]) if not flag]
    assert len(one_offs) == len(set(one_offs))  # each unlabeled person appears once
    assert not set(one_offs) & (labeled_ids(train) | labeled_ids(test))


def test_every_prw_query_person_appears_in_another_gallery_frame(prw_root):
    gallery = load_split("prw", prw_root, "gallery")
    queries = load_split("prw", prw_root, "query")
    by_name = {r.image_name: r for r in gallery}
    seen_pairs = set()
    for query in queries:
        pid = int(query.person_ids[0])
        assert query.image_name in by_name  # the query frame is a test frame
        others = [r for r in gallery if r.image_name != query.image_name and pid in r.person_ids]
        assert others, pid
        seen_pairs.add((pid, query.camera_id))
    assert len(seen_pairs) == len(queries)  # one query per (identity, camera)


def test_cuhk_sysu_protocol(cuhk_root):
    train = load_split("cuhk-sysu", cuhk_root, "train")
    gallery = load_split("cuhk-sysu", cuhk_root, "gallery")
    queries = load_split("cuhk-sysu", cuhk_root, "query")
    assert len(train) + len(gallery) == 40 and queries
    assert all(r.image_name.startswith("s") and r.image_name.endswith(".jpg")
               for r in train + gallery)
    pool = {r.image_name for r in gallery}
    for size in (50, 100):
        protocol = load_cuhk_protocol(cuhk_root, size)
        assert len(protocol) == len(queries)
        for entry in protocol:
            names = [name for name, _ in entry.gallery]
            flags = [box is not None for _, box in entry.gallery]
            assert entry.query_name not in names
            assert flags[0] and flags == sorted(flags, reverse=True)  # positives first
            assert len(names) == min(size, len(pool) - 1)  # capped by the pool
    assert not (cuhk_root / "annotation/test/train_test/TestG500.mat").exists()  # pool < 500
    masks = [load_person_masks(cuhk_root, r) for r in gallery]
    assert all(m is not None and m.max() == r.num_boxes for m, r in zip(masks, gallery))


def test_small_persons_lose_their_pattern():
    rng = np.random.default_rng(0)
    look = replace(sample_appearance(rng, 8, 1.0, 0.0), top_pattern="hstripes",
                   top_colour=(20.0, 20.0, 20.0), top_colour2=(230.0, 230.0, 230.0),
                   top_period=0.04, top_duty=0.5, long_sleeves=True)

    def torso_contrast(height: int) -> float:
        rgb, alpha = render_person(look, Pose("back", 0.36, 0.8), int(height * 0.36), height,
                                   np.random.default_rng(1))
        grey = rgb.mean(axis=2)
        rows = slice(int(0.25 * height), int(0.4 * height))
        cols = slice(int(0.4 * grey.shape[1]), int(0.6 * grey.shape[1]) + 1)
        return float(grey[rows, cols].std())

    assert torso_contrast(300) > 60  # stripes clearly visible on a large person
    assert torso_contrast(30) < 0.5 * torso_contrast(300)  # averaged away when small


def test_bad_arguments_raise_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown setting"):
        generate_dataset(tmp_path / "x", frames=8, no_such_setting=1)
    with pytest.raises(ConfigError, match="occlusion_rate"):
        generate_dataset(tmp_path / "x", frames=8, occlusion_rate=2.0)
    with pytest.raises(ConfigError, match="format"):
        generate_dataset(tmp_path / "x", fmt="market", frames=8)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="empty folder"):
        generate_dataset(tmp_path / "busy", frames=8)
