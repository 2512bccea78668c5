"""Video files for the gallery index: which frames to index (sampling), decoding them with PyAV,
and decoding one indexed frame again for the web page and result pictures.

Sampling. ``Sampling(every_s=1.0)`` takes, for k = 0, 1, 2, ..., the first decoded frame whose
presentation time is at least k x ``every_s`` seconds (so a 10 s clip at 25 fps gives the frames
at 0, 1, ..., 9 s); ``Sampling(keyframes=True)`` takes every keyframe (the decoder skips the other
frames, the cheapest way through a long video). ``Sampling.key`` is stored with each indexed
video: the same file with other sampling settings is indexed again.

A frame is identified by its presentation timestamp ``pts`` (integer, in the stream's time
base) and shown as ``time_code(seconds)`` = hh:mm:ss.mmm.

Shapes
------
rgb  np.ndarray uint8 [H, W, 3] (the decoded frame, RGB)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from personsearch.errors import DatasetError, PersonSearchError

VIDEO_EXTENSIONS = frozenset({".mp4", ".mkv", ".avi", ".mov"})
_EPSILON_S = 1e-6


@dataclass(frozen=True)
class Sampling:
    """Which frames of a video are indexed (see the module docstring)."""

    every_s: float | None = 1.0
    keyframes: bool = False

    def __post_init__(self) -> None:
        if self.keyframes:
            if self.every_s is not None:
                raise PersonSearchError("video sampling: give --every SECONDS or --keyframes, not both")
        elif self.every_s is None or not math.isfinite(self.every_s) or self.every_s < 0.001:
            # time codes name frames to the millisecond: at most one sampled frame per millisecond
            raise PersonSearchError(f"video sampling: --every must be at least 0.001 seconds, got {self.every_s}")

    @property
    def key(self) -> str:
        return "keyframes" if self.keyframes else f"every={self.every_s:g}s"


@dataclass(frozen=True)
class VideoFrame:
    pts: int  # presentation timestamp in the stream's time base
    seconds: float
    rgb: np.ndarray  # uint8 [H, W, 3]


def time_code(seconds: float) -> str:
    """12.3456 -> '00:00:12.346' (hh:mm:ss.mmm, rounded to the millisecond)."""
    total_ms = int(round(max(0.0, float(seconds)) * 1000.0))
    hours, rest = divmod(total_ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}"


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def _av():
    import av

    return av


def _decode_errors() -> tuple[type[BaseException], ...]:
    av = _av()
    return (av.error.FFmpegError, OSError, ValueError, EOFError)


def _open_stream(path: Path):
    av = _av()
    try:
        container = av.open(str(path))
    except _decode_errors() as error:
        raise DatasetError(path, f"cannot open video ({error})") from None
    if not container.streams.video:
        container.close()
        raise DatasetError(path, "no video stream in the file")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return container, stream


def video_duration(path: str | Path) -> float | None:
    """Duration in seconds from the container (None when it does not say)."""
    container, stream = _open_stream(Path(path))
    try:
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base)
        if container.duration is not None:
            return float(container.duration) / 1_000_000.0
        return None
    finally:
        container.close()


def sampled_frames(path: str | Path, sampling: Sampling, skip_pts: frozenset[int] | set[int] = frozenset()
                   ) -> Iterator[VideoFrame]:
    """The sampled frames of ``path`` in time order. Frames whose pts is in ``skip_pts`` (already
    indexed) are decoded but not converted to RGB or yielded. DatasetError naming the file when
    it cannot be opened or decoded (frames yielded before the error stay valid)."""
    path = Path(path)
    container, stream = _open_stream(path)
    if sampling.keyframes:
        stream.codec_context.skip_frame = "NONKEY"
    next_target = 0.0
    try:
        for frame in container.decode(stream):
            if frame.pts is None or frame.time is None:
                continue
            seconds = float(frame.time)
            if sampling.keyframes:
                if not frame.key_frame:
                    continue
            else:
                if seconds + _EPSILON_S < next_target:
                    continue
                next_target = (math.floor((seconds + _EPSILON_S) / sampling.every_s) + 1) * sampling.every_s
            if int(frame.pts) in skip_pts:
                continue
            yield VideoFrame(int(frame.pts), seconds, frame.to_ndarray(format="rgb24"))
    except _decode_errors() as error:
        raise DatasetError(path, f"cannot decode video ({error})") from None
    finally:
        container.close()


def decode_frame_at(path: str | Path, pts: int) -> np.ndarray:
    """The RGB frame with presentation timestamp ``pts``: seek to the keyframe at or before it,
    decode forward to it. DatasetError when the file cannot be read or has no such frame."""
    path = Path(path)
    container, stream = _open_stream(path)
    try:
        container.seek(int(pts), stream=stream, backward=True, any_frame=False)
        for frame in container.decode(stream):
            if frame.pts is None:
                continue
            if int(frame.pts) == int(pts):
                return frame.to_ndarray(format="rgb24")
            if int(frame.pts) > int(pts):
                break
    except _decode_errors() as error:
        raise DatasetError(path, f"cannot decode video ({error})") from None
    finally:
        container.close()
    raise DatasetError(path, f"no frame with timestamp {pts} (the video changed since it was indexed?)")
