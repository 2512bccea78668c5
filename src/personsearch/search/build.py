"""Build or update a gallery index from a folder of scene images and video files.

``Embedder`` is the small interface the search layer needs from a model; ``ModelEmbedder``
implements it over a ``PersonSearchModel`` (docs/architecture.md: ``detect`` / ``embed_boxes``
after ``data.transforms.preprocess``; boxes scaled into the model and back).

Shapes
------
image       np.ndarray uint8 [H, W, 3] RGB (original pixels)
boxes       float32 [N, 4] x1y1x2y2 in original pixels;  scores float32 [N]
embeddings  float32 [N, D] unit norm (NOT score weighted)

Incremental builds: every image file under the root (by extension, recursively) is hashed
(sha256). New paths and paths whose hash changed are (re)processed, paths gone from disk are
removed, everything else is left alone. Each batch of images is stored in one SQLite
transaction, so an interrupted build resumes where it stopped. Video files are indexed frame by
frame in the same way (search/build_video.py).
"""

from __future__ import annotations

import hashlib
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Protocol

import numpy as np

from personsearch.errors import DatasetError, IndexError_, PersonSearchError
from personsearch.search.store import GalleryStore, IndexSettings, NewImage
from personsearch.search.video import VIDEO_EXTENSIONS, Sampling

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"})


