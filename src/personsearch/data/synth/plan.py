"""Scene planning: which frames exist (camera, name, split), who is in each frame, where, how
big — everything the annotation files say, decided up front from one seed, before any pixel is
drawn.

Identities walk through cameras in *tracks*: runs of consecutive frames of one camera. Each
identity gets a stratified spread of PRW height quantiles, handed out to its cameras in
contiguous ranges (a camera sees a person at a range of distances) and in order along each
track (walking towards or away from the camera), so the same person appears at very different
heights across its appearances. Persons are placed front to back on a per-camera ground plane
(lower foot = closer = taller = in front) with a minimum visible fraction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import prw_stats
from .background import CameraLook, sample_camera
from .identities import Appearance, sample_appearance
from .settings import SynthSettings, frame_height_range


CUHK_BOXES_PER_ID = 3  # CUHK-SYSU: ~2.8 images per identity
CUHK_MAX_APPEARANCES = 40  # keeps every TestG50 gallery able to hold all positives


@dataclass(frozen=True)
class PersonPlan:
    """One annotated person. ``true_id`` is the identity (unique for one-off persons);
    ``labeled`` says whether the annotation carries it (False -> the format's unlabeled
    marker). ``box`` is integer x1, y1, x2, y2; ``visible`` the fraction of the box not
    covered by boxes of persons in front."""

    true_id: int
    labeled: bool
    box: tuple[int, int, int, int]
    visible: float

    @property
    def height(self) -> int:
        return self.box[3] - self.box[1]


@dataclass(frozen=True)
class FramePlan:
    index: int  # position in the dataset's frame list (name order) = per-frame seed
    name: str  # image file name
    split: str  # "train" | "test"
    camera: int  # 1-based camera (PRW) / scene background (CUHK-SYSU)
    time: int  # order within the camera
    persons: tuple[PersonPlan, ...]  # annotation order (back to front: rendering order too)
    width: int  # image size (px); varies per image when settings.image_sizes is set
    height: int


@dataclass(frozen=True)
class ScenePlan:
    settings: SynthSettings
    frames: tuple[FramePlan, ...]
    cameras: dict[int, CameraLook]
    appearances: dict[int, Appearance]  # true id -> look (recurring and one-off persons)
    train_ids: tuple[int, ...]
    test_ids: tuple[int, ...]

    def split_frames(self, split: str) -> list[FramePlan]:
        return [frame for frame in self.frames if frame.split == split]


def _frame_names(rng: np.random.Generator, settings: SynthSettings, per_camera: np.ndarray):
    """Per camera, names in time order."""
    names: dict[int, list[str]] = {}
    if settings.fmt == "prw":
        for camera, count in enumerate(per_camera, start=1):
            seq, frame_no, left_in_seq = 1, int(rng.integers(1, 200)), int(rng.integers(40, 400))
            camera_names = []
            for _ in range(count):
                camera_names.append(f"c{camera}s{seq}_{frame_no:06d}.jpg")
                frame_no += int(rng.integers(10, 60))
                left_in_seq -= 1
                if left_in_seq == 0:
                    seq, frame_no = seq + 1, int(rng.integers(1, 200))
                    left_in_seq = int(rng.integers(40, 400))
            names[camera] = camera_names
    else:
        numbers = rng.permutation(int(per_camera.sum()) * 2)[: int(per_camera.sum())] + 1
        start = 0
        for camera, count in enumerate(per_camera, start=1):
            names[camera] = [f"s{n}.jpg" for n in numbers[start: start + count]]
            start += count
    return names


def _split_blocks(rng: np.random.Generator, count: int, n_train: int,
                  block: int = 8) -> np.ndarray:
    """Boolean [count] train flags (``n_train`` of them), in contiguous time blocks."""
    starts = np.arange(0, count, block)
    is_train = np.zeros(count, dtype=bool)
    taken = 0
    for start in rng.permutation(starts):
        if taken >= n_train:
            break
        stop = min(start + block, count, start + n_train - taken)
        is_train[start:stop] = True
        taken += stop - start
    return is_train


def _largest_remainder(total: int, shares: np.ndarray) -> np.ndarray:
    raw = total * shares / shares.sum()
    counts = np.floor(raw).astype(np.int64)
    for index in np.argsort(-(raw - counts), kind="stable")[: total - counts.sum()]:
        counts[index] += 1
    return counts


def _assign_identities(rng, frame_cameras: np.ndarray, capacity: np.ndarray, identities: list[int],
                       min_appearances: int, max_appearances: int, num_cameras: int,
                       extra_cameras: int = 0):
    """Fill each frame's labeled capacity with identities walking in tracks; each identity
    walks through PRW's number of cameras plus ``extra_cameras`` (capped).

    Returns per frame a list of identities (no identity twice in a frame)."""
    n_frames = len(frame_cameras)
    total = int(capacity.sum())
    weights = rng.lognormal(0.0, 0.8, len(identities))
    spare = max(0, total - min_appearances * len(identities))
    counts = min_appearances + rng.multinomial(spare, weights / weights.sum())
    counts = np.minimum(counts, min(n_frames, max_appearances))
    cameras_present = np.unique(frame_cameras)
    camera_share = np.array([(frame_cameras == c).sum() for c in cameras_present], dtype=float)
    camera_frames = {c: np.flatnonzero(frame_cameras == c) for c in cameras_present}
    remaining = capacity.copy()
    members: list[list[int]] = [[] for _ in range(n_frames)]
    n_cams = prw_stats.sample_cameras_per_id(rng, len(identities), num_cameras)
    if extra_cameras:
        n_cams = np.minimum(n_cams + extra_cameras, num_cameras)
    for order in np.argsort(-counts, kind="stable"):
        identity, count = identities[order], int(counts[order])
        k = int(min(n_cams[order], len(cameras_present), count))
        cams = rng.choice(cameras_present, size=k, replace=False, p=camera_share / camera_share.sum())
        per_cam = 1 + rng.multinomial(count - k, np.full(k, 1.0 / k))
        for camera, wanted in zip(cams, per_cam):
            frames = camera_frames[camera]
            start = int(rng.integers(len(frames)))
            placed = 0
            for step in range(len(frames)):
                frame = frames[(start + step) % len(frames)]
                if remaining[frame] > 0 and identity not in members[frame]:
                    members[frame].append(identity)
                    remaining[frame] -= 1
                    placed += 1
                    if placed == wanted:
                        break
            for frame in rng.permutation(n_frames):  # camera full: anywhere with room
                if placed == wanted:
                    break
                if remaining[frame] > 0 and identity not in members[frame]:
                    members[frame].append(identity)
                    remaining[frame] -= 1
                    placed += 1
            for frame in rng.permutation(n_frames):  # no room anywhere: one more person
                if placed == wanted:
                    break
                if identity not in members[frame]:
                    members[frame].append(identity)
                    placed += 1
    return members


def _height_quantiles(rng, members: list[list[int]], frame_cameras, frame_times) -> dict:
    """(frame, identity) -> PRW height quantile, stratified over a per-identity range and
    ordered along each camera track."""
    appearances: dict[int, list[int]] = {}
    for frame, ids in enumerate(members):
        for identity in ids:
            appearances.setdefault(identity, []).append(frame)
    quantiles: dict[tuple[int, int], float] = {}
    for identity in sorted(appearances):
        frames = appearances[identity]
        n = len(frames)
        # A random sub-range of the height quantiles (span 0.75..1), stratified: gives PRW's
        # per-identity largest/smallest height ratio (quartiles ~3.2 / 5.0 / 6.5).
        span = rng.uniform(0.75, 1.0)
        low = rng.uniform(0.0, 1.0 - span)
        values = np.sort(low + span * (rng.permutation(n) + rng.random(n)) / n)
        by_camera: dict[int, list[int]] = {}
        for frame in frames:
            by_camera.setdefault(int(frame_cameras[frame]), []).append(frame)
        cursor = 0
        for camera in rng.permutation(sorted(by_camera)):
            track = sorted(by_camera[int(camera)], key=lambda f: frame_times[f])
            chunk = values[cursor: cursor + len(track)]
            cursor += len(track)
            if rng.random() < 0.5:
                chunk = chunk[::-1]
            for frame, value in zip(track, chunk):
                quantiles[(frame, identity)] = float(value)
    return quantiles


def _visible_fraction(box, front_boxes, samples: int = 10) -> float:
    if not front_boxes:
        return 1.0
    x1, y1, x2, y2 = box
    xs = x1 + (np.arange(samples) + 0.5) * (x2 - x1) / samples
    ys = y1 + (np.arange(samples * 2) + 0.5) * (y2 - y1) / (samples * 2)
    covered = np.zeros((len(ys), len(xs)), dtype=bool)
    for fx1, fy1, fx2, fy2 in front_boxes:
        covered |= ((ys >= fy1) & (ys < fy2))[:, None] & ((xs >= fx1) & (xs < fx2))[None, :]
    return float(1.0 - covered.mean())


def _place_persons(rng, settings: SynthSettings, camera: CameraLook, people, width: int,
                   height: int) -> list[PersonPlan]:
    """people: list of (true_id, labeled, height_px, aspect) in a ``width`` x ``height`` image.
    Returns persons back to front."""
    sized = []
    for true_id, labeled, box_h, aspect in people:
        box_w = int(np.clip(round(box_h * aspect), 4, width))
        foot = camera.horizon + (box_h / height) / camera.ground_gain + rng.normal(0.0, 0.04)
        y2 = int(np.clip(round(foot * height), box_h, height))
        sized.append((y2, true_id, labeled, box_h, box_w))
    sized.sort(key=lambda item: (-item[0], item[1]))  # front (lowest foot) first
    placed: list[PersonPlan] = []
    for y2, true_id, labeled, box_h, box_w in sized:
        fronts = [p.box for p in placed if p.box[3] >= y2]
        best = None
        for attempt in range(12):
            if placed and attempt < 6 and rng.random() < settings.occlusion_rate:
                other = placed[int(rng.integers(len(placed)))].box
                centre = (other[0] + other[2]) / 2 + rng.uniform(-0.8, 0.8) * (other[2] - other[0])
                x1 = int(round(centre - box_w / 2))
            else:
                x1 = int(rng.integers(0, max(1, width - box_w + 1)))
            x1 = int(np.clip(x1, 0, width - box_w))
            box = (x1, y2 - box_h, x1 + box_w, y2)
            visible = _visible_fraction(box, fronts)
            if best is None or visible > best[1]:
                best = (box, visible)
            if visible >= settings.min_visible:
                break
        box, visible = best
        if visible < settings.min_visible:
            continue  # nowhere to stand visibly: this person is not in the frame
        placed.append(PersonPlan(true_id=int(true_id), labeled=bool(labeled), box=box,
                                 visible=round(visible, 4)))
    placed.reverse()  # back to front
    return placed


def _image_sizes(settings: SynthSettings, count: int) -> list[tuple[int, int]]:
    """(width, height) of each image in name order: the settings' size, or drawn from
    ``settings.image_sizes`` with a generator of its own (the rest of the plan does not
    depend on whether sizes vary)."""
    if not settings.image_sizes:
        return [(settings.width, settings.height)] * count
    table = np.array([(w, h) for w, h, _ in settings.image_sizes], dtype=np.int64)
    weights = np.array([p for _, _, p in settings.image_sizes], dtype=np.float64)
    picks = np.random.default_rng([settings.seed, 9]).choice(
        len(table), size=count, p=weights / weights.sum())
    return [(int(table[i, 0]), int(table[i, 1])) for i in picks]


def build_plan(settings: SynthSettings) -> ScenePlan:
    """Decide the whole dataset (frames, identities, boxes) from ``settings.seed``."""
    rng = np.random.default_rng([settings.seed, 1])
    n_frames = settings.frames
    num_cameras = settings.num_cameras
    cameras = {
        camera: sample_camera(np.random.default_rng([settings.seed, 2, camera]),
                              settings.camera_shift, settings.blur, settings.noise,
                              settings.jpeg_quality)
        for camera in range(1, num_cameras + 1)
    }
    shares = np.resize(prw_stats.PRW_FRAMES_PER_CAMERA, num_cameras)
    per_camera = _largest_remainder(n_frames, shares)
    names = _frame_names(rng, settings, per_camera)

    # Split in time blocks per camera; at least one frame on each side.
    records = []  # (name, camera, time, split)
    train_per_camera = _largest_remainder(int(round(n_frames * settings.train_fraction)),
                                          per_camera.astype(np.float64))
    for camera in range(1, num_cameras + 1):
        flags = _split_blocks(rng, int(per_camera[camera - 1]),
                              int(train_per_camera[camera - 1]))
        for time, (name, is_train) in enumerate(zip(names[camera], flags)):
            records.append([name, camera, time, "train" if is_train else "test"])
    splits = [r[3] for r in records]
    for needed in ("train", "test"):
        if needed not in splits:
            records[int(rng.integers(len(records)))][3] = needed
            splits = [r[3] for r in records]
    records.sort(key=lambda r: r[0])

    n_train_frames = sum(r[3] == "train" for r in records)
    n_test_frames = len(records) - n_train_frames
    n_train_ids = settings.num_train_ids or max(
        3, round(prw_stats.PRW_TRAIN_IDS * n_train_frames / prw_stats.PRW_TRAIN_FRAMES))
    n_test_ids = settings.num_test_ids or max(
        3, round(prw_stats.PRW_TEST_IDS * n_test_frames / prw_stats.PRW_TEST_FRAMES))
    next_id = 1
    frame_persons: dict[int, list] = {}
    split_ids: dict[str, list[int]] = {}
    one_offs: list[int] = []
    appearances: dict[int, Appearance] = {}
    for split, n_ids in (("train", n_train_ids), ("test", n_test_ids)):
        positions = [i for i, r in enumerate(records) if r[3] == split]
        frame_cameras = np.array([records[i][1] for i in positions])
        frame_times = np.array([records[i][2] for i in positions])
        mean = settings.persons_per_frame_train if split == "train" else settings.persons_per_frame_test
        counts = prw_stats.sample_persons_per_frame(rng, len(positions), mean,
                                                    settings.max_persons_per_frame)
        fraction = (settings.labeled_fraction_train if split == "train"
                    else settings.labeled_fraction_test)
        labeled_capacity = rng.binomial(counts, fraction)
        if split == "test":  # every test identity needs two frames
            labeled_capacity = np.maximum(labeled_capacity, (counts > 0).astype(np.int64))
        min_appearances = 2
        max_appearances = len(positions)
        if settings.fmt == "cuhk-sysu":
            # CUHK-SYSU: ~3 images per identity, and all positives must fit in TestG50.
            max_appearances = CUHK_MAX_APPEARANCES
            requested = settings.num_train_ids if split == "train" else settings.num_test_ids
            if requested is None:
                n_ids = max(3, int(labeled_capacity.sum()) // CUHK_BOXES_PER_ID)
        n_ids = int(min(n_ids, max(1, labeled_capacity.sum() // min_appearances)))
        identities = list(range(next_id, next_id + n_ids))
        next_id += n_ids
        split_ids[split] = identities
        members = _assign_identities(rng, frame_cameras, labeled_capacity, identities,
                                     min_appearances, max_appearances, num_cameras,
                                     settings.extra_cameras_test if split == "test" else 0)
        quantiles = _height_quantiles(rng, members, frame_cameras, frame_times)
        for local, position in enumerate(positions):
            people = [(identity, True, quantiles[(local, identity)]) for identity in members[local]]
            unlabeled = int(max(0, counts[local] - labeled_capacity[local]))
            for _ in range(unlabeled):
                one_offs.append(len(one_offs))
                people.append((-len(one_offs), False, float(rng.random())))
            frame_persons[position] = people
    for identity in range(1, next_id):
        appearances[identity] = sample_appearance(
            np.random.default_rng([settings.seed, 3, identity]), settings.palette_size,
            settings.pattern_rate, settings.accessory_rate)
    # One-off (unlabeled) persons get ids after every recurring identity.
    one_off_base = next_id - 1
    sizes = _image_sizes(settings, len(records))

    frames = []
    for position, (name, camera, time, split) in enumerate(records):
        frame_w, frame_h = sizes[position]
        min_h, max_h = frame_height_range(settings, frame_h)
        people = []
        for identity, labeled, quantile in frame_persons[position]:
            true_id = identity if labeled else one_off_base - identity
            if true_id not in appearances:
                appearances[true_id] = sample_appearance(
                    np.random.default_rng([settings.seed, 3, true_id]), settings.palette_size,
                    settings.pattern_rate, settings.accessory_rate)
            look = appearances[true_id]
            box_h = float(prw_stats.height_at_quantile(quantile, frame_h)
                          * settings.height_scale * look.body_height)
            box_h = int(np.clip(round(box_h), min_h, max_h))
            aspect = float(prw_stats.sample_aspect(rng, 1)[0]) * np.sqrt(look.build)
            people.append((true_id, labeled, box_h, aspect))
        persons = _place_persons(rng, settings, cameras[camera], people, frame_w, frame_h)
        frames.append(FramePlan(index=position, name=name, split=split, camera=camera,
                                time=time, persons=tuple(persons), width=frame_w,
                                height=frame_h))
    return ScenePlan(settings=settings, frames=tuple(frames), cameras=cameras,
                     appearances=appearances, train_ids=tuple(split_ids["train"]),
                     test_ids=tuple(split_ids["test"]))
