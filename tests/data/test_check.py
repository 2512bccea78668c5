import sys
import types
from pathlib import Path

import numpy as np

from personsearch.cli.main import main
from personsearch.data import check_dataset


def messages(report) -> list[str]:
    return [str(p) for p in report.problems]


def test_clean_prw_counts(prw_root: Path) -> None:
    report = check_dataset("prw", prw_root)
    assert report.ok, messages(report)
    train, gallery, query = (report.counts[s] for s in ("train", "gallery", "query"))
    assert (train.images, train.boxes, train.labeled_boxes, train.identities) == (2, 3, 2, 1)
    assert (gallery.images, gallery.boxes, gallery.labeled_boxes, gallery.identities) == \
        (3, 5, 4, 2)
    assert query.queries == 2


def test_prw_problems_all_reported(prw_root: Path, fakes) -> None:
    frames = prw_root / "frames"
    (frames / "c2s1_000002.jpg").unlink()                       # missing image
    (frames / "c5s1_000005.jpg").write_bytes(b"not an image")   # unreadable image
    fakes.savemat(prw_root / "annotations" / "c1s1_000001.jpg.mat",   # zero-size + outside
                  {"box_new": np.array([[5, 10, 10, 0, 50], [6, 180, 10, 40, 50]], float)})
    (prw_root / "annotations" / "c3s2_000003.jpg.mat").write_bytes(b"garbage")  # unreadable
    fakes.savemat(prw_root / "annotations" / "c4s1_000004.jpg.mat",   # malformed shape
                  {"box_new": np.zeros((2, 3))})
    fakes.savemat(prw_root / "frame_test.mat",                         # duplicate name
                  {"img_index_test": fakes.cell(fakes.PRW_TEST + ["c3s2_000003"])})
    (prw_root / "query_info.txt").write_bytes(b"9 10 10 40 90 c3s2_000003\r\n")  # 9 nowhere
    report = check_dataset("prw", prw_root)
    text = "\n".join(messages(report))
    expected = [
        "c2s1_000002.jpg: image file is missing",
        "c5s1_000005.jpg: unreadable image",
        "c1s1_000001.jpg: train box 0: zero or negative size",
        "c1s1_000001.jpg: train box 1: [180.0, 10.0, 220.0, 60.0] outside the 200x120 image",
        "c3s2_000003.jpg.mat: unreadable MAT file",
        "c4s1_000004.jpg.mat: expected an N x 5 numeric array",
        "frame_test.mat: entry 3: duplicate image name 'c3s2_000003.jpg' (first at entry 0)",
        "query_info.txt: query 0: person 9 (c3s2_000003.jpg) never appears in the gallery",
    ]
    for fragment in expected:
        assert fragment in text, (fragment, text)
    assert not report.ok


def test_cuhk_problems(cuhk_root: Path) -> None:
    report = check_dataset("cuhk-sysu", cuhk_root)
    text = "\n".join(messages(report))
    assert "Images.mat: entry 1 (s2.jpg) box 1: zero or negative size [5.0, 5.0, 0.0, 40.0] " \
           "(dropped)" in text
    assert "TestG50.mat: entry 0: gallery item 2 is a positive after a negative" in text
    assert report.counts["train"].boxes == 4
    assert report.counts["gallery"].images == 4
    assert report.counts["query"].queries == 2


def test_cuhk_missing_files_reported_not_raised(cuhk_root: Path) -> None:
    (cuhk_root / "annotation" / "test" / "train_test" / "Train.mat").unlink()
    (cuhk_root / "annotation" / "test" / "train_test" / "TestG100.mat").unlink()
    (cuhk_root / "Image" / "SSM" / "s6.jpg").unlink()
    text = "\n".join(messages(check_dataset("cuhk-sysu", cuhk_root)))
    assert "Train.mat: file is missing" in text
    assert "TestG100.mat: file is missing" in text
    assert "s6.jpg: image file is missing" in text


def test_coco_unreadable_file_reported(tmp_path: Path) -> None:
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "train.json").write_text("[]")
    text = "\n".join(messages(check_dataset("coco", tmp_path)))
    assert "train.json: expected an object with lists 'images' and 'annotations'" in text
    assert "gallery.json: file is missing" in text


def test_cli_check_exit_codes(prw_root: Path, capsys) -> None:
    assert main(["data", "check", str(prw_root), "--format", "prw"]) == 0
    out = capsys.readouterr().out
    assert "gallery" in out and "0 problem(s)" in out
    (prw_root / "frames" / "c2s1_000002.jpg").unlink()
    assert main(["data", "check", str(prw_root), "--format", "prw"]) == 1
    assert "c2s1_000002.jpg: image file is missing" in capsys.readouterr().out


def test_cli_synth_wires_arguments(tmp_path: Path, monkeypatch, capsys) -> None:
    calls = []

    def generate_dataset(out_dir, **kwargs):
        calls.append((out_dir, kwargs))
        return {"frames": 3, "boxes": 7}

    fake = types.ModuleType("personsearch.data.synth")
    fake.generate_dataset = generate_dataset
    monkeypatch.setitem(sys.modules, "personsearch.data.synth", fake)
    code = main(["data", "synth", str(tmp_path), "--format", "cuhk-sysu", "--frames", "3",
                 "--seed", "4", "--width", "320", "--height", "240", "--difficulty", "hard"])
    assert code == 0
    assert calls == [(str(tmp_path), {"fmt": "cuhk-sysu", "frames": 3, "seed": 4,
                                      "difficulty": "hard", "progress": True, "workers": None,
                                      "resume": False,
                                      "width": 320,
                                      "height": 240})]
    assert "boxes: 7" in capsys.readouterr().out


def test_cuhk_protocol_query_order_must_match_testg50(cuhk_root: Path, fakes) -> None:
    swapped = [fakes.CUHK_TESTG100[1], fakes.CUHK_TESTG100[0]]
    fakes.savemat(cuhk_root / "annotation/test/train_test/TestG100.mat",
                  {"TestG100": fakes.protocol_struct(swapped)})
    text = "\n".join(messages(check_dataset("cuhk-sysu", cuhk_root)))
    assert "TestG100.mat: entry 0: query differs from TestG50 entry 0" in text
