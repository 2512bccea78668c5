"""``personsearch index build`` over video files (--every / --keyframes), ``index info`` and
``search`` output with video names and time codes, through the CLI (the colour model stands in
for the checkpoint: load_embedder patched)."""

from __future__ import annotations

import json

import pytest

import personsearch.search.build as build_module
from personsearch.cli.main import main
from search_fixtures import ColourEmbedder, draw_scene, walking_frames, write_video


@pytest.fixture
def folder(tmp_path, monkeypatch):
    root = tmp_path / "media"
    draw_scene(root / "still.png", [("red", (5, 5, 20, 50))])
    write_video(root / "door.mov", walking_frames(12, ("red", "blue")), fps=4)
    (root / "broken.mkv").write_bytes(b"not a video" * 20)
    (tmp_path / "model.pt").write_bytes(b"stands in for a checkpoint")
    def load_colour_model(*args, **kwargs) -> ColourEmbedder:
        embedder = ColourEmbedder()
        embedder.checkpoint = str(tmp_path / "model.pt")
        return embedder

    monkeypatch.setattr(build_module, "load_embedder", load_colour_model)
    return root


def test_index_build_every_and_keyframes(folder, tmp_path, capsys):
    model = str(tmp_path / "model.pt")
    assert main(["index", "build", model, str(folder), "--out", str(tmp_path / "idx"), "--every", "0.5", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "2 videos: 2 added" in out and "1 unreadable, 6 frames indexed" in out
    assert "unreadable video: " in out and "broken.mkv: cannot open video" in out
    assert main(["index", "info", str(tmp_path / "idx"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["images"], info["videos"], info["video_frames"], info["persons"]) == (1, 2, 6, 1 + 12)
    assert list(info["unreadable_videos"]) == ["broken.mkv"] and info["unfinished_videos"] == []
    # the PNG codec makes every frame a keyframe: all 12
    assert main(["index", "build", model, str(folder), "--out", str(tmp_path / "idx"), "--keyframes", "--quiet"]) == 0
    assert "2 changed" in capsys.readouterr().out
    assert main(["index", "info", str(tmp_path / "idx"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["video_frames"] == 12
    with pytest.raises(SystemExit):  # argparse: the two are mutually exclusive
        main(["index", "build", model, str(folder), "--out", str(tmp_path / "x"), "--every", "1", "--keyframes"])
    assert "not allowed with argument" in capsys.readouterr().err
    assert main(["index", "build", model, str(folder), "--out", str(tmp_path / "y"), "--every", "0"]) == 2
    assert "--every must be at least 0.001 seconds" in capsys.readouterr().err


def test_search_shows_video_and_time_code(folder, tmp_path, capsys):
    index = str(tmp_path / "idx")
    assert main(["index", "build", str(tmp_path / "model.pt"), str(folder), "--out", index, "--quiet"]) == 0
    capsys.readouterr()
    assert main(["search", index, "--query", str(folder / "still.png"), "--box", "5,5,20,50", "--top", "3",
                 "--weighting", "cosine", "--out", str(tmp_path / "res")]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[1].endswith("door.mov  00:00:00.000") and table[3].endswith("door.mov  00:00:02.000")
    data = json.loads((tmp_path / "res" / "results.json").read_text())
    assert [(h["video"], h["seconds"], h["time_code"]) for h in data["hits"]] == [
        ("door.mov", 0.0, "00:00:00.000"), ("door.mov", 1.0, "00:00:01.000"), ("door.mov", 2.0, "00:00:02.000")]
    # a person of a frame as the query: its frame is read back from the video for results.png
    person = data["hits"][1]["person_id"]
    assert main(["search", index, "--query-index", str(person), "--json", "--out", str(tmp_path / "res2")]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["query"]["time_code"] == "00:00:01.000" and answer["query"]["video"] == "door.mov"
    assert (tmp_path / "res2" / "results.png").stat().st_size > 0
