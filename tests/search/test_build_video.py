"""Indexing video files (search/build_video.py): frames with their video and time, incremental by
file hash + sampling, unreadable videos reported, a killed build resumed without embedding a
finished frame again."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from personsearch.search.build import build_index
from personsearch.search.query import rank
from personsearch.search.store import GalleryStore
from personsearch.search.video import Sampling
from search_fixtures import COLOURS, SCENES, ColourEmbedder, colour_embedding, draw_scene, walking_frames, write_video

HERE = Path(__file__).resolve().parent


def _media(root: Path) -> Path:
    for name, persons in SCENES.items():
        draw_scene(root / name, persons)
    write_video(root / "cams" / "cam1.mov", walking_frames(12, ("red", "blue")), fps=4)  # 3 s
    write_video(root / "cams" / "cam2.avi", walking_frames(8, ("green", "red")), fps=4)  # 2 s
    return root


def _index_contents(index: Path) -> list[tuple]:
    """Everything a build decides, without ids and times: per image row its name, hash, size,
    frame (video, pts, seconds) and persons (box, score, embedding bytes)."""
    connection = sqlite3.connect(index / "index.sqlite")
    try:
        rows = connection.execute(
            "SELECT images.id, images.rel_path, images.sha256, width, height, n_persons, images.error, videos.rel_path, "
            "frames.pts, frames.seconds FROM images LEFT JOIN frames ON frames.image_id = images.id "
            "LEFT JOIN videos ON videos.id = frames.video_id ORDER BY images.rel_path").fetchall()
        contents = []
        for image_id, *fields in rows:
            persons = connection.execute("SELECT x1, y1, x2, y2, score, embedding FROM persons WHERE image_id=? "
                                         "ORDER BY x1, y1", (image_id,)).fetchall()
            contents.append((*fields, tuple(persons)))
        return contents
    finally:
        connection.close()


def test_videos_are_indexed_frame_by_frame_with_time(tmp_path):
    root = _media(tmp_path / "media")
    embedder = ColourEmbedder()
    report = build_index(tmp_path / "idx", embedder, root, progress=False, sampling=Sampling(every_s=1.0))
    assert (report.images_total, report.added, report.videos_total, report.videos_added) == (4, 4, 2, 2)
    assert report.frames_added == 3 + 2 and report.video_errors == []
    assert report.video_seconds == pytest.approx(5.0)
    assert "2 videos: 2 added" in report.summary() and "5 frames indexed" in report.summary()
    with GalleryStore.open(tmp_path / "idx") as store:
        names = [row.rel_path for row in store.images(0, 100)]
        assert names == ["a.png", "b.png", "cams/cam1.mov@00:00:00.000", "cams/cam1.mov@00:00:01.000",
                         "cams/cam1.mov@00:00:02.000", "cams/cam2.avi@00:00:00.000", "cams/cam2.avi@00:00:01.000",
                         "d.png", "sub/c.png"]
        # 5 persons in the images + 2 per frame; faiss holds them all
        assert store.count_persons() == 5 + 2 * 5 == store.vector_index().ntotal
        blue_hits = rank(store, colour_embedding(COLOURS["blue"]), top_k=10, weighting="cosine")
        on_video = [hit for hit in blue_hits if hit.video is not None and hit.cosine > 0.999]
        assert [(hit.video, hit.time_code) for hit in on_video] == [
            ("cams/cam1.mov", "00:00:00.000"), ("cams/cam1.mov", "00:00:01.000"), ("cams/cam1.mov", "00:00:02.000")]
        # the blue person walks 4 px per frame: 4 frames (1 s) later it is 16 px further right
        assert [hit.box[0] for hit in on_video] == [35.0, 51.0, 67.0]
        assert on_video[1].seconds == 1.0
        image_hit = next(hit for hit in blue_hits if hit.video is None)
        assert image_hit.image == "b.png" and image_hit.time_code is None


def test_rebuild_is_incremental_by_hash_and_sampling(tmp_path):
    root = _media(tmp_path / "media")
    embedder = ColourEmbedder()
    build_index(tmp_path / "idx", embedder, root, progress=False)
    embedder.calls.clear()
    report = build_index(tmp_path / "idx", embedder, root, progress=False)
    assert (report.videos_unchanged, report.frames_added, embedder.calls) == (2, 0, [])

    write_video(root / "cams" / "cam2.avi", walking_frames(12, ("green", "red")), fps=4)  # now 3 s
    report = build_index(tmp_path / "idx", embedder, root, progress=False)
    assert (report.videos_changed, report.videos_unchanged, report.frames_added) == (1, 1, 3)

    report = build_index(tmp_path / "idx", embedder, root, progress=False, sampling=Sampling(every_s=0.5))
    assert (report.videos_changed, report.frames_added) == (2, 6 + 6)
    (root / "cams" / "cam1.mov").unlink()
    report = build_index(tmp_path / "idx", embedder, root, progress=False, sampling=Sampling(every_s=0.5))
    assert (report.videos_removed, report.videos_unchanged) == (1, 1)
    with GalleryStore.open(tmp_path / "idx") as store:
        assert list(store.videos()) == ["cams/cam2.avi"] and store.count_frames() == 6
        assert store.count_persons() == 5 + 2 * 6 == store.vector_index().ntotal


def test_unreadable_video_is_reported_and_the_build_goes_on(tmp_path):
    root = _media(tmp_path / "media")
    (root / "broken.mp4").write_bytes(b"this is not a video" * 30)
    report = build_index(tmp_path / "idx", ColourEmbedder(), root, progress=False)
    assert len(report.video_errors) == 1 and "broken.mp4: cannot open video" in report.video_errors[0]
    assert report.frames_added == 5 and report.added == 4
    assert "unreadable video: " in report.summary() and "broken.mp4" in report.summary()
    with GalleryStore.open(tmp_path / "idx") as store:
        assert "cannot open video" in store.videos()["broken.mp4"].error
    report = build_index(tmp_path / "idx", ColourEmbedder(), root, progress=False)  # not retried until it changes
    assert report.videos_unchanged == 3 and report.video_errors == []


_KILLED_BUILD = textwrap.dedent("""
    import hashlib, os, signal, sys
    sys.path.insert(0, {here!r})
    from search_fixtures import ColourEmbedder
    from personsearch.search.build import build_index
    from personsearch.search.video import Sampling

    class LoggingEmbedder(ColourEmbedder):
        # logs every frame it embeds; SIGKILLs its own process when asked for batch number KILL_AT
        def __init__(self, log, kill_at):
            super().__init__()
            self.log, self.kill_at, self.batches = log, kill_at, 0

        def detect(self, images):
            if self.batches == self.kill_at:
                os.kill(os.getpid(), signal.SIGKILL)  # mid-video: this batch is being embedded
            self.batches += 1
            with open(self.log, "a") as handle:
                for image in images:
                    handle.write(hashlib.sha256(image.tobytes()).hexdigest() + "\\n")
                handle.flush()
                os.fsync(handle.fileno())
            return super().detect(images)

    log, kill_at, index, media = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    report = build_index(index, LoggingEmbedder(log, kill_at), media, batch_size=2, progress=False,
                         sampling=Sampling(every_s=0.25))
    print(report.frames_added, report.frames_skipped)
