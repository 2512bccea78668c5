from pathlib import Path

import numpy as np
import pytest
import scipy.io

from personsearch.data import SceneRecord, check_dataset, load_cuhk_protocol, load_split
from personsearch.data import load_train_identities
from personsearch.data.writers import build_cuhk_protocol, write_coco, write_cuhk_sysu, write_prw


def rec(name, boxes, ids, camera=0) -> SceneRecord:
    return SceneRecord(image_path="", image_name=name, width=200, height=120, boxes=boxes,
                       person_ids=ids, camera_id=camera)


PRW_TRAIN = [rec("c1s1_000001.jpg", [[0, 0, 20, 50], [30, 10, 60, 90]], [3, -1], 1),
             rec("c2s1_000002.jpg", [[5, 5, 25, 55]], [3], 2)]
PRW_TEST = [rec("c1s2_000001.jpg", [[0, 0, 20, 50], [30, 10, 60, 90]], [7, -1], 1),
            rec("c3s1_000002.jpg", [[5, 5, 25, 55]], [7], 3),
            rec("c4s1_000003.jpg", [[1, 1, 25, 55]], [8], 4),
            rec("c5s1_000004.jpg", [[2, 1, 25, 55]], [8], 5)]
PRW_QUERIES = [rec("c1s2_000001.jpg", [[0.5, 0, 20, 50.25]], [7], 1),
               rec("c4s1_000003.jpg", [[1, 1, 25, 55]], [8], 4)]


def assert_same(read, written, ids=True) -> None:
    assert [r.image_name for r in read] == [r.image_name for r in written]
    for a, b in zip(read, written):
        np.testing.assert_array_equal(a.boxes, b.boxes)
        if ids:
            np.testing.assert_array_equal(a.person_ids, b.person_ids)


def test_prw_round_trip_and_raw_layout(tmp_path: Path, fakes) -> None:
    write_prw(tmp_path, PRW_TRAIN, PRW_TEST, PRW_QUERIES)
    fakes.save_images(tmp_path / "frames", [r.image_name for r in PRW_TRAIN + PRW_TEST])
    assert_same(load_split("prw", tmp_path, "train"), PRW_TRAIN, ids=False)
    assert [i.tolist() for i in load_train_identities("prw", tmp_path)] == [[3, -1], [3]]
    assert_same(load_split("prw", tmp_path, "gallery"), PRW_TEST)
    queries = load_split("prw", tmp_path, "query")
    np.testing.assert_array_equal(queries[0].boxes, [[0, 0, 20, 50]])  # truncated on reading
    assert [q.camera_id for q in queries] == [1, 4]
    raw = scipy.io.loadmat(str(tmp_path / "annotations" / "c1s1_000001.jpg.mat"))["box_new"]
    np.testing.assert_array_equal(raw, [[3, 0, 0, 20, 50], [-2, 30, 10, 30, 80]])
    names = scipy.io.loadmat(str(tmp_path / "frame_test.mat"))["img_index_test"]
    assert [img[0][0] for img in names] == [r.image_name[:-4] for r in PRW_TEST]  # SeqNet
    lines = (tmp_path / "query_info.txt").read_bytes().split(b"\n")
    assert lines[0] == b"7 0.5 0 19.5 50.25 c1s2_000001\r"
    assert check_dataset("prw", tmp_path).ok
    assert not list(tmp_path.rglob("*.tmp"))


CUHK_TRAIN = [rec("s1.jpg", [[0, 0, 20, 50], [30, 10, 60, 90]], [0, -1]),
              rec("s2.jpg", [[5, 5, 25, 55], [40, 5, 60, 55]], [0, 1])]
CUHK_TEST = [rec("s3.jpg", [[0, 0, 20, 50], [30, 10, 60, 90]], [4, -1]),
             rec("s4.jpg", [[5, 5, 25, 55]], [4]),
             rec("s5.jpg", [[1, 1, 25, 55]], [9]),
             rec("s6.jpg", [[1, 2, 25, 55], [60, 2, 85, 55]], [-1, 9]),
             rec("s7.jpg", [[3, 2, 25, 55]], [-1])]


