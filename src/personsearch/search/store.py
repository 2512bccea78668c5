"""The persistent gallery index: metadata and embeddings in SQLite (the source of truth), the
faiss vectors as a derived cache file.

Layout of an index folder::

    INDEX/index.sqlite   images, persons (box, score, unit embedding as a float32 blob), meta
    INDEX/vectors.faiss  faiss index over the person embeddings (see search/vectors.py), tagged
                         with the SQLite ``generation`` it was written at

Every change of the person set happens in one SQLite transaction that also increments
``meta.generation``. The faiss file is written atomically (temp + os.replace) with the generation
it reflects; a missing, stale or corrupt file is rebuilt from SQLite on open. A crash can
therefore lose at most the batch in flight, never leave the index inconsistent.

Shapes
------
embeddings  float32 [N, D] unit norm;  boxes float32 [N, 4] x1y1x2y2 original image pixels
scores      float32 [N] detection scores;  person ids int64 [N] (``persons.id``)
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator
from urllib.parse import quote

import numpy as np

from personsearch.errors import IndexError_
from personsearch.search import vectors as vector_index

SCHEMA_VERSION = 1
DB_NAME = "index.sqlite"
VECTORS_NAME = "vectors.faiss"

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE images (
    id INTEGER PRIMARY KEY,
    rel_path TEXT NOT NULL UNIQUE,
    sha256 TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    size_bytes INTEGER NOT NULL,
    n_persons INTEGER NOT NULL,
    error TEXT,
    indexed_at REAL NOT NULL
);
CREATE TABLE persons (
    id INTEGER PRIMARY KEY,
    image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL,
    score REAL NOT NULL,
    embedding BLOB NOT NULL
);
CREATE INDEX persons_image ON persons(image_id);
CREATE INDEX images_sha ON images(sha256);
"""

# Video files (search/video.py): one row per file; each sampled frame is an ``images`` row (its
# rel_path "VIDEO@hh:mm:ss.mmm", its sha256 that of the decoded pixels) linked by ``frames``.
# ``complete`` is 0 while a build is still adding the file's frames (a killed build resumes it).
# Created on any writable open, so indexes from before videos were supported gain them.
_VIDEO_SCHEMA = """
CREATE TABLE IF NOT EXISTS videos (
    id INTEGER PRIMARY KEY,
    rel_path TEXT NOT NULL UNIQUE,
    sha256 TEXT NOT NULL,
    sampling TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    duration REAL,
    complete INTEGER NOT NULL,
    error TEXT,
    indexed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS frames (
    image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
    video_id INTEGER NOT NULL REFERENCES videos(id) ON DELETE CASCADE,
    pts INTEGER NOT NULL,
    seconds REAL NOT NULL,
    UNIQUE (video_id, pts)
);
"""


def _positive_int_or_none(value, key: str) -> int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value > 0):
        return value
    raise ValueError(f"{key} must be a positive integer or null, got {value!r}")


@dataclass(frozen=True)
class IndexSettings:
    """What an index was built with; stored in ``meta`` and checked on every later build."""

    fingerprint: str
    checkpoint: str
    embedding_dim: int
    images_root: str
    min_size: int = 900
    max_size: int = 1500
    min_score: float = 0.5
    index_type: str = "flat"
    index_params: dict = field(default_factory=dict)
    method: str | None = None
    test_proposals: int | None = None  # RPN proposals per image (None: an index from before it was recorded)

    def to_meta(self) -> dict[str, str]:
        return {
            "fingerprint": self.fingerprint,
            "checkpoint": self.checkpoint,
            "embedding_dim": str(int(self.embedding_dim)),
            "images_root": self.images_root,
            "min_size": str(int(self.min_size)),
            "max_size": str(int(self.max_size)),
            "min_score": repr(float(self.min_score)),
            "index_type": self.index_type,
            "index_params": json.dumps(self.index_params, sort_keys=True),
            "method": json.dumps(self.method),
            "test_proposals": json.dumps(self.test_proposals),
        }

    @classmethod
    def from_meta(cls, meta: dict[str, str], where: str) -> "IndexSettings":
        try:
            return cls(
                fingerprint=meta["fingerprint"],
                checkpoint=meta["checkpoint"],
                embedding_dim=int(meta["embedding_dim"]),
                images_root=meta["images_root"],
                min_size=int(meta["min_size"]),
                max_size=int(meta["max_size"]),
                min_score=float(meta["min_score"]),
                index_type=meta["index_type"],
                index_params=json.loads(meta["index_params"]),
                method=json.loads(meta.get("method", "null")),
                test_proposals=_positive_int_or_none(json.loads(meta.get("test_proposals", "null")), "test_proposals"),
            )
        except (KeyError, ValueError) as error:
            raise IndexError_(f"{where}: index metadata is incomplete or malformed ({error})") from None


