"""data/synth/video.py: walking persons, the videos, photos and ground truth, and the CLI."""

from __future__ import annotations

import json

import pytest

from personsearch.data.synth.video import Walk, frame_persons, generate_videos
from personsearch.errors import ConfigError
from personsearch.search.video import Sampling, sampled_frames


def test_walk_positions():
    right = Walk(identity=1, height=100, width=40, foot_y=300, enter_s=2.0, leave_s=6.0, direction=1)
    assert right.box_at(1.9, 200) is None and right.box_at(6.1, 200) is None
    assert right.box_at(2.0, 200) == (-40, 200, 0, 300)  # just outside on the left
    assert right.box_at(4.0, 200) == (80, 200, 120, 300)  # halfway: -40 + 0.5 * 240
    left = Walk(2, 100, 40, 280, 2.0, 6.0, -1)
    assert left.box_at(3.0, 200) == (140, 180, 180, 280)  # a quarter of the way from the right: -40 + 0.75 * 240
    # back to front by foot y; a box half outside the frame is visible 0.5, fully outside left out
    persons = frame_persons([right, left], 2.0 + 4.0 * 20 / 240, 200)  # right's x1 = -20
    assert [(p.true_id, p.box, p.visible) for p in persons] == [
        (2, (180, 180, 220, 280), 0.5), (1, (-20, 200, 20, 300), 0.5)]
    assert frame_persons([right], 2.0, 200) == []


def test_generate_videos_writes_videos_photos_and_truth(tmp_path):
    counts = generate_videos(tmp_path / "v", seed=3, cameras=2, identities=3, seconds=3.0, fps=4, width=192, height=108)
    assert counts["videos"] == 2 and counts["frames"] == 24 and counts["identities"] == 3
    truth = json.loads((tmp_path / "v" / "ground_truth.json").read_text())
    assert sorted(truth["videos"]) == ["cam1.mp4", "cam2.mp4"] and truth["identities"] == [1, 2, 3]
    for name, video in truth["videos"].items():
        assert [f["seconds"] for f in video["frames"]] == [i / 4 for i in range(12)]
        seen = {p["id"] for f in video["frames"] for p in f["persons"]}
        assert seen <= {1, 2, 3} and len(seen) >= 2, name  # every identity crosses once (30-60 % of the clip)
        for frame in video["frames"]:
            for person in frame["persons"]:
                x1, y1, x2, y2 = person["box"]
                assert x2 > x1 and 0 <= y1 < y2 <= 108 and person["visible"] >= 0.5
                assert min(x2, 192) - max(x1, 0) >= 0.5 * (x2 - x1) - 1e-9
        # the decoded video has the frames at the times the ground truth says
        decoded = list(sampled_frames(tmp_path / "v" / "videos" / name, Sampling(every_s=0.25)))
        assert [f.seconds for f in decoded] == [f["seconds"] for f in video["frames"]]
        assert decoded[0].rgb.shape == (108, 192, 3)
    assert counts["person_boxes"] == sum(len(f["persons"]) for v in truth["videos"].values() for f in v["frames"])
    assert sorted(truth["photos"]) == ["person_01.jpg", "person_02.jpg", "person_03.jpg"]
    assert all((tmp_path / "v" / "photos" / name).is_file() for name in truth["photos"])
    again = generate_videos(tmp_path / "w", seed=3, cameras=2, identities=3, seconds=3.0, fps=4, width=192, height=108)
    assert again["person_boxes"] == counts["person_boxes"]
    assert json.loads((tmp_path / "w" / "ground_truth.json").read_text()) == truth  # a function of the seed


def test_generate_videos_refuses_bad_arguments(tmp_path):
    with pytest.raises(ConfigError, match="even"):
        generate_videos(tmp_path / "odd", width=191, height=108)
    with pytest.raises(ConfigError, match="positive"):
        generate_videos(tmp_path / "none", identities=0)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(ConfigError, match="new or empty folder"):
        generate_videos(tmp_path / "full")


def test_cli_synth_video(tmp_path, capsys):
    from personsearch.cli.main import main

    assert main(["data", "synth", str(tmp_path / "v"), "--video", "--seconds", "1", "--fps", "2", "--identities", "2",
                 "--width", "128", "--height", "72"]) == 0
    assert "frames: 4" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "v" / "videos").iterdir()) == ["cam1.mp4", "cam2.mp4"]
