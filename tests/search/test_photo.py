"""search/photo.py: the box of a photo (whole image or largest detection), averaging several
photos, and ``personsearch search --photo``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from personsearch.errors import PersonSearchError
from personsearch.search.build import build_index
from personsearch.search.photo import Photo, mean_embedding, photo_box, search_with_photos
from personsearch.search.store import GalleryStore
from search_fixtures import COLOURS, ColourEmbedder, colour_embedding, scene_array


def test_photo_box_rules():
    embedder = ColourEmbedder()
    alone = scene_array([("red", (2, 2, 94, 62))])  # the person fills 92 x 60 of 96 x 64: 90 %
    chosen = photo_box(embedder, alone, 0.5)
    assert chosen.box.tolist() == [0, 0, 96, 64] and chosen.source.startswith("whole image (the largest detection covers 90%")
    with_background = scene_array([("red", (10, 5, 25, 50)), ("blue", (40, 4, 70, 60))])
    chosen = photo_box(embedder, with_background, 0.5)  # blue: 30 x 56 = 27 % of the image, red 11 %
    assert chosen.box.tolist() == [40, 4, 70, 60] and chosen.source == "largest detection (score 0.90, 27% of the image)"
    assert photo_box(embedder, with_background, 0.5, "whole").box.tolist() == [0, 0, 96, 64]
    assert photo_box(embedder, alone, 0.5, "largest").box.tolist() == [2, 2, 94, 62]
    speck = scene_array([("red", (40, 20, 44, 28))])  # 4 x 8 = 0.5 % of the photo: not the person
    assert photo_box(embedder, speck, 0.5).source == "whole image (the largest detection covers only 0.5% of it: not the person)"
    assert photo_box(embedder, speck, 0.5, "largest").box.tolist() == [40, 20, 44, 28]
    empty = scene_array([])
    assert photo_box(embedder, empty, 0.5).source == "whole image (no person detected with score >= 0.5)"
    with pytest.raises(PersonSearchError, match="snap.jpg: no person detected"):
        photo_box(embedder, empty, 0.5, "largest", where="snap.jpg")
    low = ColourEmbedder(scores_by_colour={"blue": 0.3})  # below the index's min_score: not a detection
    assert photo_box(low, with_background, 0.5).box.tolist() == [10, 5, 25, 50]
    with pytest.raises(PersonSearchError, match="box mode"):
        photo_box(embedder, alone, 0.5, "middle")


def test_mean_embedding_normalises_each_then_the_mean():
    # [3, 4] -> [0.6, 0.8]; [0, 2] -> [0, 1]; mean [0.3, 0.9] -> / sqrt(0.9)
    mean = mean_embedding(np.asarray([[3.0, 4.0], [0.0, 2.0]]))
    np.testing.assert_allclose(mean, np.asarray([0.3, 0.9]) / np.sqrt(0.9), rtol=1e-6)
    assert mean.dtype == np.float32
    np.testing.assert_allclose(mean_embedding(np.asarray([[0.0, 5.0]])), [0.0, 1.0])
    with pytest.raises(PersonSearchError, match="cancel out"):
        mean_embedding(np.asarray([[1.0, 0.0], [-2.0, 0.0]]))
    with pytest.raises(PersonSearchError, match="zero embedding"):
        mean_embedding(np.asarray([[0.0, 0.0]]))


def test_search_with_photos_averages(tmp_path, scene_dir):
    embedder = ColourEmbedder()
    build_index(tmp_path / "idx", embedder, scene_dir, progress=False)
    red = Photo(scene_array([("red", (0, 0, 96, 64))]), "red.png")
    magenta = Photo(scene_array([("magenta", (0, 0, 96, 64))]), "magenta.png")
    with GalleryStore.open(tmp_path / "idx") as store:
        one = search_with_photos(store, embedder, [red], top_k=2, weighting="cosine")
        assert [hit.image for hit in one.hits] == ["a.png", "b.png"] and one.hits[0].cosine == pytest.approx(1.0)
        assert one.query["photos"][0]["box_source"].startswith("whole image")
        both = search_with_photos(store, embedder, [red, magenta], top_k=1, weighting="cosine")
        expected = mean_embedding(np.stack([colour_embedding(COLOURS["red"]), colour_embedding(COLOURS["magenta"])]))
        assert both.hits[0].cosine == pytest.approx(float(expected @ colour_embedding(COLOURS["red"])), abs=1e-5)
        assert both.query["combined"] == "mean of 2 unit embeddings, renormalised"
        with pytest.raises(PersonSearchError, match="at least one photo"):
            search_with_photos(store, embedder, [])


def test_cli_photo(tmp_path, scene_dir, embedder, monkeypatch, capsys):
    """``personsearch search INDEX --photo P --photo Q`` with the colour model standing in for
    the checkpoint (load_embedder patched), table and JSON output."""
    import personsearch.search.build as build_module
    from personsearch.cli.main import main

    build_index(tmp_path / "idx", embedder, scene_dir, progress=False, checkpoint=str(tmp_path / "model.pt"))
    (tmp_path / "model.pt").write_bytes(b"stands in for a checkpoint")
    monkeypatch.setattr(build_module, "load_embedder", lambda *args, **kwargs: ColourEmbedder())
    Image.fromarray(scene_array([("green", (30, 10, 45, 55))])).save(tmp_path / "green.png")
    Image.fromarray(scene_array([("green", (0, 0, 96, 64))])).save(tmp_path / "green_alone.png")
    assert main(["search", str(tmp_path / "idx"), "--photo", str(tmp_path / "green.png"), "--top", "1"]) == 0
    out = capsys.readouterr().out
    assert "green.png: box 30,10,45,55 = largest detection (score 0.90, 11% of the image)" in out and "a.png" in out
    assert main(["search", str(tmp_path / "idx"), "--photo", str(tmp_path / "green.png"), "--photo",
                 str(tmp_path / "green_alone.png"), "--json", "--top", "1", "--out", str(tmp_path / "res")]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [p["box_source"].split(" (")[0] for p in data["query"]["photos"]] == ["largest detection", "whole image"]
    assert data["hits"][0]["image"] == "a.png" and data["hits"][0]["cosine"] == pytest.approx(1.0, abs=1e-5)
    assert (tmp_path / "res" / "results.png").is_file()
    assert main(["search", str(tmp_path / "idx"), "--photo", str(tmp_path / "missing.png")]) != 0
    assert "missing.png" in capsys.readouterr().err