@dataclass(frozen=True)
class ImageRow:
    id: int
    rel_path: str
    sha256: str
    width: int
    height: int
    size_bytes: int
    n_persons: int
    error: str | None


@dataclass(frozen=True)
class PersonRow:
    id: int
    image_id: int
    box: tuple[float, float, float, float]
    score: float


@dataclass(frozen=True)
class VideoRow:
    id: int
    rel_path: str
    sha256: str
    sampling: str
    size_bytes: int
    duration: float | None
    complete: bool
    error: str | None


@dataclass(frozen=True)
class FrameRow:
    """Where an indexed frame comes from: the video (path relative to the indexed folder) and
    the frame's presentation timestamp (stream time base) and time in seconds."""

    image_id: int
    video: str
    pts: int
    seconds: float


@dataclass
class NewImage:
    """One processed image (or video frame: ``video_id``, ``pts``, ``seconds`` set), ready to
    be stored."""

    rel_path: str
    sha256: str
    width: int
    height: int
    size_bytes: int
    boxes: np.ndarray  # float32 [N, 4]
    scores: np.ndarray  # float32 [N]
    embeddings: np.ndarray  # float32 [N, D] unit norm
    error: str | None = None
    video_id: int | None = None
    pts: int | None = None
    seconds: float | None = None