class Embedder(Protocol):
    """What indexing and querying need from a model."""

    fingerprint: str
    embedding_dim: int
    min_size: int
    max_size: int

    def detect(self, images: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per image: (boxes [N, 4], scores [N], embeddings [N, D]) in original pixels."""

    def embed(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Unit embeddings [n, D] of the given boxes [n, 4] (original pixels) of one image."""


class ModelEmbedder:
    """``Embedder`` over a PersonSearchModel, with the preprocessing of data/transforms.py."""

    def __init__(self, model, fingerprint: str, min_size: int = 900, max_size: int = 1500,
                 checkpoint: str = "", method: str | None = None,
                 checkpoint_test_proposals: int | None = None, path=None) -> None:
        import torch

        from personsearch.precision.paths import InferencePath

        from personsearch.models.inference import current_test_proposals

        self.model = model.eval()
        self.test_proposals = current_test_proposals(model)
        # the checkpoint's own count: what an index from before counts were recorded was built with
        self.checkpoint_test_proposals = (self.test_proposals if checkpoint_test_proposals is None
                                          else int(checkpoint_test_proposals))
        self.fingerprint = fingerprint
        self.embedding_dim = int(model.embedding_dim)
        self.min_size = int(min_size)
        self.max_size = int(max_size)
        self.checkpoint = checkpoint
        self.method = method
        self.device = next(model.parameters()).device
        self._torch = torch
        # precision.paths.InferencePath: bf16 autocast / channels_last (default: float32, channels_last)
        self.path = path if path is not None else InferencePath("fp32", bf16=False, channels_last=True)
        self.precision = self.path.name

    def _batch(self, images: list[np.ndarray]):
        from personsearch.data.transforms import batch_images, preprocess

        tensors, scales = [], []
        for image in images:
            tensor, scale = preprocess(image, self.min_size, self.max_size)
            tensors.append(tensor)
            scales.append(scale)
        batch, sizes = batch_images(tensors)
        batch = batch.to(self.device)
        if self.path.channels_last:
            batch = batch.contiguous(memory_format=self._torch.channels_last)
        return batch, sizes, scales

    def detect(self, images: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        batch, sizes, scales = self._batch(images)
        with self.path.autocast():
            detections = self.model.detect(batch, sizes)
        out = []
        for det, scale in zip(detections, scales):
            out.append((
                (det.boxes.detach().cpu().float() / scale).numpy().astype(np.float32),
                det.scores.detach().cpu().float().numpy().astype(np.float32),
                det.embeddings.detach().cpu().float().numpy().astype(np.float32),
            ))
        return out

    def embed(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        batch, sizes, scales = self._batch([image])
        scaled = self._torch.as_tensor(np.asarray(boxes, dtype=np.float32) * scales[0])
        with self.path.autocast():
            (embeddings,) = self.model.embed_boxes(batch, sizes, [scaled])
        return embeddings.detach().cpu().float().numpy().astype(np.float32)


def load_embedder(checkpoint: str | Path, min_size: int | None = None, max_size: int | None = None,
                  device: str = "cpu", test_proposals: int | None = None, precision: str = "fp32") -> ModelEmbedder:
    """Load a checkpoint at ``precision`` (precision.load.load_for_inference: fp32 = BatchNorms
    folded, channels_last, the evaluation's default path; bf16; int8 from a quantized
    checkpoint; auto = the fastest that passes an accuracy check on this machine). The
    preprocessing sizes default to the checkpoint's ``eval`` config section (900 / 1500 when it
    has none); ``test_proposals`` to the checkpoint's RPN setting."""
    from personsearch.precision.load import load_for_inference

    model, info, path = load_for_inference(checkpoint, precision, device=device, test_proposals=test_proposals,
                                           min_size=min_size, max_size=max_size)
    eval_config = (info.get("config") or {}).get("eval") or {}
    return ModelEmbedder(
        model,
        info["fingerprint"],
        min_size=int(min_size if min_size is not None else eval_config.get("min_size", 900)),
        max_size=int(max_size if max_size is not None else eval_config.get("max_size", 1500)),
        checkpoint=str(Path(checkpoint).resolve()),
        method=info.get("method"),
        checkpoint_test_proposals=info["checkpoint_test_proposals"],
        path=path,
    )


def check_embedder(store: GalleryStore, embedder: Embedder, checkpoint: str = "") -> None:
    """IndexError_ when ``embedder`` is not the model the index was built with."""
    settings = store.settings
    if embedder.fingerprint != settings.fingerprint:
        raise IndexError_(
            f"{store.root}: index was built by a different model (fingerprint {settings.fingerprint[:12]}, "
            f"checkpoint {settings.checkpoint}); {checkpoint or 'the given model'} has fingerprint "
            f"{embedder.fingerprint[:12]}"
        )
    if embedder.embedding_dim != settings.embedding_dim:
        raise IndexError_(f"{store.root}: index embeddings have dim {settings.embedding_dim}, model {embedder.embedding_dim}")


def scan_images(root: Path) -> list[str]:
    """Image files under ``root`` (recursively, by extension), as sorted POSIX relative paths.
    Hidden files and folders are skipped; symbolic links are not followed out of the root."""
    return scan_media(root)[0]


def scan_media(root: Path) -> tuple[list[str], list[str]]:
    """(image files, video files) under ``root`` (recursively, by extension), each as sorted
    POSIX relative paths. Hidden files and folders are skipped; symbolic links are not followed
    out of the root."""
    images, videos = [], []
    root_resolved = root.resolve()
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            suffix = Path(name).suffix.lower()
            if name.startswith(".") or (suffix not in IMAGE_EXTENSIONS and suffix not in VIDEO_EXTENSIONS):
                continue
            path = Path(folder) / name
            if not path.resolve().is_relative_to(root_resolved):
                continue
            (videos if suffix in VIDEO_EXTENSIONS else images).append(path.relative_to(root).as_posix())
    return sorted(images), sorted(videos)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class BuildReport:
    images_total: int = 0
    added: int = 0
    changed: int = 0
    removed: int = 0
    unchanged: int = 0
    failed: int = 0
    persons_added: int = 0
    seconds: float = 0.0
    processed: list[str] = field(default_factory=list)
    videos_total: int = 0
    videos_added: int = 0
    videos_changed: int = 0  # new content or other sampling settings: indexed again
    videos_resumed: int = 0  # left unfinished by an interrupted build
    videos_removed: int = 0
    videos_unchanged: int = 0
    frames_added: int = 0
    frames_skipped: int = 0  # already indexed by an interrupted build
    video_seconds: float = 0.0  # length of the video time indexed by this build
    video_errors: list[str] = field(default_factory=list)  # "path: problem" per unreadable video

    def summary(self) -> str:
        text = (f"{self.images_total} images: {self.added} added, {self.changed} changed, {self.removed} removed, "
                f"{self.unchanged} unchanged, {self.failed} unreadable; ")
        if self.videos_total or self.videos_removed:
            text += (f"{self.videos_total} videos: {self.videos_added} added, {self.videos_changed} changed, "
                     f"{self.videos_resumed} resumed, {self.videos_removed} removed, {self.videos_unchanged} "
                     f"unchanged, {len(self.video_errors)} unreadable, {self.frames_added} frames indexed; ")
        text += f"{self.persons_added} persons added in {self.seconds:.1f}s"
        for problem in self.video_errors:
            text += f"\nunreadable video: {problem}"
        return text


def build_index(
    index_path: str | Path,
    embedder: Embedder,
    images_root: str | Path,
    *,
    checkpoint: str = "",
    index_type: str | None = None,
    index_params: dict | None = None,
    min_score: float | None = None,
    batch_size: int = 4,
    progress: bool = True,
    on_batch: Callable[[int], None] | None = None,
    sampling: Sampling | None = None,
) -> BuildReport:
    """Create or incrementally update the index at ``index_path`` from ``images_root``.

    ``index_type`` / ``min_score`` default to the index's own settings (``flat`` / 0.5 for a new
    index); giving a different value for an existing index is an error. ``on_batch(k)`` is
    called after batch k (0-based) has been committed.
    """
    from tqdm import tqdm

    started = time.perf_counter()
    images_root = Path(images_root)
    if images_root.is_file():
        raise PersonSearchError(
            f"{images_root}: is a file; index build takes a folder and indexes every image and "
            f"video file under it (put the file in a folder of its own and give that folder)")
    if not images_root.is_dir():
        raise PersonSearchError(f"{images_root}: images folder not found")
    if batch_size < 1:
        raise PersonSearchError(f"--batch-size must be >= 1, got {batch_size}")
    root_text = str(images_root.resolve())
    index_path = Path(index_path)
    if (index_path / "index.sqlite").exists():
        store = GalleryStore.open(index_path)
        _check_same_settings(store, embedder, root_text, index_type, index_params, min_score)
    else:
        settings = IndexSettings(
            fingerprint=embedder.fingerprint,
            checkpoint=checkpoint,
            embedding_dim=int(embedder.embedding_dim),
            images_root=root_text,
            min_size=int(embedder.min_size),
            max_size=int(embedder.max_size),
            min_score=float(0.5 if min_score is None else min_score),
            index_type=index_type or "flat",
            index_params=dict(index_params or {}),
            method=getattr(embedder, "method", None),
            test_proposals=getattr(embedder, "test_proposals", None),
        )
        try:
            store = GalleryStore.create(index_path, settings)
        except ValueError as error:
            raise IndexError_(f"{index_path}: {error}") from None
    report = BuildReport()
    try:
        with _build_lock(index_path):
            _update(store, embedder, images_root, batch_size, progress, on_batch, report, tqdm,
                    sampling or Sampling())
    finally:
        store.close()
    report.seconds = time.perf_counter() - started
    return report


@contextmanager
def _build_lock(index_path: Path) -> Iterator[None]:
    """One build at a time per index (an advisory lock on INDEX/.build.lock, released by the OS
    when the process dies, so a killed build never leaves a stale lock)."""
    import fcntl

    with open(index_path / ".build.lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise IndexError_(f"{index_path}: another build is running on this index") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _check_same_settings(store, embedder, root_text, index_type, index_params, min_score) -> None:
    settings = store.settings
    check_embedder(store, embedder)
    problems = []
    if settings.images_root != root_text:
        problems.append(f"images root {settings.images_root} (got {root_text})")
    embedder_proposals = getattr(embedder, "test_proposals", None)
    recorded = settings.test_proposals
    if recorded is None:  # an index from before the count was recorded: built with the checkpoint's
        recorded = getattr(embedder, "checkpoint_test_proposals", None)
    if recorded is not None and embedder_proposals is not None and embedder_proposals != recorded:
        problems.append(f"test proposals {recorded} (got {embedder_proposals}; "
                        f"pass --test-proposals {recorded})")
    if (settings.min_size, settings.max_size) != (embedder.min_size, embedder.max_size):
        problems.append(f"preprocessing min/max size {settings.min_size}/{settings.max_size} "
                        f"(got {embedder.min_size}/{embedder.max_size})")
    if index_type is not None and index_type != settings.index_type:
        problems.append(f"index type {settings.index_type} (got {index_type})")
    if min_score is not None and float(min_score) != settings.min_score:
        problems.append(f"min score {settings.min_score} (got {min_score})")
    if index_params:
        for key, value in index_params.items():
            if value is not None and settings.index_params.get(key) != value:
                problems.append(f"{key} {settings.index_params.get(key)} (got {value})")
    if problems:
        raise IndexError_(f"{store.root}: this index was built with " + "; ".join(problems)
                          + ". Build a new index (--out) to change them.")


class VectorUpdater:
    """The faiss index of a build, kept in step with SQLite batch by batch while that is possible
    (``store.update_vectors``), else rebuilt from SQLite once at the end."""

    def __init__(self, store: GalleryStore) -> None:
        self.store = store
        self.index = store.load_vectors_for_update()
        self.incremental = True

    def remove(self, removed_ids: np.ndarray) -> None:
        if self.incremental and len(removed_ids):
            dim = self.store.settings.embedding_dim
            self.incremental = self.store.update_vectors(self.index, np.zeros(0, np.int64),
                                                         np.zeros((0, dim), np.float32), removed_ids)

    def add(self, new_images: list[NewImage]) -> None:
        """Store a batch (one transaction) and add its embeddings."""
        added = self.store.add_images(new_images)
        if self.incremental:
            dim = self.store.settings.embedding_dim
            ids = np.concatenate([person_ids for _, person_ids in added]) if added else np.zeros(0, np.int64)
            vectors = np.concatenate([item.embeddings for item in new_images]).reshape(-1, dim)
            self.incremental = self.store.update_vectors(self.index, ids, vectors, np.zeros(0, np.int64))

    def finish(self) -> None:
        if self.incremental:
            self.store.save_vectors(self.index)
        else:
            self.store.rebuild_vectors()  # from SQLite (retrains IVF, rebuilds HNSW) and write


def _update(store: GalleryStore, embedder: Embedder, images_root: Path, batch_size: int, progress: bool,
            on_batch, report: BuildReport, tqdm, sampling: Sampling) -> None:
    from personsearch.search.build_video import index_videos, plan_videos

    rel_paths, video_paths = scan_media(images_root)
    report.images_total = len(rel_paths)
    known = store.known_images()
    pending: list[tuple[str, str, int]] = []  # (rel_path, sha256, size)
    changed_paths = []
    for rel_path in tqdm(rel_paths, desc="hashing", unit="img", disable=not progress or len(rel_paths) < 1000):
        path = images_root / rel_path
        try:
            digest, size = sha256_file(path), path.stat().st_size
        except OSError as error:
            raise DatasetError(path, f"cannot read ({error.strerror or error})") from None
        if rel_path in known:
            if known[rel_path][1] == digest:
                report.unchanged += 1
                continue
            changed_paths.append(rel_path)
            report.changed += 1
        else:
            report.added += 1
        pending.append((rel_path, digest, size))
    on_disk = set(rel_paths)
    deleted = [p for p in known if p not in on_disk]
    report.removed = len(deleted)
    video_plan = plan_videos(store, images_root, video_paths, sampling, report, progress, tqdm)

    if not pending and not deleted and not video_plan.has_work:
        store.vector_index()  # make sure the cache is valid (rebuilt if missing / stale)
        return
    vectors = VectorUpdater(store)
    vectors.remove(store.remove_images(deleted + changed_paths))
    vectors.remove(store.remove_videos(video_plan.deleted))

    bar = tqdm(total=len(pending), desc="indexing", unit="img", disable=not progress or not pending,
               dynamic_ncols=True,
               bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_noinv_fmt}{postfix}]")
    batch_number = 0
    try:
        for start in range(0, len(pending), batch_size):
            chunk = pending[start:start + batch_size]
            new_images = _process_batch(embedder, images_root, chunk, store.settings.min_score)
            report.failed += sum(1 for item in new_images if item.error)
            batch_number = store_batch(vectors, new_images, report, bar, on_batch, batch_number)
    finally:
        bar.close()
    index_videos(store, embedder, images_root, video_plan, vectors, batch_size, progress, on_batch,
                 batch_number, report, tqdm)
    vectors.finish()


def store_batch(vectors: VectorUpdater, new_images: list[NewImage], report: BuildReport, bar, on_batch,
                batch_number: int) -> int:
    """Commit a processed batch (images or video frames), count it, move the bar, call
    ``on_batch``; returns the next batch number."""
    vectors.add(new_images)
    report.persons_added += sum(len(item.boxes) for item in new_images)
    report.processed.extend(item.rel_path for item in new_images)
    bar.update(len(new_images))
    bar.set_postfix(persons=report.persons_added, refresh=False)
    if on_batch is not None:
        on_batch(batch_number)
    return batch_number + 1


def detections_to_keep(boxes: np.ndarray, scores: np.ndarray, embeddings: np.ndarray, min_score: float,
                       dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The detections with score >= ``min_score`` as float32 arrays [n, 4], [n], [n, D]."""
    keep = np.asarray(scores) >= min_score
    return (np.asarray(boxes, np.float32).reshape(-1, 4)[keep], np.asarray(scores, np.float32)[keep],
            np.asarray(embeddings, np.float32).reshape(-1, dim)[keep])


def _process_batch(embedder: Embedder, images_root: Path, chunk: list[tuple[str, str, int]],
                   min_score: float) -> list[NewImage]:
    from personsearch.data.transforms import load_image

    dim = int(embedder.embedding_dim)
    loaded, results = [], []
    for rel_path, digest, size in chunk:
        try:
            image = load_image(images_root / rel_path)
        except DatasetError as error:
            results.append(NewImage(rel_path, digest, 0, 0, size, np.zeros((0, 4), np.float32),
                                    np.zeros(0, np.float32), np.zeros((0, dim), np.float32), error=error.problem))
            continue
        loaded.append((rel_path, digest, size, image))
    if loaded:
        detections = embedder.detect([image for *_, image in loaded])
        for (rel_path, digest, size, image), (boxes, scores, embeddings) in zip(loaded, detections):
            results.append(NewImage(rel_path, digest, image.shape[1], image.shape[0], size,
                                    *detections_to_keep(boxes, scores, embeddings, min_score, dim)))
    return results
