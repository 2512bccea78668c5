"""Synthetic surveillance videos: a few identities walk across the scene of each of two (or
more) cameras, the same identities in every camera, at different times and in different
directions; plus one photo of each identity taken by another camera, and a ground-truth
sidecar saying who is where in every frame, so search over video is measurable.

Frames are drawn by the dataset renderer (scene.render_frame: the camera's background, the
identities' appearances, the camera response), from a plan made here: each identity crosses
each camera once on a straight line at a fixed depth (its height follows the camera's ground
plane), entering at a time drawn from the seed. Clutter and mannequins are off (they are placed
per frame and would jump around between frames).

Output (``OUT`` new or empty)::

    OUT/videos/cam1.mp4, cam2.mp4, ...   H.264, ``fps`` frames a second
    OUT/photos/person_01.jpg, ...         one photo of each identity (camera ``cameras + 1``,
                                          the person alone in front of that camera's scene)
    OUT/ground_truth.json                 per video and frame: time (s) and each visible
                                          person's id and box (x1, y1, x2, y2, frame pixels)

Determinism: everything is a function of the seed (frames are rendered with generators
seeded by (seed, frame index), as the dataset's are).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from personsearch.atomic import atomic_write_bytes
from personsearch.errors import ConfigError

from .background import sample_camera
from .identities import sample_appearance
from .output import write_json
from .plan import FramePlan, PersonPlan
from .scene import RenderContext, render_frame
from .settings import make_settings

MIN_VISIBLE_WIDTH = 0.5  # a person counts as visible when this much of its box width is inside the frame
# person heights as a fraction of the frame height: PRW's middle range (the detector's training
# distribution; much larger persons are found in parts by a model trained on it)
WALK_HEIGHTS = (0.15, 0.35)
PHOTO_PERSON_HEIGHT = 0.35  # the person's height in its photo, as a fraction of the photo's height


@dataclass(frozen=True)
class Walk:
    """One identity crossing one camera: box height and width (px), foot y (px), the time it
    enters and leaves (s), direction (+1 left to right)."""

    identity: int
    height: int
    width: int
    foot_y: int
    enter_s: float
    leave_s: float
    direction: int

    def box_at(self, seconds: float, frame_width: int) -> tuple[int, int, int, int] | None:
        if not self.enter_s <= seconds <= self.leave_s:
            return None
        progress = (seconds - self.enter_s) / (self.leave_s - self.enter_s)
        if self.direction < 0:
            progress = 1.0 - progress
        x1 = int(round(-self.width + progress * (frame_width + self.width)))
        return x1, self.foot_y - self.height, x1 + self.width, self.foot_y


def plan_walks(rng: np.random.Generator, camera, appearances: dict, seconds: float, width: int, height: int
               ) -> list[Walk]:
    """Every identity crosses the camera once, during 30-60 % of the clip, at a depth where it is
    ``WALK_HEIGHTS`` of the frame height tall (the camera's ground plane: taller = lower feet)."""
    walks = []
    for identity, look in appearances.items():
        fraction = float(rng.uniform(*WALK_HEIGHTS))
        foot = min(0.98, camera.horizon + fraction / camera.ground_gain)
        box_h = int(round(fraction * height))
        box_w = max(8, int(round(box_h * 0.363 * np.sqrt(look.build))))
        duration = float(rng.uniform(0.3, 0.6)) * seconds
        enter = float(rng.uniform(0.0, seconds - duration))
        walks.append(Walk(identity, box_h, box_w, int(round(foot * height)), enter, enter + duration,
                          int(rng.choice([-1, 1]))))
    return walks


def frame_persons(walks: list[Walk], seconds: float, width: int) -> list[PersonPlan]:
    """The persons in the frame at ``seconds``, back to front (rendering order)."""
    persons = []
    for walk in walks:
        box = walk.box_at(seconds, width)
        if box is None:
            continue
        inside = (min(box[2], width) - max(box[0], 0)) / (box[2] - box[0])
        if inside <= 0:
            continue
        persons.append(PersonPlan(walk.identity, True, box, float(inside)))
    return sorted(persons, key=lambda p: (p.box[3], p.true_id))


def _encode(path: Path, frames, fps: int, width: int, height: int, crf: int) -> None:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial.mp4")
    with av.open(str(partial), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"crf": str(crf), "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_image(image)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    partial.replace(path)


def generate_videos(out_dir: str | Path, seed: int = 0, cameras: int = 2, identities: int = 4,
                    seconds: float = 20.0, fps: int = 10, width: int = 640, height: int = 360,
                    crf: int = 23, progress: bool = False) -> dict:
    """Write the videos, photos and ground truth described in the module docstring; returns
    counts (videos, frames, identities, person boxes, seconds taken)."""
    start = time.perf_counter()
    if cameras < 1 or identities < 1 or fps < 1 or seconds <= 0:
        raise ConfigError(f"synthetic videos: cameras, identities, fps and seconds must be positive "
                          f"(got {cameras}, {identities}, {fps}, {seconds})")
    if width % 2 or height % 2:
        raise ConfigError(f"synthetic videos: width and height must be even (H.264 4:2:0), got {width}x{height}")
    root = Path(out_dir)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ConfigError(f"{root}: the synthetic videos need a new or empty folder")
    settings = make_settings("prw", 100, seed, width, height, "normal", num_cameras=cameras + 1,
                             clutter_rate=0.0, distractor_rate=0.0)
    looks = {camera: sample_camera(np.random.default_rng([seed, 2, camera]), settings.camera_shift, settings.blur,
                                   settings.noise, settings.jpeg_quality) for camera in range(1, cameras + 2)}
    appearances = {identity: sample_appearance(np.random.default_rng([seed, 3, identity]), settings.palette_size,
                                               settings.pattern_rate, settings.accessory_rate)
                   for identity in range(1, identities + 1)}
    context = RenderContext(settings, looks, appearances)
    frames_per_video = int(round(seconds * fps))
    truth = {"fps": fps, "seconds": frames_per_video / fps, "width": width, "height": height, "seed": seed,
             "identities": list(appearances), "videos": {}, "photos": {}}
    bar = tqdm(total=cameras * frames_per_video, desc="synthetic video frames", unit="frame", disable=not progress)
    boxes = 0
    for camera in range(1, cameras + 1):
        walks = plan_walks(np.random.default_rng([seed, 7, camera]), looks[camera], appearances, seconds, width, height)
        records = []

        def rendered(camera=camera, walks=walks, records=records):
            for index in range(frames_per_video):
                moment = index / fps
                persons = frame_persons(walks, moment, width)
                plan = FramePlan(camera * 1_000_000 + index, f"cam{camera}_{index:06d}", "test", camera, index,
                                 tuple(persons), width, height)
                image, _ = render_frame(plan, context)
                records.append({"frame": index, "seconds": round(moment, 6), "persons": [
                    {"id": p.true_id, "box": list(p.box), "visible": round(p.visible, 4)}
                    for p in persons if p.visible >= MIN_VISIBLE_WIDTH]})
                bar.update()
                yield image

        name = f"cam{camera}.mp4"
        _encode(root / "videos" / name, rendered(), fps, width, height, crf)
        boxes += sum(len(record["persons"]) for record in records)
        truth["videos"][name] = {"camera": camera, "frames": records}
    bar.close()
    truth["photos"] = _write_photos(root / "photos", context, cameras + 1, width, height)
    write_json(root / "ground_truth.json", truth)
    return {"videos": cameras, "frames": cameras * frames_per_video, "identities": identities,
            "person_boxes": boxes, "seconds": round(time.perf_counter() - start, 3)}


def _write_photos(folder: Path, context: RenderContext, camera: int, width: int, height: int) -> dict:
    """One photo per identity: the person alone in camera ``camera``'s scene, a snapshot (4:3, the
    frame's height, the person ``PHOTO_PERSON_HEIGHT`` of it, in the middle) cropped from a rendered
    frame, so the photo has background. Returns name -> {id, box (photo pixels)}."""
    photos = {}
    for identity, appearance in context.appearances.items():
        box_h = int(round(PHOTO_PERSON_HEIGHT * height))
        box_w = max(8, int(round(box_h * 0.363 * np.sqrt(appearance.build))))
        foot = height - int(round(0.1 * height))
        x1 = (width - box_w) // 2
        box = (x1, foot - box_h, x1 + box_w, foot)
        plan = FramePlan(camera * 1_000_000 + identity, f"photo_{identity}", "test", camera, 0,
                         (PersonPlan(identity, True, box, 1.0),), width, height)
        image, _ = render_frame(plan, context)
        crop_w = min(width, int(round(height * 4 / 3)))
        left = (width - crop_w) // 2
        crop = (left, 0, left + crop_w, height)
        name = f"person_{identity:02d}.jpg"
        buffer = BytesIO()
        image.crop(crop).save(buffer, format="JPEG", quality=92)
        atomic_write_bytes(folder / name, buffer.getvalue())
        photos[name] = {"id": identity, "box": [box[0] - left, box[1], box[2] - left, box[3]]}
    return photos