class GalleryStore:
    """An open index folder. Use :meth:`create` or :meth:`open`; close with :meth:`close`
    (or a ``with`` block). Safe to share between threads (one connection behind a lock)."""

    def __init__(self, root: Path, connection: sqlite3.Connection, settings: IndexSettings) -> None:
        self.root = root
        self.db_path = root / DB_NAME
        self.vectors_path = root / VECTORS_NAME
        self._connection = connection
        self._lock = threading.RLock()
        self.settings = settings
        self._index = None  # faiss index, loaded lazily
        self._index_generation = -1
        self._index_params: dict = {}
        self.cache_events: list[str] = []  # why the faiss cache was rebuilt (for info / tests)
        self.has_videos = True  # False: a read-only index from before videos (no video tables)

    # ------------------------------------------------------------------ open / create

    @classmethod
    def create(cls, root: str | Path, settings: IndexSettings) -> "GalleryStore":
        root = Path(root)
        if (root / DB_NAME).exists():
            raise IndexError_(f"{root}: an index already exists here")
        if root.exists() and not root.is_dir():
            raise IndexError_(f"{root}: exists and is not a folder")
        vector_index.default_params(settings.index_type)  # validates the type
        root.mkdir(parents=True, exist_ok=True)
        tmp_path = root / f".{DB_NAME}.creating"
        tmp_path.unlink(missing_ok=True)
        connection = sqlite3.connect(tmp_path, isolation_level=None, check_same_thread=False)
        try:
            connection.executescript("BEGIN;" + _SCHEMA + "COMMIT;")
            meta = {**settings.to_meta(), "schema_version": str(SCHEMA_VERSION), "generation": "0",
                    "created_at": repr(time.time())}
            with _transaction(connection):
                connection.executemany("INSERT INTO meta(key, value) VALUES (?, ?)", sorted(meta.items()))
        finally:
            connection.close()
        tmp_path.replace(root / DB_NAME)  # the index appears complete or not at all
        return cls.open(root)

    @classmethod
    def open(cls, root: str | Path, readonly: bool = False) -> "GalleryStore":
        root = Path(root)
        db_path = root / DB_NAME
        if not root.exists():
            raise IndexError_(f"{root}: index folder not found")
        if not db_path.is_file():
            raise IndexError_(f"{root}: not a personsearch index (no {DB_NAME})")
        uri = f"file:{quote(str(db_path.resolve()))}?mode={'ro' if readonly else 'rw'}"
        try:
            connection = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            connection.execute("PRAGMA foreign_keys = ON")
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.DatabaseError as error:
            raise IndexError_(f"{db_path}: corrupt or not an SQLite index ({error})") from None
        missing = {"meta", "images", "persons"} - tables
        if missing:
            connection.close()
            raise IndexError_(f"{db_path}: not a personsearch index (missing tables: {', '.join(sorted(missing))})")
        try:
            meta = dict(connection.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as error:
            connection.close()
            raise IndexError_(f"{db_path}: corrupt index ({error})") from None
        version = meta.get("schema_version")
        if version != str(SCHEMA_VERSION):
            connection.close()
            raise IndexError_(f"{db_path}: index schema version {version!r}, this personsearch reads {SCHEMA_VERSION}")
        settings = IndexSettings.from_meta(meta, str(db_path))
        if not readonly:
            try:
                connection.executescript("BEGIN;" + _VIDEO_SCHEMA + "COMMIT;")
            except sqlite3.DatabaseError as error:
                connection.close()
                raise IndexError_(f"{db_path}: cannot add the video tables ({error})") from None
        store = cls(root, connection, settings)
        store.has_videos = {"videos", "frames"} <= tables or not readonly
        return store

    def close(self) -> None:
        with self._lock:
            self._connection.close()
            self._index = None

    def __enter__(self) -> "GalleryStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ reading

    def _query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._connection.execute(sql, params).fetchall()
            except sqlite3.DatabaseError as error:
                raise IndexError_(f"{self.db_path}: corrupt index ({error})") from None

    def meta(self) -> dict[str, str]:
        return dict(self._query("SELECT key, value FROM meta"))

    @property
    def generation(self) -> int:
        return int(self._query("SELECT value FROM meta WHERE key='generation'")[0][0])

    def count_images(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM images")[0][0])

    def count_persons(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM persons")[0][0])

    def count_failed(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM images WHERE error IS NOT NULL")[0][0])

    def known_images(self) -> dict[str, tuple[int, str]]:
        """rel_path -> (image id, sha256) of the image files (not video frames)."""
        sql = "SELECT id, rel_path, sha256 FROM images"
        if self.has_videos:
            sql += " WHERE id NOT IN (SELECT image_id FROM frames)"
        return {path: (int(i), sha) for i, path, sha in self._query(sql)}

    # ------------------------------------------------------------------ videos

    def videos(self) -> dict[str, VideoRow]:
        """rel_path -> row of every indexed video file."""
        if not self.has_videos:
            return {}
        rows = self._query("SELECT id, rel_path, sha256, sampling, size_bytes, duration, complete, error FROM videos")
        return {row[1]: VideoRow(int(row[0]), row[1], row[2], row[3], int(row[4]), row[5], bool(row[6]), row[7])
                for row in rows}

    def count_frames(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM frames")[0][0]) if self.has_videos else 0

    def frame_pts(self, video_id: int) -> set[int]:
        """Presentation timestamps of the frames of a video already stored."""
        return {int(r[0]) for r in self._query("SELECT pts FROM frames WHERE video_id=?", (int(video_id),))}

    def frame(self, image_id: int) -> FrameRow | None:
        """The video frame an ``images`` row is (None for an image file)."""
        if not self.has_videos:
            return None
        rows = self._query(
            "SELECT frames.image_id, videos.rel_path, frames.pts, frames.seconds FROM frames "
            "JOIN videos ON videos.id = frames.video_id WHERE frames.image_id=?", (int(image_id),))
        return FrameRow(int(rows[0][0]), rows[0][1], int(rows[0][2]), float(rows[0][3])) if rows else None

    def start_video(self, rel_path: str, sha256: str, sampling: str, size_bytes: int,
                    duration: float | None) -> tuple[int, np.ndarray]:
        """Register a video to be (re)indexed: a video whose hash and sampling match the stored
        row keeps its frames (a killed build resumes it); otherwise its old frames are removed
        and the row replaced. Returns (video id, removed person ids)."""
        removed: list[int] = []
        with self._lock, _transaction(self._connection):
            row = self._connection.execute("SELECT id, sha256, sampling FROM videos WHERE rel_path=?",
                                           (rel_path,)).fetchone()
            if row is not None and (row[1], row[2]) == (sha256, sampling):
                self._connection.execute("UPDATE videos SET complete=0, error=NULL WHERE id=?", (row[0],))
                return int(row[0]), np.zeros(0, dtype=np.int64)
            if row is not None:
                removed = self._delete_video(int(row[0]))
            cursor = self._connection.execute(
                "INSERT INTO videos(rel_path, sha256, sampling, size_bytes, duration, complete, error, indexed_at) "
                "VALUES (?, ?, ?, ?, ?, 0, NULL, ?)", (rel_path, sha256, sampling, int(size_bytes), duration, time.time()))
            self._bump_generation()
            return int(cursor.lastrowid), np.asarray(removed, dtype=np.int64)

    def finish_video(self, video_id: int, error: str | None) -> None:
        with self._lock, _transaction(self._connection):
            self._connection.execute("UPDATE videos SET complete=1, error=?, indexed_at=? WHERE id=?",
                                     (error, time.time(), int(video_id)))

    def remove_videos(self, rel_paths: list[str]) -> np.ndarray:
        """Delete videos with their frames and persons (one transaction); removed person ids."""
        removed: list[int] = []
        if not rel_paths:
            return np.zeros(0, dtype=np.int64)
        with self._lock, _transaction(self._connection):
            for rel_path in rel_paths:
                row = self._connection.execute("SELECT id FROM videos WHERE rel_path=?", (rel_path,)).fetchone()
                if row is not None:
                    removed.extend(self._delete_video(int(row[0])))
            self._bump_generation()
        return np.asarray(removed, dtype=np.int64)

    def _delete_video(self, video_id: int) -> list[int]:
        """Inside a transaction: delete a video, its frame images and their persons."""
        removed = [int(r[0]) for r in self._connection.execute(
            "SELECT persons.id FROM persons JOIN frames ON frames.image_id = persons.image_id WHERE frames.video_id=?",
            (video_id,))]
        self._connection.execute("DELETE FROM images WHERE id IN (SELECT image_id FROM frames WHERE video_id=?)",
                                 (video_id,))
        self._connection.execute("DELETE FROM videos WHERE id=?", (video_id,))
        return removed

    def image(self, image_id: int) -> ImageRow | None:
        rows = self._query(
            "SELECT id, rel_path, sha256, width, height, size_bytes, n_persons, error FROM images WHERE id=?",
            (int(image_id),),
        )
        return ImageRow(*rows[0]) if rows else None

    def images(self, offset: int = 0, limit: int = 100) -> list[ImageRow]:
        rows = self._query(
            "SELECT id, rel_path, sha256, width, height, size_bytes, n_persons, error FROM images "
            "ORDER BY rel_path LIMIT ? OFFSET ?",
            (int(limit), int(offset)),
        )
        return [ImageRow(*row) for row in rows]

    def image_ids_with_sha(self, sha256: str) -> list[int]:
        return [int(row[0]) for row in self._query("SELECT id FROM images WHERE sha256=?", (sha256,))]

    def persons_of_image(self, image_id: int) -> list[PersonRow]:
        rows = self._query(
            "SELECT id, image_id, x1, y1, x2, y2, score FROM persons WHERE image_id=? ORDER BY score DESC",
            (int(image_id),),
        )
        return [PersonRow(int(r[0]), int(r[1]), (r[2], r[3], r[4], r[5]), float(r[6])) for r in rows]

    def persons(self, person_ids: list[int]) -> dict[int, PersonRow]:
        found: dict[int, PersonRow] = {}
        ids = [int(i) for i in person_ids]
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for r in self._query(f"SELECT id, image_id, x1, y1, x2, y2, score FROM persons WHERE id IN ({marks})", tuple(chunk)):
                found[int(r[0])] = PersonRow(int(r[0]), int(r[1]), (r[2], r[3], r[4], r[5]), float(r[6]))
        return found

    def person_embedding(self, person_id: int) -> np.ndarray | None:
        rows = self._query("SELECT embedding FROM persons WHERE id=?", (int(person_id),))
        return self._decode(rows[0][0]) if rows else None

    def _decode(self, blob: bytes) -> np.ndarray:
        dim = self.settings.embedding_dim
        if not isinstance(blob, bytes) or len(blob) != 4 * dim:
            size = len(blob) if isinstance(blob, (bytes, str)) else type(blob).__name__
            raise IndexError_(f"{self.db_path}: corrupt embedding ({size} bytes, expected {4 * dim} for dim {dim})")
        return np.frombuffer(blob, dtype=np.float32)

    def iter_embeddings(self, chunk: int = 65536) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids int64 [n], embeddings float32 [n, D]) in id order, chunk by chunk."""
        last_id = -1
        while True:
            rows = self._query("SELECT id, embedding FROM persons WHERE id > ? ORDER BY id LIMIT ?", (last_id, chunk))
            if not rows:
                return
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            vectors = np.stack([self._decode(r[1]) for r in rows])
            last_id = int(ids[-1])
            yield ids, vectors

    # ------------------------------------------------------------------ writing

    def add_images(self, new_images: list[NewImage]) -> list[tuple[int, np.ndarray]]:
        """Store a batch of processed images in ONE transaction (and bump the generation).
        Returns (image id, person ids) per image."""
        dim = self.settings.embedding_dim
        added = []
        now = time.time()
        with self._lock, _transaction(self._connection):
            for item in new_images:
                n = len(item.boxes)
                if item.embeddings.shape != (n, dim) or item.scores.shape != (n,):
                    raise ValueError(
                        f"{item.rel_path}: {n} boxes, embeddings {item.embeddings.shape}, scores {item.scores.shape} (dim {dim})"
                    )
                # A changed image replaces its old row (and, by cascade, its persons).
                self._connection.execute("DELETE FROM images WHERE rel_path=?", (item.rel_path,))
                cursor = self._connection.execute(
                    "INSERT INTO images(rel_path, sha256, width, height, size_bytes, n_persons, error, indexed_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (item.rel_path, item.sha256, int(item.width), int(item.height), int(item.size_bytes), n, item.error, now),
                )
                image_id = int(cursor.lastrowid)
                if item.video_id is not None:
                    self._connection.execute("INSERT INTO frames(image_id, video_id, pts, seconds) VALUES (?, ?, ?, ?)",
                                             (image_id, int(item.video_id), int(item.pts), float(item.seconds)))
                person_ids = []
                embeddings = np.ascontiguousarray(item.embeddings, dtype=np.float32)
                for box, score, embedding in zip(item.boxes.tolist(), item.scores.tolist(), embeddings):
                    cursor = self._connection.execute(
                        "INSERT INTO persons(image_id, x1, y1, x2, y2, score, embedding) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (image_id, *map(float, box), float(score), embedding.tobytes()),
                    )
                    person_ids.append(int(cursor.lastrowid))
                added.append((image_id, np.asarray(person_ids, dtype=np.int64)))
            self._bump_generation()
        return added

    def remove_images(self, rel_paths: list[str]) -> np.ndarray:
        """Delete images (and their persons) in one transaction; returns the removed person ids."""
        removed: list[int] = []
        if not rel_paths:
            return np.zeros(0, dtype=np.int64)
        with self._lock, _transaction(self._connection):
            for rel_path in rel_paths:
                removed.extend(
                    int(r[0]) for r in self._connection.execute(
                        "SELECT persons.id FROM persons JOIN images ON images.id = persons.image_id WHERE rel_path=?",
                        (rel_path,),
                    )
                )
                self._connection.execute("DELETE FROM images WHERE rel_path=?", (rel_path,))
            self._bump_generation()
        return np.asarray(removed, dtype=np.int64)

    def set_meta(self, values: dict[str, str]) -> None:
        with self._lock, _transaction(self._connection):
            self._connection.executemany(
                "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                sorted(values.items()),
            )

    def _bump_generation(self) -> None:
        self._connection.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key='generation'")

    # ------------------------------------------------------------------ vectors (faiss cache)

    def vector_index(self, write_cache: bool = True):
        """The faiss index at the current generation: from the cache file when it is valid,
        otherwise rebuilt from SQLite (and the cache rewritten when ``write_cache``)."""
        with self._lock:
            generation = self.generation
            if self._index is not None and self._index_generation == generation:
                return self._index
            count = self.count_persons()
            try:
                index = vector_index.read_cache(self.vectors_path, generation, count, self.settings.embedding_dim)
                params = {**json.loads(self.meta().get("vector_params", "{}")),
                          **{k: v for k, v in self.settings.index_params.items() if v is not None}}
                vector_index.apply_search_params(index, self.settings.index_type, params)
            except vector_index.VectorCacheInvalid as reason:
                if self.vectors_path.exists():
                    warnings.warn(f"{self.vectors_path}: {reason}; rebuilding it from {DB_NAME}", stacklevel=2)
                self.cache_events.append(str(reason))
                index, params = self._rebuild_index()
                if write_cache:
                    self._write_cache(index, generation, params)
            self._index, self._index_generation, self._index_params = index, generation, params
            return index

    def _rebuild_index(self):
        ids_list, vectors_list = [], []
        for ids, vectors in self.iter_embeddings():
            ids_list.append(ids)
            vectors_list.append(vectors)
        dim = self.settings.embedding_dim
        ids = np.concatenate(ids_list) if ids_list else np.zeros(0, dtype=np.int64)
        vectors = np.concatenate(vectors_list) if vectors_list else np.zeros((0, dim), dtype=np.float32)
        return vector_index.build_index(self.settings.index_type, dim, self.settings.index_params, vectors, ids)

    def _write_cache(self, index, generation: int, params: dict) -> None:
        try:
            vector_index.write_cache(self.vectors_path, index, generation)
        except OSError as error:  # read-only index folder: keep the rebuilt index in memory
            warnings.warn(f"{self.vectors_path}: cannot write the vector cache ({error})", stacklevel=3)
            return
        # The resolved parameters (IVF nlist, training-set size) of the written cache.
        self.set_meta({"vector_params": json.dumps(params, sort_keys=True)})

    def vector_params(self) -> dict:
        """Resolved parameters of the faiss index (requested ones plus e.g. IVF nlist)."""
        if self._index_params:
            return dict(self._index_params)
        return json.loads(self.meta().get("vector_params", "{}"))

    def update_vectors(self, index, added_ids: np.ndarray, added_vectors: np.ndarray, removed_ids: np.ndarray) -> bool:
        """Apply an incremental change to an in-memory index; False when it needs a rebuild
        (HNSW cannot remove; an IVF index that grew 4x past its training set is retrained)."""
        index_type = self.settings.index_type
        if len(removed_ids) and not vector_index.supports_remove(index_type):
            return False
        if index_type == "ivf":
            trained_on = int(self.vector_params().get("trained_on", 0))
            if trained_on == 0 or index.ntotal + len(added_ids) > 4 * trained_on:
                return False
        if len(removed_ids):
            index.remove_ids(np.ascontiguousarray(removed_ids, dtype=np.int64))
        if len(added_ids):
            index.add_with_ids(np.ascontiguousarray(added_vectors, dtype=np.float32), np.ascontiguousarray(added_ids, dtype=np.int64))
        return True

    def save_vectors(self, index) -> None:
        """Write ``index`` as the cache for the current generation (after a finished build)."""
        with self._lock:
            generation = self.generation
            if index.ntotal != self.count_persons():
                raise RuntimeError(f"vector index holds {index.ntotal} vectors, SQLite {self.count_persons()}")
            self._write_cache(index, generation, self.vector_params())
            self._index, self._index_generation = index, generation

    def rebuild_vectors(self):
        """Rebuild the faiss index from SQLite and write the cache (after a build whose changes
        could not be applied incrementally)."""
        with self._lock:
            generation = self.generation
            index, params = self._rebuild_index()
            self._write_cache(index, generation, params)
            self._index, self._index_generation, self._index_params = index, generation, params
            return index

    def load_vectors_for_update(self):
        """The index valid at the current generation (loaded or rebuilt), for incremental edits."""
        self._index = None
        return self.vector_index(write_cache=False)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        index = self.vector_index()
        if index.ntotal == 0:
            q = np.atleast_2d(queries).shape[0]
            return np.zeros((q, 0), np.float32), np.zeros((q, 0), np.int64)
        with self._lock:  # faiss search objects are not guaranteed thread safe with param changes
            return vector_index.search(index, queries, k)

    def sizes(self) -> dict[str, int]:
        out = {}
        for path in (self.db_path, self.vectors_path):
            out[path.name] = path.stat().st_size if path.exists() else 0
        return out


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT, ROLLBACK on any exception (autocommit connection)."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    def __enter__(self) -> None:
        self.connection.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.connection.execute("COMMIT")
        else:
            self.connection.execute("ROLLBACK")