""")


def test_killed_build_resumes_mid_video_without_redoing_frames(tmp_path):
    media = tmp_path / "media"
    write_video(media / "walk.mov", walking_frames(20, ("red", "blue", "green")), fps=4)  # 20 frames, all sampled
    script = tmp_path / "build.py"
    script.write_text(_KILLED_BUILD.format(here=str(HERE)))
    log = tmp_path / "embedded.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = subprocess.run([sys.executable, str(script), str(log), "3", str(tmp_path / "idx"), str(media)],
                            capture_output=True, text=True, timeout=120, env=env)
    assert killed.returncode == -9, killed.stderr[-2000:]  # SIGKILL, while embedding batch 3
    first_run = log.read_text().split()
    assert len(first_run) == 6  # batches 0..2 of 2 frames embedded and committed
    with GalleryStore.open(tmp_path / "idx") as store:
        assert store.count_frames() == 6 and not store.videos()["walk.mov"].complete
        assert json.loads(json.dumps(sorted(store.frame_pts(1)))) == [0, 4096, 8192, 12288, 16384, 20480]

    resumed = subprocess.run([sys.executable, str(script), str(log), "-1", str(tmp_path / "idx"), str(media)],
                             capture_output=True, text=True, timeout=120, env=env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert resumed.stdout.split() == ["14", "6"]  # 14 frames embedded, the 6 finished ones skipped
    embedded = log.read_text().split()
    assert len(embedded) == 20 and len(set(embedded)) == 20  # every frame embedded exactly once

    uninterrupted = build_index(tmp_path / "straight", ColourEmbedder(), media, batch_size=2, progress=False,
                                sampling=Sampling(every_s=0.25))
    assert uninterrupted.frames_added == 20
    assert _index_contents(tmp_path / "idx") == _index_contents(tmp_path / "straight")
    with GalleryStore.open(tmp_path / "idx") as store:
        assert store.videos()["walk.mov"].complete and store.vector_index().ntotal == store.count_persons() == 60


def test_index_without_video_tables_opens_read_only(tmp_path, scene_dir):
    """An index written before videos were supported (no videos / frames tables) still opens
    read-only and searches; a writable open adds the tables."""
    build_index(tmp_path / "idx", ColourEmbedder(), scene_dir, progress=False)
    connection = sqlite3.connect(tmp_path / "idx" / "index.sqlite")
    connection.executescript("DROP TABLE frames; DROP TABLE videos;")
    connection.close()
    with GalleryStore.open(tmp_path / "idx", readonly=True) as store:
        assert store.videos() == {} and store.count_frames() == 0
        hits = rank(store, colour_embedding(COLOURS["red"]), top_k=2)
        assert [hit.image for hit in hits] == ["a.png", "b.png"] and hits[0].video is None
    with GalleryStore.open(tmp_path / "idx") as store:
        assert store.videos() == {} and np.isfinite(store.count_frames())
