"""search/video.py: sampling, time codes, decoding a frame again, unreadable files."""

from __future__ import annotations

import numpy as np
import pytest

from personsearch.errors import DatasetError, PersonSearchError
from personsearch.search.video import Sampling, decode_frame_at, sampled_frames, time_code, video_duration
from search_fixtures import write_video


def _grey_frames(count: int) -> list[np.ndarray]:
    """Frame i is uniformly grey level 10 * i (identifies the frame after decoding)."""
    return [np.full((32, 48, 3), 10 * i, dtype=np.uint8) for i in range(count)]


def test_time_code():
    assert time_code(0) == "00:00:00.000"
    assert time_code(12.3456) == "00:00:12.346"
    assert time_code(3723.0004) == "01:02:03.000"
    assert time_code(59.9996) == "00:01:00.000"  # rounds to the millisecond, carrying


def test_every_takes_first_frame_at_or_after_each_multiple(tmp_path):
    path = tmp_path / "clip.mov"
    write_video(path, _grey_frames(10), fps=4)  # frames at 0, 0.25, ..., 2.25 s
    frames = list(sampled_frames(path, Sampling(every_s=0.5)))
    assert [f.seconds for f in frames] == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert [int(f.rgb[0, 0, 0]) for f in frames] == [0, 20, 40, 60, 80]  # lossless: frames 0, 2, 4, 6, 8
    # 0.3 s: the first frame at or after 0, 0.3, 0.6, 0.9, ... -> 0, 0.5 (>= 0.3), 0.75 (>= 0.6), 1.0 (>= 0.9) ...
    frames = list(sampled_frames(path, Sampling(every_s=0.3)))
    assert [f.seconds for f in frames] == [0.0, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.25]
    assert video_duration(path) == pytest.approx(2.5)


def test_skip_pts_leaves_out_done_frames(tmp_path):
    path = tmp_path / "clip.mov"
    write_video(path, _grey_frames(10), fps=4)
    every = list(sampled_frames(path, Sampling(every_s=0.5)))
    rest = list(sampled_frames(path, Sampling(every_s=0.5), skip_pts={every[0].pts, every[2].pts}))
    assert [f.pts for f in rest] == [every[1].pts, every[3].pts, every[4].pts]


def test_keyframes_are_the_gop_starts(tmp_path):
    path = tmp_path / "clip.mp4"
    write_video(path, _grey_frames(23), fps=10, codec="libx264", gop=5)
    frames = list(sampled_frames(path, Sampling(every_s=None, keyframes=True)))
    assert [f.seconds for f in frames] == [0.0, 0.5, 1.0, 1.5, 2.0]
    for frame in frames:  # lossy, but the grey level still tells the frame
        assert abs(int(frame.rgb[16, 24, 0]) - int(round(100 * frame.seconds))) <= 4


def test_decode_frame_at_returns_that_frame(tmp_path):
    path = tmp_path / "clip.mp4"
    write_video(path, _grey_frames(23), fps=10, codec="libx264", gop=5)
    sampled = {f.pts: f.rgb for f in sampled_frames(path, Sampling(every_s=0.3))}
    for pts, rgb in sampled.items():  # seeking to a frame between keyframes decodes the same pixels
        np.testing.assert_array_equal(decode_frame_at(path, pts), rgb)
    with pytest.raises(DatasetError, match="no frame with timestamp"):
        decode_frame_at(path, max(sampled) + 1)


def test_unreadable_video_names_the_file(tmp_path):
    path = tmp_path / "broken.mp4"
    path.write_bytes(b"not a video at all" * 40)
    with pytest.raises(DatasetError, match="broken.mp4: cannot open video"):
        list(sampled_frames(path, Sampling()))
    with pytest.raises(DatasetError, match="broken.mp4"):
        decode_frame_at(path, 0)


@pytest.mark.parametrize("every", [0, -1, float("nan"), 0.0001])
def test_bad_sampling_is_refused(every):
    with pytest.raises(PersonSearchError, match="--every"):
        Sampling(every_s=every)
    with pytest.raises(PersonSearchError, match="not both"):
        Sampling(every_s=1.0, keyframes=True)
    assert Sampling(every_s=2.5).key == "every=2.5s" and Sampling(None, keyframes=True).key == "keyframes"