def test_build_cuhk_protocol_positives_first_no_query_image() -> None:
    protocol = build_cuhk_protocol(CUHK_TEST, [(0, 0), (2, 0)], 3, seed=1)
    first = protocol[0]
    assert first.query_name == "s3.jpg"
    np.testing.assert_array_equal(first.query_box, [0, 0, 20, 50])
    assert first.gallery[0][0] == "s4.jpg"
    np.testing.assert_array_equal(first.gallery[0][1], [5, 5, 20, 50])  # xywh
    assert all(box is None for _, box in first.gallery[1:]) and len(first.gallery) == 3
    assert "s3.jpg" not in [name for name, _ in first.gallery]
    second = protocol[1]
    np.testing.assert_array_equal(second.gallery[0][1], [60, 2, 25, 53])  # s6 box 1
    with pytest.raises(ValueError, match="cannot build a 10-image gallery"):
        build_cuhk_protocol(CUHK_TEST, [(0, 0)], 10)
    assert len(build_cuhk_protocol(CUHK_TEST, [(0, 0)], 10, allow_smaller=True)[0].gallery) == 4
    with pytest.raises(ValueError, match="unlabeled"):
        build_cuhk_protocol(CUHK_TEST, [(0, 1)], 3)


def _protocol_by_scanning(test, queries, gallery_size, seed):
    """The protocol's definition written as a scan of every test image per query (the
    writer indexes the ids instead; both must draw the same galleries)."""
    rng = np.random.default_rng(seed)
    protocol = []
    for image_index, box_index in queries:
        pid = test[image_index].person_ids[box_index]
        positives, negatives = [], []
        for j, record in enumerate(test):
            if j == image_index:
                continue
            hits = np.flatnonzero(np.asarray(record.person_ids) == pid)
            if hits.size:
                box = np.asarray(record.boxes, np.float64)[hits[0]]
                positives.append((record.image_name, [box[0], box[1], box[2] - box[0],
                                                      box[3] - box[1]]))
            else:
                negatives.append((record.image_name, None))
        wanted = min(gallery_size - len(positives), len(negatives))
        chosen = sorted(rng.choice(len(negatives), size=wanted, replace=False).tolist())
        protocol.append(positives + [negatives[k] for k in chosen])
    return protocol


def test_build_cuhk_protocol_draws_what_a_scan_of_every_image_draws() -> None:
    rng = np.random.default_rng(3)
    test = []
    for index in range(40):  # ids 0..14 (repeated inside an image too) and unlabeled boxes
        count = int(rng.integers(1, 5))
        x1 = rng.integers(0, 50, count)
        boxes = np.stack([x1, x1 + 1, x1 + 20, x1 + 60], axis=1)
        test.append(rec(f"g{index}.jpg", boxes.tolist(), rng.integers(-1, 15, count).tolist()))
    queries = [(i, int(np.flatnonzero(np.asarray(r.person_ids) >= 0)[0]))
               for i, r in enumerate(test) if (np.asarray(r.person_ids) >= 0).any()][:12]
    for gallery_size in (15, 25, 60):
        got = build_cuhk_protocol(test, queries, gallery_size, seed=5, allow_smaller=True)
        expected = _protocol_by_scanning(test, queries, gallery_size, seed=5)
        assert len(got) == len(expected)
        for query, gallery in zip(got, expected):
            assert [name for name, _ in query.gallery] == [name for name, _ in gallery]
            assert [None if box is None else np.asarray(box).tolist() for _, box in query.gallery] \
                == [None if box is None else np.asarray(box, np.float64).tolist()
                    for _, box in gallery]


