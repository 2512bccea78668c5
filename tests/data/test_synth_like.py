"""``personsearch data synth --like prw-full|cuhk-sysu-full``: the presets' figures, their
scaling with --frames, and tiny scaled-down datasets on disk (splits, identities, queries,
image sizes, the real format: ``data check`` passes and ``load_split`` reads it)."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest
from PIL import Image

from personsearch.cli.main import main
from personsearch.data import load_split, load_train_identities
from personsearch.data.check import check_dataset
from personsearch.data.cuhk_sysu import load_cuhk_protocol
from personsearch.data.synth.like import CUHK_IMAGE_SIZES, like_arguments
from personsearch.errors import ConfigError


def test_prw_full_preset_has_prw_figures():
    args = like_arguments("prw-full")
    assert (args["fmt"], args["frames"], args["width"], args["height"]) == ("prw", 11816, 1920,
                                                                            1080)
    assert (args["num_train_ids"], args["num_test_ids"]) == (483, 544)
    assert args["train_fraction"] == pytest.approx(5704 / 11816)
    assert args["labeled_fraction_train"] == pytest.approx(14907 / 18048)
    assert args["labeled_fraction_test"] == pytest.approx(19127 / 25062)
    assert (args["persons_per_frame_train"], args["persons_per_frame_test"]) == (3.16, 4.1)
    assert args["query_id_fraction"] == pytest.approx(450 / 544)
    assert "image_sizes" not in args


def test_cuhk_full_preset_has_cuhk_figures():
    args = like_arguments("cuhk-sysu-full")
    assert (args["fmt"], args["frames"]) == ("cuhk-sysu", 18184)
    assert (args["num_train_ids"], args["num_test_ids"]) == (5532, 2900)
    assert args["train_fraction"] == pytest.approx(11206 / 18184)
    # 55,272 train boxes over 11,206 images; 96,143 - 55,272 = 40,871 test boxes over 6,978.
    assert args["persons_per_frame_train"] == pytest.approx(4.9323, abs=1e-4)
    assert args["persons_per_frame_test"] == pytest.approx(5.8571, abs=1e-4)
    # 2.8 labeled boxes per identity: 5532 * 2.8 / 55272 and 2900 * 2.8 / 40871.
    assert args["labeled_fraction_train"] == pytest.approx(0.28024, abs=1e-5)
    assert args["labeled_fraction_test"] == pytest.approx(0.19867, abs=1e-5)
    weights = [w for _, _, w in args["image_sizes"]]
    assert sum(weights) == pytest.approx(1.0)
    street = sum(w for (width, height, w) in args["image_sizes"][:3])
    assert street == pytest.approx(12490 / 18184)  # street photos vs movie frames


def test_frames_scale_identities_and_image_scale_scales_sizes():
    args = like_arguments("prw-full", frames=2954)  # a quarter of 11,816
    assert (args["frames"], args["num_train_ids"], args["num_test_ids"]) == (2954, 121, 136)
    assert args["train_fraction"] == pytest.approx(5704 / 11816)
    args = like_arguments("cuhk-sysu-full", frames=40, image_scale=0.5)
    assert (args["num_train_ids"], args["num_test_ids"]) == (12, 6)  # 12.17, 6.38
    assert [(w, h) for w, h, _ in args["image_sizes"]] == [
        (w // 2, h // 2) for w, h, _ in CUHK_IMAGE_SIZES]
    assert (args["width"], args["height"]) == (400, 300)
    with pytest.raises(ConfigError, match="unknown --like preset"):
        like_arguments("market-full")
    with pytest.raises(ConfigError, match="frames must be >= 4"):
        like_arguments("prw-full", frames=2)


def _synth(out: Path, *flags: str) -> None:
    assert main(["data", "synth", str(out), *flags, "--workers", "2", "--seed", "3"]) == 0


@pytest.fixture(scope="module")
def prw_like(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("like_prw") / "PRW"
    _synth(root, "--like", "prw-full", "--frames", "40", "--image-scale", "0.2")
    return root


@pytest.fixture(scope="module")
def cuhk_like(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("like_cuhk") / "CUHK-SYSU"
    _synth(root, "--like", "cuhk-sysu-full", "--frames", "60", "--image-scale", "0.2")
    return root


def test_prw_like_on_disk(prw_like):
    report = check_dataset("prw", prw_like)
    assert report.ok, report.format()
    train = load_split("prw", prw_like, "train")
    gallery = load_split("prw", prw_like, "gallery")
    queries = load_split("prw", prw_like, "query")
    # 40 * 5704 / 11816 = 19.3 train frames; every frame 1920x1080 * 0.2.
    assert (len(train), len(gallery)) == (19, 21)
    assert {(r.width, r.height) for r in train + gallery} == {(384, 216)}
    with Image.open(gallery[0].image_path) as image:
        assert image.size == (384, 216)
    train_ids = {int(i) for ids in load_train_identities("prw", prw_like) for i in ids if i >= 0}
    gallery_ids = {int(i) for r in gallery for i in r.person_ids if 0 <= i < 5555}
    # 483 * 40 / 11816 = 1.6 and 544 * 40 / 11816 = 1.8 -> the minimum of 3 identities each.
    assert len(train_ids) == 3 and len(gallery_ids) == 3
    query_ids = {int(r.person_ids[0]) for r in queries}
    assert queries and query_ids <= gallery_ids
    # One query per camera each query identity appears in.
    assert len(queries) >= len(query_ids)


def test_cuhk_like_on_disk(cuhk_like):
    report = check_dataset("cuhk-sysu", cuhk_like)
    assert report.ok, report.format()
    train = load_split("cuhk-sysu", cuhk_like, "train")
    gallery = load_split("cuhk-sysu", cuhk_like, "gallery")
    queries = load_split("cuhk-sysu", cuhk_like, "query")
    # 60 * 11206 / 18184 = 37.0 train images, 23 pool images.
    assert (len(train), len(gallery)) == (37, 23)
    # 5532 * 60 / 18184 = 18.3 train identities, 2900 * 60 / 18184 = 9.6 test identities.
    train_ids = {int(i) for ids in load_train_identities("cuhk-sysu", cuhk_like) for i in ids
                 if i >= 0}
    assert len(train_ids) == 18
    # One query per test identity (every one appears in two pool images here).
    assert len(queries) == 10
    protocol = load_cuhk_protocol(cuhk_like, 50)
    assert len(protocol) == len(queries)
    allowed = {(round(w * 0.2), round(h * 0.2)) for w, h, _ in CUHK_IMAGE_SIZES}
    sizes = collections.Counter((r.width, r.height) for r in train + gallery)
    assert set(sizes) <= allowed and len(sizes) >= 3  # sizes vary, from the table only
    for record in (train + gallery)[:10]:
        with Image.open(record.image_path) as image:
            assert image.size == (record.width, record.height)
        assert (record.boxes[:, 2] <= record.width).all()
        assert (record.boxes[:, 3] <= record.height).all()


def test_explicit_flags_win_over_the_preset(tmp_path, capsys):
    out = tmp_path / "fixed"
    _synth(out, "--like", "cuhk-sysu-full", "--frames", "8", "--width", "160", "--height",
           "120", "--gallery-sizes", "50")
    sizes = {Image.open(p).size for p in (out / "Image" / "SSM").glob("*.jpg")}
    assert sizes == {(160, 120)}
    assert not (out / "annotation" / "test" / "train_test" / "TestG100.mat").exists()
    with pytest.raises(SystemExit, match="writes the cuhk-sysu format, not prw"):
        main(["data", "synth", str(tmp_path / "x"), "--like", "cuhk-sysu-full",
              "--format", "prw"])
    # A bad gallery-size list is a one-line error (exit 2), no dataset written.
    assert main(["data", "synth", str(tmp_path / "z"), "--like", "cuhk-sysu-full", "--frames",
                 "8", "--gallery-sizes", "100,500"]) == 2
    assert "cuhk_gallery_sizes must include 50" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="give --format and --frames, or --like"):
        main(["data", "synth", str(tmp_path / "y"), "--format", "prw"])


def test_bad_image_sizes_and_gallery_sizes_raise_config_errors():
    from personsearch.data.synth import make_settings

    with pytest.raises(ConfigError, match="image_sizes must be"):
        make_settings("cuhk-sysu", 10, image_sizes=[(640, 480)])
    with pytest.raises(ConfigError, match="image_sizes need sizes >= 64x64"):
        make_settings("cuhk-sysu", 10, image_sizes=[(640, 48, 1.0)])
    with pytest.raises(ConfigError, match="cuhk_gallery_sizes must include 50"):
        make_settings("cuhk-sysu", 10, cuhk_gallery_sizes=(50, 75))
    settings = make_settings("cuhk-sysu", 10, cuhk_gallery_sizes=[100, 50, 50])
    assert settings.cuhk_gallery_sizes == (50, 100)
