"""Index video files (the video half of search/build.py).

Incremental by content: a video is keyed by the sha256 of its file and the sampling settings
(``Sampling.key``). Unchanged and complete: left alone. New, changed or sampled differently:
its old frames are removed and it is indexed again. Left incomplete by a killed build (same
hash and sampling, ``complete`` = 0): resumed, skipping the frames already stored (their
presentation timestamps), so no finished frame is embedded twice. Each batch of frames is one
SQLite transaction (with its ``frames`` rows), as for images.

Each stored frame is an ``images`` row named ``VIDEO@hh:mm:ss.mmm`` whose sha256 is that of its
decoded pixels (shape + RGB bytes), with its video, pts and time in ``frames``.

A video that cannot be opened or decoded is recorded with its error (frames decoded before the
error stay indexed), reported in ``BuildReport.video_errors`` naming the file, and not retried
until the file changes; the build goes on with the other files.

Shapes
------
frame rgb   np.ndarray uint8 [H, W, 3]
boxes       float32 [N, 4] x1y1x2y2 frame pixels;  embeddings float32 [N, D] unit norm
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from personsearch.errors import DatasetError
from personsearch.search.store import GalleryStore, NewImage
from personsearch.search.video import Sampling, VideoFrame, sampled_frames, time_code, video_duration


@dataclass
class VideoPlan:
    sampling: Sampling
    to_index: list[tuple[str, str, int]] = field(default_factory=list)  # (rel_path, sha256, size)
    deleted: list[str] = field(default_factory=list)

    @property
    def has_work(self) -> bool:
        return bool(self.to_index or self.deleted)


def frame_sha256(rgb: np.ndarray) -> str:
    """Content hash of a decoded frame: its shape and RGB bytes."""
    digest = hashlib.sha256(repr(tuple(rgb.shape)).encode())
    digest.update(np.ascontiguousarray(rgb).tobytes())
    return digest.hexdigest()


def plan_videos(store: GalleryStore, root: Path, video_paths: list[str], sampling: Sampling, report,
                progress: bool, tqdm) -> VideoPlan:
    """Decide which videos to index, resume or remove (hashing every video file)."""
    from personsearch.search.build import sha256_file

    plan = VideoPlan(sampling)
    known = store.videos()
    report.videos_total = len(video_paths)
    for rel_path in tqdm(video_paths, desc="hashing videos", unit="video", disable=not progress or not video_paths):
        path = root / rel_path
        try:
            digest, size = sha256_file(path), path.stat().st_size
        except OSError as error:
            report.video_errors.append(f"{path}: cannot read ({error.strerror or error})")
            continue
        row = known.get(rel_path)
        if row is None:
            report.videos_added += 1
        elif (row.sha256, row.sampling) != (digest, sampling.key):
            report.videos_changed += 1
        elif row.complete:
            report.videos_unchanged += 1
            continue
        else:
            report.videos_resumed += 1
        plan.to_index.append((rel_path, digest, size))
    on_disk = set(video_paths)
    plan.deleted = [rel_path for rel_path in known if rel_path not in on_disk]
    report.videos_removed = len(plan.deleted)
    return plan


def _expected_frames(root: Path, plan: VideoPlan) -> int | None:
    if plan.sampling.keyframes:
        return None
    total = 0
    for rel_path, _, _ in plan.to_index:
        try:
            duration = video_duration(root / rel_path)
        except DatasetError:
            continue
        total += math.ceil((duration or 0.0) / plan.sampling.every_s)
    return total or None


def index_videos(store: GalleryStore, embedder, root: Path, plan: VideoPlan, vectors, batch_size: int,
                 progress: bool, on_batch, batch_number: int, report, tqdm) -> int:
    """Index the planned videos; returns the next batch number (``on_batch`` numbering)."""
    if not plan.to_index:
        return batch_number
    bar = tqdm(total=_expected_frames(root, plan), desc="video frames", unit="frame", disable=not progress,
               dynamic_ncols=True)
    try:
        for rel_path, digest, size in plan.to_index:
            path = root / rel_path
            error = None
            try:
                duration = video_duration(path)
            except DatasetError as problem:
                duration, error = None, problem
            video_id, removed = store.start_video(rel_path, digest, plan.sampling.key, size, duration)
            vectors.remove(removed)
            done = store.frame_pts(video_id)
            report.frames_skipped += len(done)
            bar.update(len(done))
            if error is None:
                batch: list[VideoFrame] = []
                try:
                    for frame in sampled_frames(path, plan.sampling, skip_pts=done):
                        batch.append(frame)
                        if len(batch) == batch_size:
                            batch_number = _commit(store, embedder, rel_path, video_id, batch, vectors, report,
                                                   on_batch, batch_number, bar)
                            batch = []
                except DatasetError as problem:
                    error = problem
                batch_number = _commit(store, embedder, rel_path, video_id, batch, vectors, report, on_batch,
                                       batch_number, bar)
            if error is not None:
                report.video_errors.append(str(error))
            elif duration is not None:
                report.video_seconds += duration
            store.finish_video(video_id, None if error is None else error.problem)
    finally:
        bar.close()
    return batch_number


def _commit(store: GalleryStore, embedder, rel_path: str, video_id: int, batch: list[VideoFrame], vectors,
            report, on_batch, batch_number: int, bar) -> int:
    """Detect and embed a batch of frames, store it (one transaction); the next batch number."""
    from personsearch.search.build import detections_to_keep, store_batch

    if not batch:
        return batch_number
    dim = int(embedder.embedding_dim)
    detections = embedder.detect([frame.rgb for frame in batch])
    new_images = []
    for frame, (boxes, scores, embeddings) in zip(batch, detections):
        height, width = frame.rgb.shape[:2]
        new_images.append(NewImage(
            f"{rel_path}@{time_code(frame.seconds)}", frame_sha256(frame.rgb), width, height, 0,
            *detections_to_keep(boxes, scores, embeddings, store.settings.min_score, dim),
            video_id=video_id, pts=frame.pts, seconds=frame.seconds,
        ))
    report.frames_added += len(new_images)
    return store_batch(vectors, new_images, report, bar, on_batch, batch_number)