def test_cuhk_round_trip_and_seqnet_indexing(tmp_path: Path, fakes) -> None:
    p50 = build_cuhk_protocol(CUHK_TEST, [(0, 0), (2, 0)], 2, seed=0)
    p100 = build_cuhk_protocol(CUHK_TEST, [(0, 0), (2, 0)], 4, seed=0)
    write_cuhk_sysu(tmp_path, CUHK_TRAIN, CUHK_TEST, {50: p50, 100: p100},
                    subsets={"resolution": p100[1:]})
    fakes.save_images(tmp_path / "Image" / "SSM", [r.image_name for r in CUHK_TRAIN + CUHK_TEST])
    assert_same(load_split("cuhk-sysu", tmp_path, "train"), CUHK_TRAIN, ids=False)
    assert [i.tolist() for i in load_train_identities("cuhk-sysu", tmp_path)] == \
        [[0, -1], [0, 1]]
    gallery = load_split("cuhk-sysu", tmp_path, "gallery")
    assert [r.image_name for r in gallery] == [r.image_name for r in CUHK_TEST]
    # ids come back as TestG50 query indices: person 4 -> 0, person 9 -> 1
    assert [r.person_ids.tolist() for r in gallery] == [[0, -1], [0], [1], [-1, 1], [-1]]
    queries = load_split("cuhk-sysu", tmp_path, "query")
    assert [q.person_ids.tolist() for q in queries] == [[0], [1]]
    for written, read in ((p100, load_cuhk_protocol(tmp_path, 100)),
                          (p100[1:], load_cuhk_protocol(tmp_path, 100, subset="resolution"))):
        for a, b in zip(written, read):
            assert a.query_name == b.query_name
            np.testing.assert_array_equal(a.query_box, b.query_box)
            assert [n for n, _ in a.gallery] == [n for n, _ in b.gallery]
            assert [None if x is None else x.tolist() for _, x in a.gallery] == \
                [None if x is None else x.tolist() for _, x in b.gallery]
    # SeqNet's own access paths (docs/datasets.md §1.2)
    annotation = tmp_path / "annotation"
    protoc = scipy.io.loadmat(str(annotation / "test/train_test/TestG100.mat"))["TestG100"]
    protoc = protoc.squeeze()
    assert str(protoc["Query"][0]["imname"][0, 0][0]) == "s3.jpg"
    assert protoc["Query"][0]["idlocate"][0, 0][0].tolist() == [0, 0, 20, 50]
    gallery_items = protoc["Gallery"][0].squeeze()
    assert gallery_items[1][1].shape == (1, 0) and gallery_items[0][1][0].size == 4
    img = scipy.io.loadmat(str(annotation / "Images.mat"))["Img"].squeeze()
    first_name, _, boxes = img[0]
    assert str(first_name[0]) == "s1.jpg"
    assert np.asarray([b[0] for b in boxes[0]]).reshape(-1, 4).tolist() == \
        [[0, 0, 20, 50], [30, 10, 30, 80]]
    train = scipy.io.loadmat(str(annotation / "test/train_test/Train.mat"))["Train"].squeeze()
    scenes = [(str(n[0]), b.squeeze().tolist()) for n, b, _ in train[0][0, 0][2].squeeze()]
    assert scenes == [("s1.jpg", [0, 0, 20, 50]), ("s2.jpg", [5, 5, 20, 50])]
    pool = scipy.io.loadmat(str(annotation / "pool.mat"))["pool"].squeeze()
    assert [str(a[0]) for a in pool] == [r.image_name for r in CUHK_TEST]
    assert check_dataset("cuhk-sysu", tmp_path).ok


def test_cuhk_writer_refuses_positive_after_negative(tmp_path: Path) -> None:
    protocol = build_cuhk_protocol(CUHK_TEST, [(0, 0)], 2)
    protocol[0].gallery.reverse()
    with pytest.raises(ValueError, match="positives must come first"):
        write_cuhk_sysu(tmp_path, CUHK_TRAIN, CUHK_TEST, {50: protocol})
    with pytest.raises(ValueError, match="gallery size 50"):
        write_cuhk_sysu(tmp_path, CUHK_TRAIN, CUHK_TEST, {100: protocol})


def test_coco_round_trip(tmp_path: Path, fakes) -> None:
    queries = [rec("s5.jpg", [[1, 1, 25, 55]], [9]), rec("s3.jpg", [[0, 0, 20, 50]], [4]),
               rec("s5.jpg", [[1, 1, 25, 55]], [9])]
    write_coco(tmp_path, CUHK_TRAIN, CUHK_TEST, queries)
    fakes.save_images(tmp_path / "images", [r.image_name for r in CUHK_TRAIN + CUHK_TEST])
    assert_same(load_split("coco", tmp_path, "train"), CUHK_TRAIN, ids=False)
    assert [i.tolist() for i in load_train_identities("coco", tmp_path)] == [[0, -1], [0, 1]]
    assert_same(load_split("coco", tmp_path, "gallery"), CUHK_TEST)
    assert_same(load_split("coco", tmp_path, "query"), queries)
    assert check_dataset("coco", tmp_path).ok
